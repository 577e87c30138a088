//! The order in which executor threads take the jobs handed to them: a
//! thread that comes free takes the first queued job of the tenant group
//! with the fewest jobs in the executor (queued or running) for its
//! weight, not the oldest job. Counting queued jobs too matters with one
//! thread, where nothing else runs when it chooses. The engine's fair
//! share (`engine/fair.rs`) decides what is handed over and so each
//! tenant's share of executor time; this decides only
//! who goes first among what is already handed over. Without it a light
//! tenant's job, handed over when a slot freed, waited behind every heavy
//! job queued before it (up to four per thread), not just for one run to
//! end.
//!
//! Shared by the node's executor (`pool.rs`) and the cluster simulation
//! (`wasque-benches`), so the two take jobs in the same order.
//!
//! With one group queued (no tenants, or one busy) it is a plain FIFO.

use std::collections::VecDeque;

/// The tenant group a run belongs to and that group's weight, as the
/// engine's fair share has them. Group 0 is the one of jobs dispatched
/// without tenants in play.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Share {
    pub group: u32,
    pub weight: u32,
}

impl Default for Share {
    fn default() -> Share {
        Share {
            group: 0,
            weight: 1,
        }
    }
}

/// Queued jobs and, per group, how many of its jobs are queued and run.
#[derive(Debug)]
pub struct ShareQueue<T> {
    jobs: VecDeque<(Share, T)>,
    /// (group, jobs queued, jobs running) of each group with either; a
    /// handful of tenants at most, so a small vector.
    groups: Vec<(u32, u32, u32)>,
}

impl<T> Default for ShareQueue<T> {
    fn default() -> ShareQueue<T> {
        ShareQueue {
            jobs: VecDeque::new(),
            groups: Vec::new(),
        }
    }
}

impl<T> ShareQueue<T> {
    fn slot(&mut self, group: u32) -> &mut (u32, u32, u32) {
        let i = match self.groups.iter().position(|g| g.0 == group) {
            Some(i) => i,
            None => {
                self.groups.push((group, 0, 0));
                self.groups.len() - 1
            }
        };
        &mut self.groups[i]
    }

    fn forget_idle(&mut self) {
        self.groups.retain(|g| g.1 > 0 || g.2 > 0);
    }

    /// Jobs queued (not running).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Queues a job.
    pub fn push(&mut self, share: Share, job: T) {
        self.slot(share.group).1 += 1;
        self.jobs.push_back((share, job));
    }

    /// The job a free thread runs next, counted as running in its group
    /// until [`ShareQueue::finished`]: the first queued job of the group
    /// with the fewest jobs queued and running per unit of weight; among
    /// equals, the group whose first job has waited longest. A group's
    /// jobs keep their order.
    pub fn pop(&mut self) -> Option<(Share, T)> {
        let at = self.next_index()?;
        let (share, job) = self.jobs.remove(at)?;
        let g = self.slot(share.group);
        g.1 -= 1;
        g.2 += 1;
        Some((share, job))
    }

    /// The job [`ShareQueue::pop`] would take, taken only if it may go
    /// ahead of a running job of `running` (a run set aside for it,
    /// `run.rs`): its group has fewer jobs running, and fewer in hand
    /// (queued or running), per unit of weight than `running`'s group.
    /// So a tenant's runs ahead of others stop at its weight's part of
    /// the running jobs. With one group queued, or the running job's own
    /// group next, nothing is taken: a set-aside serves only a tenant
    /// that is waiting behind another one.
    pub fn pop_ahead_of(&mut self, running: Share) -> Option<(Share, T)> {
        let at = self.next_index()?;
        let next = self.jobs.get(at)?.0;
        if next.group == running.group {
            return None;
        }
        let count = |group: u32| {
            self.groups
                .iter()
                .find(|g| g.0 == group)
                .map_or((0, 0), |g| (u64::from(g.1), u64::from(g.2)))
        };
        let (queued, busy) = count(next.group);
        let (rq, rb) = count(running.group);
        let (wn, wr) = (
            u64::from(next.weight.max(1)),
            u64::from(running.weight.max(1)),
        );
        // busy / wn < rb / wr and (queued + busy) / wn < (rq + rb) / wr,
        // without division.
        if busy * wr >= rb * wn || (queued + busy) * wr >= (rq + rb) * wn {
            return None;
        }
        self.pop()
    }

    fn next_index(&self) -> Option<usize> {
        let first = self.jobs.front()?;
        if self.groups.iter().filter(|g| g.1 > 0).count() <= 1 {
            // One group queued: in order.
            return Some(0);
        }
        let in_hand = |group: u32| {
            self.groups
                .iter()
                .find(|g| g.0 == group)
                .map_or(0, |g| u64::from(g.1) + u64::from(g.2))
        };
        // Each queued group's first job: (index, in hand, weight).
        let mut best = (
            0usize,
            in_hand(first.0.group),
            u64::from(first.0.weight.max(1)),
        );
        let mut seen: Vec<u32> = vec![first.0.group];
        for (i, (share, _)) in self.jobs.iter().enumerate().skip(1) {
            if seen.contains(&share.group) {
                continue;
            }
            seen.push(share.group);
            let (r, w) = (in_hand(share.group), u64::from(share.weight.max(1)));
            // r / w < best.r / best.w, without division; ties keep the
            // earlier job.
            if r * best.2 < best.1 * w {
                best = (i, r, w);
            }
        }
        Some(best.0)
    }

    /// A job of `group` taken by [`ShareQueue::pop`] ended.
    pub fn finished(&mut self, group: u32) {
        let g = self.slot(group);
        g.2 = g.2.saturating_sub(1);
        if g.1 == 0 && g.2 == 0 {
            self.forget_idle();
        }
    }

    /// Takes every queued job (a closing executor).
    pub fn drain(&mut self) -> Vec<T> {
        for g in &mut self.groups {
            g.1 = 0;
        }
        self.forget_idle();
        self.jobs.drain(..).map(|(_, j)| j).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(group: u32, weight: u32) -> Share {
        Share { group, weight }
    }

    fn order(q: &mut ShareQueue<u32>) -> Vec<u32> {
        std::iter::from_fn(|| q.pop().map(|(_, j)| j)).collect()
    }

    #[test]
    fn one_group_is_fifo() {
        let mut q = ShareQueue::default();
        for j in 0..10 {
            q.push(Share::default(), j);
        }
        assert_eq!(order(&mut q), (0..10).collect::<Vec<_>>());
    }

    /// Two threads busy with heavy's jobs, six more of heavy's queued:
    /// light's job, queued last, is the next one a free thread takes,
    /// whether or not the thread's last job was heavy's.
    #[test]
    fn a_group_with_fewer_in_hand_goes_first() {
        let mut q = ShareQueue::default();
        for j in 0..8 {
            q.push(s(1, 1), j);
        }
        assert_eq!(q.pop().map(|(_, j)| j), Some(0));
        assert_eq!(q.pop().map(|(_, j)| j), Some(1));
        q.push(s(2, 1), 100);
        q.finished(1);
        assert_eq!(q.pop().map(|(sh, j)| (sh.group, j)), Some((2, 100)));
        // Then heavy's, in order.
        assert_eq!(q.pop().map(|(_, j)| j), Some(2));

        // One thread: nothing runs when it chooses; heavy's three queued
        // still count against light's one.
        let mut q = ShareQueue::default();
        for j in 0..4 {
            q.push(s(1, 1), j);
        }
        q.push(s(2, 1), 100);
        assert_eq!(q.pop().map(|(_, j)| j), Some(100));
        q.finished(2);
        assert_eq!(order(&mut q), vec![0, 1, 2, 3]);
    }

    /// Equal counts per weight: the job that waited longest. Weights
    /// count: a group of weight 3 with two in hand goes before one of
    /// weight 1 with one.
    #[test]
    fn ties_go_to_the_oldest_and_weights_count() {
        let mut q = ShareQueue::default();
        q.push(s(1, 1), 10);
        q.push(s(2, 1), 20);
        q.push(s(1, 1), 11);
        q.push(s(2, 1), 21);
        // 2 in hand each: oldest first; then 2 (one running) against 1...
        assert_eq!(order(&mut q), vec![10, 20, 11, 21]);

        let mut q = ShareQueue::default();
        q.push(s(1, 3), 0);
        q.push(s(1, 3), 1);
        q.push(s(2, 1), 2);
        // 2/3 < 1/1: the weight-3 group's first.
        assert_eq!(q.pop().map(|(_, j)| j), Some(0));
        q.push(s(2, 1), 3);
        // 2/3 (one queued, one running) < 2/1.
        assert_eq!(q.pop().map(|(_, j)| j), Some(1));
        q.finished(1);
        q.finished(1);
        // Only the weight-1 group is left queued: in order.
        assert_eq!(order(&mut q), vec![2, 3]);
    }

    /// A run is set aside only for a group with fewer running and less in
    /// hand per weight, never for the running job's own group.
    #[test]
    fn only_a_waiting_lighter_group_goes_ahead_of_a_run() {
        let mut q = ShareQueue::default();
        for j in 0..4 {
            q.push(s(1, 1), j);
        }
        let (heavy, _) = q.pop().unwrap();
        // Heavy's own jobs never go ahead of heavy's run.
        assert!(q.pop_ahead_of(heavy).is_none());
        q.push(s(2, 1), 100);
        assert_eq!(q.pop_ahead_of(heavy).map(|(_, j)| j), Some(100));
        // Light now has as many running as heavy: its next job waits for
        // a thread.
        q.push(s(2, 1), 101);
        assert!(q.pop_ahead_of(heavy).is_none());
        q.finished(2);
        assert_eq!(q.pop_ahead_of(heavy).map(|(_, j)| j), Some(101));
        q.finished(2);

        // Heavy runs on two threads: light may go ahead on both, not on
        // a third.
        let (heavy2, _) = q.pop().unwrap();
        for j in 200..203 {
            q.push(s(2, 1), j);
        }
        assert_eq!(q.pop_ahead_of(heavy).map(|(_, j)| j), Some(200));
        assert_eq!(q.pop_ahead_of(heavy2).map(|(_, j)| j), Some(201));
        assert!(q.pop_ahead_of(heavy).is_none());

        // A group of weight 1 with 3 queued does not go ahead of a group
        // of weight 4 with 1 running and 2 queued (3/1 >= 3/4).
        let mut q = ShareQueue::default();
        q.push(s(1, 4), 0);
        let (big, _) = q.pop().unwrap();
        q.push(s(1, 4), 1);
        q.push(s(1, 4), 2);
        for j in 10..13 {
            q.push(s(2, 1), j);
        }
        assert!(q.pop_ahead_of(big).is_none());
    }

    /// Whatever the order, every job queued is taken exactly once, and
    /// the counts come back to nothing.
    #[test]
    fn no_job_is_lost() {
        let mut q = ShareQueue::default();
        let mut running = Vec::new();
        let mut taken = Vec::new();
        let mut x = 12345u64;
        for j in 0..1000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let g = u32::try_from((x >> 33) % 3).unwrap_or(0);
            q.push(s(g, g + 1), j);
            if (x >> 20).is_multiple_of(2)
                && let Some((sh, j)) = q.pop()
            {
                running.push(sh.group);
                taken.push(j);
            }
            if (x >> 40).is_multiple_of(3) && !running.is_empty() {
                let g = running.swap_remove(0);
                q.finished(g);
            }
        }
        while let Some((sh, j)) = q.pop() {
            running.push(sh.group);
            taken.push(j);
        }
        for g in running.drain(..) {
            q.finished(g);
        }
        taken.sort_unstable();
        assert_eq!(taken, (0..1000).collect::<Vec<_>>());
        assert!(q.groups.is_empty(), "{:?}", q.groups);
    }
}
