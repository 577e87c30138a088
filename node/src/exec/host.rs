//! The sandbox's own host module, `wasque`, beside WASI preview 1
//! (`wasi.rs`): what a guest may tell the node while it runs. One
//! function so far:
//!
//! - `progress(done: i64, total: i64, note: i32, note_len: i32) -> i32`:
//!   the job reports how far it got (`done` of `total` units, 0 for an
//!   unknown total, as u64) and a note of at most `MAX_PROGRESS_NOTE`
//!   bytes of UTF-8 (invalid sequences replaced). Answers 0, or an errno:
//!   `TOO_BIG` for a longer note, `FAULT` for a note outside the guest's
//!   memory. It charges fuel like the WASI calls that move bytes (a base
//!   of 8 units plus one per 8 bytes of note), so a loop of reports pays
//!   its way; only the latest report of a run is kept, and it reaches the
//!   node at most every 20 ms (`live.rs`).
//!
//! The guest SDK's `wasque_guest::progress` calls it. A module that
//! imports a name of this module the sandbox does not define is refused
//! at upload (`cache.rs`).

use wasmtime::{Caller, Linker};
use wasque_sdk::proto::MAX_PROGRESS_NOTE;

use super::live::Report;
use super::run::JobCtx;
use super::wasi::{charge, errno, guest_slice};

/// The import module's name.
pub(crate) const MODULE: &str = "wasque";

/// Every function of [`MODULE`].
pub(crate) const NAMES: &[&str] = &["progress"];

/// Fuel a report costs besides its note's bytes: 64 bytes' worth.
const BASE_BYTES: u64 = 64;

/// Defines [`MODULE`]'s functions in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<JobCtx>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "progress",
        |mut c: Caller<'_, JobCtx>, done: i64, total: i64, note: i32, len: i32| {
            progress(&mut c, done as u64, total as u64, note as u32, len as u32)
        },
    )?;
    Ok(())
}

fn progress(
    c: &mut Caller<'_, JobCtx>,
    done: u64,
    total: u64,
    at: u32,
    len: u32,
) -> wasmtime::Result<i32> {
    let len = len as usize;
    if len > MAX_PROGRESS_NOTE {
        return Ok(errno::TOO_BIG);
    }
    charge(c, BASE_BYTES + len as u64)?;
    let note = if len == 0 {
        String::new()
    } else {
        let Some(wasmtime::Extern::Memory(m)) = c.get_export("memory") else {
            return Ok(errno::FAULT);
        };
        match guest_slice(m.data(&*c), at as usize, len) {
            Some(b) => String::from_utf8_lossy(b).into_owned(),
            None => return Ok(errno::FAULT),
        }
    };
    c.data_mut().tap.progress(Report { done, total, note });
    Ok(errno::SUCCESS)
}
