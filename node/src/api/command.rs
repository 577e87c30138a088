//! What a front door asks the engine to do.

use wasque_sdk::proto::AddJob;

use crate::job::{JobId, ModuleHash};

/// One command, whatever door it came through.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Add a job (Disque's ADDJOB plus wasque's Wasm options).
    AddJob(Box<AddJob>),
    /// The job's status; with `key`, only if the job was added with that
    /// `asynckey`.
    Show { id: JobId, key: Option<String> },
    /// Block until the job is finished, or `timeout_ms` passes (0 = answer now).
    Wait { id: JobId, timeout_ms: u64 },
    /// Acknowledge jobs (`fast`: Disque's FASTACK, best effort).
    Ack { ids: Vec<JobId>, fast: bool },
    /// Delete jobs from this node whatever their state.
    DelJob { ids: Vec<JobId> },
    ListModules,
    StatModule { hash: ModuleHash },
    /// Forget a module; refused while queued or running jobs use it.
    DeleteModule { hash: ModuleHash },
}
