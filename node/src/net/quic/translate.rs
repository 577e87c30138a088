//! `proto` requests to engine commands, engine replies to `proto` responses.

use wasque_sdk::proto::{Request, Response};

use crate::api::{Command, Dlq, DlqOp, Reply};
use crate::sched::{ScheduleAnswer, ScheduleCmd};

/// The command for a request, or `None` for requests the connection
/// answers itself (hello, module upload, node info).
pub fn command(req: Request) -> Option<Command> {
    Some(match req {
        Request::AddJob(a) => Command::AddJob(a),
        Request::AddPart {
            parent,
            index,
            body,
        } => Command::AddPart {
            parent,
            index,
            body: body.into(),
        },
        Request::Show { id } => Command::Show { id },
        Request::ShowByKey { key, id } => keyed(key, Command::Show { id }),
        Request::Wait { id, timeout_ms } => Command::Wait { id, timeout_ms },
        Request::WaitByKey {
            key,
            id,
            timeout_ms,
        } => keyed(key, Command::Wait { id, timeout_ms }),
        Request::Ack { ids } => Command::Ack { ids, fast: false },
        Request::AckByKey { key, ids } => keyed(key, Command::Ack { ids, fast: false }),
        Request::DelJob { ids } => Command::DelJob { ids },
        Request::DelJobByKey { key, ids } => keyed(key, Command::DelJob { ids }),
        Request::ListModules => Command::ListModules,
        Request::StatModule { hash } => Command::StatModule { hash },
        Request::DeleteModule { hash } => Command::DeleteModule { hash },
        Request::Nack { ids, delay_ms } => Command::Nack { ids, delay_ms },
        Request::DlqList { queue, count } => dlq(queue, DlqOp::List { count }),
        Request::DlqRequeue { queue, ids } => dlq(queue, DlqOp::Requeue { ids }),
        Request::DlqPurge { queue } => dlq(queue, DlqOp::Purge),
        Request::Cancel { ids } => Command::Cancel { ids },
        Request::Explain { id, key: None } => Command::Explain { id },
        Request::Explain { id, key: Some(key) } => keyed(key, Command::Explain { id }),
        Request::Hello { .. }
        | Request::PutModule { .. }
        | Request::NodeInfo
        | Request::Nodes
        | Request::Subscribe { .. }
        | Request::Logs { .. }
        | Request::ScheduleAdd(_)
        | Request::ScheduleList
        | Request::ScheduleShow { .. }
        | Request::ScheduleDel { .. } => return None,
    })
}

/// The schedule command of a schedule request (answered from the
/// registry, not the engine: `sched/command.rs`).
pub fn schedule(req: Request) -> Option<ScheduleCmd> {
    Some(match req {
        Request::ScheduleAdd(spec) => ScheduleCmd::Add(spec),
        Request::ScheduleList => ScheduleCmd::List,
        Request::ScheduleShow { name } => ScheduleCmd::Show(name),
        Request::ScheduleDel { name } => ScheduleCmd::Del(name),
        _ => return None,
    })
}

/// The reply of a schedule command.
pub fn schedule_reply(answer: Result<ScheduleAnswer, wasque_sdk::proto::WireError>) -> Reply {
    match answer {
        Ok(ScheduleAnswer::Ok) => Reply::Ok,
        Ok(ScheduleAnswer::Removed) => Reply::Count(1),
        Ok(ScheduleAnswer::Schedules(list)) => Reply::Schedules(list),
        Err(e) => Reply::Error(e),
    }
}

fn dlq(queue: String, op: DlqOp) -> Command {
    Command::Dlq(Box::new(Dlq {
        queue,
        op,
        key: None,
    }))
}

fn keyed(key: String, cmd: Command) -> Command {
    Command::WithKey {
        key,
        cmd: Box::new(cmd),
    }
}

/// The response for a reply.
pub fn response(reply: Reply) -> Response {
    match reply {
        Reply::Ok => Response::Ok,
        Reply::JobAdded(id) | Reply::Duplicate(id) => Response::JobAdded { id },
        Reply::Job(s) => Response::Job(s),
        Reply::NotFinished => Response::NotFinished,
        Reply::Count(n) => Response::Count(n),
        Reply::Module(m) => Response::Module(m),
        Reply::Modules(m) => Response::Modules(m),
        Reply::NodeInfo(n) => Response::NodeInfo(*n),
        Reply::Hello {
            node,
            protocol,
            max_reply_bytes,
        } => Response::Hello {
            node,
            protocol,
            max_reply_bytes,
        },
        Reply::Error(e) => Response::Error(e),
        Reply::Nodes(n) => Response::Nodes(n),
        Reply::Statuses(s) => Response::Jobs(s),
        Reply::Explain(x) => Response::Explain(x),
        Reply::Schedules(s) => Response::Schedules(s),
        // Disque's queue commands are spoken over RESP; QUIC clients never
        // send them.
        Reply::Jobs(_)
        | Reply::Nil
        | Reply::QStat(_)
        | Reply::QueueScan { .. }
        | Reply::JobScan { .. }
        | Reply::Paused(_)
        | Reply::Words(_) => Response::Error(wasque_sdk::proto::WireError::new(
            wasque_sdk::proto::ErrorCode::Unsupported,
            "Disque's queue commands are served over RESP",
        )),
        // Inspection answers go to the HTTP API; QUIC clients never ask.
        Reply::Inspect(_) => Response::Error(wasque_sdk::proto::WireError::new(
            wasque_sdk::proto::ErrorCode::Unsupported,
            "inspection answers are served by the HTTP API",
        )),
    }
}
