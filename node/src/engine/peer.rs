//! The messages one node's engine sends another's about jobs: Disque's
//! cluster protocol (REPLJOB, GOTJOB, SETACK, GOTACK, DELJOB, WILLQUEUE,
//! QUEUED, NEEDJOBS, YOURJOBS) plus wasque's own result hand-over. The
//! engine produces and consumes them; `cluster/` carries them over QUIC.

use serde::{Deserialize, Serialize};

use crate::job::{Job, JobId, JobResult, JobState};

/// One message between peer engines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerMsg {
    /// Hold a copy of this job (its `nodes` lists every holder). Answered
    /// with `GotJob`.
    Replicate(Box<Job>),
    /// The copy is stored.
    GotJob(JobId),
    /// The job was acknowledged: forget it. Answered with `GotAck`.
    SetAck(JobId),
    /// The copy is forgotten.
    GotAck(JobId),
    /// Forget a copy whose add failed (replication did not complete in
    /// time); no answer.
    DelJob(JobId),
    /// The sender's retry time passed: it will queue the job unless some
    /// holder answers `Queued` (it has the job queued or in hand).
    WillQueue(JobId),
    /// The sender has the job queued or delivered: postpone your re-queue.
    Queued(JobId),
    /// A Wasm job finished on the sender: keep its result.
    Finished {
        id: JobId,
        state: JobState,
        result: Option<JobResult>,
    },
    /// The sender's consumers starve: send up to `count` queued jobs of
    /// `queue` (`None`: Wasm jobs of any queue, for idle executors).
    NeedJobs { queue: Option<String>, count: u32 },
    /// Jobs moved to the receiver, to queue there.
    YourJobs(Vec<Job>),
    /// A queue's scheduling policy was set (`QPOLICY`).
    Policy {
        queue: String,
        policy: super::placement::QueuePolicy,
    },
    /// The sender moved the job into its queue's dead-letter queue (state
    /// `Dead`, with its retry bookkeeping and last result), or took it
    /// out (`DLQ REQUEUE`, any other state): holders do the same to their
    /// copy (`engine/life.rs`).
    Life(Box<Job>),
    /// A queue's default retry policy was set or cleared (`QRETRY`).
    RetryDefault {
        queue: String,
        policy: Option<crate::job::RetryPolicy>,
        set_at: crate::job::UnixMs,
    },
    /// The job was cancelled (`CANCEL`): remove a copy that is not in
    /// hand elsewhere, interrupt a run here (`engine/cancel.rs`).
    Cancel(JobId),
    /// A queue's pause state, as `PAUSE queue ... BCAST` left it on the
    /// sender: the receiver takes it (and does not pass it on).
    Pause {
        queue: String,
        pause: crate::queue::Pause,
    },
    /// What have these jobs come to? (A job here waits for them: `AFTER`.)
    /// Answered with `AfterState`; a job held unended makes the receiver
    /// answer again when it ends (`engine/after.rs`).
    /// `scope`: the asking job's tenant; other tenants' jobs answer as not
    /// held.
    AfterQuery {
        scope: Option<String>,
        ids: Vec<JobId>,
    },
    /// What each job came to on the sender, as `scope` sees it (`None`:
    /// not held there).
    AfterState {
        scope: Option<String>,
        states: Vec<(JobId, Option<crate::job::DepState>)>,
    },
}

impl PeerMsg {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerMsg::Replicate(_) => "replicate",
            PeerMsg::GotJob(_) => "got-job",
            PeerMsg::SetAck(_) => "set-ack",
            PeerMsg::GotAck(_) => "got-ack",
            PeerMsg::DelJob(_) => "del-job",
            PeerMsg::WillQueue(_) => "will-queue",
            PeerMsg::Queued(_) => "queued",
            PeerMsg::Finished { .. } => "finished",
            PeerMsg::NeedJobs { .. } => "need-jobs",
            PeerMsg::YourJobs(_) => "your-jobs",
            PeerMsg::Policy { .. } => "policy",
            PeerMsg::Life(_) => "life",
            PeerMsg::RetryDefault { .. } => "retry-default",
            PeerMsg::Cancel(_) => "cancel",
            PeerMsg::Pause { .. } => "pause",
            PeerMsg::AfterQuery { .. } => "after-query",
            PeerMsg::AfterState { .. } => "after-state",
        }
    }
}
