//! ADDJOB queue body ms-timeout [REPLICATE n] [DELAY sec] [RETRY sec]
//! [TTL sec] [MAXLEN n] [ASYNC], plus wasque's options for Wasm jobs:
//! [MODULE sha256] [FUEL n] [MEMORY bytes] [DEADLINE ms] [PRIORITY 0-9]
//! [GROUP key] [ARG a]... [NOCACHE] [ASYNCKEY key], a retry policy:
//! [MAXATTEMPTS n] [BACKOFF fixed|exp] [BACKOFF-MS ms] [BACKOFF-MAX-MS ms]
//! [RETRY-ON exit:3,node-loss,...] (any of them gives the job a policy,
//! the others at their defaults; see `cmd/life.rs`), and
//! [IDEMPOTENCY key] (1 to 256 bytes: a second add with the key to the
//! queue answers the first job's id; `engine/idem.rs`) with
//! [IDEMPOTENCY-WINDOW sec] (how long the key outlives its job; default
//! the node's `idempotency-window`), and [AFTER id [id ...]] or
//! [AFTER-ANY id [id ...]] (run once those jobs have ended; the ids run
//! up to the next argument that is not a job id; `engine/after.rs`).

use super::{Action, Args, Render, syntax};
use crate::api::{AddJob, Command, bounds};
use crate::job::ModuleHash;
use crate::net::resp::frame::Frame;

pub fn parse(a: &Args) -> Result<Action, Frame> {
    let queue = a.text(1)?;
    let mut job = AddJob::new(queue, a.get(2).to_vec());
    job.timeout_ms = timeout(a, 3)?;
    let mut i = 4;
    let mut retry = None;
    while i < a.len() {
        let has_value = i + 1 < a.len();
        let opt = String::from_utf8_lossy(a.get(i)).to_ascii_lowercase();
        let value = |msg: &str, ok: &dyn Fn(i64) -> bool| -> Result<i64, Frame> {
            match a.int(i + 1) {
                Ok(n) if ok(n) => Ok(n),
                _ => Err(Frame::error("ERR", msg)),
            }
        };
        match opt.as_str() {
            "replicate" if has_value => {
                let n = value("REPLICATE must be between 1 and 65535", &|n| {
                    (1..=65535).contains(&n)
                })?;
                job.replicate = Some(n as u32);
            }
            "ttl" if has_value => {
                let n = value("TTL must be a number > 0", &|n| n > 0)? as u64;
                job.ttl_secs = Some(secs("TTL", n)?);
            }
            "retry" if has_value => {
                let n = value("RETRY time must be a non negative number", &|n| n >= 0)? as u64;
                job.retry_secs = Some(secs("RETRY", n)?);
            }
            "delay" if has_value => {
                let n = value("DELAY time must be a non negative number", &|n| n >= 0)? as u64;
                job.delay_secs = Some(secs("DELAY", n)?);
            }
            "maxlen" if has_value => {
                job.maxlen = Some(value("MAXLEN must be a positive number", &|n| n > 0)? as u64);
            }
            "module" if has_value => {
                let spec = std::str::from_utf8(a.get(i + 1)).unwrap_or("");
                // 64 hex digits are a hash (a name never is); anything
                // else is a name, NAME@VERSION or NAME (the latest).
                if spec.len() == 64 && spec.bytes().all(|b| b.is_ascii_hexdigit()) {
                    job.module = Some(
                        spec.parse::<ModuleHash>()
                            .map_err(|e| Frame::error("ERR", &e))?,
                    );
                } else {
                    let name = spec.split_once('@').map_or(spec, |(n, _)| n);
                    wasque_sdk::proto::check_module_name(name).map_err(|e| {
                        Frame::error(
                            "ERR",
                            &format!("MODULE takes a sha256 or NAME[@VERSION]: {e}"),
                        )
                    })?;
                    job.module_name = Some(spec.to_string());
                }
            }
            "fuel" if has_value => {
                job.limits.fuel = Some(value("FUEL must be a number > 0", &|n| n > 0)? as u64);
            }
            "memory" if has_value => {
                job.limits.memory_bytes =
                    Some(value("MEMORY must be a number of bytes > 0", &|n| n > 0)? as u64);
            }
            "deadline" if has_value => {
                job.limits.deadline_ms =
                    Some(value("DEADLINE must be a number of ms > 0", &|n| n > 0)? as u64);
            }
            "priority" if has_value => {
                job.priority = value("PRIORITY must be between 0 and 9", &|n| {
                    (0..=9).contains(&n)
                })? as u8;
            }
            "group" if has_value => job.group = Some(a.text(i + 1)?),
            "asynckey" if has_value => job.asynckey = Some(a.text(i + 1)?),
            "idempotency" if has_value => {
                let key = String::from_utf8(a.get(i + 1).to_vec())
                    .map_err(|_| Frame::error("ERR", "IDEMPOTENCY key must be UTF-8 text"))?;
                wasque_sdk::proto::check_idempotency_key(&key)
                    .map_err(|e| Frame::error("ERR", &e))?;
                job.idempotency_key = Some(key);
            }
            "idempotency-window" if has_value => {
                let n = value("IDEMPOTENCY-WINDOW must be a non negative number", &|n| {
                    n >= 0
                })? as u64;
                job.idempotency_window_secs = Some(secs("IDEMPOTENCY-WINDOW", n)?);
            }
            "arg" if has_value => job.args.push(a.text(i + 1)?),
            "after" | "after-any" if has_value => {
                let any = opt == "after-any";
                if job.after.as_ref().is_some_and(|s| s.any != any) {
                    return Err(Frame::error(
                        "ERR",
                        "AFTER and AFTER-ANY cannot be mixed in one add",
                    ));
                }
                let mut ids = Vec::new();
                let mut j = i + 1;
                while let Some(id) = (j < a.len())
                    .then(|| std::str::from_utf8(a.get(j)).ok())
                    .flatten()
                    .and_then(|t| t.parse::<wasque_sdk::proto::JobId>().ok())
                {
                    ids.push(id);
                    j += 1;
                }
                if ids.is_empty() {
                    let got = String::from_utf8_lossy(a.get(i + 1));
                    return Err(Frame::error(
                        "ERR",
                        &format!(
                            "{} needs job ids, and {got:?} is not one",
                            opt.to_uppercase()
                        ),
                    ));
                }
                let spec = job.after.get_or_insert(wasque_sdk::proto::AfterSpec {
                    ids: Vec::new(),
                    any,
                });
                spec.ids.extend(ids);
                spec.check().map_err(|e| Frame::error("ERR", &e))?;
                i = j;
                continue;
            }
            "async" => {
                job.asynchronous = true;
                i += 1;
                continue;
            }
            "nocache" => {
                job.nocache = true;
                i += 1;
                continue;
            }
            o if super::life::is_retry_option(o) => super::life::retry_option(a, i, &mut retry)?,
            _ => return Err(syntax()),
        }
        i += 2;
    }
    job.retry = super::life::checked(super::life::fix_cap(retry))?;
    if job.idempotency_window_secs.is_some() && job.idempotency_key.is_none() {
        return Err(Frame::error(
            "ERR",
            "IDEMPOTENCY-WINDOW needs an IDEMPOTENCY key",
        ));
    }
    Ok(Action::Engine(
        Command::AddJob(Box::new(job)),
        Render::AddJob,
    ))
}

/// A timeout in ms, Redis's way: an integer, not negative; and at most
/// `bounds::MAX_TIMEOUT_MS`.
pub(super) fn timeout(a: &Args, i: usize) -> Result<u64, Frame> {
    let n = a
        .int(i)
        .map_err(|_| Frame::error("ERR", "timeout is not an integer or out of range"))?;
    let n = u64::try_from(n).map_err(|_| Frame::error("ERR", "timeout is negative"))?;
    bounds::timeout_ms("timeout", n).map_err(|e| Frame::error("ERR", &e))
}

/// A TTL, RETRY or DELAY (already checked for sign) within
/// `bounds::MAX_JOB_SECS`.
fn secs(what: &str, n: u64) -> Result<u64, Frame> {
    bounds::secs(what, n).map_err(|e| Frame::error("ERR", &e))
}
