//! The engine's timers: an ordered table of (when, what), and beside it
//! the jobs' TTL ends, which are most timers (every job has one), kept as
//! sets of ids per slot of 128 ms: half the memory of table entries, and
//! a TTL end fires at most a slot late (Disque's own cron is not exact
//! either). Entries are removed exactly when what they guard goes away,
//! so their number follows the live jobs and waiters.

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::HashSet;

use super::effect::RequestId;
use crate::job::{JobId, UnixMs};

/// What happens when a timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// A delayed job becomes ready.
    Ready(JobId),
    /// A job's TTL ends.
    Expire(JobId),
    /// An unacknowledged delivery is queued again.
    Requeue(JobId),
    /// A blocked request gives up waiting.
    WaitTimeout(RequestId),
    /// A synchronous add's replication deadline.
    ReplTimeout(JobId),
    /// A holder that announced a re-queue queues the job now.
    WillQueue(JobId),
    /// Cluster housekeeping (acks, federation, module fetches).
    ClusterTick,
    /// Idempotency keys whose window ended are forgotten (`idem.rs`).
    Tombstones,
    /// Jobs waiting for others held elsewhere ask about them again
    /// (`after.rs`).
    AfterPoll,
}

/// TTL ends are kept by slot of this many ms (a power of two) and fire at
/// the slot's last ms: a job is forgotten at most this late.
pub const EXPIRY_SLOT_MS: u64 = 1 << EXPIRY_SHIFT;
const EXPIRY_SHIFT: u32 = 7;

#[derive(Debug, Default)]
pub struct Timers {
    table: BTreeSet<(UnixMs, Timer)>,
    /// Every job has a TTL, so these are most timers: kept apart, a set of
    /// ids per slot, at about 30 bytes a job instead of 60 in the table.
    expiry: BTreeMap<u64, HashSet<JobId>>,
    expiries: usize,
    /// The ids of slots already due, handed out one at a time. One may
    /// have been removed meanwhile: the engine checks the job's TTL.
    due: Vec<JobId>,
}

fn slot(at: UnixMs) -> u64 {
    at >> EXPIRY_SHIFT
}

fn slot_fires_at(slot: u64) -> UnixMs {
    (slot + 1) * EXPIRY_SLOT_MS - 1
}

impl Timers {
    pub fn set(&mut self, at: UnixMs, t: Timer) {
        if let Timer::Expire(id) = t {
            if self.expiry.entry(slot(at)).or_default().insert(id) {
                self.expiries += 1;
            }
            return;
        }
        self.table.insert((at, t));
    }

    pub fn cancel(&mut self, at: UnixMs, t: Timer) {
        if let Timer::Expire(id) = t {
            let s = slot(at);
            if let Some(ids) = self.expiry.get_mut(&s) {
                if ids.remove(&id) {
                    self.expiries -= 1;
                }
                if ids.is_empty() {
                    self.expiry.remove(&s);
                }
            }
            return;
        }
        self.table.remove(&(at, t));
    }

    /// When the next timer fires.
    pub fn next(&self) -> Option<UnixMs> {
        if !self.due.is_empty() {
            return Some(0);
        }
        let table = self.table.first().map(|(at, _)| *at);
        let expiry = self.expiry.keys().next().map(|s| slot_fires_at(*s));
        match (table, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the next timer due at `now` or earlier.
    pub fn pop_due(&mut self, now: UnixMs) -> Option<Timer> {
        if let Some(id) = self.due.pop() {
            return Some(Timer::Expire(id));
        }
        let table = self
            .table
            .first()
            .map(|(at, _)| *at)
            .filter(|at| *at <= now);
        let expiry = self
            .expiry
            .keys()
            .next()
            .copied()
            .filter(|s| slot_fires_at(*s) <= now);
        match (table, expiry) {
            (Some(at), Some(s)) if at <= slot_fires_at(s) => self.pop_table(),
            (_, Some(s)) => {
                let ids = self.expiry.remove(&s).unwrap_or_default();
                self.expiries -= ids.len();
                self.due.extend(ids);
                self.due.pop().map(Timer::Expire)
            }
            (Some(_), None) => self.pop_table(),
            (None, None) => None,
        }
    }

    fn pop_table(&mut self) -> Option<Timer> {
        self.table.pop_first().map(|(_, t)| t)
    }

    pub fn len(&self) -> usize {
        self.table.len() + self.expiries + self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> JobId {
        JobId::compose(1_700_000_000_000 + n, 0, 1, false, 60, 0)
    }

    #[test]
    fn timers_fire_in_time_order_and_ttl_ends_within_a_slot() {
        let mut t = Timers::default();
        t.set(1000, Timer::Ready(id(1)));
        t.set(1001, Timer::Expire(id(2)));
        t.set(1002, Timer::Expire(id(3)));
        t.set(5000, Timer::Expire(id(4)));
        t.cancel(1002, Timer::Expire(id(3)));
        assert_eq!(t.len(), 3);
        assert_eq!(t.pop_due(999), None);
        assert_eq!(t.pop_due(1000), Some(Timer::Ready(id(1))));
        // The TTL end at 1001 fires by the end of its slot, not before 1001.
        assert_eq!(t.pop_due(1001), None);
        let fires = t.next().expect("a timer");
        assert!((1001..1001 + EXPIRY_SLOT_MS).contains(&fires), "{fires}");
        assert_eq!(t.pop_due(fires), Some(Timer::Expire(id(2))));
        assert_eq!(t.pop_due(fires), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_due(5000 + EXPIRY_SLOT_MS), Some(Timer::Expire(id(4))));
        assert_eq!(t.len(), 0);
        assert_eq!(t.next(), None);
    }
}
