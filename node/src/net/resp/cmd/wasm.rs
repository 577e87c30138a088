//! wasque's extensions: MODULE PUT|LIST|DEL, RESULT, WAITJOB, FINISH.

use super::{Action, Args, Render, syntax, wrong_arity};
use crate::api::Command;
use crate::job::ModuleHash;
use crate::net::resp::frame::Frame;

pub fn parse(a: &Args) -> Result<Action, Frame> {
    match a.name {
        "module" => module(a),
        "result" => Ok(Action::Engine(
            Command::Wait {
                id: a.id(1)?,
                timeout_ms: 0,
            },
            Render::Result,
        )),
        "waitjob" => {
            let id = a.id(1)?;
            let timeout_ms = super::addjob::timeout(a, 2)?;
            // WAITJOB id 0 would mean "answer now": wait at least 1 ms.
            Ok(Action::Engine(
                Command::Wait {
                    id,
                    timeout_ms: timeout_ms.max(1),
                },
                Render::Result,
            ))
        }
        _ => finish(a),
    }
}

fn module(a: &Args) -> Result<Action, Frame> {
    let sub = String::from_utf8_lossy(a.get(1)).to_ascii_lowercase();
    match (sub.as_str(), a.len()) {
        ("put", n) if n >= 3 => Ok(Action::PutModule(a.bytes(2), put_options(a)?)),
        ("list", 2) => Ok(Action::Engine(Command::ListModules, Render::Modules)),
        ("del", 3) => {
            let hex = std::str::from_utf8(a.get(2)).unwrap_or("");
            let hash = hex
                .parse::<ModuleHash>()
                .map_err(|e| Frame::error("ERR", &e))?;
            Ok(Action::Engine(Command::DeleteModule { hash }, Render::Ok))
        }
        ("put" | "list" | "del", _) => Err(wrong_arity("module")),
        _ => Err(Frame::error(
            "ERR",
            "unknown MODULE subcommand: try MODULE PUT bytes [NAME n VERSION v] [REPLICATE k], MODULE LIST, MODULE DEL sha256",
        )),
    }
}

/// MODULE PUT bytes [NAME name VERSION version] [REPLICATE count]
fn put_options(a: &Args) -> Result<wasque_sdk::proto::PutOptions, Frame> {
    let mut opts = wasque_sdk::proto::PutOptions::default();
    let mut i = 3;
    while i < a.len() {
        if i + 1 >= a.len() {
            return Err(syntax());
        }
        let value = || String::from_utf8_lossy(a.get(i + 1)).into_owned();
        if a.is(i, "name") {
            let name = value();
            wasque_sdk::proto::check_module_name(&name).map_err(|e| Frame::error("ERR", &e))?;
            opts.name = Some(name);
        } else if a.is(i, "version") {
            let version = value();
            wasque_sdk::proto::check_module_version(&version)
                .map_err(|e| Frame::error("ERR", &e))?;
            opts.version = Some(version);
        } else if a.is(i, "replicate") {
            opts.replicate = u32::try_from(a.uint(i + 1)?)
                .map_err(|_| Frame::error("ERR", "REPLICATE is out of range"))?;
        } else {
            return Err(syntax());
        }
        i += 2;
    }
    if opts.name.is_some() != opts.version.is_some() {
        return Err(Frame::error(
            "ERR",
            "MODULE PUT takes NAME and VERSION together (a name always has a version)",
        ));
    }
    Ok(opts)
}

/// FINISH id output [EXIT code]
fn finish(a: &Args) -> Result<Action, Frame> {
    let id = a.id(1)?;
    let exit_code = match a.len() {
        3 => 0,
        5 if a.is(3, "exit") => i32::try_from(a.int(4)?).map_err(|_| super::not_integer())?,
        _ => return Err(syntax()),
    };
    Ok(Action::Engine(
        Command::Finish {
            id,
            output: a.bytes(2),
            exit_code,
        },
        Render::Ok,
    ))
}
