//! The engine's replies in Disque's wire format, per command.

use bytes::Bytes;

use crate::api::{ErrorCode, JobEntry, JobScanItem, Reply};
use crate::job::JobStatus;
use crate::net::resp::frame::Frame;

/// How a command's reply is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Render {
    /// `+<id>` (Disque answers ADDJOB with a status reply).
    AddJob,
    /// `:<n>`
    Count,
    /// `+OK`
    Ok,
    /// An array of `[queue, id, body (, counters)]`, nil when none.
    GetJob,
    /// Like GETJOB, but an empty array when none (QPEEK).
    Jobs,
    /// SHOW's field/value array, nil for an unknown job.
    Show,
    QStat,
    QScan,
    JScan,
    /// The pause state as a bulk string.
    Paused,
    /// RESULT/WAITJOB's field/value array, nil while not finished.
    Result,
    Modules,
    /// MODULE PUT: the module's hex sha256.
    ModulePut,
    /// DLQ LIST: an array of SHOW arrays (empty when none).
    Dead,
    /// EXPLAIN's field/value array, nil for an unknown job.
    Explain,
}

impl Render {
    /// Replies that may carry a job's body, result or stderr (megabytes):
    /// the connection reserves the largest such reply in its output bound
    /// before it asks the engine, so a burst of them cannot pile up.
    pub fn is_heavy(self) -> bool {
        matches!(
            self,
            Render::Show | Render::Result | Render::JScan | Render::Jobs | Render::Dead
        )
    }
}

pub fn render(kind: Render, reply: Reply) -> Frame {
    match (kind, reply) {
        (Render::Show | Render::Explain, Reply::Error(e)) if e.code == ErrorCode::NoJob => {
            Frame::Null
        }
        (Render::Result, Reply::Error(e)) if e.code == ErrorCode::NoJob => {
            Frame::error("ERR", &e.message)
        }
        (_, Reply::Error(e)) => Frame::error(e.code.as_str(), &e.message),
        (Render::AddJob, Reply::JobAdded(id) | Reply::Duplicate(id)) => Frame::JobId(id),
        (_, Reply::Count(n)) => Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
        (_, Reply::Ok) => Frame::Simple("OK".into()),
        (Render::GetJob, Reply::Jobs(jobs)) if jobs.is_empty() => Frame::NullArray,
        (_, Reply::Jobs(jobs)) => Frame::Array(jobs.into_iter().map(job_entry).collect()),
        (_, Reply::Nil) => Frame::NullArray,
        (Render::Result, Reply::Job(s)) => result(&s),
        (Render::Result, Reply::NotFinished) => Frame::NullArray,
        (_, Reply::Job(s)) => show(&s),
        (_, Reply::QStat(q)) => Frame::Array(vec![
            Frame::text("name"),
            Frame::text(&q.name),
            Frame::text("len"),
            int(q.len),
            Frame::text("age"),
            int(q.age_secs),
            Frame::text("idle"),
            int(q.idle_secs),
            Frame::text("blocked"),
            int(q.blocked),
            Frame::text("import-from"),
            Frame::Array(vec![]),
            Frame::text("import-rate"),
            Frame::Integer(0),
            Frame::text("jobs-in"),
            int(q.jobs_in),
            Frame::text("jobs-out"),
            int(q.jobs_out),
            Frame::text("pause"),
            Frame::text(q.pause),
        ]),
        (_, Reply::QueueScan { cursor, queues }) => Frame::Array(vec![
            Frame::text(&cursor.to_string()),
            Frame::Array(queues.iter().map(|q| Frame::text(q)).collect()),
        ]),
        (_, Reply::JobScan { cursor, jobs }) => Frame::Array(vec![
            Frame::text(&cursor.to_string()),
            Frame::Array(
                jobs.into_iter()
                    .map(|j| match j {
                        JobScanItem::Id(id) => Frame::text(&id.to_string()),
                        JobScanItem::Full(s) => show(&s),
                    })
                    .collect(),
            ),
        ]),
        (_, Reply::Paused(p)) => Frame::text(p),
        (_, Reply::Words(w)) => Frame::Array(w.iter().map(|s| Frame::text(s)).collect()),
        (Render::ModulePut, Reply::Module(m)) => Frame::text(&m.hash.to_hex()),
        (_, Reply::Module(m)) => module(&m),
        (_, Reply::Modules(cat)) => {
            let mut out: Vec<Frame> = cat.modules.iter().map(module).collect();
            // Members that did not answer, as one last entry (only then).
            if !cat.unanswered.is_empty() {
                out.push(Frame::Array(vec![
                    Frame::text("unanswered"),
                    Frame::Array(cat.unanswered.iter().map(|n| Frame::text(n)).collect()),
                ]));
            }
            Frame::Array(out)
        }
        (_, Reply::JobAdded(id) | Reply::Duplicate(id)) => Frame::Simple(id.to_string()),
        (_, Reply::NotFinished) => Frame::NullArray,
        (_, Reply::Explain(x)) => explain(&x),
        (_, Reply::Statuses(list)) => Frame::Array(list.iter().map(show).collect()),
        (_, other) => Frame::error(
            "ERR",
            &format!("this reply has no RESP form: {}", reply_name(&other)),
        ),
    }
}

fn reply_name(r: &Reply) -> &'static str {
    match r {
        Reply::NodeInfo(_) => "node info",
        Reply::Hello { .. } => "hello",
        Reply::Inspect(_) => "inspection",
        _ => "reply",
    }
}

/// EXPLAIN: `id`, `node`, `queue`, `state`, `summary` (the reasons'
/// lines as one sentence), then `reasons`: per reason an array of
/// `kind`, `text` and its fields as name/value pairs (numbers as
/// integers, yes/no as `1`/`0`).
fn explain(x: &wasque_sdk::proto::Explain) -> Frame {
    use wasque_sdk::proto::ExplainValue;
    let reasons = x
        .reasons
        .iter()
        .map(|r| {
            let mut f = vec![
                Frame::text("kind"),
                Frame::text(&r.kind),
                Frame::text("text"),
                Frame::text(&r.text),
            ];
            for (name, v) in &r.fields {
                f.push(Frame::text(name));
                f.push(match v {
                    ExplainValue::Int(n) => int(*n),
                    ExplainValue::Text(s) => Frame::text(s),
                    ExplainValue::Bool(b) => Frame::Integer(i64::from(*b)),
                });
            }
            Frame::Array(f)
        })
        .collect();
    Frame::Array(vec![
        Frame::text("id"),
        Frame::text(&x.id.to_string()),
        Frame::text("node"),
        Frame::text(&x.node),
        Frame::text("queue"),
        Frame::text(&x.queue),
        Frame::text("state"),
        Frame::text(x.state.as_str()),
        Frame::text("summary"),
        Frame::text(&x.summary()),
        Frame::text("reasons"),
        Frame::Array(reasons),
    ])
}

fn int(n: u64) -> Frame {
    Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn opt_int(n: Option<u64>) -> Frame {
    n.map_or(Frame::Null, int)
}

fn job_entry(j: JobEntry) -> Frame {
    let mut f = vec![
        Frame::text(&j.queue),
        Frame::text(&j.id.to_string()),
        Frame::Bulk(j.body),
    ];
    if let Some((nacks, deliveries)) = j.counters {
        f.push(Frame::text("nacks"));
        f.push(Frame::Integer(i64::from(nacks)));
        f.push(Frame::text("additional-deliveries"));
        f.push(Frame::Integer(i64::from(deliveries)));
    }
    Frame::Array(f)
}

/// SHOW: every field Disque lists, in Disque's order, then wasque's.
fn show(s: &JobStatus) -> Frame {
    let mut f = vec![
        Frame::text("id"),
        Frame::text(&s.id.to_string()),
        Frame::text("queue"),
        Frame::text(&s.queue),
        Frame::text("state"),
        Frame::text(s.state.as_str()),
        Frame::text("repl"),
        int(u64::from(s.replicate)),
        Frame::text("ttl"),
        int(s.ttl),
        Frame::text("ctime"),
        int(s.id.created_ms().saturating_mul(1_000_000)),
        Frame::text("delay"),
        int(s.delay_secs),
        Frame::text("retry"),
        int(s.retry_secs),
        Frame::text("nacks"),
        int(u64::from(s.nacks)),
        Frame::text("additional-deliveries"),
        int(u64::from(s.additional_deliveries)),
        Frame::text("nodes-delivered"),
        Frame::Array(if s.nodes.is_empty() {
            vec![Frame::text(&s.delivery_info.node)]
        } else {
            s.nodes.iter().map(|n| Frame::text(n)).collect()
        }),
        Frame::text("nodes-confirmed"),
        Frame::Array(vec![]),
        Frame::text("next-requeue-within"),
        opt_int(s.next_requeue_within),
        Frame::text("next-awake-within"),
        opt_int(s.delay_within),
        Frame::text("body"),
        Frame::Bulk(Bytes::copy_from_slice(&s.body)),
        Frame::text("priority"),
        int(u64::from(s.priority)),
        Frame::text("group"),
        s.group.as_deref().map_or(Frame::Null, Frame::text),
        Frame::text("module"),
        s.module.map_or(Frame::Null, |m| Frame::text(&m.to_hex())),
        Frame::text("attempts"),
        int(u64::from(s.attempts)),
    ];
    if let Some(r) = &s.retry {
        f.extend([
            Frame::text("max-attempts"),
            int(u64::from(r.policy.max_attempts)),
            Frame::text("retry-attempts"),
            int(u64::from(r.attempts)),
            Frame::text("backoff"),
            Frame::text(&format!(
                "{} {} {}",
                r.policy.backoff.as_str(),
                r.policy.base_ms,
                r.policy.max_ms
            )),
            Frame::text("retry-on"),
            Frame::text(&wasque_sdk::proto::retry::retry_on_text(&r.policy.retry_on)),
            Frame::text("last-error"),
            Frame::text(&r.last_error),
        ]);
    }
    if let Some(k) = &s.idempotency_key {
        f.extend([Frame::text("idempotency-key"), Frame::text(k)]);
    }
    if let Some(a) = &s.after {
        // Each named job as "id state" (or "id failed: why").
        f.extend([
            Frame::text(if a.any { "after-any" } else { "after" }),
            Frame::Array(
                a.deps
                    .iter()
                    .map(|(id, st)| Frame::text(&format!("{id} {st}")))
                    .collect(),
            ),
        ]);
    }
    Frame::Array(f)
}

/// RESULT: a finished job's result as field/value pairs.
fn result(s: &JobStatus) -> Frame {
    let Some(r) = &s.result else {
        // Finished `nocache` job whose result was handed out and dropped.
        return Frame::Array(vec![Frame::text("state"), Frame::text(s.state.as_str())]);
    };
    Frame::Array(vec![
        Frame::text("state"),
        Frame::text(s.state.as_str()),
        Frame::text("exit_code"),
        r.exit_code
            .map_or(Frame::Null, |c| Frame::Integer(i64::from(c))),
        Frame::text("error_class"),
        r.error_class
            .map_or(Frame::Null, |c| Frame::text(&c.to_string())),
        Frame::text("message"),
        Frame::text(&r.message),
        Frame::text("output"),
        Frame::Bulk(Bytes::copy_from_slice(&r.output)),
        Frame::text("fuel_used"),
        int(r.fuel_used),
        Frame::text("duration_ms"),
        Frame::text(&format!("{:.3}", r.duration_us as f64 / 1000.0)),
        Frame::text("node"),
        Frame::text(&r.node),
    ])
}

fn module(m: &crate::api::ModuleInfo) -> Frame {
    Frame::Array(vec![
        Frame::text("sha256"),
        Frame::text(&m.hash.to_hex()),
        Frame::text("size"),
        int(m.size),
        Frame::text("jobs"),
        int(m.jobs),
        Frame::text("holders"),
        Frame::Array(m.holders.iter().map(|n| Frame::text(n)).collect()),
        Frame::text("names"),
        Frame::Array(m.names.iter().map(|n| Frame::text(n)).collect()),
    ])
}
