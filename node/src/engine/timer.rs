//! The engine's timers: one ordered table of (when, what). Entries are
//! removed exactly when what they guard goes away, so the table's size
//! follows the live jobs and waiters.

use std::collections::BTreeSet;

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
}

#[derive(Debug, Default)]
pub struct Timers {
    table: BTreeSet<(UnixMs, Timer)>,
}

impl Timers {
    pub fn set(&mut self, at: UnixMs, t: Timer) {
        self.table.insert((at, t));
    }

    pub fn cancel(&mut self, at: UnixMs, t: Timer) {
        self.table.remove(&(at, t));
    }

    /// When the next timer fires.
    pub fn next(&self) -> Option<UnixMs> {
        self.table.first().map(|(at, _)| *at)
    }

    /// Takes the next timer due at `now` or earlier.
    pub fn pop_due(&mut self, now: UnixMs) -> Option<Timer> {
        match self.table.first() {
            Some((at, _)) if *at <= now => self.table.pop_first().map(|(_, t)| t),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }
}
