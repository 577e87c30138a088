//! Jobs that run after others (`ADDJOB ... AFTER id [id ...]`): what an
//! add asks for, and what a waiting job's status says of each job it
//! comes after. Shared by the node, the SDK and the CLI.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::types::JobId;

/// Most jobs one job may come after.
pub const MAX_AFTER: usize = 64;

/// `AddJob::after`: the jobs named, and what their failure does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterSpec {
    /// The jobs this one waits for (1 to [`MAX_AFTER`], no repeats).
    pub ids: Vec<JobId>,
    /// `false` (`AFTER`): the job fails, class `dependency`, as soon as one
    /// of them failed. `true` (`AFTER-ANY`): it runs once each has ended,
    /// whatever the outcome.
    pub any: bool,
}

impl AfterSpec {
    /// `Err(message)` when the list cannot be taken.
    pub fn check(&self) -> Result<(), String> {
        if self.ids.is_empty() {
            return Err("AFTER needs at least one job id".into());
        }
        if self.ids.len() > MAX_AFTER {
            return Err(format!(
                "AFTER names {} jobs, more than the bound of {MAX_AFTER}",
                self.ids.len()
            ));
        }
        let mut seen = self.ids.clone();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("AFTER names job {} twice", w[0]));
        }
        Ok(())
    }
}

/// What one job named by `AFTER` has come to, as far as the waiting job's
/// node knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DepState {
    /// Not ended yet (or not heard of yet).
    Pending,
    /// Ended well: a Wasm job with a result, a plain job acknowledged, or
    /// a job no node holds any more (acknowledged and forgotten).
    Done,
    /// Ended badly; why (its error class and message, a dead letter, a
    /// cancel, a TTL that ran out).
    Failed(String),
}

impl DepState {
    /// `pending`, `done` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DepState::Pending => "pending",
            DepState::Done => "done",
            DepState::Failed(_) => "failed",
        }
    }
}

impl fmt::Display for DepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DepState::Failed(why) => write!(f, "failed: {why}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A job's `AFTER` list with what each named job has come to; kept with
/// the job (its record, peer frames) and shown by its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterStatus {
    pub any: bool,
    pub deps: Vec<(JobId, DepState)>,
}

impl AfterStatus {
    /// Every named job pending.
    pub fn new(spec: &AfterSpec) -> AfterStatus {
        AfterStatus {
            any: spec.any,
            deps: spec.ids.iter().map(|id| (*id, DepState::Pending)).collect(),
        }
    }

    /// `{"any": bool, "jobs": [{"id", "state", "error"?}]}` for a job's
    /// JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        let jobs: Vec<serde_json::Value> = self
            .deps
            .iter()
            .map(|(id, s)| {
                let mut j = serde_json::json!({"id": id.to_string(), "state": s.as_str()});
                if let DepState::Failed(why) = s {
                    j["error"] = why.as_str().into();
                }
                j
            })
            .collect();
        serde_json::json!({"any": self.any, "jobs": jobs})
    }

    /// The named jobs not ended yet.
    pub fn pending(&self) -> impl Iterator<Item = JobId> + '_ {
        self.deps
            .iter()
            .filter(|(_, s)| *s == DepState::Pending)
            .map(|(id, _)| *id)
    }

    /// Records what `id` came to; `false` if it is not named or its end
    /// was already known (an end is never taken back).
    pub fn settle(&mut self, id: JobId, state: DepState) -> bool {
        match self.deps.iter_mut().find(|(d, _)| *d == id) {
            Some((_, s)) if *s == DepState::Pending && state != DepState::Pending => {
                *s = state;
                true
            }
            _ => false,
        }
    }

    /// `None` while the job must wait; `Some(Ok(()))` when it may run;
    /// `Some(Err(why))` when it fails without running (a named job failed
    /// and this is not `AFTER-ANY`).
    pub fn outcome(&self) -> Option<Result<(), String>> {
        if !self.any
            && let Some((id, DepState::Failed(why))) = self
                .deps
                .iter()
                .find(|(_, s)| matches!(s, DepState::Failed(_)))
        {
            return Some(Err(format!("job {id} {FAILED_SEP}{}", root_cause(why))));
        }
        if self.pending().next().is_some() {
            return None;
        }
        Some(Ok(()))
    }
}

/// Between the named job and why it failed, in a dependency failure's
/// message.
const FAILED_SEP: &str = "it comes after failed: ";

/// The longest cause a dependency failure's message quotes, in bytes.
const MAX_CAUSE: usize = 1024;

/// Why a named job failed, as the message of the job waiting for it
/// quotes it: a failure that came down a chain is quoted by its first
/// cause and the job at the chain's start, not nested once per link, so
/// a message stays short however long the chain (nesting made a chain of
/// n jobs cost n² bytes).
fn root_cause(why: &str) -> String {
    const CHAIN: &str = ", first in the chain)";
    let flat = match why
        .strip_prefix("dependency: job ")
        .and_then(|rest| rest.split_once(&format!(" {FAILED_SEP}")))
    {
        Some((_, cause)) if cause.ends_with(CHAIN) => cause.to_string(),
        Some((first, cause)) => format!("{cause} (job {first}{CHAIN}"),
        None => why.to_string(),
    };
    if flat.len() <= MAX_CAUSE {
        return flat;
    }
    let mut end = MAX_CAUSE;
    while !flat.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &flat[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> JobId {
        JobId::compose(1_700_000_000_000, n.into(), 1, false, 60, 0)
    }

    #[test]
    fn check_refuses_empty_long_and_repeated_lists() {
        let spec = |ids: Vec<JobId>| AfterSpec { ids, any: false };
        assert!(spec(vec![]).check().is_err());
        assert!(
            spec(vec![id(1), id(1)])
                .check()
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            spec((0..=MAX_AFTER as u8).map(id).collect())
                .check()
                .is_err()
        );
        assert!(spec(vec![id(1), id(2)]).check().is_ok());
    }

    #[test]
    fn outcome_waits_for_all_and_fails_on_the_first_failure() {
        let mut s = AfterStatus::new(&AfterSpec {
            ids: vec![id(1), id(2)],
            any: false,
        });
        assert_eq!(s.outcome(), None);
        assert!(s.settle(id(1), DepState::Done));
        assert!(
            !s.settle(id(1), DepState::Failed("x".into())),
            "an end stays"
        );
        assert_eq!(s.outcome(), None);
        assert!(s.settle(id(2), DepState::Failed("trap".into())));
        let why = s.outcome().unwrap().unwrap_err();
        assert!(
            why.contains(&id(2).to_string()) && why.contains("trap"),
            "{why}"
        );
        // AFTER-ANY: a failure is an end like any other.
        s.any = true;
        assert_eq!(s.outcome(), Some(Ok(())));
    }

    #[test]
    fn a_failure_down_a_chain_is_quoted_by_its_first_cause_not_nested() {
        // Job 2 runs after 1, 3 after 2, and so on; 1 traps.
        let mut why = "trap: unreachable".to_string();
        let mut messages = Vec::new();
        for n in 1..=20u8 {
            let mut s = AfterStatus::new(&AfterSpec {
                ids: vec![id(n)],
                any: false,
            });
            assert!(s.settle(id(n), DepState::Failed(why.clone())));
            let msg = s.outcome().unwrap().unwrap_err();
            why = format!("dependency: {msg}");
            messages.push(msg);
        }
        assert_eq!(
            messages[0],
            format!("job {} it comes after failed: trap: unreachable", id(1))
        );
        let first = format!("trap: unreachable (job {}, first in the chain)", id(1));
        assert_eq!(
            messages[1],
            format!("job {} it comes after failed: {first}", id(2))
        );
        assert_eq!(
            messages[19],
            format!("job {} it comes after failed: {first}", id(20))
        );
        // A long cause is cut.
        let long = "x".repeat(5000);
        let mut s = AfterStatus::new(&AfterSpec {
            ids: vec![id(1)],
            any: false,
        });
        s.settle(id(1), DepState::Failed(long));
        let msg = s.outcome().unwrap().unwrap_err();
        assert!(msg.len() < 1200 && msg.ends_with('…'), "{}", msg.len());
    }

    #[test]
    fn a_failure_decides_before_the_others_end() {
        let mut s = AfterStatus::new(&AfterSpec {
            ids: vec![id(1), id(2)],
            any: false,
        });
        s.settle(id(2), DepState::Failed("cancelled".into()));
        assert!(s.outcome().unwrap().is_err());
    }
}
