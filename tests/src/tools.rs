//! Tests that need a program from outside Rust (Chromium, Node.js,
//! redis-cli) are `#[ignore]`d, so a plain `cargo test` lists them as
//! ignored instead of passing them unrun; `scripts/test.sh` installs the
//! programs and runs them with `--ignored`. Once a test runs, a missing
//! program fails it with the line that installs it: it never passes
//! without having run.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// True when `program --version` runs and succeeds.
pub fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fails the test, naming the install line, unless `program` runs.
pub fn require(program: &str, install: &str) {
    assert!(
        runs(program),
        "{program} is not installed, so this test cannot run; install it: {install}"
    );
}

/// The Chromium binary: `$CHROMIUM`, else /usr/bin/chromium; fails the
/// test with the install line if it is not there.
pub fn require_chromium() -> PathBuf {
    let p = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        p.exists(),
        "no Chromium at {}, so this test cannot run; install it: apt-get install chromium (or set CHROMIUM)",
        p.display()
    );
    p
}
