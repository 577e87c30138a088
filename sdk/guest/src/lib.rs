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

/// The longest progress note the node takes, in bytes (a longer one is
/// cut at a character boundary before it is sent).
pub const MAX_PROGRESS_NOTE: usize = 256;

/// Tells the node how far the task got: `done` of `total` units (`total`
/// 0 when unknown) and a short note. `wasque show`, `wasque explain` and
/// the dashboard show the latest report while the job runs. Cheap (a few
/// units of fuel); the node keeps only the latest report and takes it at
/// most every 20 ms, so calling it often is fine.
///
/// Returns whether the node took it. On a node that does not grant the
/// `wasque` host module such a module is refused at upload; built for the
/// host (tests), this does nothing and returns `false`.
///
/// ```no_run
/// for i in 0..10u64 {
///     // ... one tenth of the work ...
///     wasque_guest::progress(i + 1, 10, "resizing");
/// }
/// ```
pub fn progress(done: u64, total: u64, note: &str) -> bool {
    let mut end = note.len().min(MAX_PROGRESS_NOTE);
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    host::progress(done, total, &note.as_bytes()[..end])
}

#[cfg(target_arch = "wasm32")]
mod host {
    #[link(wasm_import_module = "wasque")]
    unsafe extern "C" {
        #[link_name = "progress"]
        fn wasque_progress(done: u64, total: u64, note: *const u8, note_len: usize) -> i32;
    }

    pub fn progress(done: u64, total: u64, note: &[u8]) -> bool {
        // SAFETY: the pointer and length describe `note`, which outlives
        // the call; the node only reads them.
        unsafe { wasque_progress(done, total, note.as_ptr(), note.len()) == 0 }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod host {
    pub fn progress(_done: u64, _total: u64, _note: &[u8]) -> bool {
        false
    }
}
