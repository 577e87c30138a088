//! What a front door asks the engine to do.

use bytes::Bytes;
use wasque_sdk::proto::AddJob;

use crate::job::{JobId, JobState, ModuleHash};
use crate::queue::Pause;

/// One command, whatever door it came through.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Add a job (Disque's ADDJOB plus wasque's Wasm options).
    AddJob(Box<AddJob>),
    /// Add one part of a distributed job (its parent was added with
    /// `AddJob::map`); the part runs the map module as a job of its own.
    AddPart {
        parent: JobId,
        index: u32,
        body: Bytes,
    },
    /// The job's status.
    Show {
        id: JobId,
    },
    /// Why the job is where it is (`engine/explain.rs`).
    Explain {
        id: JobId,
    },
    /// Block until the job is finished, or `timeout_ms` passes (0 = answer now).
    Wait {
        id: JobId,
        timeout_ms: u64,
    },
    /// Acknowledge jobs (`fast`: Disque's FASTACK, best effort).
    Ack {
        ids: Vec<JobId>,
        fast: bool,
    },
    /// Delete jobs from this node whatever their state.
    DelJob {
        ids: Vec<JobId>,
    },
    ListModules,
    StatModule {
        hash: ModuleHash,
    },
    /// Forget a module; refused while queued or running jobs use it.
    DeleteModule {
        hash: ModuleHash,
    },
    /// Disque's GETJOB: plain jobs for an external worker.
    GetJob(Box<GetJob>),
    /// Put delivered jobs back in their queue, counting a NACK: at once,
    /// or after `delay_ms` (after the job's backoff when it has a retry
    /// policy and no delay is given). A job past its policy's attempts
    /// goes to the dead-letter queue instead.
    Nack {
        ids: Vec<JobId>,
        delay_ms: Option<u64>,
    },
    /// Queue jobs that are not queued (Disque's ENQUEUE).
    Enqueue {
        ids: Vec<JobId>,
    },
    /// Take queued jobs out of their queue (Disque's DEQUEUE).
    Dequeue {
        ids: Vec<JobId>,
    },
    /// Postpone the next re-queue of a delivered job by its retry time.
    Working {
        id: JobId,
    },
    /// An external worker's result for a plain job: stored (unless the job
    /// is `nocache`), handed to waiters, and no further delivery.
    Finish {
        id: JobId,
        output: Bytes,
        exit_code: i32,
    },
    QLen {
        queue: String,
    },
    /// Up to `count` queued jobs without taking them; negative = newest first.
    QPeek {
        queue: String,
        count: i64,
    },
    QStat {
        queue: String,
    },
    QScan(QScan),
    JScan(Box<JScan>),
    /// Change (with `set`) and report a queue's pause state; with
    /// `bcast`, every live peer is given the resulting state too.
    Pause {
        queue: String,
        set: Option<Pause>,
        bcast: bool,
    },
    /// Forget every job and queue (DEBUG FLUSHALL; test nodes only).
    FlushAll,
    /// Make the driver task panic (DEBUG PANIC-DRIVER; test nodes only):
    /// the node must then exit non-zero (supervise.rs). The driver acts on
    /// it; it never reaches the engine.
    DebugPanicDriver,
    /// Set (with `set`) and report a queue's scheduling policy and mode.
    QPolicy {
        queue: String,
        set: Option<(crate::engine::Policy, crate::engine::Mode)>,
    },
    /// A read-only question about the node's state.
    Inspect(super::Query),
    /// A queue's dead letters: list, requeue or purge (`engine/life.rs`).
    Dlq(Box<Dlq>),
    /// Set (`Some(Some)`), clear (`Some(None)`) and report a queue's
    /// default retry policy, which jobs added to it without one take.
    QRetry {
        queue: String,
        set: Option<Option<wasque_sdk::proto::RetryPolicy>>,
    },
    /// Stop jobs wherever they are: queued copies removed on every
    /// holder, a run interrupted (error class `cancelled`;
    /// `engine/cancel.rs`).
    Cancel {
        ids: Vec<JobId>,
    },
    /// `cmd` carrying an `asynckey`: it opens the jobs added with that key
    /// (SHOW, WAIT, ACK, DELJOB, NACK, WORKING, ENQUEUE, DEQUEUE, JSCAN).
    /// Without it, a keyed job answers as a job the node does not hold
    /// (`engine/asynckey.rs`).
    WithKey {
        key: String,
        cmd: Box<Command>,
    },
    /// `cmd` from a tenant's client: run in the tenant's namespace, its
    /// quotas checked, other tenants' jobs unknown to it
    /// (`engine/tenant.rs`).
    As {
        tenant: std::sync::Arc<crate::tenant::Tenant>,
        cmd: Box<Command>,
    },
}

/// What to do with a queue's dead letters.
#[derive(Clone, Debug, PartialEq)]
pub struct Dlq {
    /// The queue whose dead letters (its `<queue>:dead`) are meant.
    pub queue: String,
    pub op: DlqOp,
    /// The request's `asynckey` (set by the engine from
    /// [`Command::WithKey`]): keyed jobs count only when it opens them.
    pub key: Option<String>,
}

/// A dead-letter operation.
#[derive(Clone, Debug, PartialEq)]
pub enum DlqOp {
    /// Up to `count` dead letters, oldest first (capped at 1,000).
    List { count: u32 },
    /// Queue these dead letters again (every one when empty) with fresh
    /// attempts.
    Requeue { ids: Vec<JobId> },
    /// Forget every dead letter of the queue, on every holder.
    Purge,
}

/// Arguments of GETJOB.
#[derive(Clone, Debug, PartialEq)]
pub struct GetJob {
    /// Queues to take from, left to right.
    pub queues: Vec<String>,
    /// Answer nil at once instead of blocking.
    pub nohang: bool,
    /// How long to block; 0 = until a job comes.
    pub timeout_ms: u64,
    /// Most jobs to return (at least 1).
    pub count: u32,
    /// Add the `nacks` and `additional-deliveries` counters to each job.
    pub withcounters: bool,
}

/// Arguments of QSCAN.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QScan {
    pub cursor: u64,
    pub count: u64,
    pub busyloop: bool,
    pub minlen: Option<u64>,
    pub maxlen: Option<u64>,
    pub importrate: Option<u64>,
    /// Only queues whose name starts so (set by the engine for a tenant).
    pub prefix: Option<String>,
}

/// Arguments of JSCAN.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JScan {
    pub cursor: u128,
    pub count: u64,
    pub busyloop: bool,
    pub queue: Option<String>,
    /// Any of these states; empty = every state.
    pub states: Vec<JobState>,
    /// Each job's full SHOW document instead of its id.
    pub reply_all: bool,
    /// The `asynckey` of the request: keyed jobs are listed only when it
    /// opens them (set by the engine from [`Command::WithKey`]).
    pub key: Option<String>,
    /// Only jobs whose queue name starts so (set by the engine for a
    /// tenant).
    pub prefix: Option<String>,
}
