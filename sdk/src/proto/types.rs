//! Value types every part of wasque agrees on: job ids, module hashes, error
//! classes, resource limits, execution results and the job status document.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A job id: a canonical UUIDv7 string such as
/// `0193a4b2-7c1e-7a3f-8e21-4c5d00a1b2c3`.
///
/// The 128 bits are laid out as follows (RFC 9562 UUIDv7 with wasque's own
/// use of the "random" fields):
///
/// | bits   | field                                                        |
/// |--------|--------------------------------------------------------------|
/// | 48     | creation time, unix milliseconds                             |
/// | 4      | version (7)                                                  |
/// | 12     | per-node sequence, so ids made in the same ms stay ordered   |
/// | 2      | variant (0b10)                                               |
/// | 24     | prefix of the originating node's id (routes acks and workers)|
/// | 1      | at-most-once flag (the job was added with `RETRY 0`)         |
/// | 16     | TTL in minutes, rounded up (saturating at 65535)             |
/// | 21     | random                                                       |
///
/// So a node that receives an acknowledgement for a job it never saw can
/// still tell when that job would have expired, and a worker can tell which
/// node created a job, just as Disque's ids allow.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub uuid::Uuid);

/// Why a string is not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid job id {0:?}: expected a canonical UUIDv7 such as 0193a4b2-7c1e-7a3f-8e21-4c5d00a1b2c3"
)]
pub struct JobIdError(pub String);

impl JobId {
    /// Builds an id from its parts (see the type's documentation).
    pub fn compose(
        unix_ms: u64,
        seq: u16,
        node_prefix: u32,
        at_most_once: bool,
        ttl_secs: u64,
        random: u32,
    ) -> JobId {
        let ms = unix_ms & 0xFFFF_FFFF_FFFF;
        let ttl_min = ttl_secs.div_ceil(60).min(0xFFFF);
        let hi: u64 = (ms << 16) | (0x7 << 12) | u64::from(seq & 0x0FFF);
        let lo: u64 = (0b10u64 << 62)
            | (u64::from(node_prefix & 0xFF_FFFF) << 38)
            | (u64::from(at_most_once) << 37)
            | (ttl_min << 21)
            | u64::from(random & 0x1F_FFFF);
        JobId(uuid::Uuid::from_u64_pair(hi, lo))
    }

    /// Creation time in unix milliseconds.
    pub fn created_ms(&self) -> u64 {
        self.0.as_u64_pair().0 >> 16
    }

    /// The 24-bit prefix of the node that created the job.
    pub fn node_prefix(&self) -> u32 {
        ((self.0.as_u64_pair().1 >> 38) & 0xFF_FFFF) as u32
    }

    /// Whether the job was added for at-most-once delivery (`RETRY 0`).
    pub fn at_most_once(&self) -> bool {
        (self.0.as_u64_pair().1 >> 37) & 1 == 1
    }

    /// The TTL the job was created with, in seconds (minute resolution).
    pub fn ttl_secs(&self) -> u64 {
        ((self.0.as_u64_pair().1 >> 21) & 0xFFFF) * 60
    }
}

impl FromStr for JobId {
    type Err = JobIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the canonical hyphenated form: braces, urns and simple forms
        // are refused so that one job has one spelling.
        if s.len() != 36 {
            return Err(JobIdError(s.to_string()));
        }
        let u = uuid::Uuid::try_parse(s).map_err(|_| JobIdError(s.to_string()))?;
        if u.get_version_num() != 7 || u.get_variant() != uuid::Variant::RFC4122 {
            return Err(JobIdError(s.to_string()));
        }
        Ok(JobId(u))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

/// A module's identity: the sha256 of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ModuleHash(pub [u8; 32]);

impl ModuleHash {
    /// Hashes module bytes.
    pub fn of(bytes: &[u8]) -> ModuleHash {
        use sha2::Digest;
        ModuleHash(sha2::Sha256::digest(bytes).into())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for ModuleHash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| format!("invalid module hash {s:?}: expected 64 hex digits (sha256)"))?;
        Ok(ModuleHash(out))
    }
}

impl fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleHash({})", &self.to_hex()[..12])
    }
}

/// How a Wasm job ended, when it did not end well. Part of the API: each
/// class is decided from what the node observed (the memory limiter's
/// record, the fuel counter, the epoch deadline), never from a trap's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorClass {
    /// The module is not valid Wasm, or cannot be instantiated (imports
    /// something the sandbox does not grant, has no `_start`).
    InvalidModule,
    /// The job used all the fuel it was given.
    OutOfFuel,
    /// The job asked for more memory than its cap.
    MemoryLimit,
    /// The job ran past its wall-clock deadline.
    Deadline,
    /// The guest trapped (unreachable, stack overflow, out-of-bounds ...).
    Trap,
    /// The guest exited with a non-zero status.
    Exit(i32),
    /// The guest wrote more output than allowed.
    OutputLimit,
    /// The job names a module this node does not have.
    ModuleMissing,
    /// A tenant quota or a node maximum refused the job.
    Quota,
    /// A broken invariant inside the node; fails this one job.
    Internal,
    /// The job was cancelled (`CANCEL`) while it ran or waited to run.
    Cancelled,
    /// A job it was added to come after (`AFTER`) failed, so it never
    /// ran. Last, so the classes before it keep their wire numbers.
    Dependency,
}

impl ErrorClass {
    /// Whether running the same job again could end differently.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ErrorClass::ModuleMissing | ErrorClass::Internal)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorClass::InvalidModule => f.write_str("invalid-module"),
            ErrorClass::OutOfFuel => f.write_str("out-of-fuel"),
            ErrorClass::MemoryLimit => f.write_str("memory-limit"),
            ErrorClass::Deadline => f.write_str("deadline"),
            ErrorClass::Trap => f.write_str("trap"),
            ErrorClass::Exit(code) => write!(f, "exit({code})"),
            ErrorClass::OutputLimit => f.write_str("output-limit"),
            ErrorClass::ModuleMissing => f.write_str("module-missing"),
            ErrorClass::Quota => f.write_str("quota"),
            ErrorClass::Internal => f.write_str("internal"),
            ErrorClass::Cancelled => f.write_str("cancelled"),
            ErrorClass::Dependency => f.write_str("dependency"),
        }
    }
}

impl FromStr for ErrorClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "invalid-module" => ErrorClass::InvalidModule,
            "out-of-fuel" => ErrorClass::OutOfFuel,
            "memory-limit" => ErrorClass::MemoryLimit,
            "deadline" => ErrorClass::Deadline,
            "trap" => ErrorClass::Trap,
            "output-limit" => ErrorClass::OutputLimit,
            "module-missing" => ErrorClass::ModuleMissing,
            "quota" => ErrorClass::Quota,
            "internal" => ErrorClass::Internal,
            "cancelled" => ErrorClass::Cancelled,
            "dependency" => ErrorClass::Dependency,
            other => {
                let code = other
                    .strip_prefix("exit(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("unknown error class {other:?}"))?;
                ErrorClass::Exit(code)
            }
        })
    }
}

/// The limits one job runs under, after node defaults and maxima applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel units (roughly, Wasm instructions).
    pub fuel: u64,
    /// Maximum linear memory in bytes.
    pub memory_bytes: u64,
    /// Wall-clock deadline in milliseconds.
    pub deadline_ms: u64,
}

/// The limits a job asks for; `None` takes the node default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsRequest {
    pub fuel: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub deadline_ms: Option<u64>,
}

/// What one execution of a Wasm job produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The guest's exit status: 0 on a normal return; `None` when it never
    /// reached an exit (trap, limit, invalid module).
    pub exit_code: Option<i32>,
    /// Why the job failed; `None` for success.
    pub error_class: Option<ErrorClass>,
    /// A human-readable message for failures (trap message, limit hit).
    pub message: String,
    /// The guest's stdout.
    #[serde(with = "serde_bytes")]
    pub output: Vec<u8>,
    /// The guest's stderr, bounded (a log kept with the result).
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
    /// Fuel consumed.
    pub fuel_used: u64,
    /// Wall-clock run time in microseconds.
    pub duration_us: u64,
    /// Id of the node that ran the job.
    pub node: String,
}

impl JobResult {
    /// Whether the job succeeded (no error class).
    pub fn is_success(&self) -> bool {
        self.error_class.is_none()
    }
}

/// The states of a job, with Disque's words where Disque has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting for replication to other nodes.
    WaitRepl,
    /// In a queue, ready or delayed.
    Queued,
    /// Delivered to a worker or running in an executor.
    Active,
    /// A Wasm job that finished well; waiting for its ack.
    Done,
    /// A Wasm job that failed; waiting for its ack.
    Failed,
    /// Acknowledged: about to be forgotten.
    Acked,
    /// A distributed job waiting for its parts (see [`PartStatus`]); it is
    /// queued to run its reduce module once every part is done.
    Waiting,
    /// Out of attempts (its retry policy's), or failed in a way the policy
    /// does not retry: kept in its queue's dead-letter queue until
    /// requeued (`DLQ REQUEUE`), purged or acknowledged; never run or
    /// delivered meanwhile, and never expired. (Last: the variant's index
    /// is in stored records and peer frames.)
    Dead,
}

impl JobState {
    /// The word used on the wire and in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::WaitRepl => "wait-repl",
            JobState::Waiting => "waiting",
            JobState::Queued => "queued",
            JobState::Active => "active",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Acked => "acked",
            JobState::Dead => "dead",
        }
    }

    /// Whether the job has finished running (its result is final).
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Acked | JobState::Dead
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Delivery bookkeeping, as in the original note's JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryInfo {
    /// The node holding (or running) the job.
    pub node: String,
    /// When the job was last queued, unix seconds.
    pub qtime: u64,
    /// How many acknowledgements have been received.
    pub ack_times: u32,
    /// How many times the job was delivered (to a worker or an executor).
    pub delivery_count: u32,
}

/// Everything `wasque show` reports about a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: JobId,
    pub queue: String,
    pub state: JobState,
    /// How many copies were requested.
    pub replicate: u32,
    pub group: Option<String>,
    pub priority: u8,
    /// Seconds left to live.
    pub ttl: u64,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Milliseconds until the next re-queue, if one is scheduled.
    pub next_requeue_within: Option<u64>,
    /// Milliseconds until a delayed job becomes ready, if delayed.
    pub delay_within: Option<u64>,
    /// The DELAY the job was added with, in seconds.
    pub delay_secs: u64,
    pub retry_secs: u64,
    pub attempts: u32,
    pub nacks: u32,
    pub additional_deliveries: u32,
    /// Unix seconds.
    pub registered_at: u64,
    pub delivery_info: DeliveryInfo,
    pub module: Option<ModuleHash>,
    pub limits: Option<Limits>,
    pub nocache: bool,
    pub result: Option<JobResult>,
    /// The nodes holding a copy (Disque's `nodes-delivered`), as node ids.
    pub nodes: Vec<String>,
    /// A distributed job's parts, in order; empty for any other job.
    pub parts: Vec<PartStatus>,
    /// Its retry policy, attempts used and last error; `None` for a job
    /// added without one.
    pub retry: Option<super::retry::RetryStatus>,
    /// The jobs it comes after (`AFTER`) and what each has come to;
    /// `None` for a job added without them.
    pub after: Option<super::after::AfterStatus>,
    /// The key it was added with (`IDEMPOTENCY`), if any.
    pub idempotency_key: Option<String>,
    /// What a running Wasm job last reported with the guest SDK's
    /// `progress` call, as the node running it knows it; `None` when it
    /// reported nothing, is not running, or runs on another node.
    pub progress: Option<Progress>,
}

/// A running job's own account of how far it got (`wasque_guest::progress`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Units of work done, and of the whole (0: unknown), as the guest
    /// counts them.
    pub done: u64,
    pub total: u64,
    /// A short note (at most [`MAX_PROGRESS_NOTE`] bytes).
    pub note: String,
    /// When the node took the report, unix ms.
    pub at: u64,
}

/// The longest note a progress report may carry, in bytes.
pub const MAX_PROGRESS_NOTE: usize = 256;

impl Progress {
    /// "42 of 100 (42%) · note" for people.
    pub fn text(&self) -> String {
        let mut s = if self.total > 0 {
            format!(
                "{} of {} ({}%)",
                self.done,
                self.total,
                (u128::from(self.done) * 100 / u128::from(self.total)).min(100)
            )
        } else {
            format!("{} done", self.done)
        };
        if !self.note.is_empty() {
            s += " · ";
            s += &self.note;
        }
        s
    }
}

/// One part of a distributed job, as its parent job reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartStatus {
    pub index: u32,
    /// `waiting` (not added yet), `running` (its job is queued or runs
    /// somewhere), `done`, or `failed` (its last attempt failed and no
    /// attempt is left).
    pub state: String,
    /// The part's current (or last) job.
    pub job: Option<JobId>,
    /// Runs of this part so far, the current one included.
    pub attempts: u32,
    /// The node that ran its last finished attempt.
    pub node: String,
    /// Size of the part's input.
    pub bytes: u64,
    /// Why its last attempt failed, if it did.
    pub error: String,
}

impl PartStatus {
    /// How many of `parts` are done.
    pub fn done(parts: &[PartStatus]) -> usize {
        parts.iter().filter(|p| p.state == "done").count()
    }
}

/// Bytes as they appear in JSON: a UTF-8 string when they are valid UTF-8,
/// else base64 (with `*_encoding: "base64"` beside the field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body<'a>(pub &'a [u8]);

impl Body<'_> {
    /// `(text, encoding)`, encoding being `None` for UTF-8.
    pub fn encode(&self) -> (String, Option<&'static str>) {
        match std::str::from_utf8(self.0) {
            Ok(s) => (s.to_string(), None),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(self.0),
                Some("base64"),
            ),
        }
    }
}

impl JobStatus {
    /// The original note's JSON document for this job (see README).
    pub fn to_json(&self) -> serde_json::Value {
        let (body, body_enc) = Body(&self.body).encode();
        let mut doc = serde_json::json!({
            "state": self.state.as_str(),
            "id": self.id.to_string(),
            "queue": self.queue,
            "replicate": self.replicate,
            "group": self.group,
            "ttl": self.ttl,
            "body": body,
        });
        let obj = doc
            .as_object_mut()
            .expect("json! of an object is an object");
        if let Some(enc) = body_enc {
            obj.insert("body_encoding".into(), enc.into());
        }
        obj.insert(
            "next_requeue_within".into(),
            self.next_requeue_within.into(),
        );
        obj.insert("attempts".into(), self.attempts.into());
        obj.insert("registered_at".into(), self.registered_at.into());
        obj.insert(
            "delivery_info".into(),
            serde_json::json!({
                "node": self.delivery_info.node,
                "qtime": self.delivery_info.qtime,
                "ack_times": self.delivery_info.ack_times,
                "delivery_count": self.delivery_info.delivery_count,
            }),
        );
        obj.insert("priority".into(), self.priority.into());
        obj.insert("nodes".into(), self.nodes.clone().into());
        obj.insert("module".into(), self.module.map(|m| m.to_hex()).into());
        let result = match &self.result {
            None => serde_json::Value::Null,
            Some(r) => {
                let (out, out_enc) = Body(&r.output).encode();
                let mut rd = serde_json::json!({
                    "exit_code": r.exit_code,
                    "error_class": r.error_class.map(|c| c.to_string()),
                    "message": r.message,
                    "output": out,
                });
                let ro = rd.as_object_mut().expect("json! of an object is an object");
                if let Some(enc) = out_enc {
                    ro.insert("output_encoding".into(), enc.into());
                }
                ro.insert("fuel_used".into(), r.fuel_used.into());
                ro.insert("duration_ms".into(), (r.duration_us as f64 / 1000.0).into());
                ro.insert("node".into(), r.node.clone().into());
                rd
            }
        };
        obj.insert("result".into(), result);
        if !self.parts.is_empty() {
            let parts: Vec<serde_json::Value> = self
                .parts
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "index": p.index,
                        "state": p.state,
                        "job": p.job.map(|j| j.to_string()),
                        "attempts": p.attempts,
                        "node": p.node,
                        "bytes": p.bytes,
                        "error": p.error,
                    })
                })
                .collect();
            obj.insert("parts_done".into(), PartStatus::done(&self.parts).into());
            obj.insert("parts".into(), parts.into());
        }
        if let Some(r) = &self.retry {
            obj.insert("retry".into(), r.to_json());
        }
        if let Some(a) = &self.after {
            obj.insert("after".into(), a.to_json());
        }
        if let Some(k) = &self.idempotency_key {
            obj.insert("idempotency_key".into(), k.clone().into());
        }
        if let Some(p) = &self.progress {
            obj.insert(
                "progress".into(),
                serde_json::json!({ "done": p.done, "total": p.total, "note": p.note, "at": p.at }),
            );
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_round_trips_its_fields() {
        let id = JobId::compose(1_732_000_000_123, 5, 0xABCDEF, true, 3600, 77);
        assert_eq!(id.created_ms(), 1_732_000_000_123);
        assert_eq!(id.node_prefix(), 0xABCDEF);
        assert!(id.at_most_once());
        assert_eq!(id.ttl_secs(), 3600);
        let s = id.to_string();
        assert_eq!(s.parse::<JobId>().unwrap(), id);
        assert_eq!(id.0.get_version_num(), 7);
    }

    #[test]
    fn job_id_rejects_other_spellings() {
        for bad in [
            "",
            "nope",
            "D-dcb833cf-8YL1NT17e9+wsA/09NqxscQI-05a1",
            "urn:uuid:0193a4b2-7c1e-7a3f-8e21-4c5d00a1b2c3",
            "0193a4b27c1e7a3f8e214c5d00a1b2c3",
            "0193a4b2-7c1e-4a3f-8e21-4c5d00a1b2c3", // v4
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_made_later_sort_later() {
        let a = JobId::compose(1000, 1, 1, false, 60, 999);
        let b = JobId::compose(1000, 2, 1, false, 60, 0);
        let c = JobId::compose(1001, 0, 1, false, 60, 0);
        assert!(a < b && b < c);
    }

    #[test]
    fn error_class_words_round_trip() {
        for c in [
            ErrorClass::InvalidModule,
            ErrorClass::OutOfFuel,
            ErrorClass::MemoryLimit,
            ErrorClass::Deadline,
            ErrorClass::Trap,
            ErrorClass::Exit(3),
            ErrorClass::Exit(-1),
            ErrorClass::OutputLimit,
            ErrorClass::ModuleMissing,
            ErrorClass::Quota,
            ErrorClass::Internal,
            ErrorClass::Cancelled,
            ErrorClass::Dependency,
        ] {
            assert_eq!(c.to_string().parse::<ErrorClass>().unwrap(), c);
        }
        assert!("exit(x)".parse::<ErrorClass>().is_err());
    }

    #[test]
    fn body_is_utf8_or_base64() {
        assert_eq!(Body(b"hi").encode(), ("hi".to_string(), None));
        assert_eq!(
            Body(&[0xff, 0]).encode(),
            ("/wA=".to_string(), Some("base64"))
        );
    }
}
