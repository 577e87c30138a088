//! What happened to a job, as the engine saw it: the one event type shared
//! by everything that listens (the metrics and the HTTP event feed today;
//! pub/sub for workers can listen to the same events).
//!
//! The engine emits them as [`crate::engine::Effect::Event`] only when
//! `EngineConfig::events` is on, so a node that nobody watches pays
//! nothing. Events carry no timestamp: the engine is sans-IO and the
//! runtime stamps them when it carries them out.

use crate::job::{ErrorClass, JobId, QueueName, UnixMs};

/// One thing that happened to one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    pub id: JobId,
    /// The job's own name for its queue, shared (an event per add that
    /// copied it was an allocation per add).
    pub queue: QueueName,
    pub kind: JobEventKind,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEventKind {
    /// The job was added to this node.
    Added {
        /// A Wasm job (run by this node) rather than a plain job.
        wasm: bool,
        /// Added with a DELAY: not ready yet.
        delayed: bool,
    },
    /// The job was handed to an executor (or, for plain jobs, a worker).
    Started {
        attempt: u32,
        /// Since when the job was ready (queued, or its delay ended): the
        /// wait time is the runtime's now minus this.
        ready_since: UnixMs,
    },
    /// An execution ended; `class` is `None` for success.
    Finished {
        class: Option<ErrorClass>,
        /// Wall-clock run time in microseconds.
        run_us: u64,
        fuel_used: u64,
    },
    /// An unacknowledged delivery was queued again.
    Requeued,
    /// The node forgot the job.
    Removed(Removal),
}

/// Why a job was forgotten.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Removal {
    Acked,
    Deleted,
    Expired,
}

impl Removal {
    pub fn as_str(&self) -> &'static str {
        match self {
            Removal::Acked => "acked",
            Removal::Deleted => "deleted",
            Removal::Expired => "expired",
        }
    }
}

impl JobEventKind {
    /// A short word for the feed and labels: `added`, `started`,
    /// `finished`, `failed`, `requeued`, `acked`, `deleted`, `expired`.
    pub fn word(&self) -> &'static str {
        match self {
            JobEventKind::Added { .. } => "added",
            JobEventKind::Started { .. } => "started",
            JobEventKind::Finished { class: None, .. } => "finished",
            JobEventKind::Finished { class: Some(_), .. } => "failed",
            JobEventKind::Requeued => "requeued",
            JobEventKind::Removed(r) => r.as_str(),
        }
    }
}

/// The bounded label for an error class: `exit(N)` becomes `exit`, so the
/// label set is the fixed list of classes whatever codes guests exit with.
pub fn class_label(class: &ErrorClass) -> &'static str {
    match class {
        ErrorClass::InvalidModule => "invalid-module",
        ErrorClass::OutOfFuel => "out-of-fuel",
        ErrorClass::MemoryLimit => "memory-limit",
        ErrorClass::Deadline => "deadline",
        ErrorClass::Trap => "trap",
        ErrorClass::Exit(_) => "exit",
        ErrorClass::OutputLimit => "output-limit",
        ErrorClass::ModuleMissing => "module-missing",
        ErrorClass::Quota => "quota",
        ErrorClass::Internal => "internal",
        ErrorClass::Cancelled => "cancelled",
        ErrorClass::Dependency => "dependency",
    }
}
