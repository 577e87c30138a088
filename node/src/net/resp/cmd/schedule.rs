//! SCHEDULE: schedules (cron) over RESP, answered from the schedule
//! registry (`sched/command.rs`), for the admin and tenants alike.
//!
//! ```text
//! SCHEDULE ADD name CRON expr [MISSED skip|run-once] QUEUE q [BODY b]
//!          [ADDJOB's job options: MODULE h, FUEL n, ARG a, TTL s, ...]
//! SCHEDULE LS                  -> one array per schedule (field, value...)
//! SCHEDULE SHOW name           -> field, value... with recent ticks
//! SCHEDULE DEL name            -> :1
//! ```
//!
//! The schedule's own options (CRON, MISSED, QUEUE, BODY) come first, in
//! any order; the first other word starts the job's options, read as
//! ADDJOB reads them. ASYNC, ASYNCKEY and IDEMPOTENCY are refused: each
//! tick's job gets the idempotency key `schedule:NAME:TICK`. A module by
//! name (`MODULE n@v`, or `n` for the latest) is resolved once, when the
//! schedule is made: every tick runs the same bytes, as with the CLI.

use bytes::Bytes;
use wasque_sdk::proto::{
    JobTemplate, Missed, ScheduleInfo, ScheduleSpec, WireError, check_schedule_name,
};

use super::{Action, Args, wrong_arity};
use crate::api::Command;
use crate::net::resp::frame::Frame;
use crate::sched::{ScheduleAnswer, ScheduleCmd};

pub fn parse(a: &Args) -> Result<Action, Frame> {
    let sub = String::from_utf8_lossy(a.get(1)).to_ascii_lowercase();
    let mut by_name = None;
    let c = match (sub.as_str(), a.len()) {
        ("add", n) if n >= 3 => {
            let (spec, name) = add(a)?;
            by_name = name;
            ScheduleCmd::Add(Box::new(spec))
        }
        ("ls" | "list", 2) => ScheduleCmd::List,
        ("show", 3) => ScheduleCmd::Show(a.text(2)?),
        ("del" | "rm", 3) => ScheduleCmd::Del(a.text(2)?),
        ("add" | "ls" | "list" | "show" | "del" | "rm", _) => {
            return Err(wrong_arity("schedule"));
        }
        _ => {
            return Err(Frame::error(
                "ERR",
                "unknown SCHEDULE subcommand; use ADD, LS, SHOW or DEL",
            ));
        }
    };
    Ok(Action::Schedule(c, by_name))
}

/// The spec, and the module's name when the job names it by name.
fn add(a: &Args) -> Result<(ScheduleSpec, Option<String>), Frame> {
    let name = a.text(2)?;
    check_schedule_name(&name).map_err(|e| Frame::error("ERR", &e))?;
    let (mut cron, mut missed, mut queue, mut body) = (None, Missed::Skip, None, Bytes::new());
    let mut i = 3;
    while i + 1 < a.len() {
        match String::from_utf8_lossy(a.get(i))
            .to_ascii_lowercase()
            .as_str()
        {
            "cron" => cron = Some(a.text(i + 1)?),
            "missed" => {
                missed = Missed::parse(&a.text(i + 1)?)
                    .ok_or_else(|| Frame::error("ERR", "MISSED must be skip or run-once"))?;
            }
            "queue" => queue = Some(a.text(i + 1)?),
            "body" => body = a.bytes(i + 1),
            _ => break,
        }
        i += 2;
    }
    let cron = cron.ok_or_else(|| {
        Frame::error(
            "ERR",
            "SCHEDULE ADD needs CRON expr: SCHEDULE ADD name CRON expr QUEUE q [BODY b] [job options]",
        )
    })?;
    let queue = queue.ok_or_else(|| {
        Frame::error(
            "ERR",
            "SCHEDULE ADD needs QUEUE q: SCHEDULE ADD name CRON expr QUEUE q [BODY b] [job options]",
        )
    })?;
    // The job's options, read by ADDJOB's own parser.
    let mut words = vec![
        Bytes::from_static(b"addjob"),
        Bytes::from(queue.into_bytes()),
        body,
        Bytes::from_static(b"0"),
    ];
    words.extend((i..a.len()).map(|j| a.bytes(j)));
    let mut job = match super::addjob::parse(&Args {
        name: "addjob",
        words,
    })? {
        Action::Engine(Command::AddJob(job), _) => job,
        _ => return Err(Frame::error("ERR", "syntax error")),
    };
    let by_name = job.module_name.take();
    if by_name.is_some() && job.module.is_some() {
        return Err(Frame::error(
            "ERR",
            "a schedule names its module by hash or by name, not both",
        ));
    }
    let job = JobTemplate::from_add(&job).map_err(|e| Frame::error("ERR", &e))?;
    let spec = ScheduleSpec {
        name,
        cron,
        missed,
        job,
    };
    Ok((spec, by_name))
}

/// The answer to a schedule command, rendered (`detail`: SHOW's recent
/// ticks).
pub fn render(answer: Result<ScheduleAnswer, WireError>, detail: bool) -> Frame {
    match answer {
        Ok(ScheduleAnswer::Ok) => Frame::Simple("OK".into()),
        Ok(ScheduleAnswer::Removed) => Frame::Integer(1),
        Ok(ScheduleAnswer::Schedules(list)) if detail => list
            .first()
            .map(|s| fields(s, true))
            .unwrap_or(Frame::NullArray),
        Ok(ScheduleAnswer::Schedules(list)) => {
            Frame::Array(list.iter().map(|s| fields(s, false)).collect())
        }
        Err(e) => Frame::error(e.code.as_str(), &e.message),
    }
}

fn fields(s: &ScheduleInfo, detail: bool) -> Frame {
    let ms = |v: Option<u64>| v.map_or(Frame::Null, |v| Frame::Integer(v as i64));
    let text = |v: Option<String>| v.map_or(Frame::Null, |v| Frame::text(&v));
    let job = &s.spec.job;
    let mut out = vec![
        Frame::text("name"),
        Frame::text(&s.spec.name),
        Frame::text("tenant"),
        text(s.tenant.clone()),
        Frame::text("cron"),
        Frame::text(&s.spec.cron),
        Frame::text("missed"),
        Frame::text(s.spec.missed.as_str()),
        Frame::text("queue"),
        Frame::text(&job.queue),
        Frame::text("module"),
        text(job.module.map(|h| h.to_hex())),
        Frame::text("body"),
        Frame::bulk(Bytes::from(job.body.clone())),
        Frame::text("created-ms"),
        Frame::Integer(s.created_ms as i64),
        Frame::text("next-tick-ms"),
        ms(s.next_tick_ms),
        Frame::text("last-tick-ms"),
        ms(s.last_tick_ms),
        Frame::text("last-job"),
        text(s.last_job.map(|id| id.to_string())),
        Frame::text("last-error"),
        text(
            s.last_error
                .as_ref()
                .map(|(tick, e)| format!("tick {tick}: {e}")),
        ),
    ];
    if detail {
        out.push(Frame::text("recent"));
        out.push(Frame::Array(
            s.recent
                .iter()
                .map(|(t, id)| {
                    Frame::Array(vec![
                        Frame::Integer(*t as i64),
                        Frame::text(&id.to_string()),
                    ])
                })
                .collect(),
        ));
    }
    Frame::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(s: &[&str]) -> Result<Action, Frame> {
        parse(&Args {
            name: "schedule",
            words: s
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect(),
        })
    }

    #[test]
    fn add_takes_its_options_then_addjobs() {
        let a = parse_words(&[
            "SCHEDULE",
            "ADD",
            "n",
            "CRON",
            "*/5 * * * *",
            "MISSED",
            "run-once",
            "QUEUE",
            "q",
            "BODY",
            "hi",
            "TTL",
            "60",
            "PRIORITY",
            "3",
            "ARG",
            "cron",
        ])
        .unwrap();
        let Action::Schedule(ScheduleCmd::Add(spec), None) = a else {
            panic!("{a:?}");
        };
        assert_eq!(spec.cron, "*/5 * * * *");
        assert_eq!(spec.missed, Missed::RunOnce);
        assert_eq!(spec.job.queue, "q");
        assert_eq!(spec.job.body, b"hi");
        assert_eq!(spec.job.ttl_secs, Some(60));
        assert_eq!(spec.job.priority, 3);
        assert_eq!(spec.job.args, vec!["cron".to_string()]);
    }

    #[test]
    fn a_module_by_name_is_left_for_the_connection_to_resolve() {
        let words = |m: &str| {
            parse_words(&[
                "SCHEDULE",
                "ADD",
                "n",
                "CRON",
                "* * * * *",
                "QUEUE",
                "q",
                "MODULE",
                m,
            ])
        };
        let Ok(Action::Schedule(ScheduleCmd::Add(spec), Some(name))) = words("resize@1.2") else {
            panic!("{:?}", words("resize@1.2"));
        };
        assert_eq!(name, "resize@1.2");
        assert_eq!(spec.job.module, None);
        let hash = "ab".repeat(32);
        let Ok(Action::Schedule(ScheduleCmd::Add(spec), None)) = words(&hash) else {
            panic!("{:?}", words(&hash));
        };
        assert_eq!(spec.job.module.map(|h| h.to_hex()), Some(hash));
    }

    #[test]
    fn mistakes_get_clear_errors() {
        let err = |w: &[&str]| match parse_words(w) {
            Err(Frame::Error(e)) => e,
            other => panic!("{other:?}"),
        };
        assert!(err(&["SCHEDULE", "ADD", "n", "QUEUE", "q"]).contains("CRON"));
        assert!(err(&["SCHEDULE", "ADD", "n", "CRON", "* * * * *"]).contains("QUEUE"));
        assert!(
            err(&["SCHEDULE", "ADD", "a/b", "CRON", "* * * * *", "QUEUE", "q"])
                .contains("schedule name")
        );
        assert!(
            err(&[
                "SCHEDULE", "ADD", "n", "CRON", "x", "QUEUE", "q", "MISSED", "never"
            ])
            .contains("MISSED")
        );
        assert!(
            err(&[
                "SCHEDULE", "ADD", "n", "CRON", "x", "QUEUE", "q", "ASYNCKEY", "k"
            ])
            .contains("ASYNCKEY")
        );
        assert!(
            err(&["SCHEDULE", "ADD", "n", "CRON", "x", "QUEUE", "q", "BOGUS"]).contains("syntax")
        );
        assert!(err(&["SCHEDULE", "SHOW"]).contains("wrong number"));
        assert!(err(&["SCHEDULE", "NOPE"]).contains("unknown SCHEDULE"));
        assert!(matches!(
            parse_words(&["SCHEDULE", "LS"]),
            Ok(Action::Schedule(ScheduleCmd::List, None))
        ));
    }
}
