//! The schedule commands every door shares (RESP `SCHEDULE`, the QUIC
//! schedule requests, HTTP `/api/schedules`): add, list, show, remove,
//! scoped by who asks. A tenant's schedules are keyed `TENANT/NAME` and
//! named `NAME` to it; another tenant's answer as missing ones. The admin
//! sees every schedule, a tenant's under its `TENANT/NAME` key.

use wasque_sdk::proto::{ScheduleInfo, ScheduleSpec, WireError, check_schedule_name};

use super::cron::Cron;
use super::record::ScheduleRecord;
use super::registry::ScheduleError;
use crate::api::ErrorCode;
use crate::auth::Principal;
use crate::job::UnixMs;
use crate::runtime::Handle;

/// One schedule command.
#[derive(Clone, Debug, PartialEq)]
pub enum ScheduleCmd {
    Add(Box<ScheduleSpec>),
    List,
    Show(String),
    Del(String),
}

/// What a schedule command answers.
#[derive(Clone, Debug, PartialEq)]
pub enum ScheduleAnswer {
    /// Made.
    Ok,
    /// Removed (always 1).
    Removed,
    /// Listed or shown.
    Schedules(Vec<ScheduleInfo>),
}

/// Carries out `cmd` for `who`.
pub fn run(
    handle: &Handle,
    who: &Principal,
    cmd: ScheduleCmd,
    now: UnixMs,
) -> Result<ScheduleAnswer, WireError> {
    let reg = handle.schedules();
    match cmd {
        ScheduleCmd::Add(spec) => {
            check_schedule_name(&spec.name).map_err(err)?;
            Cron::parse(&spec.cron).map_err(err)?;
            check_job(handle, who, &spec)?;
            let (key, tenant) = match who {
                Principal::Admin => (spec.name.clone(), None),
                Principal::Tenant(t) => (format!("{t}/{}", spec.name), Some(&t[..])),
            };
            reg.add(&key, tenant, *spec, now).map_err(from_registry)?;
            Ok(ScheduleAnswer::Ok)
        }
        ScheduleCmd::List => {
            let prefix = match who {
                Principal::Admin => String::new(),
                Principal::Tenant(t) => format!("{t}/"),
            };
            let list = reg
                .live(&prefix)
                .iter()
                .filter(|r| visible(who, r))
                .map(|r| info(handle, who, r, now, false))
                .collect();
            Ok(ScheduleAnswer::Schedules(list))
        }
        ScheduleCmd::Show(name) => {
            let r = lookup(handle, who, &name)?;
            Ok(ScheduleAnswer::Schedules(vec![info(
                handle, who, &r, now, true,
            )]))
        }
        ScheduleCmd::Del(name) => {
            let r = lookup(handle, who, &name)?;
            reg.remove(&r.key, now).map_err(from_registry)?;
            Ok(ScheduleAnswer::Removed)
        }
    }
}

/// A schedule `who` names `name`, or the error a missing one gets.
fn lookup(handle: &Handle, who: &Principal, name: &str) -> Result<ScheduleRecord, WireError> {
    let key = match who {
        // The admin names a tenant's schedule by its key.
        Principal::Admin => name.to_string(),
        Principal::Tenant(t) => {
            check_schedule_name(name).map_err(err)?;
            format!("{t}/{name}")
        }
    };
    handle
        .schedules()
        .get(&key)
        .filter(|r| visible(who, r))
        .ok_or_else(|| missing(name))
}

/// The error a schedule the asker cannot see gets (missing, or another
/// tenant's: the same answer, so names cannot be probed).
fn missing(name: &str) -> WireError {
    WireError::new(ErrorCode::Err, format!("no schedule {name}"))
}

/// Whether `e` says a schedule is missing (HTTP answers it 404).
pub fn is_missing(e: &WireError) -> bool {
    e.code == ErrorCode::Err && e.message.starts_with("no schedule ")
}

fn visible(who: &Principal, r: &ScheduleRecord) -> bool {
    match who {
        Principal::Admin => true,
        Principal::Tenant(t) => r.tenant.as_deref() == Some(&t[..]),
    }
}

/// The template's module must be one the asker may run: a tenant's own,
/// or for the admin one this node or a peer holds.
fn check_job(handle: &Handle, who: &Principal, spec: &ScheduleSpec) -> Result<(), WireError> {
    let job = &spec.job;
    if job.queue.is_empty() {
        return Err(err("the job's queue name is empty".into()));
    }
    if job.priority > 9 {
        return Err(err("priority must be 0..=9".into()));
    }
    if job.ttl_secs == Some(0) {
        return Err(err("TTL must be a number > 0".into()));
    }
    let Some(hash) = job.module else {
        return Ok(());
    };
    let known = match who {
        Principal::Admin => handle.module_known(&hash),
        Principal::Tenant(t) => handle.tenant(t)?.modules.contains_key(&hash),
    };
    if known {
        Ok(())
    } else {
        Err(WireError::new(
            ErrorCode::NoModule,
            format!("no module {hash} on this node (upload it first: wasque module put FILE.wasm)"),
        ))
    }
}

/// A record as `who` sees it; `detail` adds the recent ticks.
fn info(
    handle: &Handle,
    who: &Principal,
    r: &ScheduleRecord,
    now: UnixMs,
    detail: bool,
) -> ScheduleInfo {
    let mut spec = r.spec.clone();
    if matches!(who, Principal::Admin) {
        spec.name = r.key.clone();
    }
    let last = r.last();
    let recent = if detail {
        r.fired.iter().map(|(t, id)| (*t, *id)).collect()
    } else {
        Vec::new()
    };
    ScheduleInfo {
        spec,
        tenant: r.tenant.clone(),
        created_ms: r.created_ms,
        next_tick_ms: Cron::parse(&r.spec.cron)
            .ok()
            .and_then(|c| c.next_after(now.max(r.settled))),
        last_tick_ms: last.map(|(t, _)| t),
        last_job: last.map(|(_, id)| id),
        recent,
        last_error: handle.schedules().last_error(&r.key),
    }
}

fn err(message: String) -> WireError {
    WireError::new(ErrorCode::Err, message)
}

fn from_registry(e: ScheduleError) -> WireError {
    match e {
        ScheduleError::Io(_) => WireError::new(ErrorCode::Internal, e.to_string()),
        _ => err(e.to_string()),
    }
}
