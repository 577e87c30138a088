//! `ExecConfig`: the executor's settings (threads, node maxima, output
//! bounds, epoch tick), with defaults that suit one node on one machine.

use std::time::Duration;

/// Settings of one node's executor.
///
/// Every bound is explicit: the per-job [`Limits`](wasque_sdk::proto::Limits)
/// come with each request, and the node maxima here cap them.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// Executor threads (default: the machine's available parallelism).
    pub threads: usize,
    /// The node's maximum linear memory per job, in bytes: the size of a
    /// pooled memory slot. A job's own memory limit is capped by it.
    pub max_memory_bytes: u64,
    /// Bound on a job's stdout. Writing past it fails the job with
    /// `ErrorClass::OutputLimit` (the result is never silently truncated).
    pub max_output_bytes: usize,
    /// How much of a job's stderr is kept. Stderr is a log: what is past the
    /// bound is dropped silently and the guest never notices.
    pub max_stderr_bytes: usize,
    /// Largest module accepted by `put_module`, in bytes.
    pub max_module_bytes: usize,
    /// Period of the epoch ticker: the resolution of wall-clock deadlines.
    pub epoch_tick: Duration,
    /// A job's memory starts as a copy-on-write mapping of its module's
    /// initial memory image (wasmtime's `memory_init_cow`): nearly free
    /// when the pooled slot it gets last held the same module, page
    /// faults on every page it touches when not. Off, each instance copies
    /// the module's data segments instead, whatever the slot held: better
    /// with many modules of small data segments taking turns (node
    /// directive `exec-memory-cow`).
    pub memory_cow: bool,
    /// This node's id, written into every `JobResult::node`.
    pub node_id: String,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_memory_bytes: 256 << 20,
            max_output_bytes: 8 << 20,
            max_stderr_bytes: 64 << 10,
            max_module_bytes: 64 << 20,
            epoch_tick: Duration::from_millis(5),
            memory_cow: true,
            node_id: String::new(),
        }
    }
}
