//! Commands on queues: QLEN, QPEEK, QSTAT, QSCAN, JSCAN, PAUSE.

use super::{Action, Args, Render, not_integer, syntax};
use crate::api::{Command, JScan, QScan};
use crate::job::JobState;
use crate::net::resp::frame::Frame;
use crate::queue::Pause;

pub fn parse(a: &Args) -> Result<Action, Frame> {
    Ok(match a.name {
        "qlen" => Action::Engine(Command::QLen { queue: a.text(1)? }, Render::Count),
        "qpeek" => Action::Engine(
            Command::QPeek {
                queue: a.text(1)?,
                count: a.int(2)?,
            },
            Render::Jobs,
        ),
        "qstat" => Action::Engine(Command::QStat { queue: a.text(1)? }, Render::QStat),
        "qscan" => Action::Engine(Command::QScan(qscan(a)?), Render::QScan),
        "jscan" => Action::Engine(Command::JScan(Box::new(jscan(a)?)), Render::JScan),
        _ => pause(a)?,
    })
}

fn cursor(a: &Args, i: usize, set: &mut bool) -> Result<u128, Frame> {
    if *set {
        return Err(syntax());
    }
    *set = true;
    std::str::from_utf8(a.get(i))
        .ok()
        .and_then(|s| s.parse::<u128>().ok())
        .ok_or_else(|| Frame::error("ERR", "invalid cursor"))
}

fn qscan(a: &Args) -> Result<QScan, Frame> {
    let mut s = QScan::default();
    let mut cursor_set = false;
    let mut i = 1;
    while i < a.len() {
        let more = i + 1 < a.len();
        if a.is(i, "count") && more {
            s.count = a.uint(i + 1)?;
            i += 1;
        } else if a.is(i, "busyloop") {
            s.busyloop = true;
        } else if a.is(i, "minlen") && more {
            s.minlen = Some(a.uint(i + 1)?);
            i += 1;
        } else if a.is(i, "maxlen") && more {
            s.maxlen = Some(a.uint(i + 1)?);
            i += 1;
        } else if a.is(i, "importrate") && more {
            s.importrate = Some(a.uint(i + 1)?);
            i += 1;
        } else {
            s.cursor = u64::try_from(cursor(a, i, &mut cursor_set)?).map_err(|_| not_integer())?;
        }
        i += 1;
    }
    Ok(s)
}

fn jscan(a: &Args) -> Result<JScan, Frame> {
    let mut s = JScan::default();
    let mut cursor_set = false;
    let mut i = 1;
    while i < a.len() {
        let more = i + 1 < a.len();
        if a.is(i, "count") && more {
            s.count = a.uint(i + 1)?;
            i += 1;
        } else if a.is(i, "busyloop") {
            s.busyloop = true;
        } else if a.is(i, "queue") && more {
            s.queue = Some(a.text(i + 1)?);
            i += 1;
        } else if a.is(i, "state") && more {
            let st = match a.text(i + 1)?.to_ascii_lowercase().as_str() {
                "wait-repl" => JobState::WaitRepl,
                "queued" => JobState::Queued,
                "active" => JobState::Active,
                "done" => JobState::Done,
                "failed" => JobState::Failed,
                "acked" => JobState::Acked,
                "waiting" => JobState::Waiting,
                "dead" => JobState::Dead,
                _ => return Err(Frame::error("ERR", "Invalid job state name")),
            };
            s.states.push(st);
            i += 1;
        } else if a.is(i, "reply") && more {
            if a.is(i + 1, "id") {
                s.reply_all = false;
            } else if a.is(i + 1, "all") {
                s.reply_all = true;
            } else {
                return Err(Frame::error("ERR", "Invalid REPLY type, try ID or ALL"));
            }
            i += 1;
        } else {
            s.cursor = cursor(a, i, &mut cursor_set)?;
        }
        i += 1;
    }
    Ok(s)
}

/// PAUSE queue in|out|all|none|state|bcast...
fn pause(a: &Args) -> Result<Action, Frame> {
    let mut flags = Pause::default();
    let mut update = false;
    let mut bcast = false;
    for i in 2..a.len() {
        if a.is(i, "none") {
            flags = Pause::default();
            update = true;
        } else if a.is(i, "in") {
            flags.input = true;
            update = true;
        } else if a.is(i, "out") {
            flags.output = true;
            update = true;
        } else if a.is(i, "all") {
            flags = Pause {
                input: true,
                output: true,
            };
            update = true;
        } else if a.is(i, "bcast") {
            bcast = true;
        } else if a.is(i, "state") {
        } else {
            return Err(syntax());
        }
    }
    Ok(Action::Engine(
        Command::Pause {
            queue: a.text(1)?,
            set: update.then_some(flags),
            bcast,
        },
        Render::Paused,
    ))
}
