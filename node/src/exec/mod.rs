//! `exec`: runs Wasm jobs with wasmtime, on the executor's own threads.
//!
//! # Core concepts
//!
//! - **One `Engine` per node** (`engine.rs`): compiled code, the pooling
//!   allocator (pre-reserved instance, memory and table slots reused from
//!   job to job: copy-on-write memory images, pages kept resident and reset
//!   with `PAGEMAP_SCAN` where Linux has it), fuel metering and epoch
//!   interruption. Built once at [`Executor::open`]; lives as long as the
//!   executor.
//! - **One `InstancePre` per module** (`cache.rs`): the module validated,
//!   compiled once per node (or loaded from the artifact this node wrote),
//!   its imports resolved against the sandbox's linker and `_start` looked
//!   up. Kept for as long as the module is in the cache, keyed by the sha256
//!   of its bytes.
//! - **One `Store` per job** (`run.rs`): the job's WASI preview 1 state
//!   (stdin = payload, bounded stdout = result, bounded stderr = log,
//!   args; no files, no environment, no network), the job's fuel, memory
//!   cap and deadline. Lives for one run, a few microseconds for a short
//!   job; its memory slot goes back to the pool, reset.
//!
//! Jobs run on dedicated threads (`pool.rs`), never on the async runtime's;
//! an epoch ticker thread makes deadlines fire. How a job ended is decided
//! from what the node observed (fuel counter, epoch deadline, the memory
//! limiter's record, the output pipe's record), never from a trap's text.
//!
//! # Layout
//!
//! `config.rs` settings, `error.rs` errors, `request.rs` API values,
//! `executor.rs` the handle, `host.rs` the `wasque` host module (progress),
//! `live.rs` news of running jobs (progress, stdout lines), `engine.rs` the wasmtime engine, `cache.rs` the
//! module cache, `run.rs` one job, `wasi.rs` the sandbox's WASI preview 1
//! (every function, and what it grants), `pipe.rs` bounded stdout/stderr,
//! `sleep.rs` guest sleeps, `pool.rs` threads, `share.rs` the order in
//! which threads take queued jobs (tenants' shares).

mod cache;
mod config;
mod engine;
mod error;
mod executor;
mod host;
mod live;
mod pipe;
mod pool;
mod request;
mod run;
mod share;
mod sleep;
mod wasi;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_wasi;

pub use self::config::ExecConfig;
pub use self::error::ExecError;
pub use self::executor::Executor;
pub use self::live::{LiveBatch, LiveFeed, LogLine, Report};
pub use self::request::{ExecDone, ExecRequest, ExecStats, PutOutcome};
pub use self::share::{Share, ShareQueue};
