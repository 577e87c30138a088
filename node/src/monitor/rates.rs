//! Per-second counts of what happened, kept in fixed rings: rates per queue
//! over the last [`RATE_WINDOW_SECS`] full seconds, and the node's history
//! for the dashboard's throughput chart over [`HISTORY_SECS`].

use std::collections::{HashMap, VecDeque};

use crate::job::UnixMs;

/// Rates are averaged over this many full seconds.
pub const RATE_WINDOW_SECS: u64 = 10;
/// Seconds of node history kept for the throughput chart.
pub const HISTORY_SECS: u64 = 300;
/// Most queues whose rates are tracked at once; queues with no activity in
/// the window are forgotten by [`Rates::evict_idle`].
pub const MAX_RATE_QUEUES: usize = 10_000;
/// Recent failures kept for the dashboard.
pub const MAX_FAILURES: usize = 100;
/// Job events the feed carries per second, node-wide (failures have a
/// budget of their own, so a flood of successes never hides them); the
/// rest are only counted.
pub const FEED_JOB_EVENTS_PER_SEC: u32 = 200;

/// What happened in one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Second {
    /// Unix second.
    pub sec: u64,
    pub added: u64,
    pub finished: u64,
    pub failed: u64,
}

/// A ring of `len` seconds.
#[derive(Clone, Debug)]
struct Ring {
    slots: Vec<Second>,
}

impl Ring {
    fn new(len: u64) -> Ring {
        Ring {
            slots: vec![Second::default(); len as usize],
        }
    }

    fn bump(&mut self, sec: u64, f: impl FnOnce(&mut Second)) {
        let n = self.slots.len() as u64;
        let slot = &mut self.slots[(sec % n) as usize];
        if slot.sec != sec {
            *slot = Second {
                sec,
                ..Second::default()
            };
        }
        f(slot);
    }

    fn get(&self, sec: u64) -> Second {
        let n = self.slots.len() as u64;
        let slot = self.slots[(sec % n) as usize];
        if slot.sec == sec {
            slot
        } else {
            Second {
                sec,
                ..Second::default()
            }
        }
    }

    /// Sums the `last` full seconds before `now_sec`.
    fn sum(&self, now_sec: u64, last: u64) -> Second {
        let mut total = Second::default();
        for sec in now_sec.saturating_sub(last)..now_sec {
            let s = self.get(sec);
            total.added += s.added;
            total.finished += s.finished;
            total.failed += s.failed;
        }
        total
    }

    fn active_since(&self, sec: u64) -> bool {
        self.slots.iter().any(|s| s.sec >= sec)
    }
}

/// Events per second, averaged over the rate window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    pub added: f64,
    pub finished: f64,
    pub failed: f64,
}

/// A failed job, as the dashboard lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub at: UnixMs,
    pub id: String,
    pub queue: String,
    /// The full class (`exit(2)`, `out-of-fuel`, ...).
    pub class: String,
    pub run_us: u64,
}

/// The counts of one node.
#[derive(Debug)]
pub struct Rates {
    node: Ring,
    queues: HashMap<String, Ring>,
    failures: VecDeque<Failure>,
    feed: [Bucket; 2],
    feed_skipped: u64,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            node: Ring::new(HISTORY_SECS),
            queues: HashMap::new(),
            failures: VecDeque::with_capacity(MAX_FAILURES),
            feed: [Bucket::default(), Bucket::default()],
            feed_skipped: 0,
        }
    }
}

/// A token bucket of [`FEED_JOB_EVENTS_PER_SEC`], bursts of twice that.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    tokens: f64,
    at: UnixMs,
}

impl Bucket {
    fn take(&mut self, now: UnixMs) -> bool {
        let rate = f64::from(FEED_JOB_EVENTS_PER_SEC);
        let elapsed = now.saturating_sub(self.at) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(2.0 * rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Added,
    Finished,
    Failed,
}

impl Rates {
    pub fn count(&mut self, now: UnixMs, queue: &str, what: Count) {
        let sec = now / 1000;
        let f = |s: &mut Second| match what {
            Count::Added => s.added += 1,
            Count::Finished => s.finished += 1,
            Count::Failed => s.failed += 1,
        };
        self.node.bump(sec, f);
        if let Some(r) = self.queues.get_mut(queue) {
            r.bump(sec, f);
        } else if self.queues.len() < MAX_RATE_QUEUES {
            let mut r = Ring::new(RATE_WINDOW_SECS + 1);
            r.bump(sec, f);
            self.queues.insert(queue.to_string(), r);
        }
    }

    pub fn failed(&mut self, f: Failure) {
        if self.failures.len() == MAX_FAILURES {
            self.failures.pop_front();
        }
        self.failures.push_back(f);
    }

    /// The node's rates.
    pub fn node_rate(&self, now: UnixMs) -> Rate {
        rate(self.node.sum(now / 1000, RATE_WINDOW_SECS))
    }

    /// A queue's rates (zero for a queue with no recent activity).
    pub fn queue_rate(&self, now: UnixMs, queue: &str) -> Rate {
        self.queues
            .get(queue)
            .map(|r| rate(r.sum(now / 1000, RATE_WINDOW_SECS)))
            .unwrap_or_default()
    }

    /// The last `secs` full seconds of the node, oldest first.
    pub fn history(&self, now: UnixMs, secs: u64) -> Vec<Second> {
        let now_sec = now / 1000;
        let secs = secs.min(HISTORY_SECS - 1);
        (now_sec.saturating_sub(secs)..now_sec)
            .map(|s| self.node.get(s))
            .collect()
    }

    /// Recent failures, newest first.
    pub fn failures(&self) -> Vec<Failure> {
        self.failures.iter().rev().cloned().collect()
    }

    /// Whether the feed may carry one more job event now (`failure`: from
    /// the failures' own budget); counts the ones it may not.
    pub fn feed_take(&mut self, now: UnixMs, failure: bool) -> bool {
        let ok = self.feed[usize::from(failure)].take(now);
        if !ok {
            self.feed_skipped += 1;
        }
        ok
    }

    /// Job events left out of the feed since the last call.
    pub fn take_feed_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.feed_skipped)
    }

    /// Forgets the rates of queues with nothing in the window.
    pub fn evict_idle(&mut self, now: UnixMs) {
        let since = (now / 1000).saturating_sub(RATE_WINDOW_SECS);
        self.queues.retain(|_, r| r.active_since(since));
    }
}

fn rate(s: Second) -> Rate {
    let w = RATE_WINDOW_SECS as f64;
    Rate {
        added: s.added as f64 / w,
        finished: s.finished as f64 / w,
        failed: s.failed as f64 / w,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_average_full_seconds_of_the_window() {
        let mut r = Rates::default();
        let t0 = 1_700_000_000_000;
        for i in 0..20 {
            r.count(t0 + i * 100, "q", Count::Added);
        }
        r.count(t0 + 500, "q", Count::Failed);
        // Still inside the first two seconds: only full seconds count.
        assert_eq!(r.queue_rate(t0 + 1_500, "q").added, 1.0);
        assert_eq!(r.queue_rate(t0 + 2_000, "q").added, 2.0);
        assert_eq!(r.queue_rate(t0 + 2_000, "q").failed, 0.1);
        assert_eq!(r.node_rate(t0 + 2_000).added, 2.0);
        // The window slides past them.
        assert_eq!(r.queue_rate(t0 + 20_000, "q").added, 0.0);
        r.evict_idle(t0 + 20_000);
        assert!(r.queues.is_empty());
        let h = r.history(t0 + 2_000, 5);
        assert_eq!(h.len(), 5);
        assert_eq!(h.iter().map(|s| s.added).sum::<u64>(), 20);
    }

    #[test]
    fn the_feed_budget_caps_events_per_second() {
        let mut r = Rates::default();
        let t0 = 1_700_000_000_000;
        let passed = (0..10_000).filter(|_| r.feed_take(t0, false)).count();
        assert!(passed <= 2 * FEED_JOB_EVENTS_PER_SEC as usize, "{passed}");
        assert!(r.feed_take(t0, true), "failures have their own budget");
        assert_eq!(r.take_feed_skipped(), 10_000 - passed as u64);
        assert!(r.feed_take(t0 + 1_000, false), "refilled a second later");
    }

    #[test]
    fn failures_are_bounded_newest_first() {
        let mut r = Rates::default();
        for i in 0..(MAX_FAILURES as u64 + 5) {
            r.failed(Failure {
                at: i,
                id: i.to_string(),
                queue: "q".into(),
                class: "trap".into(),
                run_us: 1,
            });
        }
        let f = r.failures();
        assert_eq!(f.len(), MAX_FAILURES);
        assert_eq!(f[0].at, MAX_FAILURES as u64 + 4);
    }
}
