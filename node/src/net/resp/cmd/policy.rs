//! `QPOLICY queue [policy] [MODE push|pull]`: a queue's scheduling policy
//! (`round-robin`, `random`, `least-loaded`, `priority`, `resource`) and
//! mode. Set on any node, it reaches every node; with no policy it answers
//! the current `[policy, mode]`.

use super::{Action, Args, Render};
use crate::api::Command;
use crate::engine::{Mode, Policy};
use crate::net::resp::frame::Frame;

pub fn parse(a: &Args) -> Result<Action, Frame> {
    let queue = a.text(1)?;
    if queue.is_empty() {
        return Err(Frame::error("ERR", "queue name is empty"));
    }
    let set = match a.len() {
        2 => None,
        3 | 5 => {
            let p = a.text(2)?;
            let policy = Policy::parse(&p).ok_or_else(|| {
                Frame::error(
                    "ERR",
                    &format!(
                        "unknown policy '{p}': one of round-robin, random, least-loaded, priority, resource"
                    ),
                )
            })?;
            let mode = if a.len() == 5 {
                if !a.is(3, "mode") {
                    return Err(Frame::error(
                        "ERR",
                        "syntax error: QPOLICY queue policy [MODE push|pull]",
                    ));
                }
                let m = a.text(4)?;
                Mode::parse(&m).ok_or_else(|| {
                    Frame::error("ERR", &format!("unknown mode '{m}': push or pull"))
                })?
            } else {
                Mode::default()
            };
            Some((policy, mode))
        }
        _ => {
            return Err(Frame::error(
                "ERR",
                "syntax error: QPOLICY queue [policy] [MODE push|pull]",
            ));
        }
    };
    Ok(Action::Engine(
        Command::QPolicy { queue, set },
        Render::Count,
    ))
}
