//! Retry policies and dead letters: how many times a job may run (or be
//! delivered), how long it waits between runs, which failures earn another
//! run, and what a job out of attempts carries into its queue's
//! dead-letter queue. Shared by the node, the SDK and the CLI, with one
//! text form for RESP and the command line.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::types::ErrorClass;

/// How long a job waits before its next attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backoff {
    /// Always the base delay.
    Fixed,
    /// The base delay doubled per failed attempt, capped at the maximum,
    /// then a random point in its upper half (jitter, so failed jobs that
    /// ran together do not all come back together).
    #[default]
    Exp,
}

impl Backoff {
    pub fn as_str(&self) -> &'static str {
        match self {
            Backoff::Fixed => "fixed",
            Backoff::Exp => "exp",
        }
    }

    pub fn parse(s: &str) -> Option<Backoff> {
        match s.to_ascii_lowercase().as_str() {
            "fixed" => Some(Backoff::Fixed),
            "exp" | "exponential" => Some(Backoff::Exp),
            _ => None,
        }
    }
}

/// A failure that earns another attempt: an error class of a finished run
/// (`exit:3`, `trap`, `out-of-fuel`, ...), or the loss of the node that
/// ran (or was handed) the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryOn {
    Class(ErrorClass),
    NodeLoss,
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryOn::NodeLoss => f.write_str("node-loss"),
            RetryOn::Class(ErrorClass::Exit(c)) => write!(f, "exit:{c}"),
            RetryOn::Class(c) => write!(f, "{c}"),
        }
    }
}

impl FromStr for RetryOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        if s == "node-loss" {
            return Ok(RetryOn::NodeLoss);
        }
        if let Some(code) = s.strip_prefix("exit:") {
            return code
                .parse()
                .map(|c| RetryOn::Class(ErrorClass::Exit(c)))
                .map_err(|_| format!("bad exit code in {s:?}: exit:N with N an integer"));
        }
        s.parse::<ErrorClass>()
            .map(RetryOn::Class)
            .map_err(|_| {
                format!(
                    "unknown failure {s:?}: exit:N, node-loss, trap, out-of-fuel, deadline, memory-limit, output-limit, module-missing or internal"
                )
            })
    }
}

/// A job's retry policy (ADDJOB `MAXATTEMPTS n [BACKOFF fixed|exp]
/// [BACKOFF-MS base] [BACKOFF-MAX-MS max] [RETRY-ON list]`, or its queue's
/// `QRETRY` default).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Runs (Wasm jobs) or deliveries (plain jobs) allowed, at least 1;
    /// past it the job goes to its queue's dead-letter queue.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// The first wait, ms.
    pub base_ms: u64,
    /// The longest wait, ms.
    pub max_ms: u64,
    /// The failures that earn another attempt; any other failure sends
    /// the job to the dead-letter queue at once.
    pub retry_on: Vec<RetryOn>,
}

/// Most attempts a policy may allow.
pub const MAX_ATTEMPTS: u32 = 1000;
/// Longest backoff a policy may ask for: one day.
pub const MAX_BACKOFF_MS: u64 = 86_400_000;

impl RetryPolicy {
    /// `max_attempts` with every other setting at its default: exponential
    /// backoff from 1 s up to 60 s, retrying after a lost node and after
    /// the classes a second run can change (`module-missing`, `internal`).
    pub fn new(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            backoff: Backoff::Exp,
            base_ms: 1000,
            max_ms: 60_000,
            retry_on: default_retry_on(),
        }
    }

    /// Whether a run that ended with `class` earns another attempt.
    pub fn retries(&self, class: ErrorClass) -> bool {
        self.retry_on.contains(&RetryOn::Class(class))
    }

    /// Whether a run lost with its node earns another attempt.
    pub fn retries_node_loss(&self) -> bool {
        self.retry_on.contains(&RetryOn::NodeLoss)
    }

    /// The wait before the next attempt after `failed` attempts (1 = the
    /// first run failed), before jitter: `base` (fixed) or
    /// `base * 2^(failed-1)` (exp), at most `max`.
    pub fn delay_ms(&self, failed: u32) -> u64 {
        let d = match self.backoff {
            Backoff::Fixed => self.base_ms,
            Backoff::Exp => {
                let shift = failed.saturating_sub(1).min(63);
                self.base_ms.saturating_mul(1u64 << shift)
            }
        };
        d.min(self.max_ms)
    }

    /// Checks the bounds; the message says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(format!("MAXATTEMPTS must be between 1 and {MAX_ATTEMPTS}"));
        }
        if self.base_ms > MAX_BACKOFF_MS || self.max_ms > MAX_BACKOFF_MS {
            return Err(format!("backoff must be at most {MAX_BACKOFF_MS} ms"));
        }
        if self.max_ms < self.base_ms {
            return Err("BACKOFF-MAX-MS must be at least BACKOFF-MS".into());
        }
        if self.retry_on.len() > 64 {
            return Err("RETRY-ON lists at most 64 failures".into());
        }
        Ok(())
    }

    /// The policy as words, the form RESP's QRETRY answers and ADDJOB
    /// takes: `MAXATTEMPTS n BACKOFF exp BACKOFF-MS b BACKOFF-MAX-MS m
    /// RETRY-ON list`.
    pub fn words(&self) -> Vec<String> {
        vec![
            "maxattempts".into(),
            self.max_attempts.to_string(),
            "backoff".into(),
            self.backoff.as_str().into(),
            "backoff-ms".into(),
            self.base_ms.to_string(),
            "backoff-max-ms".into(),
            self.max_ms.to_string(),
            "retry-on".into(),
            retry_on_text(&self.retry_on),
        ]
    }
}

/// What a job retried without a `RETRY-ON` list retries on.
pub fn default_retry_on() -> Vec<RetryOn> {
    vec![
        RetryOn::NodeLoss,
        RetryOn::Class(ErrorClass::ModuleMissing),
        RetryOn::Class(ErrorClass::Internal),
    ]
}

/// Parses `exit:3,exit:75,node-loss` (an empty string or `none`: retry
/// on nothing).
pub fn parse_retry_on(s: &str) -> Result<Vec<RetryOn>, String> {
    if s.trim().is_empty() || s.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    s.split(',').map(str::parse).collect()
}

/// The list's text form (`none` when empty).
pub fn retry_on_text(list: &[RetryOn]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A job's retry bookkeeping as `wasque show` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryStatus {
    pub policy: RetryPolicy,
    /// Attempts used, as counted by the holder that answers (see README,
    /// Retries: each holder counts its own).
    pub attempts: u32,
    /// Why the last attempt failed (empty if none did).
    pub last_error: String,
}

impl RetryStatus {
    /// The `retry` object of a job's JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "max_attempts": self.policy.max_attempts,
            "backoff": self.policy.backoff.as_str(),
            "backoff_ms": self.policy.base_ms,
            "backoff_max_ms": self.policy.max_ms,
            "retry_on": retry_on_text(&self.policy.retry_on),
            "attempts": self.attempts,
            "last_error": self.last_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_round_trips_and_refuses_nonsense() {
        let l = parse_retry_on("exit:3, exit:75,node-loss,trap,out-of-fuel").unwrap();
        assert_eq!(
            l,
            vec![
                RetryOn::Class(ErrorClass::Exit(3)),
                RetryOn::Class(ErrorClass::Exit(75)),
                RetryOn::NodeLoss,
                RetryOn::Class(ErrorClass::Trap),
                RetryOn::Class(ErrorClass::OutOfFuel),
            ]
        );
        assert_eq!(parse_retry_on(&retry_on_text(&l)).unwrap(), l);
        assert_eq!(parse_retry_on("none").unwrap(), vec![]);
        assert!(parse_retry_on("exit:x").is_err());
        assert!(parse_retry_on("sometimes").is_err());
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut p = RetryPolicy::new(5);
        p.base_ms = 100;
        p.max_ms = 500;
        let d: Vec<u64> = (1..=5).map(|k| p.delay_ms(k)).collect();
        assert_eq!(d, vec![100, 200, 400, 500, 500]);
        assert_eq!(p.delay_ms(u32::MAX), 500);
        p.backoff = Backoff::Fixed;
        assert_eq!(p.delay_ms(4), 100);
        assert!(p.check().is_ok());
        p.max_ms = 50;
        assert!(p.check().is_err());
        assert!(RetryPolicy::new(0).check().is_err());
    }
}
