//! `progress`: a task that reports how far it got while it runs. The
//! payload is `STEPS [MS]` (default 10 steps of 100 ms): for each step it
//! sleeps, writes the line `step I of STEPS` to stdout (streamed to
//! `wasque logs -f` watchers as it comes) and reports `progress(I,
//! STEPS, "step I")` (shown by `wasque show`). Its result is every line.

use std::io::Write;
use std::time::Duration;

fn main() {
    let input = wasque_guest::payload_string();
    let mut words = input.split_whitespace();
    let steps: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(10);
    let ms: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(100);
    let mut out = std::io::stdout().lock();
    for i in 1..=steps {
        std::thread::sleep(Duration::from_millis(ms));
        if writeln!(out, "step {i} of {steps}")
            .and_then(|()| out.flush())
            .is_err()
        {
            wasque_guest::fail(1, "cannot write output");
        }
        wasque_guest::progress(i, steps, &format!("step {i}"));
    }
}
