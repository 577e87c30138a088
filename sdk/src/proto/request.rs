//! What a client asks a node over the client ALPN.

use serde::{Deserialize, Serialize};

use super::types::{JobId, LimitsRequest, ModuleHash};

/// One request with the id its reply will carry, so replies on a pipelined
/// stream can come back out of order (a `Wait` does not hold up an `Ack`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestFrame {
    pub id: u64,
    pub request: Request,
}

/// A client request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// First frame of a connection's control stream.
    Hello {
        protocol: u32,
        client: String,
        /// Tenant token or `requirepass` secret, when the node asks for one.
        token: Option<String>,
    },
    /// Upload a module. Sent as the first frame of a stream of its own,
    /// followed by exactly `size` raw bytes; the node replies on the same
    /// stream once the module is validated and compiled.
    PutModule {
        size: u64,
        /// What the upload carries beyond its bytes (a name and version,
        /// copies on peers).
        opts: PutOptions,
    },
    ListModules,
    StatModule {
        hash: ModuleHash,
    },
    DeleteModule {
        hash: ModuleHash,
    },
    AddJob(Box<AddJob>),
    /// The job's status document.
    Show {
        id: JobId,
    },
    /// The status document of a job added with `asynckey`, for a holder of
    /// the key. Every other request answers a keyed job as a job the node
    /// does not hold (`NoJob`), whoever sends it.
    ShowByKey {
        key: String,
        id: JobId,
    },
    /// Blocks until the job is finished or `timeout_ms` passes (0 = no wait).
    Wait {
        id: JobId,
        timeout_ms: u64,
    },
    Ack {
        ids: Vec<JobId>,
    },
    DelJob {
        ids: Vec<JobId>,
    },
    NodeInfo,
    /// Every node of the cluster as this node sees it, with the CA each
    /// one's clients trust (client discovery).
    Nodes,
    /// Job events of this node, on a stream of its own (like
    /// `PutModule`): the node answers `Ok` once subscribed, then one
    /// `Response::Event` per event of the named queues (every queue when
    /// empty) until either side closes the stream.
    Subscribe {
        queues: Vec<String>,
    },
    /// One part of a distributed job added with [`AddJob::map`]: the node
    /// holding the parent runs the map module on `body` as a job of its
    /// own and answers `JobAdded` with that job's id. Adding an index
    /// again answers with the part's current job (a client may retry).
    AddPart {
        parent: JobId,
        index: u32,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// [`Request::Wait`] for a job added with `asynckey`, carrying the key.
    /// (The keyed forms come last so older clients' frames keep their
    /// numbers.)
    WaitByKey {
        key: String,
        id: JobId,
        timeout_ms: u64,
    },
    /// [`Request::Ack`] carrying an `asynckey`: it acknowledges the keyed
    /// jobs it opens (and any unkeyed ones).
    AckByKey {
        key: String,
        ids: Vec<JobId>,
    },
    /// [`Request::DelJob`] carrying an `asynckey`.
    DelJobByKey {
        key: String,
        ids: Vec<JobId>,
    },
    /// Disque's NACK for plain jobs a worker took and gives back: queued
    /// again after `delay_ms` (at once with `None`, or after the job's
    /// backoff if it has a retry policy), counting a NACK; a job past its
    /// policy's `max_attempts` goes to the dead-letter queue instead.
    /// Answers `Count`.
    Nack {
        ids: Vec<JobId>,
        delay_ms: Option<u64>,
    },
    /// The dead letters of `queue` (its `<queue>:dead`), oldest first, at
    /// most `count` (the node caps it at 1,000). Answers `Jobs`.
    DlqList {
        queue: String,
        count: u32,
    },
    /// Queues dead letters of `queue` again with fresh attempts: the named
    /// ones, or every one when `ids` is empty. Answers `Count`.
    DlqRequeue {
        queue: String,
        ids: Vec<JobId>,
    },
    /// Forgets every dead letter of `queue` (on every holder, as an ack
    /// does). Answers `Count`.
    DlqPurge {
        queue: String,
    },
    /// Stops jobs wherever they are: queued copies removed on every
    /// holder, a run interrupted (its result has class `cancelled`).
    /// Answers `Count`; with none cancelled, an error (`NoJob` for an id
    /// the node does not hold).
    Cancel {
        ids: Vec<JobId>,
    },
    /// Why the job is where it is (`EXPLAIN`): answers `Explain`, or
    /// `NoJob` from a node without a copy. `key` opens a job added with
    /// `asynckey`.
    Explain {
        id: JobId,
        key: Option<String>,
    },
    /// The stdout lines of a job running on this node, as they come, on a
    /// stream of its own (like `Subscribe`): the node answers `Ok` (or
    /// `NoJob`), then one `Response::Event` per line
    /// (`{"event":"log","id":…,"line":…}`, `"dropped": n` when lines were
    /// dropped by the node's bounds), and ends the stream once the job has
    /// finished (at once if it already had). `key` opens a job added with
    /// `asynckey`.
    Logs {
        id: JobId,
        key: Option<String>,
    },
    /// Creates a schedule (README, Schedules): from the next tick on,
    /// the cluster adds one job from its template per tick. Answers `Ok`;
    /// a name in use is refused (remove it first).
    ScheduleAdd(Box<super::schedule::ScheduleSpec>),
    /// Every schedule the asker may see (a tenant: its own). Answers
    /// `Schedules`.
    ScheduleList,
    /// One schedule, with its next and recent ticks. Answers `Schedules`
    /// with one entry.
    ScheduleShow {
        name: String,
    },
    /// Removes a schedule on every node: no tick fires after the removal
    /// reaches a node (within an advert, about a second). Answers
    /// `Count(1)`.
    ScheduleDel {
        name: String,
    },
}

/// What makes an added job a distributed job (a parent): `parts` inputs
/// follow with [`Request::AddPart`]; each runs the `map` module as a job
/// of its own, a failed part runs again alone (up to `attempts` runs), and
/// once all are done the parent runs its own module (the reduce) over the
/// parts' outputs in order, each framed as a 4-byte little-endian length
/// and the bytes. The parent's body must be empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSpec {
    pub map: ModuleHash,
    pub parts: u32,
    pub attempts: u32,
}

/// The reduce module's input: each part's output, in part order, framed as
/// a 4-byte little-endian length followed by the bytes.
pub fn frame_parts<T: AsRef<[u8]>>(outputs: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(outputs.iter().map(|r| r.as_ref().len() + 4).sum());
    for r in outputs {
        let r = r.as_ref();
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// Arguments of `ADDJOB`, with Disque's meanings and wasque's additions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddJob {
    pub queue: String,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// How long the add may wait for replication (Disque's ms-timeout).
    pub timeout_ms: u64,
    /// Copies to keep; `None` = Disque's default (3, or fewer reachable nodes).
    pub replicate: Option<u32>,
    /// Seconds before the job becomes ready.
    pub delay_secs: Option<u64>,
    /// Seconds before an unacknowledged delivery is queued again (0 = at most once).
    pub retry_secs: Option<u64>,
    /// Seconds the job lives.
    pub ttl_secs: Option<u64>,
    /// Refuse the add when the queue already holds this many jobs.
    pub maxlen: Option<u64>,
    /// Reply before replication completes.
    pub asynchronous: bool,
    /// Hand the result to waiters present when it finishes and do not keep it.
    pub nocache: bool,
    /// Anyone holding this key can read the job's status with `ShowByKey`.
    pub asynckey: Option<String>,
    /// The module to run; `None` = a plain job for an external worker.
    pub module: Option<ModuleHash>,
    /// The module by name instead (`NAME@VERSION`, or `NAME` for its
    /// latest version): the node taking the add resolves it to `module`.
    pub module_name: Option<String>,
    pub limits: LimitsRequest,
    /// 0..=9, higher first.
    pub priority: u8,
    /// Collocation key.
    pub group: Option<String>,
    /// Arguments for the module (`argv[1..]`).
    pub args: Vec<String>,
    /// Reply only when the job is finished (up to this many ms), with its
    /// status (without the body, which the caller sent); the add itself
    /// still replies with an error if refused.
    pub wait_ms: Option<u64>,
    /// With `wait_ms`: acknowledge the job as soon as its result is sent.
    pub ack_on_result: bool,
    /// Makes this a distributed job; `module` is then the reduce module.
    pub map: Option<MapSpec>,
    /// Attempts, backoff and the failures retried; `None` takes the
    /// queue's default (`QRETRY`), if it has one.
    pub retry: Option<super::retry::RetryPolicy>,
    /// An idempotency key (1 to [`MAX_IDEMPOTENCY_KEY_BYTES`] bytes): a
    /// second add with the same key to the same queue, while the node
    /// remembers the key, adds nothing and answers the first job's id
    /// (an add-and-wait waits on that job). See README, Idempotency keys.
    pub idempotency_key: Option<String>,
    /// With a key: how long after the add (seconds, at most ten years)
    /// the key is remembered once the job is gone; `None` takes the
    /// node's `idempotency-window`.
    pub idempotency_window_secs: Option<u64>,
    /// Run only once these jobs have ended (`AFTER` / `AFTER-ANY`); the
    /// job waits in state `waiting` meanwhile. See README, Jobs that run
    /// after others.
    pub after: Option<super::after::AfterSpec>,
}

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// `Err(message)` when `key` cannot be an idempotency key: empty, or
/// longer than [`MAX_IDEMPOTENCY_KEY_BYTES`] bytes.
pub fn check_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("idempotency key is empty".into());
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(format!(
            "idempotency key of {} bytes is longer than {MAX_IDEMPOTENCY_KEY_BYTES} bytes",
            key.len()
        ));
    }
    Ok(())
}

impl AddJob {
    /// A job for `queue` with `body` and every option at its default.
    pub fn new(queue: impl Into<String>, body: impl Into<Vec<u8>>) -> AddJob {
        AddJob {
            queue: queue.into(),
            body: body.into(),
            timeout_ms: 5_000,
            replicate: None,
            delay_secs: None,
            retry_secs: None,
            ttl_secs: None,
            maxlen: None,
            asynchronous: false,
            nocache: false,
            asynckey: None,
            module: None,
            module_name: None,
            limits: LimitsRequest::default(),
            priority: 0,
            group: None,
            args: Vec::new(),
            wait_ms: None,
            ack_on_result: false,
            map: None,
            retry: None,
            idempotency_key: None,
            idempotency_window_secs: None,
            after: None,
        }
    }
}

/// The options of a module upload (`MODULE PUT bytes [NAME n VERSION v]
/// [REPLICATE k]`, `wasque module put --name --version --replicate`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOptions {
    /// A name the module is known by (see [`check_module_name`]), with
    /// `version` (see [`check_module_version`]); both or neither.
    pub name: Option<String>,
    pub version: Option<String>,
    /// Nodes that hold the bytes before the upload is answered, the
    /// uploaded-to node included (0 or 1: that node alone).
    pub replicate: u32,
}

/// A module name: 1 to 64 of `a-z A-Z 0-9 _ - .`, starting with a letter
/// or digit (so it never holds `@` or `/`, and never looks like a hash).
pub fn check_module_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && !(name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad module name {name:?}: 1 to 64 of a-z A-Z 0-9 _ - . starting with a letter or digit, and not 64 hex digits"
        ))
    }
}

/// A module version: 1 to 32 of `a-z A-Z 0-9 _ - . +`, starting with a
/// letter or digit. Versions are ordered by [`compare_versions`].
pub fn check_module_version(version: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&version.len())
        && version
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad module version {version:?}: 1 to 32 of a-z A-Z 0-9 _ - . + starting with a letter or digit"
        ))
    }
}

/// The order of module versions ("latest" is the greatest): split at `.`,
/// `-` and `+` into parts; parts compare in turn, a part of digits by its
/// number (so 1.10 > 1.9), a part of digits above one with letters, others
/// as text; when one runs out first, the shorter is the lower (1.2 <
/// 1.2.1). Ties (1.02 and 1.2) fall back to the text itself, so the order
/// is total.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let split = |s: &str| -> Vec<String> { s.split(['.', '-', '+']).map(str::to_string).collect() };
    let (pa, pb) = (split(a), split(b));
    for (x, y) in pa.iter().zip(pb.iter()) {
        let nx = !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
        let ny = !y.is_empty() && y.bytes().all(|c| c.is_ascii_digit());
        let o = match (nx, ny) {
            (true, true) => {
                let (tx, ty) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
            }
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod version_tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_order_part_by_part_numbers_as_numbers() {
        let mut v = vec!["1.10", "1.9", "1.2.1", "1.2", "2", "1.2-rc1", "1.a", "10"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            ["1.a", "1.2", "1.2-rc1", "1.2.1", "1.9", "1.10", "2", "10"]
        );
        // Equal numbers written apart still have one order, both ways.
        assert_eq!(compare_versions("1.02", "1.2"), Less);
        assert_eq!(compare_versions("1.2", "1.02"), Greater);
        assert_eq!(compare_versions("1.2", "1.2"), Equal);
        assert!(check_module_name("resize").is_ok());
        assert!(check_module_name("a@b").is_err());
        assert!(check_module_name(&"z".repeat(64)).is_ok());
        assert!(check_module_name(&"z".repeat(65)).is_err());
        assert!(
            check_module_name(&"ab".repeat(32)).is_err(),
            "64 hex digits"
        );
        assert!(check_module_version("1.2+build.5").is_ok());
        assert!(check_module_version(".1").is_err());
    }
}
