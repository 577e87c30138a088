//! Schedules: a cron expression and a job template; the cluster adds one
//! job from the template at each tick (README, Schedules). Shared by the
//! node (its registry and firing, `node/src/sched`), the SDK and the CLI.

use serde::{Deserialize, Serialize};

use super::request::AddJob;
use super::retry::RetryPolicy;
use super::types::{JobId, LimitsRequest, ModuleHash};

/// The longest schedule name, in bytes.
pub const MAX_SCHEDULE_NAME: usize = 64;

/// The longest cron expression, in bytes.
pub const MAX_CRON_LEN: usize = 256;

/// What the cluster does with ticks that passed while no node fired them
/// (the cluster was down, or this schedule's nodes were).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Missed {
    /// Forget them: the next job is the next tick's.
    #[default]
    Skip,
    /// One job, for the latest missed tick.
    RunOnce,
}

impl Missed {
    pub fn as_str(&self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::RunOnce => "run-once",
        }
    }

    pub fn parse(s: &str) -> Option<Missed> {
        match s.to_ascii_lowercase().as_str() {
            "skip" => Some(Missed::Skip),
            "run-once" | "runonce" | "once" => Some(Missed::RunOnce),
            _ => None,
        }
    }
}

/// The job a schedule adds at each tick: what [`AddJob`] carries that
/// means something for a job nobody waits on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTemplate {
    pub queue: String,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// The module to run; `None`: a plain job for an external worker.
    pub module: Option<ModuleHash>,
    pub args: Vec<String>,
    pub limits: LimitsRequest,
    pub priority: u8,
    pub group: Option<String>,
    pub replicate: Option<u32>,
    pub delay_secs: Option<u64>,
    pub retry_secs: Option<u64>,
    pub ttl_secs: Option<u64>,
    pub maxlen: Option<u64>,
    pub nocache: bool,
    pub retry: Option<RetryPolicy>,
}

impl JobTemplate {
    /// A plain job for `queue` with `body`, every option at its default.
    pub fn new(queue: impl Into<String>, body: impl Into<Vec<u8>>) -> JobTemplate {
        JobTemplate {
            queue: queue.into(),
            body: body.into(),
            ..JobTemplate::default()
        }
    }

    /// The template of an add: refused (with the reason) when the add asks
    /// for what a scheduled job cannot have: a wait, an asynckey (nobody
    /// would hold the key), an idempotency key (the schedule sets its
    /// own), a distributed job, or `ASYNC`.
    pub fn from_add(a: &AddJob) -> Result<JobTemplate, String> {
        let refused = [
            (a.wait_ms.is_some() || a.ack_on_result, "a wait"),
            (a.asynckey.is_some(), "ASYNCKEY"),
            (
                a.idempotency_key.is_some() || a.idempotency_window_secs.is_some(),
                "IDEMPOTENCY (each tick's job gets the key schedule:NAME:TICK)",
            ),
            (a.map.is_some(), "a distributed job"),
            (
                a.module_name.is_some(),
                "a module by name (give its sha256: names resolve at an add, and a schedule's adds would not all run the same bytes)",
            ),
            (a.asynchronous, "ASYNC"),
        ];
        if let Some((_, what)) = refused.iter().find(|(bad, _)| *bad) {
            return Err(format!("a scheduled job cannot take {what}"));
        }
        Ok(JobTemplate {
            queue: a.queue.clone(),
            body: a.body.clone(),
            module: a.module,
            args: a.args.clone(),
            limits: a.limits,
            priority: a.priority,
            group: a.group.clone(),
            replicate: a.replicate,
            delay_secs: a.delay_secs,
            retry_secs: a.retry_secs,
            ttl_secs: a.ttl_secs,
            maxlen: a.maxlen,
            nocache: a.nocache,
            retry: a.retry.clone(),
        })
    }

    /// The add of one tick (without its idempotency key).
    pub fn to_add(&self) -> AddJob {
        let mut a = AddJob::new(self.queue.clone(), self.body.clone());
        a.module = self.module;
        a.args = self.args.clone();
        a.limits = self.limits;
        a.priority = self.priority;
        a.group = self.group.clone();
        a.replicate = self.replicate;
        a.delay_secs = self.delay_secs;
        a.retry_secs = self.retry_secs;
        a.ttl_secs = self.ttl_secs;
        a.maxlen = self.maxlen;
        a.nocache = self.nocache;
        a.retry = self.retry.clone();
        a
    }
}

/// A schedule as a client creates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// 1 to [`MAX_SCHEDULE_NAME`] bytes of `A-Z a-z 0-9 _ - . :`; unique
    /// in the cluster (per tenant for a tenant's schedules).
    pub name: String,
    /// Five fields (minute hour day-of-month month day-of-week, UTC), or
    /// six with a leading seconds field; `@hourly`, `@daily` and the like.
    pub cron: String,
    pub missed: Missed,
    pub job: JobTemplate,
}

impl ScheduleSpec {
    pub fn new(name: impl Into<String>, cron: impl Into<String>, job: JobTemplate) -> ScheduleSpec {
        ScheduleSpec {
            name: name.into(),
            cron: cron.into(),
            missed: Missed::Skip,
            job,
        }
    }
}

/// `Err(message)` when `name` cannot name a schedule.
pub fn check_schedule_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_SCHEDULE_NAME {
        return Err(format!(
            "a schedule name is 1 to {MAX_SCHEDULE_NAME} bytes, not {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!(
            "schedule name {name:?} has {c:?}: use A-Z a-z 0-9 _ - . :"
        ));
    }
    Ok(())
}

/// A schedule as a node shows it (`SCHEDULE SHOW`, `wasque schedule show`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// Its name as the asker names it (the admin sees a tenant's as
    /// `TENANT/NAME`), with the rest as it was created.
    pub spec: ScheduleSpec,
    /// The tenant that made it; `None`: the admin.
    pub tenant: Option<String>,
    /// Unix ms.
    pub created_ms: u64,
    /// The next tick after now (unix ms); `None` if the expression has
    /// none within five years.
    pub next_tick_ms: Option<u64>,
    /// The latest tick any node fired, and its job.
    pub last_tick_ms: Option<u64>,
    pub last_job: Option<JobId>,
    /// Recent ticks and their jobs, oldest first (up to 64).
    pub recent: Vec<(u64, JobId)>,
    /// The last add this node's firing had refused, with its tick
    /// (`-QUOTA`, `-NOMODULE`, ...); node-local.
    pub last_error: Option<(u64, String)>,
}

impl ScheduleInfo {
    /// The JSON document of a schedule (`wasque schedule show --json`,
    /// HTTP `/api/schedules/{name}`): times in unix ms, the body as
    /// UTF-8 or base64 (`body_encoding`), as a job's document has it.
    pub fn to_json(&self) -> serde_json::Value {
        let job = &self.spec.job;
        let (body, body_enc) = super::types::Body(&job.body).encode();
        let mut doc = serde_json::json!({
            "name": self.spec.name,
            "tenant": self.tenant,
            "cron": self.spec.cron,
            "missed": self.spec.missed.as_str(),
            "job": {
                "queue": job.queue,
                "body": body,
                "module": job.module.map(|h| h.to_hex()),
                "args": job.args,
                "fuel": job.limits.fuel,
                "memory": job.limits.memory_bytes,
                "deadline_ms": job.limits.deadline_ms,
                "priority": job.priority,
                "group": job.group,
                "replicate": job.replicate,
                "delay_secs": job.delay_secs,
                "retry_secs": job.retry_secs,
                "ttl_secs": job.ttl_secs,
                "maxlen": job.maxlen,
                "nocache": job.nocache,
                "retry": job.retry.as_ref().map(|p| p.words().join(" ")),
            },
            "created_ms": self.created_ms,
            "next_tick_ms": self.next_tick_ms,
            "last_tick_ms": self.last_tick_ms,
            "last_job": self.last_job.map(|id| id.to_string()),
            "recent": self.recent.iter().map(|(t, id)| serde_json::json!({"tick_ms": t, "job": id.to_string()})).collect::<Vec<_>>(),
            "last_error": self.last_error.as_ref().map(|(t, e)| serde_json::json!({"tick_ms": t, "error": e})),
        });
        if let (Some(enc), Some(job)) =
            (body_enc, doc.get_mut("job").and_then(|j| j.as_object_mut()))
        {
            job.insert("body_encoding".into(), enc.into());
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_missed_words() {
        assert!(check_schedule_name("nightly-report.v2:eu").is_ok());
        assert!(check_schedule_name("").is_err());
        assert!(check_schedule_name("a/b").is_err());
        assert!(check_schedule_name("a b").is_err());
        assert!(check_schedule_name(&"n".repeat(65)).is_err());
        assert_eq!(Missed::parse("RUN-ONCE"), Some(Missed::RunOnce));
        assert_eq!(Missed::parse("skip"), Some(Missed::Skip));
        assert_eq!(Missed::parse("later"), None);
    }

    #[test]
    fn a_template_round_trips_an_add_and_refuses_what_it_cannot_carry() {
        let mut a = AddJob::new("q", b"x".to_vec());
        a.priority = 3;
        a.ttl_secs = Some(60);
        a.args = vec!["--fast".into()];
        let t = JobTemplate::from_add(&a).unwrap();
        assert_eq!(t.to_add(), a);
        a.asynckey = Some("k".into());
        assert!(JobTemplate::from_add(&a).unwrap_err().contains("ASYNCKEY"));
        a.asynckey = None;
        a.idempotency_key = Some("k".into());
        assert!(JobTemplate::from_add(&a).is_err());
        a.idempotency_key = None;
        a.module_name = Some("resize@1.2".into());
        assert!(JobTemplate::from_add(&a).unwrap_err().contains("by name"));
    }
}
