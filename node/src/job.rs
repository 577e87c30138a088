//! The job model: what a job is, the states it moves through, and the
//! limits and results of Wasm jobs. The ground floor of the node: the
//! engine, queues, store, executor and front doors import it; it imports
//! none of them.
//!
//! The vocabulary shared with clients (ids, error classes, results, the
//! status document) lives in `wasque_sdk::proto` and is re-exported here by
//! name, so there is one definition on both sides of the wire.

use serde::{Deserialize, Serialize};

pub use wasque_sdk::proto::Backoff;
pub use wasque_sdk::proto::{AfterSpec, AfterStatus, DepState};
pub use wasque_sdk::proto::{
    DeliveryInfo, ErrorClass, JobId, JobResult, JobState, JobStatus, Limits, LimitsRequest,
    ModuleHash, RetryPolicy, RetryStatus,
};

/// Milliseconds since the unix epoch: the engine's one notion of time.
pub type UnixMs = u64;

/// A node's id: the 20 bytes behind the 40 hex digits of `DATA_DIR/node-id`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeName(pub [u8; 20]);

impl NodeName {
    /// Parses 40 hex digits.
    pub fn from_hex(s: &str) -> Option<NodeName> {
        let s = s.as_bytes();
        if s.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in s.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(NodeName(out))
    }

    /// The 24 bits carried in the ids of jobs this node creates.
    pub fn prefix(&self) -> u32 {
        u32::from_be_bytes([0, self.0[0], self.0[1], self.0[2]])
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_string()
    }
}

impl std::fmt::Display for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeName({})", self.short())
    }
}

/// A job as this node holds it (and as it travels between peers).
///
/// Kept small, since a node may hold millions of queued jobs: the queue
/// name is shared with the queue (and every other job in it), and fields
/// most jobs never use live out of line in [`JobExtra`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub queue: QueueName,
    /// Owned, not shared: 16 bytes in the job instead of `Bytes`' 32.
    /// Runs and deliveries copy it (a memcpy beside a Wasm run or a
    /// socket write).
    #[serde(with = "bytes_as_bytes")]
    pub body: Box<[u8]>,
    /// 0..=9, higher first.
    pub priority: u8,
    /// Copies requested.
    pub replicate: u32,
    /// Re-queue after this many ms without an ack; 0 = at most once.
    pub retry_ms: u64,
    /// When the job is forgotten whatever its state.
    pub expires_at: UnixMs,
    /// A delayed job becomes ready at this time.
    pub ready_at: UnixMs,
    pub nocache: bool,
    pub state: JobState,
    pub created_at: UnixMs,
    /// When the job was last queued.
    pub queued_at: UnixMs,
    /// When an active plain job is queued again unless acked (unix ms are
    /// never 0, so `None` costs no extra word): [`Job::requeue_at`].
    pub requeue_at: Option<std::num::NonZeroU64>,
    pub counters: Counters,
    /// Boxed: most jobs held have none, and it is the largest field.
    pub result: Option<Box<JobResult>>,
    /// Nodes holding a copy, this one included (Disque's
    /// `nodes-delivered`); empty for a job kept on one node only.
    pub nodes: Vec<NodeName>,
    /// A Wasm job's module and limits; args, group, parent, async key,
    /// parts: `None` when the job has none of them (most plain jobs).
    pub extra: Option<Box<JobExtra>>,
}

/// A queue's name as jobs hold it: one allocation shared by the queue and
/// its jobs (`Queues::intern`).
pub type QueueName = std::sync::Arc<str>;

/// The fields of a job that plain jobs do not use, out of line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobExtra {
    /// The module to run; `None` = a plain job for an external worker.
    pub module: Option<ModuleHash>,
    /// Resolved limits (node defaults and maxima applied) for Wasm jobs.
    pub limits: Option<Limits>,
    pub args: Vec<String>,
    pub group: Option<String>,
    pub parent: Option<JobId>,
    pub asynckey: Option<String>,
    /// A distributed job's parts (this job is their parent). Kept by the
    /// parent's node only: never sent to peers.
    #[serde(skip)]
    pub gather: Option<Box<Gather>>,
    /// The retry policy, the attempts it counted and the last failure
    /// (`engine/life.rs`); travels with the job to peers.
    pub retry: Option<RetryStatus>,
    /// The add's idempotency key (`engine/idem.rs`); travels with the job
    /// to peers, so every holder dedups adds with it.
    pub idempotency_key: Option<String>,
    /// The add's own window for its key, in ms (`None`: the node's
    /// `idempotency-window`, wherever the job is held).
    pub idempotency_window_ms: Option<u64>,
    /// The jobs it runs after (`AFTER`) and what each came to, as this
    /// node learned it (`engine/after.rs`); travels with the job to peers.
    pub after: Option<AfterStatus>,
}

impl JobExtra {
    /// `None` when it holds nothing, so a job without extras stays small.
    pub fn boxed(self) -> Option<Box<JobExtra>> {
        (self != JobExtra::default()).then(|| Box::new(self))
    }
}

/// What a distributed job's parent keeps of its parts: each part runs the
/// `map` module as a job of its own (whose `parent` is this job); the
/// parent runs its own module (the reduce) over their outputs once all are
/// done. `engine/gather.rs` drives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gather {
    pub map: ModuleHash,
    /// Runs allowed per part before the whole job fails.
    pub attempts: u32,
    pub parts: Vec<Part>,
}

/// One part of a distributed job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// The part's current (or last) job; `None` until the part is added.
    pub job: Option<JobId>,
    /// Runs started, the current one included.
    pub attempts: u32,
    pub bytes: u64,
    /// The node that ran the last finished attempt.
    pub node: String,
    /// Why the last attempt failed (empty if none did).
    pub error: String,
    pub done: bool,
    /// The last run failed and no run was left.
    pub failed: bool,
    /// The map module's output, kept until the reduce takes it.
    pub output: Option<Vec<u8>>,
}

impl Gather {
    pub fn new(map: ModuleHash, parts: u32, attempts: u32) -> Gather {
        Gather {
            map,
            attempts,
            parts: vec![Part::default(); parts as usize],
        }
    }

    pub fn all_done(&self) -> bool {
        self.parts.iter().all(|p| p.done)
    }

    /// The parts as clients see them.
    pub fn status(&self) -> Vec<wasque_sdk::proto::PartStatus> {
        self.parts
            .iter()
            .enumerate()
            .map(|(i, p)| wasque_sdk::proto::PartStatus {
                index: i as u32,
                state: match p.job {
                    _ if p.done => "done",
                    None => "waiting",
                    Some(_) if p.failed => "failed",
                    Some(_) => "running",
                }
                .to_string(),
                job: p.job,
                attempts: p.attempts,
                node: p.node.clone(),
                bytes: p.bytes,
                error: p.error.clone(),
            })
            .collect()
    }
}

/// An idempotency key in its queue, as the node indexes and stores it:
/// the first 16 bytes of SHA-256 over the queue's length (4 bytes, little
/// endian), the queue and the key, with the high four bits of byte 6
/// cleared. Tenants' queues carry their `tenant/` prefix, so keys are per
/// tenant too. Byte 6's high nibble is a UUID's version, 7 in every job
/// id, so a digest is never a job id: a tombstone's store key (the
/// digest) cannot meet a job's (its id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyDigest(pub [u8; 16]);

impl KeyDigest {
    pub fn of(queue: &str, key: &str) -> KeyDigest {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update((queue.len() as u32).to_le_bytes());
        h.update(queue.as_bytes());
        h.update(key.as_bytes());
        let full = h.finalize();
        let mut d = [0u8; 16];
        d.copy_from_slice(&full[..16]);
        d[6] &= 0x0F;
        KeyDigest(d)
    }
}

impl std::fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyDigest(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

/// What a node remembers of an idempotency key once its job is gone
/// (acked, deleted, expired, cancelled): the job's id, until the key's
/// window ends. Stored as a record of its own, keyed by the digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub digest: KeyDigest,
    pub id: JobId,
    /// The key is forgotten at this time (the job's creation plus the
    /// node's `idempotency-window`).
    pub expires_at: UnixMs,
}

/// A body written as a byte string (postcard: length and bytes).
mod bytes_as_bytes {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<[u8]>, D::Error> {
        serde_bytes_buf(d).map(Vec::into_boxed_slice)
    }

    fn serde_bytes_buf<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Delivery counters, as Disque counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Executions started (Wasm jobs) or deliveries (plain jobs).
    pub attempts: u32,
    pub nacks: u32,
    /// Deliveries beyond the first that were not caused by a NACK.
    pub additional_deliveries: u32,
    pub ack_times: u32,
}

impl Job {
    /// What a node keeps of an acknowledged job until every other holder
    /// has confirmed the ack (Disque keeps the job in its acked state the
    /// same way): no body, no result, durable like any job.
    pub fn acked_stub(id: JobId, expires_at: UnixMs, nodes: Vec<NodeName>) -> Job {
        Job {
            id,
            queue: QueueName::from(""),
            body: Box::default(),
            priority: 0,
            replicate: nodes.len() as u32,
            retry_ms: 0,
            expires_at,
            ready_at: 0,
            nocache: false,
            state: JobState::Acked,
            created_at: 0,
            queued_at: 0,
            requeue_at: None,
            counters: Counters::default(),
            result: None,
            nodes,
            extra: None,
        }
    }

    /// When an active plain job is queued again unless acked.
    pub fn requeue_at(&self) -> Option<UnixMs> {
        self.requeue_at.map(|t| t.get())
    }

    pub fn set_requeue_at(&mut self, at: Option<UnixMs>) {
        self.requeue_at = at.and_then(std::num::NonZeroU64::new);
    }

    pub fn take_requeue_at(&mut self) -> Option<UnixMs> {
        self.requeue_at.take().map(|t| t.get())
    }

    /// The module a Wasm job runs; `None` for a plain job.
    pub fn module(&self) -> Option<ModuleHash> {
        self.extra.as_ref().and_then(|x| x.module)
    }

    /// A Wasm job's resolved limits (zero for a plain job).
    pub fn limits(&self) -> Limits {
        self.extra
            .as_ref()
            .and_then(|x| x.limits)
            .unwrap_or(Limits {
                fuel: 0,
                memory_bytes: 0,
                deadline_ms: 0,
            })
    }

    pub fn args(&self) -> &[String] {
        self.extra.as_ref().map_or(&[], |x| &x.args)
    }

    pub fn group(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|x| x.group.as_deref())
    }

    pub fn parent(&self) -> Option<JobId> {
        self.extra.as_ref().and_then(|x| x.parent)
    }

    pub fn asynckey(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|x| x.asynckey.as_deref())
    }

    /// Whether a request carrying `key` may see or touch this job: a job
    /// added without `asynckey` is open to every client; one added with K
    /// only to a request carrying K (the node's password does not open
    /// it). Compared in constant time. The engine asks this for every
    /// job-addressed command, whatever door it came through.
    pub fn opens_with(&self, key: Option<&str>) -> bool {
        match (self.asynckey(), key) {
            (None, _) => true,
            (Some(want), Some(given)) => {
                crate::auth::same_secret(want.as_bytes(), given.as_bytes())
            }
            (Some(_), None) => false,
        }
    }

    /// A distributed job's parts, on the parent's node.
    pub fn gather(&self) -> Option<&Gather> {
        self.extra.as_ref().and_then(|x| x.gather.as_deref())
    }

    pub fn gather_mut(&mut self) -> Option<&mut Gather> {
        self.extra.as_mut().and_then(|x| x.gather.as_deref_mut())
    }

    /// The retry policy and its bookkeeping, if the job has a policy.
    pub fn retry(&self) -> Option<&RetryStatus> {
        self.extra.as_ref().and_then(|x| x.retry.as_ref())
    }

    pub fn retry_mut(&mut self) -> Option<&mut RetryStatus> {
        self.extra.as_mut().and_then(|x| x.retry.as_mut())
    }

    /// The jobs it runs after, if it was added with `AFTER`.
    pub fn after(&self) -> Option<&AfterStatus> {
        self.extra.as_ref().and_then(|x| x.after.as_ref())
    }

    pub fn after_mut(&mut self) -> Option<&mut AfterStatus> {
        self.extra.as_mut().and_then(|x| x.after.as_mut())
    }

    /// Whether it still waits for a job it runs after to end.
    pub fn awaits_deps(&self) -> bool {
        self.after().is_some_and(|a| a.outcome().is_none())
    }

    /// The idempotency key the job was added with, if any.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.extra
            .as_ref()
            .and_then(|x| x.idempotency_key.as_deref())
    }

    /// The add's own window for its idempotency key, in ms, if it gave one.
    pub fn idempotency_window_ms(&self) -> Option<u64> {
        self.extra.as_ref().and_then(|x| x.idempotency_window_ms)
    }

    /// The digest that names the job's idempotency key in its queue, if
    /// it has one (see [`KeyDigest`]).
    pub fn key_digest(&self) -> Option<KeyDigest> {
        self.idempotency_key()
            .map(|k| KeyDigest::of(&self.queue, k))
    }

    /// Whether the job waits out a backoff (a failed run's, or a NACK
    /// with a delay) before it is queued again: active, delivered or run
    /// at least once, and ready later than it was last queued.
    pub fn awaiting_retry(&self) -> bool {
        self.state == JobState::Active
            && self.counters.attempts > 0
            && self.ready_at > self.queued_at
    }

    /// The job's extras, created empty if it had none.
    pub fn extra_mut(&mut self) -> &mut JobExtra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// The other nodes holding a copy.
    pub fn others(&self, me: NodeName) -> impl Iterator<Item = NodeName> + '_ {
        self.nodes.iter().copied().filter(move |n| *n != me)
    }

    /// Whether the node runs this job itself.
    pub fn is_wasm(&self) -> bool {
        self.module().is_some()
    }

    /// The status document for clients.
    pub fn status(&self, now: UnixMs, node: &str) -> JobStatus {
        JobStatus {
            id: self.id,
            queue: self.queue.to_string(),
            state: self.state,
            replicate: self.replicate,
            group: self.group().map(str::to_string),
            priority: self.priority,
            ttl: self.expires_at.saturating_sub(now) / 1000,
            body: self.body.to_vec(),
            next_requeue_within: self.requeue_at().map(|t| t.saturating_sub(now)),
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
            module: self.module(),
            limits: self.module().map(|_| self.limits()),
            nocache: self.nocache,
            result: self.result.as_deref().cloned(),
            nodes: self.nodes.iter().map(|n| n.to_string()).collect(),
            parts: self.gather().map(|g| g.status()).unwrap_or_default(),
            retry: self.retry().cloned(),
            after: self.after().cloned(),
            idempotency_key: self.idempotency_key().map(str::to_string),
            progress: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node may hold millions of queued jobs: what each costs is the
    /// memory goal of benches/README.md ("RSS per queued job"). A new field
    /// that most jobs do not use belongs in `JobExtra`.
    #[test]
    fn a_job_stays_small() {
        assert!(
            std::mem::size_of::<Job>() <= 160,
            "Job is {} bytes",
            std::mem::size_of::<Job>()
        );
    }
}
