//! Read-only questions about the node's state ([`Query`], sent as
//! `Command::Inspect`) and their answers ([`Inspection`], in
//! `Reply::Inspect`). The HTTP API and dashboard ask them; Disque's QLEN,
//! QSTAT, QSCAN and JSCAN can be answered from the same queries.
//!
//! Every list is paged with an explicit bound ([`MAX_PAGE`]).

use crate::job::{ErrorClass, JobId, JobState, ModuleHash};

/// The most entries one page of a list holds.
pub const MAX_PAGE: usize = 1000;

/// A read-only question for the engine. Answering one never changes state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Counts for the whole node.
    Stats,
    /// Queues the node knows, ordered by name, strictly after `cursor`.
    Queues {
        cursor: Option<String>,
        limit: usize,
        /// Only queues whose name starts so (a tenant's, `tenant/`).
        prefix: Option<String>,
    },
    /// One queue (`None` in the answer if the node does not know it).
    Queue { name: String },
    /// Jobs, oldest first.
    Jobs(JobQuery),
    /// Each named tenant's use of this node (the metrics' per-tenant
    /// series; the names come from the registry, which bounds them).
    Tenants { names: Vec<String> },
}

/// Which jobs to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobQuery {
    pub queue: Option<String>,
    /// Only jobs whose queue name starts so (a tenant's, `tenant/`).
    pub prefix: Option<String>,
    pub state: Option<JobState>,
    /// Only jobs with an id strictly greater (younger) than this.
    pub cursor: Option<JobId>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: usize,
}

/// The engine's answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inspection {
    Stats(NodeStats),
    Queues(QueuePage),
    Queue(Option<QueueStat>),
    Jobs(JobPage),
    Tenants(Vec<TenantStat>),
}

/// One tenant's use of this node, since the node started (counters) or
/// now (gauges).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantStat {
    pub name: String,
    /// Jobs it holds on this node, whatever their state.
    pub jobs: u64,
    /// Its jobs ready in a queue.
    pub ready: u64,
    /// Wasm runs of its jobs finished here.
    pub runs: u64,
    /// Fuel its runs used.
    pub fuel_used: u64,
    /// Each run's memory cap times its run time, in byte-milliseconds.
    pub memory_byte_ms: u128,
    /// Adds refused, by quota name.
    pub refused: Vec<(&'static str, u64)>,
}

/// Counts of the whole node, as the engine holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub node_id: String,
    /// Jobs held, whatever their state.
    pub jobs: u64,
    /// Jobs ready in a queue (not delayed, not running).
    pub ready: u64,
    /// Wasm jobs running on this node's executors now.
    pub running: u64,
    /// Executor slots: Wasm jobs that may run at once.
    pub exec_slots: u64,
    /// Queues the node knows (with jobs, blocked clients, paused or
    /// recently used).
    pub queues: u64,
    pub modules: u64,
    /// Requests blocked waiting for a job.
    pub waiters: u64,
    /// Entries in the timer table.
    pub timers: u64,
    /// Jobs held that were added with an idempotency key.
    pub idempotency_keys: u64,
    /// Idempotency keys remembered after their jobs (tombstones).
    pub idempotency_tombstones: u64,
    /// Adds answered with an earlier job's id, since the start.
    pub idempotency_hits: u64,
    /// Tombstones forgotten before their window ended (the bound).
    pub idempotency_dropped: u64,
}

/// One queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStat {
    pub name: String,
    /// Ready Wasm jobs (run by this node's executors).
    pub ready_wasm: u64,
    /// Ready plain jobs (for external workers).
    pub ready_plain: u64,
    /// The ready job that has waited longest, and for how long (ms).
    pub oldest: Option<(JobId, u64)>,
    /// Disque's pause word: `none`, `in`, `out` or `all`.
    pub pause: &'static str,
    /// GETJOB clients blocked on the queue.
    pub blocked: u64,
    /// Jobs queued since the queue was created (Disque's `jobs-in`).
    pub jobs_in: u64,
    /// Jobs taken out to be delivered or run (Disque's `jobs-out`).
    pub jobs_out: u64,
    /// When the queue was created (unix ms).
    pub created_at: u64,
    /// Milliseconds since a job last went in or out.
    pub idle_ms: u64,
}

impl QueueStat {
    /// Ready jobs of both kinds: the queue's depth (Disque's QLEN).
    pub fn depth(&self) -> u64 {
        self.ready_wasm + self.ready_plain
    }
}

/// A page of queues; `next` is the cursor for the following page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueuePage {
    pub queues: Vec<QueueStat>,
    pub next: Option<String>,
}

/// A job in a list: what fits in a table row (never the body or output).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSummary {
    pub id: JobId,
    pub queue: String,
    pub state: JobState,
    pub priority: u8,
    pub attempts: u32,
    pub module: Option<ModuleHash>,
    /// Unix seconds.
    pub registered_at: u64,
    pub body_bytes: u64,
    pub error_class: Option<ErrorClass>,
}

/// A page of jobs; `next` is the cursor for the following page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobPage {
    pub jobs: Vec<JobSummary>,
    pub next: Option<JobId>,
}
