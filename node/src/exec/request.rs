//! The values that cross the executor's API: a job to run, a finished job,
//! the outcome of an upload, and the executor's counters.

use bytes::Bytes;
use wasque_sdk::proto::{JobId, JobResult, Limits, ModuleHash};

/// One run of a Wasm job.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    pub job: JobId,
    /// Which delivery of the job this is (echoed in [`ExecDone`]).
    pub attempt: u32,
    /// The module to run (must be in the node's cache).
    pub module: ModuleHash,
    /// The payload: the guest's stdin.
    pub body: Bytes,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Limits already capped by quotas and node maxima.
    pub limits: Limits,
    /// Its tenant group and weight: which queued job a free thread takes
    /// first (`share.rs`). `Share::default()` without tenants.
    pub share: super::Share,
}

/// A finished run, sent to the executor's `done` channel.
#[derive(Clone, Debug)]
pub struct ExecDone {
    pub job: JobId,
    pub attempt: u32,
    pub result: JobResult,
}

/// What `put_module` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    pub hash: ModuleHash,
    /// The module's size in bytes.
    pub size: u64,
    /// `false` when the node already had the module (nothing was compiled).
    pub compiled_now: bool,
}

/// The executor's counters, for `/metrics` and capacity adverts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Executor threads.
    pub threads: u32,
    /// Threads running a job right now.
    pub busy: u32,
    /// Jobs finished since start (any outcome).
    pub jobs_run: u64,
    /// Modules compiled by Cranelift since start (uploads and recompiles).
    pub modules_compiled: u64,
    /// Modules restored from their precompiled artifact at start.
    pub modules_loaded: u64,
    /// Jobs run ahead of another tenant's running job, which waited set
    /// aside meanwhile (the executor's preemption, `run::SetAside`).
    pub ran_ahead: u64,
    /// Whether pooled memory is reset with `PAGEMAP_SCAN`.
    pub pagemap_scan: bool,
}
