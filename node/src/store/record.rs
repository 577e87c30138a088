//! The on-disk form of a job: one record per live job, keyed by the job's
//! 16 id bytes (UUIDv7, so keys sort by age), the value a format byte and
//! then postcard. Queue order needs no records of its own: the ready order
//! is priority then id, both stored here, so recovery rebuilds it.
//!
//! Times are wall-clock unix ms, so a TTL or a delay keeps counting while
//! the node is down.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::job::{
    AfterStatus, Counters, Gather, Job, JobExtra, JobId, JobResult, JobState, KeyDigest, Limits,
    ModuleHash, NodeName, QueueName, RetryStatus, Tombstone, UnixMs,
};

/// The first byte of every job record. A reader refuses formats it does
/// not know instead of guessing. Format 2 is format 1 followed by the
/// job's holders (cluster copies); format 3 is format 2 followed by a
/// distributed job's parts (`Option<Gather>`). Format 4 was kept for a
/// tenant field and never written (a job's tenant is its queue name's
/// `tenant/` prefix, so records carry it without a field); format 5
/// appends the retry policy, its attempt count and the last failure
/// (`Option<RetryStatus>`); format 6 appends the idempotency key and the
/// add's own window for it (`Option<String>`, `Option<u64>` ms); format 7
/// appends the jobs it runs after and what each came to
/// (`Option<AfterStatus>`). Older formats still read (as jobs without a
/// key, or without `AFTER`).
pub const JOB_FORMAT: u8 = 7;

/// The first byte of an idempotency tombstone's record ([`Tombstone`]):
/// keyed by its [`KeyDigest`] (never a job id: see there), then postcard
/// of the job's id and the time the key is forgotten. Far from the job
/// formats, so the two never meet; a version before tombstones logs such
/// a record as unknown and leaves it on disk.
pub const TOMB_FORMAT: u8 = 0x80;

/// One record read back: a job, or an idempotency tombstone.
#[derive(Debug)]
pub enum Record {
    Job(Job),
    Tomb(Tombstone),
}

/// A body as bytes on the wire (postcard writes a length and the bytes),
/// borrowed from the record when read back.
#[derive(Debug)]
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a [u8]>::deserialize(d).map(Raw)
    }
}

/// One job as stored. Field order is the format: append new fields at the
/// end and bump [`JOB_FORMAT`].
#[derive(Debug, Serialize, Deserialize)]
struct StoredJob<'a> {
    #[serde(borrow)]
    queue: Cow<'a, str>,
    #[serde(borrow)]
    body: Raw<'a>,
    module: Option<ModuleHash>,
    limits: Limits,
    args: Cow<'a, [String]>,
    priority: u8,
    #[serde(borrow)]
    group: Option<Cow<'a, str>>,
    parent: Option<JobId>,
    replicate: u32,
    retry_ms: u64,
    expires_at: UnixMs,
    ready_at: UnixMs,
    nocache: bool,
    #[serde(borrow)]
    asynckey: Option<Cow<'a, str>>,
    state: JobState,
    created_at: UnixMs,
    queued_at: UnixMs,
    requeue_at: Option<UnixMs>,
    attempts: u32,
    nacks: u32,
    additional_deliveries: u32,
    ack_times: u32,
    result: Option<Cow<'a, JobResult>>,
}

/// Why a record cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("key of {0} bytes is not a job id (16 bytes)")]
    Key(usize),
    #[error("empty record")]
    Empty,
    #[error(
        "record format {0} is unknown to this version (knows {JOB_FORMAT}); run the wasque version that wrote it"
    )]
    Format(u8),
    #[error("undecodable record: {0}")]
    Decode(#[from] postcard::Error),
}

/// The store key of a job.
pub fn key(id: &JobId) -> [u8; 16] {
    *id.0.as_bytes()
}

/// The job id of a store key.
pub fn id_of(key: &[u8]) -> Result<JobId, RecordError> {
    let bytes: [u8; 16] = key.try_into().map_err(|_| RecordError::Key(key.len()))?;
    Ok(JobId(uuid::Uuid::from_bytes(bytes)))
}

/// Encodes a job record (format byte, then postcard) into `out`.
pub fn encode(job: &Job, out: &mut Vec<u8>) -> Result<(), RecordError> {
    let rec = StoredJob {
        queue: Cow::Borrowed(&job.queue),
        body: Raw(&job.body),
        module: job.module(),
        limits: job.limits(),
        args: Cow::Borrowed(job.args()),
        priority: job.priority,
        group: job.group().map(Cow::Borrowed),
        parent: job.parent(),
        replicate: job.replicate,
        retry_ms: job.retry_ms,
        expires_at: job.expires_at,
        ready_at: job.ready_at,
        nocache: job.nocache,
        asynckey: job.asynckey().map(Cow::Borrowed),
        state: job.state,
        created_at: job.created_at,
        queued_at: job.queued_at,
        requeue_at: job.requeue_at(),
        attempts: job.counters.attempts,
        nacks: job.counters.nacks,
        additional_deliveries: job.counters.additional_deliveries,
        ack_times: job.counters.ack_times,
        result: job.result.as_deref().map(Cow::Borrowed),
    };
    out.clear();
    out.push(JOB_FORMAT);
    let buf = std::mem::take(out);
    let buf = postcard::to_extend(&rec, buf)?;
    let buf = postcard::to_extend(&job.nodes, buf)?;
    let buf = postcard::to_extend(&job.gather(), buf)?;
    // Format 5 (4 added nothing).
    let buf = postcard::to_extend(&job.retry(), buf)?;
    // Format 6.
    let buf = postcard::to_extend(&job.idempotency_key(), buf)?;
    let buf = postcard::to_extend(&job.idempotency_window_ms(), buf)?;
    // Format 7.
    *out = postcard::to_extend(&job.after(), buf)?;
    Ok(())
}

/// The store key of a tombstone: its digest.
pub fn tomb_key(digest: &KeyDigest) -> [u8; 16] {
    digest.0
}

/// Encodes a tombstone record ([`TOMB_FORMAT`], then postcard) into `out`.
pub fn encode_tomb(t: &Tombstone, out: &mut Vec<u8>) -> Result<(), RecordError> {
    out.clear();
    out.push(TOMB_FORMAT);
    let buf = std::mem::take(out);
    *out = postcard::to_extend(&(t.id, t.expires_at), buf)?;
    Ok(())
}

/// Decodes any record read back under `key`: a job or a tombstone.
pub fn decode_record(key: &[u8], value: &[u8]) -> Result<Record, RecordError> {
    if value.first() == Some(&TOMB_FORMAT) {
        let digest: [u8; 16] = key.try_into().map_err(|_| RecordError::Key(key.len()))?;
        let (id, expires_at): (JobId, UnixMs) = postcard::from_bytes(&value[1..])?;
        return Ok(Record::Tomb(Tombstone {
            digest: KeyDigest(digest),
            id,
            expires_at,
        }));
    }
    decode(key, value).map(Record::Job)
}

/// Decodes a job record read back under `key`.
pub fn decode(key: &[u8], value: &[u8]) -> Result<Job, RecordError> {
    let id = id_of(key)?;
    let (&format, rest) = value.split_first().ok_or(RecordError::Empty)?;
    if !(1..=JOB_FORMAT).contains(&format) {
        return Err(RecordError::Format(format));
    }
    let (r, tail): (StoredJob<'_>, &[u8]) = postcard::take_from_bytes(rest)?;
    let (nodes, tail): (Vec<NodeName>, &[u8]) = if format >= 2 {
        postcard::take_from_bytes(tail)?
    } else {
        (Vec::new(), tail)
    };
    let (gather, tail): (Option<Gather>, &[u8]) = if format >= 3 {
        postcard::take_from_bytes(tail)?
    } else {
        (None, tail)
    };
    // Format 5 (4 added nothing).
    let (retry, tail): (Option<RetryStatus>, &[u8]) = if format >= 5 {
        postcard::take_from_bytes(tail)?
    } else {
        (None, tail)
    };
    let ((idempotency_key, idempotency_window_ms), tail): ((Option<String>, Option<u64>), &[u8]) =
        if format >= 6 {
            postcard::take_from_bytes(tail)?
        } else {
            ((None, None), tail)
        };
    let after: Option<AfterStatus> = if format >= 7 {
        postcard::from_bytes(tail)?
    } else {
        None
    };
    Ok(Job {
        id,
        // The engine shares it with the queue's name when it restores the job.
        queue: QueueName::from(&*r.queue),
        body: r.body.0.into(),
        priority: r.priority,
        replicate: r.replicate,
        retry_ms: r.retry_ms,
        expires_at: r.expires_at,
        ready_at: r.ready_at,
        nocache: r.nocache,
        state: r.state,
        created_at: r.created_at,
        queued_at: r.queued_at,
        requeue_at: r.requeue_at.and_then(std::num::NonZeroU64::new),
        counters: Counters {
            attempts: r.attempts,
            nacks: r.nacks,
            additional_deliveries: r.additional_deliveries,
            ack_times: r.ack_times,
        },
        result: r.result.map(|r| Box::new(r.into_owned())),
        nodes,
        extra: JobExtra {
            module: r.module,
            limits: r.module.map(|_| r.limits),
            args: r.args.into_owned(),
            group: r.group.map(Cow::into_owned),
            parent: r.parent,
            asynckey: r.asynckey.map(Cow::into_owned),
            gather: gather.map(Box::new),
            retry,
            idempotency_key,
            idempotency_window_ms,
            after,
        }
        .boxed(),
    })
}

#[cfg(test)]
pub(crate) fn sample_job(ms: u64, body: &[u8]) -> Job {
    Job {
        id: JobId::compose(ms, 0, 0xABCDEF, false, 3600, 5),
        queue: "q".into(),
        body: body.into(),
        priority: 3,
        replicate: 1,
        retry_ms: 300_000,
        expires_at: ms + 3_600_000,
        ready_at: ms,
        nocache: false,
        state: JobState::Queued,
        created_at: ms,
        queued_at: ms,
        requeue_at: None,
        counters: Counters::default(),
        result: None,
        nodes: vec![],
        extra: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_round_trips_field_for_field() {
        let mut job = sample_job(1_700_000_000_000, &[0, 1, 2, 255]);
        let x = job.extra_mut();
        x.module = Some(ModuleHash([7; 32]));
        x.limits = Some(Limits {
            fuel: 1,
            memory_bytes: 2,
            deadline_ms: 3,
        });
        x.args = vec!["a".into(), "b c".into()];
        x.group = Some("g".into());
        x.asynckey = Some("k".into());
        job.state = JobState::Done;
        job.set_requeue_at(Some(42));
        job.counters = Counters {
            attempts: 3,
            nacks: 1,
            additional_deliveries: 2,
            ack_times: 0,
        };
        job.result = Some(Box::new(JobResult {
            exit_code: Some(0),
            error_class: None,
            message: String::new(),
            output: b"out".to_vec(),
            stderr: vec![],
            fuel_used: 9,
            duration_us: 10,
            node: "n".into(),
        }));
        job.nodes = vec![NodeName([1; 20]), NodeName([2; 20])];
        let mut g = Gather::new(ModuleHash([8; 32]), 2, 3);
        g.parts[0].done = true;
        g.parts[0].output = Some(b"part out".to_vec());
        g.parts[1].error = "trap: boom".into();
        job.extra_mut().gather = Some(Box::new(g));
        let mut policy = wasque_sdk::proto::RetryPolicy::new(4);
        policy.retry_on = wasque_sdk::proto::retry::parse_retry_on("exit:3,node-loss").unwrap();
        job.extra_mut().retry = Some(RetryStatus {
            policy,
            attempts: 2,
            last_error: "attempt 2: exit(3)".into(),
        });
        job.extra_mut().idempotency_key = Some("order-42".into());
        job.extra_mut().idempotency_window_ms = Some(3_600_000);
        let dep = sample_job(1_700_000_000_001, b"").id;
        job.extra_mut().after = Some(AfterStatus {
            any: true,
            deps: vec![
                (dep, wasque_sdk::proto::DepState::Failed("trap".into())),
                (job.id, wasque_sdk::proto::DepState::Pending),
            ],
        });
        let mut buf = Vec::new();
        encode(&job, &mut buf).unwrap();
        let back = decode(&key(&job.id), &buf).unwrap();
        assert_eq!(format!("{back:?}"), format!("{job:?}"));
    }

    /// A record written before format 5 (no retry field) still reads.
    #[test]
    fn a_format_3_record_reads_without_a_retry_policy() {
        let job = sample_job(1_700_000_000_000, b"old");
        let mut buf = Vec::new();
        encode(&job, &mut buf).unwrap();
        // Format 3 ends with the gather field: drop the retry, key,
        // window and after fields.
        for _ in 0..4 {
            assert_eq!(buf.pop(), Some(0), "None is one zero byte");
        }
        buf[0] = 3;
        let back = decode(&key(&job.id), &buf).unwrap();
        assert_eq!(format!("{back:?}"), format!("{job:?}"));
    }

    /// A format 5 record (a retry policy, no idempotency key) still reads.
    #[test]
    fn a_format_5_record_reads_without_an_idempotency_key() {
        let mut job = sample_job(1_700_000_000_000, b"old");
        job.extra_mut().retry = Some(RetryStatus {
            policy: wasque_sdk::proto::RetryPolicy::new(2),
            attempts: 1,
            last_error: String::new(),
        });
        let mut buf = Vec::new();
        encode(&job, &mut buf).unwrap();
        assert_eq!(buf.pop(), Some(0), "no after: one zero byte");
        assert_eq!(buf.pop(), Some(0), "no window: one zero byte");
        assert_eq!(buf.pop(), Some(0), "no key: one zero byte");
        buf[0] = 5;
        let back = decode(&key(&job.id), &buf).unwrap();
        assert_eq!(format!("{back:?}"), format!("{job:?}"));
    }

    /// A format 6 record (a key, no `AFTER`) still reads.
    #[test]
    fn a_format_6_record_reads_without_after() {
        let mut job = sample_job(1_700_000_000_000, b"old");
        job.extra_mut().idempotency_key = Some("k".into());
        let mut buf = Vec::new();
        encode(&job, &mut buf).unwrap();
        assert_eq!(buf.pop(), Some(0), "no after: one zero byte");
        buf[0] = 6;
        let back = decode(&key(&job.id), &buf).unwrap();
        assert_eq!(format!("{back:?}"), format!("{job:?}"));
    }

    #[test]
    fn a_tombstone_round_trips_and_is_never_a_job() {
        let t = Tombstone {
            digest: KeyDigest::of("alice/q", "order-42"),
            id: sample_job(1_700_000_000_000, b"").id,
            expires_at: 1_700_086_400_000,
        };
        let mut buf = Vec::new();
        encode_tomb(&t, &mut buf).unwrap();
        match decode_record(&tomb_key(&t.digest), &buf).unwrap() {
            Record::Tomb(back) => assert_eq!(back, t),
            other => panic!("{other:?}"),
        }
        // A job id's version nibble is 7; a digest's is 0.
        assert_eq!(t.id.0.as_bytes()[6] >> 4, 7);
        assert_eq!(tomb_key(&t.digest)[6] >> 4, 0);
        assert!(matches!(
            decode(&tomb_key(&t.digest), &buf),
            Err(RecordError::Format(TOMB_FORMAT))
        ));
        for cut in 1..buf.len() {
            assert!(decode_record(&tomb_key(&t.digest), &buf[..cut]).is_err());
        }
        // Jobs read through `decode_record` too.
        let job = sample_job(1_700_000_000_000, b"x");
        encode(&job, &mut buf).unwrap();
        assert!(matches!(
            decode_record(&key(&job.id), &buf),
            Ok(Record::Job(_))
        ));
    }

    #[test]
    fn a_100_byte_job_is_small_on_disk() {
        let job = sample_job(1_700_000_000_000, &[b'x'; 100]);
        let mut buf = Vec::new();
        encode(&job, &mut buf).unwrap();
        assert!(buf.len() < 160, "{} bytes", buf.len());
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let job = sample_job(1_700_000_000_000, b"hello");
        let mut buf = Vec::new();
        encode(&job, &mut buf).unwrap();
        let k = key(&job.id);
        assert!(matches!(decode(&k, &[]), Err(RecordError::Empty)));
        assert!(matches!(decode(&k, &[9]), Err(RecordError::Format(9))));
        assert!(matches!(decode(&k[..3], &buf), Err(RecordError::Key(3))));
        for cut in 1..buf.len() {
            assert!(decode(&k, &buf[..cut]).is_err(), "cut at {cut}");
        }
        // Flipped bytes never panic (they may decode to something else:
        // the store's own checksums are what catch them).
        for i in 1..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0xFF;
            let _ = decode(&k, &b);
        }
    }
}
