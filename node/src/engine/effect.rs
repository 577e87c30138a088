//! What the engine asks the runtime to carry out.

use bytes::Bytes;

use crate::api::{JobEvent, Reply};
use crate::exec::Share;
use crate::job::{JobId, Limits, ModuleHash, NodeName};

/// Identifies a request waiting for its reply; allocated by the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// One effect, drained with [`super::Engine::poll_effect`].
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send `reply` to the request `to`.
    Reply { to: RequestId, reply: Reply },
    /// Run a Wasm job on an executor; its end comes back through
    /// [`super::Engine::handle_exec_done`] with the same `attempt`.
    Run(RunJob),
    /// Interrupt this node's run of the job (`CANCEL`); the run then ends
    /// through `handle_exec_done` with error class `cancelled`.
    CancelRun(JobId),
    /// Forget a module's blob and compiled artifact.
    RemoveModule(ModuleHash),
    /// Make a job change durable (`appendonly yes`); replies and hand-outs
    /// drained after it wait until the store has it.
    Persist(super::journal::Change),
    /// Something happened to a job, for whoever watches (metrics, the
    /// event feed); only emitted when `EngineConfig::events` is on.
    Event(JobEvent),
    /// Send a message to a peer's engine (best effort: a message to a
    /// dead or unknown peer is dropped; the protocol retries what matters).
    Send {
        to: NodeName,
        msg: super::peer::PeerMsg,
    },
    /// Send one message to several peers (encoded once).
    SendMany {
        to: Vec<NodeName>,
        msg: super::peer::PeerMsg,
    },
    /// Fetch a module by hash from a peer; its arrival comes back through
    /// [`super::Engine::handle_module_added`], a failure through
    /// [`super::Engine::handle_module_fetch_failed`].
    FetchModule { hash: ModuleHash, from: NodeName },
    /// Keep every queue's scheduling policy (they changed): restored at
    /// start with [`super::Engine::restore_policies`].
    SavePolicies(Vec<(String, super::placement::QueuePolicy)>),
    /// Keep every paused queue's flags (a `PAUSE` changed them): restored
    /// at start with [`super::Engine::restore_pauses`].
    SavePauses(Vec<(String, crate::queue::Pause)>),
    /// Keep every queue's default retry policy (`QRETRY` changed one):
    /// restored at start with [`super::Engine::restore_retry_defaults`].
    SaveRetryDefaults(Vec<(String, crate::job::RetryPolicy, crate::job::UnixMs)>),
}

/// An order to execute one attempt of a Wasm job.
#[derive(Clone, Debug, PartialEq)]
pub struct RunJob {
    pub job: JobId,
    pub attempt: u32,
    pub module: ModuleHash,
    pub body: Bytes,
    pub args: Vec<String>,
    pub limits: Limits,
    /// The run's tenant group and weight, for the executor's order
    /// (`exec/share.rs`).
    pub share: Share,
}
