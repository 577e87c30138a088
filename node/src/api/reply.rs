//! What the engine answers a [`super::Command`].

use wasque_sdk::proto::{ModuleInfo, NodeInfo, WireError};

use crate::job::{JobId, JobStatus};

/// One reply, rendered by each front door in its own wire format.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Ok,
    JobAdded(JobId),
    Job(Box<JobStatus>),
    /// A wait timed out before the job finished.
    NotFinished,
    /// How many jobs a command affected.
    Count(u64),
    Module(ModuleInfo),
    Modules(Vec<ModuleInfo>),
    NodeInfo(Box<NodeInfo>),
    /// Answer to a client's hello.
    Hello { node: String, protocol: u32 },
    Error(WireError),
}

impl Reply {
    pub fn error(code: wasque_sdk::proto::ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error(WireError::new(code, message))
    }
}
