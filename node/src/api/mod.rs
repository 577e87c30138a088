//! The one command set and reply type shared by every front door (QUIC now;
//! RESP and HTTP parse their own wire formats into the same [`Command`] and
//! render the same [`Reply`]). Semantics live once, in the engine.

pub mod bounds;
mod command;
mod event;
mod inspect;
mod reply;

pub use command::{Command, Dlq, DlqOp, GetJob, JScan, QScan};
pub use event::{JobEvent, JobEventKind, Removal, class_label};
pub use inspect::{
    Inspection, JobPage, JobQuery, JobSummary, MAX_PAGE, NodeStats, Query, QueuePage, QueueStat,
    TenantStat,
};
pub use reply::{JobEntry, JobScanItem, QStat, Reply};
pub use wasque_sdk::proto::{AddJob, ErrorCode, ModuleInfo, NodeInfo, WireError as ApiError};
