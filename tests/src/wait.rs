//! Bounded waiting for a condition a test expects to become true.

use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it holds; panics naming `what` if it
/// does not within `secs`.
pub fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for: {what}");
}
