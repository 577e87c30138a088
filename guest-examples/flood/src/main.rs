//! `flood` (hostile): writes 64 KiB blocks of `x` to stdout forever.
//! The node must stop it with `output-limit`. If a write is refused, the
//! guest exits with status 9.

use std::io::Write;

fn main() {
    let block = [b'x'; 64 * 1024];
    let mut out = std::io::stdout().lock();
    loop {
        if out.write_all(&block).is_err() {
            std::process::exit(9);
        }
    }
}
