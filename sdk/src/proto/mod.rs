//! The wire vocabulary of wasque, shared by nodes and clients.
//!
//! - [`types`]: job ids, module hashes, error classes, limits, results and the
//!   job status document (`wasque show --json`).
//! - [`request`] / [`response`]: what a client asks and what a node answers.
//! - [`retry`]: retry policies and what a dead letter carries.
//! - [`after`]: jobs that run after others (`AFTER`).
//! - [`explain`]: why a job is where it is (`EXPLAIN`).
//! - [`schedule`]: schedules (cron expression and job template).
//! - [`frame`]: length-prefixed postcard frames with a size bound.
//!
//! Versioning: every connection starts with [`Request::Hello`] carrying
//! [`PROTOCOL_VERSION`]; a node refuses versions it does not speak with a
//! clear error rather than misreading frames.

pub mod after;
pub mod explain;
pub mod frame;
pub mod request;
pub mod response;
pub mod retry;
pub mod schedule;
pub mod types;

pub use after::{AfterSpec, AfterStatus, DepState, MAX_AFTER};
pub use explain::{Explain, Reason, Value as ExplainValue};
pub use frame::{
    DEFAULT_MAX_FRAME, FrameError, encode_frame, encode_frame_into, has_whole_frame, read_frame,
    read_frame_buffered, write_frame,
};
pub use request::{
    AddJob, MAX_IDEMPOTENCY_KEY_BYTES, MapSpec, PutOptions, Request, RequestFrame,
    check_idempotency_key, check_module_name, check_module_version, compare_versions, frame_parts,
};
pub use response::{
    ClusterNode, ErrorCode, ModuleCatalogue, ModuleInfo, NodeInfo, NodeState, Response,
    ResponseFrame, WireError,
};
pub use retry::{Backoff, RetryOn, RetryPolicy, RetryStatus};
pub use schedule::{JobTemplate, Missed, ScheduleInfo, ScheduleSpec, check_schedule_name};
pub use types::{
    Body, DeliveryInfo, ErrorClass, JobId, JobIdError, JobResult, JobState, JobStatus, Limits,
    LimitsRequest, MAX_PROGRESS_NOTE, ModuleHash, PartStatus, Progress,
};

/// Version of the client protocol spoken by this crate (3: the hello's
/// reply says the node's largest reply frame; 4: retry policies on adds
/// and job status, NACK and the dead-letter requests; 5: the error class
/// `cancelled` and the `Cancel` request; 6: `AddJob::idempotency_key` and
/// `idempotency_window_secs`; 7: `AddJob::after`, `JobStatus::after` and
/// the error class `dependency`; 8: the schedule
/// requests and `Response::Schedules`; 9: the `Explain` and `Logs`
/// requests and `JobStatus::progress`; 10: `ListModules` answers the
/// cluster's catalogue, `ModuleInfo` says holders and names, and
/// `PutModule` may name the module and ask for copies on peers).
pub const PROTOCOL_VERSION: u32 = 10;
