//! The ready order of one queue: higher priority first, then older first
//! (job ids are time-ordered UUIDv7, so the id itself is the age).

use std::cmp::Reverse;
use std::collections::BTreeSet;

use crate::job::JobId;

/// A job's place in a ready order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadyKey {
    pub priority: Reverse<u8>,
    pub id: JobId,
}

impl ReadyKey {
    pub fn new(priority: u8, id: JobId) -> ReadyKey {
        ReadyKey {
            priority: Reverse(priority),
            id,
        }
    }
}

/// Ready jobs in the order they are handed out.
pub type ReadyOrder = BTreeSet<ReadyKey>;
