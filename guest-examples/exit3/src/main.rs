//! `exit3` (hostile): writes `bye` on stderr and exits with status 3.
//! Expected class: `exit(3)`.

fn main() {
    wasque_guest::fail(3, "bye");
}
