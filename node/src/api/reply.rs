//! What the engine answers a [`super::Command`].

use bytes::Bytes;
use wasque_sdk::proto::{ModuleCatalogue, ModuleInfo, NodeInfo, WireError};

use crate::job::{JobId, JobStatus};

/// One reply, rendered by each front door in its own wire format.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Ok,
    JobAdded(JobId),
    /// An add answered by its idempotency key: the earlier job's id. The
    /// doors render it as [`Reply::JobAdded`]; the store does not take it
    /// for a new job (an unwritable round fails the reply, not the job).
    Duplicate(JobId),
    Job(Box<JobStatus>),
    /// A wait timed out before the job finished.
    NotFinished,
    /// How many jobs a command affected (or, for WORKING, seconds).
    Count(u64),
    Module(ModuleInfo),
    /// A node's own modules (the engine), or the cluster's (the module
    /// catalogue, `Handle::list_modules`).
    Modules(ModuleCatalogue),
    NodeInfo(Box<NodeInfo>),
    /// Answer to a client's hello.
    Hello {
        node: String,
        protocol: u32,
        max_reply_bytes: u64,
    },
    /// Jobs handed out (GETJOB) or shown (QPEEK).
    Jobs(Vec<JobEntry>),
    /// Nothing: GETJOB that timed out or found nothing with NOHANG, QSTAT
    /// of an unknown queue.
    Nil,
    QStat(Box<QStat>),
    /// Answer to a read-only [`super::Query`].
    Inspect(Box<super::Inspection>),
    QueueScan {
        cursor: u64,
        queues: Vec<String>,
    },
    JobScan {
        cursor: u128,
        jobs: Vec<JobScanItem>,
    },
    /// A queue's pause state after PAUSE: `none`, `in`, `out` or `all`.
    Paused(&'static str),
    /// A few words (QPOLICY: the policy and the mode).
    Words(Vec<String>),
    /// Jobs' status documents (DLQ LIST).
    Statuses(Vec<JobStatus>),
    /// The cluster's nodes (client discovery).
    Nodes(Vec<wasque_sdk::proto::ClusterNode>),
    /// Why a job is where it is (EXPLAIN).
    Explain(Box<wasque_sdk::proto::Explain>),
    /// Schedules listed or shown (`sched/command.rs`).
    Schedules(Vec<wasque_sdk::proto::ScheduleInfo>),
    Error(WireError),
}

/// A job as GETJOB and QPEEK return it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobEntry {
    pub queue: String,
    pub id: JobId,
    pub body: Bytes,
    /// `(nacks, additional deliveries)` with WITHCOUNTERS.
    pub counters: Option<(u32, u32)>,
}

/// QSTAT's fields.
#[derive(Clone, Debug, PartialEq)]
pub struct QStat {
    pub name: String,
    pub len: u64,
    pub age_secs: u64,
    pub idle_secs: u64,
    pub blocked: u64,
    pub jobs_in: u64,
    pub jobs_out: u64,
    pub pause: &'static str,
}

/// One JSCAN result.
#[derive(Clone, Debug, PartialEq)]
pub enum JobScanItem {
    Id(JobId),
    Full(Box<JobStatus>),
}

impl Reply {
    pub fn error(code: wasque_sdk::proto::ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error(WireError::new(code, message))
    }
}
