//! What a node answers over the client ALPN.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::types::{JobId, JobStatus, ModuleHash};

/// A reply, tagged with the id of the request it answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseFrame {
    pub id: u64,
    pub response: Response,
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Ok,
    Hello {
        node: String,
        protocol: u32,
        /// The node's largest reply frame (its `max-body-bytes`,
        /// `max-output-bytes` and `max-stderr-bytes` plus room for the
        /// rest): a client reads replies up to this bound, so a legal
        /// reply is never refused as too large.
        max_reply_bytes: u64,
    },
    Module(ModuleInfo),
    /// `ListModules`: the modules of every member that answered.
    Modules(ModuleCatalogue),
    JobAdded {
        id: JobId,
    },
    Job(Box<JobStatus>),
    /// `Wait` timed out before the job finished.
    NotFinished,
    /// How many jobs a command affected.
    Count(u64),
    NodeInfo(NodeInfo),
    Error(WireError),
    /// Answer to `Nodes`: the answering node first.
    Nodes(Vec<ClusterNode>),
    /// One job event on a `Subscribe` stream: the same JSON document RESP
    /// subscribers get (`{"event":"finished","id":"…","queue":"…"}`;
    /// `event` is `added`, `started`, `finished`, `failed`, `requeued`,
    /// `acked`, `deleted` or `expired`; `failed` adds `"class"`).
    Event(String),
    /// Jobs' status documents (`DlqList`).
    Jobs(Vec<JobStatus>),
    /// Answer to `Explain`.
    Explain(Box<super::explain::Explain>),
    /// Schedules (`ScheduleList`, `ScheduleShow`).
    Schedules(Vec<super::schedule::ScheduleInfo>),
}

/// One node of the cluster, as a client discovering it needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    pub id: String,
    /// Its QUIC address (clients and peers share the port).
    pub addr: String,
    pub state: NodeState,
    /// Whether this is the node that answered.
    pub myself: bool,
    pub exec_slots: u32,
    pub exec_busy: u32,
    /// Jobs ready in its queues.
    pub queued: u64,
    /// Jobs it holds.
    pub jobs: u64,
    /// PEM of the CA of its client-facing certificate, as the answering
    /// node learned it from the node itself over the authenticated peer
    /// link; `None` until the two have spoken.
    pub ca_pem: Option<String>,
}

impl ClusterNode {
    /// Load as a client weighs it: busy slots and ready jobs per slot.
    pub fn load(&self) -> f64 {
        (self.exec_busy as f64 + self.queued as f64) / self.exec_slots.max(1) as f64
    }
}

/// A node's state as a client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Alive and taking jobs.
    Up,
    /// Alive, but `CLUSTER LEAVING yes`: clients move away from it.
    Leaving,
    /// SWIM declared it down.
    Down,
}

impl NodeState {
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Leaving => "leaving",
            NodeState::Down => "down",
        }
    }
}

/// A module as a node holds it, or as the cluster does (`ListModules`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    pub hash: ModuleHash,
    pub size: u64,
    /// Whether this upload compiled the module (false: it was already known).
    pub compiled_now: bool,
    /// Jobs queued or running that use it (in a catalogue: on all its
    /// holders together).
    pub jobs: u64,
    /// The nodes that hold its bytes (node ids), in a catalogue; the
    /// answering node alone otherwise.
    pub holders: Vec<String>,
    /// The names it is known by, `name@version`, in version order.
    pub names: Vec<String>,
}

/// Every module of the cluster that the answering node could ask about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleCatalogue {
    pub modules: Vec<ModuleInfo>,
    /// Live members that did not answer in time (node ids): their modules
    /// are missing from the list, not absent from the cluster.
    pub unanswered: Vec<String>,
}

/// A node's description of itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: String,
    pub version: String,
    pub uptime_secs: u64,
    pub executor_threads: u32,
    pub executor_busy: u32,
    pub jobs: u64,
    pub queues: u64,
    pub modules: u64,
    /// Modules compiled since start (uploads of new modules).
    pub modules_compiled: u64,
    /// Modules loaded from their precompiled artifact at start.
    pub modules_loaded: u64,
    pub jobs_run: u64,
    pub pagemap_scan: bool,
}

/// An error as sent to clients: a stable code plus a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

/// Stable error codes; `as_str` gives Disque's RESP prefix where Disque has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Generic error (`-ERR`).
    Err,
    /// A malformed job id (`-BADID`).
    BadId,
    /// No such job (`-NOJOB` here; Disque answers `-ERR`/nil by command).
    NoJob,
    /// The job names an unknown module (`-NOMODULE`).
    NoModule,
    /// The module failed validation or compilation (`-BADMODULE`).
    BadModule,
    /// Not enough nodes for the requested replication (`-NOREPL`).
    NoRepl,
    /// The queue is paused (`-PAUSED`).
    Paused,
    /// The node is leaving the cluster (`-LEAVING`).
    Leaving,
    /// The queue is at MAXLEN (`-MAXLEN`).
    MaxLen,
    /// Over a size bound (`-TOOBIG`).
    TooBig,
    /// Over a quota or a node maximum (`-QUOTA`).
    Quota,
    /// Authentication required or failed (`-NOAUTH`).
    NoAuth,
    /// Protocol version or command not supported (`-UNSUPPORTED`).
    Unsupported,
    /// Something broke inside the node (`-INTERNAL`).
    Internal,
    /// Too late to postpone a job's delivery (`-TOOLATE`, Disque's WORKING).
    TooLate,
}

impl ErrorCode {
    /// The RESP error prefix.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::Err => "ERR",
            ErrorCode::BadId => "BADID",
            ErrorCode::NoJob => "NOJOB",
            ErrorCode::NoModule => "NOMODULE",
            ErrorCode::BadModule => "BADMODULE",
            ErrorCode::NoRepl => "NOREPL",
            ErrorCode::Paused => "PAUSED",
            ErrorCode::Leaving => "LEAVING",
            ErrorCode::MaxLen => "MAXLEN",
            ErrorCode::TooBig => "TOOBIG",
            ErrorCode::Quota => "QUOTA",
            ErrorCode::NoAuth => "NOAUTH",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::TooLate => "TOOLATE",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
        }
    }
}
