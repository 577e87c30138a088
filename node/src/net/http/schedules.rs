//! `/api/schedules`: schedules as the request's principal sees them (the
//! admin every one, a tenant its own), answered from the schedule
//! registry (`sched/command.rs`), and their removal. Adding one is left
//! to RESP, QUIC and the CLI, as adding jobs is.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::{AppState, HttpError, guard};
use crate::auth::Principal;
use crate::runtime::now_ms;
use crate::sched::command::{self, ScheduleAnswer, ScheduleCmd};

/// Runs a schedule command as the request's principal.
fn run(st: &AppState, cmd: ScheduleCmd) -> Result<ScheduleAnswer, HttpError> {
    let who = guard::WHO
        .try_with(Clone::clone)
        .unwrap_or(Principal::Admin);
    command::run(st.handle(), &who, cmd, now_ms()).map_err(|e| {
        if command::is_missing(&e) {
            HttpError::not_found(e.message)
        } else {
            HttpError::from_wire(e)
        }
    })
}

/// `GET /api/schedules`: every schedule, by name.
pub async fn list(State(st): State<AppState>) -> Result<Json<Value>, HttpError> {
    match run(&st, ScheduleCmd::List)? {
        ScheduleAnswer::Schedules(list) => Ok(Json(json!({
            "schedules": list.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
        }))),
        _ => Err(HttpError::internal("unexpected answer to a schedule list")),
    }
}

/// `GET /api/schedules/{name}`: one schedule with its recent ticks.
pub async fn show(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, HttpError> {
    match run(&st, ScheduleCmd::Show(name))? {
        ScheduleAnswer::Schedules(list) if list.len() == 1 => Ok(Json(list[0].to_json())),
        _ => Err(HttpError::internal("unexpected answer to a schedule show")),
    }
}

/// `POST /api/schedules/{name}/remove` with a JSON body (`{}`): removes
/// the schedule on every node (a form cannot send JSON without a CORS
/// preflight the node never answers; docs/SECURITY.md).
pub async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let Json(_) = body.map_err(|e| {
        HttpError::bad_request(format!(
            "the body must be JSON (Content-Type: application/json), {{}} will do: {e}"
        ))
    })?;
    run(&st, ScheduleCmd::Del(name))?;
    Ok(Json(json!({ "removed": 1 })))
}
