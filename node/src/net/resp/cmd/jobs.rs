//! Commands on job ids: ACKJOB, FASTACK, DELJOB, ENQUEUE, NACK, DEQUEUE,
//! WORKING, SHOW.

use super::{Action, Args, Render};
use crate::api::Command;
use crate::net::resp::frame::Frame;

pub fn parse(a: &Args) -> Result<Action, Frame> {
    let ids = a.ids(1)?;
    let cmd = match a.name.as_str() {
        "ackjob" => Command::Ack { ids, fast: false },
        "fastack" => Command::Ack { ids, fast: true },
        "deljob" => Command::DelJob { ids },
        "enqueue" => Command::Enqueue { ids },
        "nack" => Command::Nack { ids },
        "dequeue" => Command::Dequeue { ids },
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
