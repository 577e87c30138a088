//! The job model: what a job is, the states it moves through, and the
//! limits and results of Wasm jobs. The ground floor of the node: the
//! engine, queues, store, executor and front doors import it; it imports
//! none of them.
//!
//! The vocabulary shared with clients (ids, error classes, results, the
//! status document) lives in `wasque_sdk::proto` and is re-exported here by
//! name, so there is one definition on both sides of the wire.

use bytes::Bytes;

pub use wasque_sdk::proto::{
    DeliveryInfo, ErrorClass, JobId, JobResult, JobState, JobStatus, Limits, LimitsRequest,
    ModuleHash,
};

/// Milliseconds since the unix epoch: the engine's one notion of time.
pub type UnixMs = u64;

/// A job as this node holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub queue: String,
    pub body: Bytes,
    /// The module to run; `None` = a plain job for an external worker.
    pub module: Option<ModuleHash>,
    /// Resolved limits (node defaults and maxima applied) for Wasm jobs.
    pub limits: Limits,
    pub args: Vec<String>,
    /// 0..=9, higher first.
    pub priority: u8,
    pub group: Option<String>,
    pub parent: Option<JobId>,
    /// Copies requested.
    pub replicate: u32,
    /// Re-queue after this many ms without an ack; 0 = at most once.
    pub retry_ms: u64,
    /// When the job is forgotten whatever its state.
    pub expires_at: UnixMs,
    /// A delayed job becomes ready at this time.
    pub ready_at: UnixMs,
    pub nocache: bool,
    pub asynckey: Option<String>,
    pub state: JobState,
    pub created_at: UnixMs,
    /// When the job was last queued.
    pub queued_at: UnixMs,
    /// When an active plain job is queued again unless acked.
    pub requeue_at: Option<UnixMs>,
    pub counters: Counters,
    pub result: Option<JobResult>,
}

/// Delivery counters, as Disque counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Executions started (Wasm jobs) or deliveries (plain jobs).
    pub attempts: u32,
    pub nacks: u32,
    /// Deliveries beyond the first that were not caused by a NACK.
    pub additional_deliveries: u32,
    pub ack_times: u32,
}

impl Job {
    /// Whether the node runs this job itself.
    pub fn is_wasm(&self) -> bool {
        self.module.is_some()
    }

    /// The status document for clients.
    pub fn status(&self, now: UnixMs, node: &str) -> JobStatus {
        JobStatus {
            id: self.id,
            queue: self.queue.clone(),
            state: self.state,
            replicate: self.replicate,
            group: self.group.clone(),
            priority: self.priority,
            ttl: self.expires_at.saturating_sub(now) / 1000,
            body: self.body.to_vec(),
            next_requeue_within: self.requeue_at.map(|t| t.saturating_sub(now)),
            delay_within: (self.ready_at > now).then(|| self.ready_at - now),
            delay_secs: self.ready_at.saturating_sub(self.created_at) / 1000,
            retry_secs: self.retry_ms / 1000,
            attempts: self.counters.attempts,
            nacks: self.counters.nacks,
            additional_deliveries: self.counters.additional_deliveries,
            registered_at: self.created_at / 1000,
            delivery_info: DeliveryInfo {
                node: node.to_string(),
                qtime: self.queued_at / 1000,
                ack_times: self.counters.ack_times,
                delivery_count: self.counters.attempts,
            },
            module: self.module,
            limits: self.module.map(|_| self.limits),
            nocache: self.nocache,
            result: self.result.clone(),
        }
    }
}
