//! wasque's retry and dead-letter commands: ADDJOB's retry options,
//! `DLQ LIST queue [COUNT n]`, `DLQ REQUEUE queue [id..|ALL]`,
//! `DLQ PURGE queue`, and `QRETRY queue [MAXATTEMPTS n ...|NONE]` (a
//! queue's default retry policy; with no option it answers the current
//! one as words, empty when none).

use super::{Action, Args, Render, syntax};
use crate::api::{Command, Dlq, DlqOp};
use crate::job::{Backoff, RetryPolicy};
use crate::net::resp::frame::Frame;
use wasque_sdk::proto::retry::parse_retry_on;

/// Whether `opt` (lowercased) is one of ADDJOB's retry options.
pub fn is_retry_option(opt: &str) -> bool {
    matches!(
        opt,
        "maxattempts" | "backoff" | "backoff-ms" | "backoff-max-ms" | "retry-on"
    )
}

/// Applies the retry option at word `i` (and its value at `i + 1`) to
/// `p`, created with the defaults on first use.
pub fn retry_option(a: &Args, i: usize, p: &mut Option<RetryPolicy>) -> Result<(), Frame> {
    let opt = String::from_utf8_lossy(a.get(i)).to_ascii_lowercase();
    if i + 1 >= a.len() {
        return Err(syntax());
    }
    let p = p.get_or_insert_with(|| RetryPolicy::new(1));
    let num = |what: &str| {
        a.uint(i + 1)
            .map_err(|_| Frame::error("ERR", &format!("{what} must be a number >= 0")))
    };
    match opt.as_str() {
        "maxattempts" => {
            let n = num("MAXATTEMPTS")?;
            p.max_attempts = u32::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| Frame::error("ERR", "MAXATTEMPTS must be between 1 and 1000"))?;
        }
        "backoff" => {
            let w = a.text(i + 1)?;
            p.backoff = Backoff::parse(&w).ok_or_else(|| {
                Frame::error("ERR", &format!("unknown BACKOFF '{w}': fixed or exp"))
            })?;
        }
        "backoff-ms" => p.base_ms = num("BACKOFF-MS")?,
        "backoff-max-ms" => p.max_ms = num("BACKOFF-MAX-MS")?,
        "retry-on" => {
            p.retry_on = parse_retry_on(&a.text(i + 1)?).map_err(|e| Frame::error("ERR", &e))?;
        }
        _ => return Err(syntax()),
    }
    Ok(())
}

/// The whole policy checked, the bounds' message as the error.
pub fn checked(p: Option<RetryPolicy>) -> Result<Option<RetryPolicy>, Frame> {
    if let Some(p) = &p {
        // A base above the default cap raises the cap with it.
        p.check().map_err(|e| Frame::error("ERR", &e))?;
    }
    Ok(p)
}

/// `QRETRY queue [options..|NONE]`.
pub fn qretry(a: &Args) -> Result<Action, Frame> {
    let queue = a.text(1)?;
    if queue.is_empty() {
        return Err(Frame::error("ERR", "queue name is empty"));
    }
    let set = if a.len() == 2 {
        None
    } else if a.len() == 3 && a.is(2, "none") {
        Some(None)
    } else {
        let mut p = None;
        let mut i = 2;
        while i < a.len() {
            let opt = String::from_utf8_lossy(a.get(i)).to_ascii_lowercase();
            if !is_retry_option(&opt) {
                return Err(Frame::error(
                    "ERR",
                    "syntax error: QRETRY queue [MAXATTEMPTS n] [BACKOFF fixed|exp] [BACKOFF-MS ms] [BACKOFF-MAX-MS ms] [RETRY-ON list] | NONE",
                ));
            }
            retry_option(a, i, &mut p)?;
            i += 2;
        }
        Some(checked(fix_cap(p))?)
    };
    Ok(Action::Engine(
        Command::QRetry { queue, set },
        Render::Count,
    ))
}

/// A policy whose base was set above the default cap (and whose cap was
/// not set) gets a cap equal to its base, so `BACKOFF-MS 120000` alone
/// is not refused for the default 60 s cap.
pub fn fix_cap(p: Option<RetryPolicy>) -> Option<RetryPolicy> {
    p.map(|mut p| {
        if p.max_ms < p.base_ms && p.max_ms == RetryPolicy::new(1).max_ms {
            p.max_ms = p.base_ms;
        }
        p
    })
}

/// `DLQ LIST queue [COUNT n]`, `DLQ REQUEUE queue [id..|ALL]`,
/// `DLQ PURGE queue`.
pub fn dlq(a: &Args) -> Result<Action, Frame> {
    let usage = || {
        Frame::error(
            "ERR",
            "syntax error: DLQ LIST queue [COUNT n] | DLQ REQUEUE queue [id..|ALL] | DLQ PURGE queue",
        )
    };
    if a.len() < 3 {
        return Err(usage());
    }
    let queue = a.text(2)?;
    if queue.is_empty() {
        return Err(Frame::error("ERR", "queue name is empty"));
    }
    let (op, render) = if a.is(1, "list") {
        let count = match a.len() {
            3 => 100,
            5 if a.is(3, "count") => {
                let n = a.uint(4)?;
                u32::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| Frame::error("ERR", "COUNT must be a number > 0"))?
            }
            _ => return Err(usage()),
        };
        (DlqOp::List { count }, Render::Dead)
    } else if a.is(1, "requeue") {
        let ids = if a.len() == 3 || (a.len() == 4 && a.is(3, "all")) {
            Vec::new()
        } else {
            a.ids(3)?
        };
        (DlqOp::Requeue { ids }, Render::Count)
    } else if a.is(1, "purge") && a.len() == 3 {
        (DlqOp::Purge, Render::Count)
    } else {
        return Err(usage());
    };
    Ok(Action::Engine(
        Command::Dlq(Box::new(Dlq {
            queue,
            op,
            key: None,
        })),
        render,
    ))
}
