//! Helpers for writing **wasque** tasks.
//!
//! A wasque job is a WebAssembly module (target `wasm32-wasip1`) that the
//! node runs with wasmtime under WASI preview 1:
//!
//! * the job's **payload** is the module's standard input,
//! * whatever the module writes to **standard output** is the job's result,
//! * **standard error** is a log kept next to the result,
//! * the **exit status** says whether the job succeeded (`0`) or failed.
//!
//! This crate only wraps `std` so that task code reads naturally. It has no
//! dependencies and also builds for the host, which makes the task logic easy
//! to unit-test.
//!
//! # Example
//!
//! ```no_run
//! // The body of `main` in a task that upper-cases its payload.
//! wasque_guest::run(|payload| {
//!     let text = String::from_utf8(payload).map_err(|e| format!("not UTF-8: {e}"))?;
//!     wasque_guest::log(&format!("upper-casing {} bytes", text.len()));
//!     Ok(text.to_uppercase().into_bytes())
//! });
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip1` and submit
//! `target/wasm32-wasip1/release/<name>.wasm`.

use std::io::{self, Read, Write};

/// Reads the whole payload (standard input) into memory.
///
/// If standard input cannot be read the task fails with exit status 1.
pub fn payload() -> Vec<u8> {
    let mut buf = Vec::new();
    if let Err(e) = io::stdin().lock().read_to_end(&mut buf) {
        fail(1, &format!("cannot read payload: {e}"));
    }
    buf
}

/// Reads the whole payload as text; invalid UTF-8 sequences are replaced by
/// `U+FFFD REPLACEMENT CHARACTER`.
pub fn payload_string() -> String {
    let bytes = payload();
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Writes `bytes` to the result (standard output) and flushes it.
///
/// May be called several times; the result is the concatenation. If the
/// write fails (for instance because the node's output limit was reached) the
/// task fails with exit status 1.
pub fn output(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        drop(out);
        fail(1, &format!("cannot write output: {e}"));
    }
}

/// Writes one line to the job's log (standard error). Errors are ignored.
pub fn log(msg: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{msg}");
    let _ = err.flush();
}

/// Logs `msg` and ends the task with exit status `code`.
///
/// Standard output is flushed first so that partial results are not lost.
pub fn fail(code: i32, msg: &str) -> ! {
    let _ = io::stdout().flush();
    log(msg);
    std::process::exit(code)
}

/// Runs a whole task: reads the payload, passes it to `f`, and writes the
/// returned bytes as the result. If `f` returns `Err(msg)`, `msg` is logged
/// and the task exits with status 1.
///
/// ```no_run
/// wasque_guest::run(|payload| Ok(payload)); // an echo task
/// ```
pub fn run(f: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, String>) {
    let input = payload();
    match f(input) {
        Ok(out) => output(&out),
        Err(msg) => fail(1, &msg),
    }
}
