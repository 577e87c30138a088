//! `escape` (hostile): tries to get out of the sandbox and reports, one line
//! per attempt on stdout, what happened:
//!
//! ```text
//! <attempt>: ok <detail>
//! <attempt>: error <error text>
//! ```
//!
//! Attempts: `open /etc/passwd`, `open ../canary.txt`,
//! `open /tmp/wasque-canary`, `open arg <path>` (only if a first argument is
//! given), `env count`, `env HOME`, `connect 127.0.0.1:7711`, `readdir .`,
//! `readdir /`. A successful open prints `ok read N bytes <first line>` so
//! that a test can check the canary's content never shows up. Always exits 0.

use std::fmt::Display;
use std::io::Read;

/// At most this much of an opened file is read.
const READ_LIMIT: u64 = 1 << 20;

fn report<T: Display, E: Display>(attempt: &str, result: Result<T, E>) {
    let line = match result {
        Ok(detail) => format!("{attempt}: ok {detail}\n"),
        // Error texts may span lines; keep one line per attempt.
        Err(e) => format!("{attempt}: error {}\n", e.to_string().replace('\n', " ")),
    };
    wasque_guest::output(line.as_bytes());
}

fn try_open(path: &str) -> std::io::Result<String> {
    let mut content = Vec::new();
    std::fs::File::open(path)?
        .take(READ_LIMIT)
        .read_to_end(&mut content)?;
    let text = String::from_utf8_lossy(&content);
    let first_line = text.lines().next().unwrap_or("");
    Ok(format!("read {} bytes {first_line}", content.len()))
}

fn try_readdir(path: &str) -> std::io::Result<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(format!("{} entries: {}", names.len(), names.join(" ")))
}

fn main() {
    for path in ["/etc/passwd", "../canary.txt", "/tmp/wasque-canary"] {
        report(&format!("open {path}"), try_open(path));
    }
    if let Some(path) = std::env::args().nth(1) {
        report(&format!("open arg {path}"), try_open(&path));
    }

    // Reading the environment cannot fail; a sandbox passes none (count 0).
    report::<_, String>("env count", Ok(std::env::vars_os().count()));
    report("env HOME", std::env::var("HOME"));

    // WASI preview 1 has no way to open sockets: std returns "unsupported".
    report(
        "connect 127.0.0.1:7711",
        std::net::TcpStream::connect("127.0.0.1:7711")
            .map(|s| format!("connected {:?}", s.peer_addr())),
    );

    report("readdir .", try_readdir("."));
    report("readdir /", try_readdir("/"));
}
