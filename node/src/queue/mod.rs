//! Queues: per-queue ready order (priority first, then age) for plain jobs
//! (taken by external workers) and Wasm jobs (taken by this node's
//! executors), a round-robin over queues so that one busy queue does not
//! starve the executors' share of the others, the GETJOB clients blocked on
//! each queue (first come, first served), pause flags and Disque's per-queue
//! counters.
//!
//! A queue exists while it holds jobs, has blocked clients or is paused;
//! once it has none of these it is forgotten after [`QUEUE_IDLE_MS`] without
//! use (Disque evicts idle queues the same way), which [`Queues::collect`]
//! does a few at a time.

mod ready;

use std::collections::VecDeque;

use hashbrown::HashMap;

pub use ready::{ReadyKey, ReadyOrder};

use crate::job::{JobId, QueueName, UnixMs};

/// An empty, unpaused queue without blocked clients is forgotten after
/// this long without use (Disque: 5 minutes).
pub const QUEUE_IDLE_MS: UnixMs = 300_000;

/// A queue's pause flags, as Disque's `PAUSE` sets them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pause {
    /// ADDJOB is refused and retries do not re-queue.
    pub input: bool,
    /// GETJOB blocks even when jobs are ready.
    pub output: bool,
}

impl Pause {
    /// Disque's word for the state: `none`, `in`, `out` or `all`.
    pub fn as_str(&self) -> &'static str {
        match (self.input, self.output) {
            (false, false) => "none",
            (true, false) => "in",
            (false, true) => "out",
            (true, true) => "all",
        }
    }

    pub fn is_paused(&self) -> bool {
        self.input || self.output
    }
}

/// One named queue.
#[derive(Debug, Default)]
pub struct Queue {
    /// Plain jobs ready for an external worker.
    pub plain: ReadyOrder,
    /// Wasm jobs ready for an executor.
    pub wasm: ReadyOrder,
    pub pause: Pause,
    /// Request ids of the GETJOB clients blocked on this queue, oldest first.
    pub blocked: VecDeque<u64>,
    pub created_at: UnixMs,
    /// Last time a job went in or out.
    pub touched_at: UnixMs,
    /// Jobs queued, for any reason (add, delay over, retry, NACK, ENQUEUE).
    pub jobs_in: u64,
    /// Jobs taken out of the ready order to be delivered or run.
    pub jobs_out: u64,
    /// Jobs imported from peers (federation), for Disque's import rate.
    pub imports: ImportRate,
}

/// Jobs a queue imported from peers in the current and the previous
/// second (Disque's `QSCAN IMPORTRATE`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportRate {
    /// The second (unix ms / 1000) `current` counts.
    second: u64,
    current: u32,
    previous: u32,
    last: UnixMs,
}

impl ImportRate {
    pub fn note(&mut self, now: UnixMs) {
        let second = now / 1000;
        if second != self.second {
            self.previous = if second == self.second + 1 {
                self.current
            } else {
                0
            };
            self.second = second;
            self.current = 0;
        }
        self.current = self.current.saturating_add(1);
        self.last = now;
    }

    /// Jobs imported per second lately, rounded up; 0 once none came for
    /// 5 s (as Disque computes it, over at least 50 ms).
    pub fn per_second(&self, now: UnixMs) -> u64 {
        if self.last == 0 || now.saturating_sub(self.last) > 5_000 {
            return 0;
        }
        let start = (self.second * 1000).saturating_sub(if self.previous > 0 { 1000 } else { 0 });
        let elapsed = now.saturating_sub(start).max(50);
        let jobs = u64::from(self.previous) + u64::from(self.current);
        (jobs * 1000).div_ceil(elapsed)
    }
}

impl Queue {
    /// Jobs ready in this queue.
    pub fn len(&self) -> usize {
        self.plain.len() + self.wasm.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether nothing keeps the queue alive but recent use.
    fn is_collectable(&self) -> bool {
        self.is_empty() && self.blocked.is_empty() && !self.pause.is_paused()
    }
}

/// Every queue of the node.
#[derive(Debug, Default)]
pub struct Queues {
    queues: HashMap<QueueName, Queue>,
    /// Queues that have ready Wasm jobs, in the order executors visit them.
    wasm_turns: VecDeque<QueueName>,
    /// Queues that became collectable, with when; checked by `collect`.
    idle: VecDeque<(UnixMs, QueueName)>,
}

impl Queues {
    pub fn get(&self, name: &str) -> Option<&Queue> {
        self.queues.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Queue> {
        self.queues.get_mut(name)
    }

    /// The queue, created if it does not exist.
    pub fn entry(&mut self, name: &str, now: UnixMs) -> &mut Queue {
        if !self.queues.contains_key(name) {
            self.queues.insert(
                QueueName::from(name),
                Queue {
                    created_at: now,
                    touched_at: now,
                    ..Queue::default()
                },
            );
        }
        self.queues.get_mut(name).expect("inserted above")
    }

    /// The name as jobs should hold it: the queue's own allocation when the
    /// queue exists, so a million jobs of one queue share one name.
    pub fn intern(&self, name: &str) -> QueueName {
        match self.queues.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => QueueName::from(name),
        }
    }

    /// Number of queues this node knows (Disque's `registered_queues`).
    pub fn count(&self) -> usize {
        self.queues.len()
    }

    /// Every paused queue's name and flags, by name.
    pub fn paused(&self) -> Vec<(String, Pause)> {
        let mut all: Vec<(String, Pause)> = self
            .queues
            .iter()
            .filter(|(_, q)| q.pause.is_paused())
            .map(|(n, q)| (n.to_string(), q.pause))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Every queue, unordered.
    pub fn iter(&self) -> impl Iterator<Item = (&QueueName, &Queue)> {
        self.queues.iter()
    }

    /// Ready jobs in `name`.
    pub fn len_of(&self, name: &str) -> usize {
        self.queues.get(name).map_or(0, Queue::len)
    }

    /// Makes a job ready; returns whether GETJOB clients are blocked on
    /// the queue.
    pub fn push(&mut self, queue: &str, key: ReadyKey, wasm: bool, now: UnixMs) -> bool {
        let q = self.entry(queue, now);
        q.touched_at = now;
        q.jobs_in += 1;
        let first_wasm = wasm && q.wasm.is_empty() && !q.pause.output;
        if wasm {
            q.wasm.insert(key);
        } else {
            q.plain.insert(key);
        }
        let waiting = !q.blocked.is_empty();
        if first_wasm {
            let name = self.intern(queue);
            self.wasm_turns.push_back(name);
        }
        waiting
    }

    /// Removes a job from the ready order (it was deleted, acked, dequeued
    /// or expired while queued). Returns whether it was there.
    pub fn remove(&mut self, queue: &str, key: ReadyKey, wasm: bool) -> bool {
        let Some(q) = self.queues.get_mut(queue) else {
            return false;
        };
        let removed = if wasm {
            q.wasm.remove(&key)
        } else {
            q.plain.remove(&key)
        };
        if wasm && removed && q.wasm.is_empty() {
            self.wasm_turns.retain(|n| &**n != queue);
        }
        let touched = q.touched_at;
        self.note_if_idle(queue, touched);
        removed
    }

    /// The next Wasm job for an executor: queues take turns, and within a
    /// queue the highest priority, then the oldest, goes first. A queue
    /// paused in output leaves the turns until the pause is cleared.
    pub fn pop_wasm(&mut self, now: UnixMs) -> Option<JobId> {
        while let Some(name) = self.wasm_turns.pop_front() {
            let Some(q) = self.queues.get_mut(&name) else {
                continue;
            };
            if q.pause.output {
                continue;
            }
            let Some(key) = q.wasm.pop_first() else {
                continue;
            };
            q.jobs_out += 1;
            q.touched_at = now;
            if !q.wasm.is_empty() {
                self.wasm_turns.push_back(name.clone());
            }
            self.note_if_idle(&name, now);
            return Some(key.id);
        }
        None
    }

    /// Whether every queue with ready Wasm jobs belongs to no tenant (the
    /// fair share has nothing to decide).
    pub fn wasm_untenanted(&self) -> bool {
        self.wasm_turns.iter().all(|n| !n.contains('/'))
    }

    /// The tenant groups with ready Wasm jobs in the turns (a tenant's
    /// name, or `""` for queues of no tenant), each once.
    pub fn wasm_groups(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for name in &self.wasm_turns {
            let g = crate::tenant::tenant_of_queue(name).unwrap_or("");
            if !out.contains(&g) {
                out.push(g);
            }
        }
        out
    }

    /// [`Queues::pop_wasm`] among the queues of one tenant group only
    /// (`""`: queues of no tenant): the fair share (`engine/fair.rs`)
    /// picks the group, the queues of the group take turns as before.
    pub fn pop_wasm_in(&mut self, now: UnixMs, group: &str) -> Option<JobId> {
        for _ in 0..self.wasm_turns.len() {
            let name = self.wasm_turns.pop_front()?;
            if crate::tenant::tenant_of_queue(&name).unwrap_or("") != group {
                self.wasm_turns.push_back(name);
                continue;
            }
            let Some(q) = self.queues.get_mut(&name) else {
                continue;
            };
            if q.pause.output {
                continue;
            }
            let Some(key) = q.wasm.pop_first() else {
                continue;
            };
            q.jobs_out += 1;
            q.touched_at = now;
            if !q.wasm.is_empty() {
                self.wasm_turns.push_back(name.clone());
            }
            self.note_if_idle(&name, now);
            return Some(key.id);
        }
        None
    }

    /// The ready Wasm job of highest priority (then oldest) over every
    /// queue not paused in output: what a starving peer is sent first under
    /// the `priority` policy.
    pub fn pop_wasm_highest(&mut self, now: UnixMs) -> Option<JobId> {
        let (name, key) = self
            .queues
            .iter()
            .filter(|(_, q)| !q.pause.output)
            .filter_map(|(n, q)| q.wasm.first().map(|k| (n, *k)))
            .min_by_key(|(_, k)| *k)
            .map(|(n, k)| (n.clone(), k))?;
        let q = self.queues.get_mut(&name)?;
        q.wasm.remove(&key);
        q.jobs_out += 1;
        q.touched_at = now;
        if q.wasm.is_empty() {
            self.wasm_turns.retain(|n| *n != name);
        }
        self.note_if_idle(&name, now);
        Some(key.id)
    }

    /// The next plain job of `queue` for an external worker (none while the
    /// queue is paused in output).
    pub fn pop_plain(&mut self, queue: &str, now: UnixMs) -> Option<JobId> {
        let q = self.queues.get_mut(queue)?;
        if q.pause.output {
            return None;
        }
        let key = q.plain.pop_first()?;
        q.jobs_out += 1;
        q.touched_at = now;
        self.note_if_idle(queue, now);
        Some(key.id)
    }

    /// Puts a queue whose output pause was cleared back in the executors'
    /// turns if it has ready Wasm jobs.
    pub fn resume_wasm(&mut self, queue: &str) {
        if self.queues.get(queue).is_some_and(|q| !q.wasm.is_empty())
            && !self.wasm_turns.iter().any(|n| &**n == queue)
        {
            let name = self.intern(queue);
            self.wasm_turns.push_back(name);
        }
    }

    /// Notes that a queue may have become collectable (call after removing
    /// a blocked client or clearing a pause).
    pub fn note_if_idle(&mut self, name: &str, now: UnixMs) {
        if self.queues.get(name).is_some_and(Queue::is_collectable) {
            let name = self.intern(name);
            self.idle.push_back((now, name));
        }
    }

    /// Forgets up to `budget` queues that have been collectable and unused
    /// for [`QUEUE_IDLE_MS`]. Cheap when there is nothing to do.
    pub fn collect(&mut self, now: UnixMs, budget: usize) {
        for _ in 0..budget {
            match self.idle.front() {
                Some((at, _)) if at.saturating_add(QUEUE_IDLE_MS) <= now => {}
                _ => return,
            }
            let Some((_, name)) = self.idle.pop_front() else {
                return;
            };
            if let Some(q) = self.queues.get(&name)
                && q.is_collectable()
                && q.touched_at.saturating_add(QUEUE_IDLE_MS) <= now
            {
                self.queues.remove(&name);
            }
        }
    }

    /// Forgets up to `budget` queues that have been collectable and unused
    /// for `idle_ms` (shorter than [`QUEUE_IDLE_MS`] under memory
    /// pressure). Queues skipped as too young stay noted for later.
    pub fn collect_idle(&mut self, now: UnixMs, budget: usize, idle_ms: UnixMs) {
        for _ in 0..budget {
            match self.idle.front() {
                Some((at, _)) if at.saturating_add(idle_ms) <= now => {}
                _ => return,
            }
            let Some((at, name)) = self.idle.pop_front() else {
                return;
            };
            match self.queues.get(&name) {
                Some(q) if q.is_collectable() && q.touched_at.saturating_add(idle_ms) <= now => {
                    self.queues.remove(&name);
                }
                // Used since it was noted: noted again when it is next idle
                // (or, if still collectable, kept for the regular pass).
                Some(q) if q.is_collectable() => self.idle.push_back((at.max(q.touched_at), name)),
                _ => {}
            }
        }
    }

    /// Counts a job imported from a peer into `queue`.
    pub fn note_import(&mut self, queue: &str, now: UnixMs) {
        self.entry(queue, now).imports.note(now);
    }

    /// Forgets every queue (DEBUG FLUSHALL).
    pub fn clear(&mut self) {
        self.queues.clear();
        self.wasm_turns.clear();
        self.idle.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobId;

    fn id(ms: u64) -> JobId {
        JobId::compose(ms, 0, 1, false, 60, 0)
    }

    #[test]
    fn priority_then_age() {
        let mut q = Queues::default();
        q.push("a", ReadyKey::new(0, id(1)), true, 0);
        q.push("a", ReadyKey::new(5, id(3)), true, 0);
        q.push("a", ReadyKey::new(5, id(2)), true, 0);
        assert_eq!(q.pop_wasm(0), Some(id(2)));
        assert_eq!(q.pop_wasm(0), Some(id(3)));
        assert_eq!(q.pop_wasm(0), Some(id(1)));
        assert_eq!(q.pop_wasm(0), None);
        assert_eq!(q.get("a").map(|q| q.jobs_out), Some(3));
    }

    #[test]
    fn queues_take_turns_for_executors() {
        let mut q = Queues::default();
        for ms in 0..3 {
            q.push("hot", ReadyKey::new(0, id(ms)), true, 0);
        }
        q.push("cold", ReadyKey::new(0, id(10)), true, 0);
        assert_eq!(q.pop_wasm(0), Some(id(0)));
        assert_eq!(q.pop_wasm(0), Some(id(10)));
        assert_eq!(q.pop_wasm(0), Some(id(1)));
        assert_eq!(q.pop_wasm(0), Some(id(2)));
    }

    #[test]
    fn plain_and_wasm_are_separate() {
        let mut q = Queues::default();
        q.push("a", ReadyKey::new(0, id(1)), false, 0);
        assert_eq!(q.pop_wasm(0), None);
        assert_eq!(q.len_of("a"), 1);
        assert!(q.remove("a", ReadyKey::new(0, id(1)), false));
        assert_eq!(q.pop_plain("a", 0), None);
    }

    #[test]
    fn paused_output_holds_jobs_back() {
        let mut q = Queues::default();
        q.push("a", ReadyKey::new(0, id(1)), false, 0);
        q.push("a", ReadyKey::new(0, id(2)), true, 0);
        q.entry("a", 0).pause.output = true;
        assert_eq!(q.pop_plain("a", 0), None);
        assert_eq!(q.pop_wasm(0), None);
        q.entry("a", 0).pause.output = false;
        q.resume_wasm("a");
        assert_eq!(q.pop_plain("a", 0), Some(id(1)));
        assert_eq!(q.pop_wasm(0), Some(id(2)));
    }

    #[test]
    fn import_rates_count_the_last_seconds() {
        let mut r = super::ImportRate::default();
        assert_eq!(r.per_second(10_000), 0);
        for _ in 0..4 {
            r.note(10_100);
        }
        assert_eq!(
            r.per_second(10_100),
            40,
            "4 jobs in the 100 ms of this second"
        );
        assert_eq!(r.per_second(11_000), 4);
        r.note(11_200);
        assert_eq!(r.per_second(11_500), 4, "5 jobs over 1.5 s, rounded up");
        assert_eq!(r.per_second(16_300), 0, "none for 5 s");
    }

    #[test]
    fn idle_empty_queues_are_collected_later() {
        let mut q = Queues::default();
        q.push("a", ReadyKey::new(0, id(1)), false, 1_000);
        assert_eq!(q.pop_plain("a", 2_000), Some(id(1)));
        q.collect(2_000 + QUEUE_IDLE_MS - 1, 10);
        assert_eq!(q.count(), 1, "kept while recently used");
        q.collect(2_000 + QUEUE_IDLE_MS, 10);
        assert_eq!(q.count(), 0);
        // A paused queue is never collected.
        q.entry("p", 0).pause.input = true;
        q.note_if_idle("p", 0);
        q.collect(10 * QUEUE_IDLE_MS, 10);
        assert_eq!(q.count(), 1);
    }
}
