//! Queues: per-queue ready order (priority first, then age) for plain jobs
//! (taken by external workers) and Wasm jobs (taken by this node's
//! executors), and a round-robin over queues so that one busy queue does not
//! starve the executors' share of the others.

mod ready;

use std::collections::{HashMap, VecDeque};

pub use ready::{ReadyKey, ReadyOrder};

use crate::job::JobId;

/// One named queue.
#[derive(Debug, Default)]
pub struct Queue {
    /// Plain jobs ready for an external worker.
    pub plain: ReadyOrder,
    /// Wasm jobs ready for an executor.
    pub wasm: ReadyOrder,
}

impl Queue {
    /// Jobs ready in this queue.
    pub fn len(&self) -> usize {
        self.plain.len() + self.wasm.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every queue of the node.
#[derive(Debug, Default)]
pub struct Queues {
    queues: HashMap<String, Queue>,
    /// Queues that have ready Wasm jobs, in the order executors visit them.
    wasm_turns: VecDeque<String>,
}

impl Queues {
    pub fn get(&self, name: &str) -> Option<&Queue> {
        self.queues.get(name)
    }

    /// Number of queues with at least one ready job.
    pub fn count(&self) -> usize {
        self.queues.len()
    }

    /// Ready jobs in `name`.
    pub fn len_of(&self, name: &str) -> usize {
        self.queues.get(name).map_or(0, Queue::len)
    }

    /// Makes a job ready.
    pub fn push(&mut self, queue: &str, key: ReadyKey, wasm: bool) {
        let q = match self.queues.get_mut(queue) {
            Some(q) => q,
            None => self.queues.entry(queue.to_string()).or_default(),
        };
        if wasm {
            if q.wasm.is_empty() {
                self.wasm_turns.push_back(queue.to_string());
            }
            q.wasm.insert(key);
        } else {
            q.plain.insert(key);
        }
    }

    /// Removes a job from the ready order (it was deleted, acked or expired
    /// while queued). Returns whether it was there.
    pub fn remove(&mut self, queue: &str, key: ReadyKey, wasm: bool) -> bool {
        let Some(q) = self.queues.get_mut(queue) else {
            return false;
        };
        let removed = if wasm {
            q.wasm.remove(&key)
        } else {
            q.plain.remove(&key)
        };
        if wasm && q.wasm.is_empty() {
            self.wasm_turns.retain(|n| n != queue);
        }
        self.drop_if_empty(queue);
        removed
    }

    /// The next Wasm job for an executor: queues take turns, and within a
    /// queue the highest priority, then the oldest, goes first.
    pub fn pop_wasm(&mut self) -> Option<JobId> {
        let name = self.wasm_turns.pop_front()?;
        let q = self.queues.get_mut(&name)?;
        let key = q.wasm.pop_first()?;
        if !q.wasm.is_empty() {
            self.wasm_turns.push_back(name.clone());
        }
        self.drop_if_empty(&name);
        Some(key.id)
    }

    /// The next plain job of `queue` for an external worker.
    pub fn pop_plain(&mut self, queue: &str) -> Option<JobId> {
        let q = self.queues.get_mut(queue)?;
        let key = q.plain.pop_first()?;
        self.drop_if_empty(queue);
        Some(key.id)
    }

    fn drop_if_empty(&mut self, name: &str) {
        if self.queues.get(name).is_some_and(Queue::is_empty) {
            self.queues.remove(name);
        }
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
        q.push("a", ReadyKey::new(0, id(1)), true);
        q.push("a", ReadyKey::new(5, id(3)), true);
        q.push("a", ReadyKey::new(5, id(2)), true);
        assert_eq!(q.pop_wasm(), Some(id(2)));
        assert_eq!(q.pop_wasm(), Some(id(3)));
        assert_eq!(q.pop_wasm(), Some(id(1)));
        assert_eq!(q.pop_wasm(), None);
        assert_eq!(q.count(), 0);
    }

    #[test]
    fn queues_take_turns_for_executors() {
        let mut q = Queues::default();
        for ms in 0..3 {
            q.push("hot", ReadyKey::new(0, id(ms)), true);
        }
        q.push("cold", ReadyKey::new(0, id(10)), true);
        assert_eq!(q.pop_wasm(), Some(id(0)));
        assert_eq!(q.pop_wasm(), Some(id(10)));
        assert_eq!(q.pop_wasm(), Some(id(1)));
        assert_eq!(q.pop_wasm(), Some(id(2)));
    }

    #[test]
    fn plain_and_wasm_are_separate() {
        let mut q = Queues::default();
        q.push("a", ReadyKey::new(0, id(1)), false);
        assert_eq!(q.pop_wasm(), None);
        assert_eq!(q.len_of("a"), 1);
        assert!(q.remove("a", ReadyKey::new(0, id(1)), false));
        assert_eq!(q.pop_plain("a"), None);
    }
}
