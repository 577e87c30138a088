//! Holds back what must not leave the node before the store has the
//! changes it depends on: replies (an `ADDJOB` answered is a job that
//! survives a crash) and hand-outs (a `RETRY 0` job must be marked taken
//! on disk before it is run or delivered).
//!
//! Batches are numbered in the order they go to the writer; an item held
//! behind batch `n` goes out once the writer says `n` is done. Items keep
//! their order, so replies never overtake each other.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct Gate<T> {
    /// Number of the last batch handed to the writer.
    submitted: u64,
    /// Number of the last batch the writer finished.
    done: u64,
    held: VecDeque<(u64, T)>,
}

impl<T> Default for Gate<T> {
    fn default() -> Self {
        Gate {
            submitted: 0,
            done: 0,
            held: VecDeque::new(),
        }
    }
}

impl<T> Gate<T> {
    /// Numbers a new batch.
    pub fn next_batch(&mut self) -> u64 {
        self.submitted += 1;
        self.submitted
    }

    /// The batch an item produced now depends on: the open batch (not yet
    /// submitted) if it has changes, else the last one submitted. `None`
    /// when everything is done: the item may go at once.
    pub fn depends_on(&self, open_batch_has_changes: bool) -> Option<u64> {
        if open_batch_has_changes {
            Some(self.submitted + 1)
        } else if self.submitted > self.done || !self.held.is_empty() {
            Some(self.submitted)
        } else {
            None
        }
    }

    pub fn hold(&mut self, batch: u64, item: T) {
        self.held.push_back((batch, item));
    }

    /// The writer finished every batch up to `seq`: the items that may go
    /// now, in order, each with its batch number.
    pub fn release(&mut self, seq: u64) -> std::collections::vec_deque::Drain<'_, (u64, T)> {
        self.done = self.done.max(seq);
        let done = self.done;
        let n = self.held.iter().take_while(|(b, _)| *b <= done).count();
        self.held.drain(..n)
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Batches handed to the writer and not yet done.
    pub fn in_flight(&self) -> u64 {
        self.submitted - self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_wait_for_their_batch_and_keep_their_order() {
        let mut g = Gate::default();
        assert_eq!(g.depends_on(false), None);
        let b1 = g.depends_on(true).unwrap();
        g.hold(b1, "add-1");
        assert_eq!(g.next_batch(), b1);
        // A read after a write in flight waits behind it.
        let b = g.depends_on(false).unwrap();
        assert_eq!(b, b1);
        g.hold(b, "show");
        let b2 = g.depends_on(true).unwrap();
        g.hold(b2, "add-2");
        assert_eq!(g.next_batch(), b2);
        assert_eq!(
            g.release(b1).map(|x| x.1).collect::<Vec<_>>(),
            ["add-1", "show"]
        );
        assert_eq!(g.held(), 1);
        assert_eq!(g.release(b2).map(|x| x.1).collect::<Vec<_>>(), ["add-2"]);
        assert_eq!(g.depends_on(false), None);
        assert_eq!(g.in_flight(), 0);
    }
}
