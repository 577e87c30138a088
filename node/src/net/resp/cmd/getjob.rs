//! GETJOB [NOHANG] [TIMEOUT ms] [COUNT n] [WITHCOUNTERS] FROM queue...

use super::{Action, Args, Render, syntax};
use crate::api::{Command, GetJob};
use crate::net::resp::frame::Frame;

/// The most jobs one GETJOB may ask for.
const MAX_COUNT: i64 = 1 << 20;

pub fn parse(a: &Args) -> Result<Action, Frame> {
    let mut g = GetJob {
        queues: Vec::new(),
        nohang: false,
        timeout_ms: 0,
        count: 1,
        withcounters: false,
    };
    let mut i = 1;
    while i < a.len() {
        let last = i + 1 == a.len();
        if a.is(i, "nohang") {
            g.nohang = true;
        } else if a.is(i, "withcounters") {
            g.withcounters = true;
        } else if a.is(i, "timeout") && !last {
            g.timeout_ms = super::addjob::timeout(a, i + 1)?;
            i += 1;
        } else if a.is(i, "count") && !last {
            match a.int(i + 1) {
                Ok(n) if n > 0 => g.count = n.min(MAX_COUNT) as u32,
                _ => {
                    return Err(Frame::error(
                        "ERR",
                        "COUNT must be a number greater than zero",
                    ));
                }
            }
            i += 1;
        } else if a.is(i, "from") {
            for j in i + 1..a.len() {
                g.queues.push(a.text(j)?);
            }
            break;
        } else {
            return Err(syntax());
        }
        i += 1;
    }
    if g.queues.is_empty() {
        return Err(syntax());
    }
    Ok(Action::Engine(Command::GetJob(Box::new(g)), Render::GetJob))
}
