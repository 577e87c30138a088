//! One schedule's record as every node keeps it and peers exchange it:
//! what the client gave (`ScheduleSpec`), who owns it, a version and a
//! tombstone for removal (as tenant records have), and the ticks fired so
//! far, which only grow (merged as a union, `settled` by max).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasque_sdk::proto::{JobId, ScheduleSpec};

use crate::job::UnixMs;

/// Ticks kept at or below `settled`, for `SCHEDULE SHOW` (the ones above
/// it are all kept: the firing needs them).
pub const HISTORY: usize = 64;

/// Most ticks one record keeps; past it the oldest go (a dense
/// expression with a long window).
pub const MAX_FIRED: usize = 4096;

/// A schedule's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// The registry key: the name, prefixed `TENANT/` for a tenant's.
    pub key: String,
    /// The tenant that made it (`None`: the admin). Its jobs are added as
    /// the tenant's, in its queues and under its quotas.
    pub tenant: Option<String>,
    /// As given; `spec.name` is the name without the tenant prefix.
    pub spec: ScheduleSpec,
    pub created_ms: UnixMs,
    /// Grows with every change of the spec (made, removed): the higher
    /// version wins a merge.
    pub version: u64,
    pub removed: bool,
    /// Every tick at or below this one was dealt with: fired, or given up
    /// by the missed-tick policy. Starts at the creation time.
    pub settled: UnixMs,
    /// Ticks fired, with the job each made.
    pub fired: BTreeMap<UnixMs, JobId>,
}

impl ScheduleRecord {
    /// The latest tick fired, and its job.
    pub fn last(&self) -> Option<(UnixMs, JobId)> {
        self.fired.iter().next_back().map(|(t, id)| (*t, *id))
    }

    /// Takes a peer's copy of the same key. The higher version wins the
    /// spec (a removal, or a schedule made again under the name, replaces
    /// it whole); at equal versions the fired ticks are united (the lower
    /// job id wins a tick both fired, as idempotency keys settle two jobs
    /// with one key) and `settled` is the greater. Returns whether `self`
    /// changed.
    pub fn merge(&mut self, other: &ScheduleRecord) -> bool {
        if other.version > self.version {
            *self = other.clone();
            return true;
        }
        if other.version < self.version || self.removed {
            return false;
        }
        let mut changed = false;
        for (tick, id) in &other.fired {
            match self.fired.get_mut(tick) {
                Some(mine) if *id < *mine => {
                    *mine = *id;
                    changed = true;
                }
                Some(_) => {}
                None => {
                    self.fired.insert(*tick, *id);
                    changed = true;
                }
            }
        }
        if other.settled > self.settled {
            self.settled = other.settled;
            changed = true;
        }
        if changed {
            self.trim();
        }
        changed
    }

    /// Drops fired ticks nobody needs: at or below `settled` beyond the
    /// last [`HISTORY`], and any beyond [`MAX_FIRED`].
    pub fn trim(&mut self) {
        let below = self.fired.range(..=self.settled).count();
        if below > HISTORY {
            let drop: Vec<UnixMs> = self.fired.keys().take(below - HISTORY).copied().collect();
            for t in drop {
                self.fired.remove(&t);
            }
        }
        while self.fired.len() > MAX_FIRED {
            self.fired.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasque_sdk::proto::JobTemplate;

    fn rec(version: u64) -> ScheduleRecord {
        ScheduleRecord {
            key: "s".into(),
            tenant: None,
            spec: ScheduleSpec::new("s", "* * * * *", JobTemplate::new("q", "")),
            created_ms: 1000,
            version,
            removed: false,
            settled: 1000,
            fired: BTreeMap::new(),
        }
    }

    fn id(n: u128) -> JobId {
        JobId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn fired_ticks_unite_and_the_lower_id_wins_a_tick() {
        let (mut a, mut b) = (rec(5), rec(5));
        a.fired.insert(60_000, id(9));
        b.fired.insert(60_000, id(3));
        b.fired.insert(120_000, id(4));
        b.settled = 60_000;
        assert!(a.merge(&b));
        assert!(!a.merge(&b), "a second merge changes nothing");
        assert_eq!(a.fired.get(&60_000), Some(&id(3)));
        assert_eq!(a.last(), Some((120_000, id(4))));
        assert_eq!(a.settled, 60_000);
        assert!(b.merge(&a) || b == a);
        assert_eq!(a, b);
    }

    #[test]
    fn a_higher_version_replaces_and_a_removal_stays_removed() {
        let mut a = rec(5);
        a.fired.insert(60_000, id(1));
        let mut gone = rec(6);
        gone.removed = true;
        assert!(a.merge(&gone));
        assert!(a.removed && a.fired.is_empty());
        // The old incarnation's ticks do not bring it back.
        let mut old = rec(5);
        old.fired.insert(120_000, id(2));
        assert!(!a.merge(&old));
        assert!(a.removed);
    }

    #[test]
    fn trimming_keeps_the_history_and_every_unsettled_tick() {
        let mut a = rec(1);
        for i in 0..200u64 {
            a.fired.insert(i * 1000, id(i as u128 + 1));
        }
        a.settled = 149_000;
        a.trim();
        assert_eq!(a.fired.range(..=a.settled).count(), HISTORY);
        assert_eq!(a.fired.range(a.settled + 1..).count(), 50);
    }
}
