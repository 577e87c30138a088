//! Commands on job ids: ACKJOB, FASTACK, DELJOB, ENQUEUE, NACK (with
//! wasque's `DELAY ms`), DEQUEUE, CANCEL (wasque's), WORKING, SHOW,
//! EXPLAIN (wasque's).

use super::{Action, Args, Render};
use crate::api::Command;
use crate::net::resp::frame::Frame;

pub fn parse(a: &Args) -> Result<Action, Frame> {
    if a.name == "nack" {
        return nack(a);
    }
    let ids = a.ids(1)?;
    let cmd = match a.name {
        "ackjob" => Command::Ack { ids, fast: false },
        "fastack" => Command::Ack { ids, fast: true },
        "deljob" => Command::DelJob { ids },
        "cancel" => Command::Cancel { ids },
        "enqueue" => Command::Enqueue { ids },
        "dequeue" => Command::Dequeue { ids },
        "explain" => {
            return Ok(Action::Engine(
                Command::Explain { id: ids[0] },
                Render::Explain,
            ));
        }
        "working" => {
            return Ok(Action::Engine(
                Command::Working { id: ids[0] },
                Render::Count,
            ));
        }
        _ => {
            return Ok(Action::Engine(Command::Show { id: ids[0] }, Render::Show));
        }
    };
    Ok(Action::Engine(cmd, Render::Count))
}

/// `NACK id [id..] [DELAY ms]`: queued again after `ms` instead of at once.
fn nack(a: &Args) -> Result<Action, Frame> {
    let n = a.len();
    let (ids, delay_ms) = if n >= 3 && a.is(n - 2, "delay") {
        let ms = a
            .uint(n - 1)
            .map_err(|_| Frame::error("ERR", "DELAY must be a number of ms >= 0"))?;
        let ms = crate::api::bounds::timeout_ms("NACK DELAY", ms)
            .map_err(|e| Frame::error("ERR", &e))?;
        (a.ids_in(1, n - 2)?, Some(ms))
    } else {
        (a.ids(1)?, None)
    };
    Ok(Action::Engine(
        Command::Nack { ids, delay_ms },
        Render::Count,
    ))
}
