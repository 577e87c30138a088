//! The order in which executor threads take the jobs handed to them: a
//! thread that comes free takes the first queued job of the tenant group
//! with the fewest jobs running for its weight, not the oldest job; among
//! equals, the group whose ended runs used the least (fuel per unit of
//! weight), which is what decides with one thread, where nothing else
//! runs when it chooses. Jobs queued do not count against their group:
//! when they did, a tenant handed many jobs at once was held back for
//! them, and on a node where the other tenant's queue was refilled as it
//! ran, never started them (the cluster simulation showed a light
//! tenant's last twelve jobs waiting 15 s). The engine's fair
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
    /// Each group with jobs queued or running; a handful of tenants at
    /// most, so a small vector.
    groups: Vec<Group>,
}

/// One group's counts in a [`ShareQueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Group {
    id: u32,
    queued: u32,
    running: u32,
    /// The cost of its ended runs (fuel, or time: whatever the caller
    /// counts) per unit of weight: a fair queue over what runs used, which
    /// breaks ties in `running`. A group that comes back starts at the
    /// least of the others, so being idle earns no credit.
    served: u64,
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
    fn slot(&mut self, group: u32) -> &mut Group {
        let i = match self.groups.iter().position(|g| g.id == group) {
            Some(i) => i,
            None => {
                let served = self.groups.iter().map(|g| g.served).min().unwrap_or(0);
                self.groups.push(Group {
                    id: group,
                    queued: 0,
                    running: 0,
                    served,
                });
                self.groups.len() - 1
            }
        };
        &mut self.groups[i]
    }

    fn group(&self, group: u32) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == group)
    }

    fn forget_idle(&mut self) {
        self.groups.retain(|g| g.queued > 0 || g.running > 0);
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
        self.slot(share.group).queued += 1;
        self.jobs.push_back((share, job));
    }

    /// The job a free thread runs next, counted as running in its group
    /// until [`ShareQueue::finished`]: the first queued job of the group
    /// with the fewest jobs running per unit of weight; among equals, the
    /// group whose ended runs cost least per unit of weight, then the
    /// group whose first job has waited longest. A group's jobs keep their
    /// order.
    pub fn pop(&mut self) -> Option<(Share, T)> {
        let at = self.next_index()?;
        let (share, job) = self.jobs.remove(at)?;
        let g = self.slot(share.group);
        g.queued -= 1;
        g.running += 1;
        Some((share, job))
    }

    /// The job [`ShareQueue::pop`] would take, taken only if it may go
    /// ahead of a running job of `running` that has used `used` so far
    /// (a run set aside for it, `run.rs`): its group has fewer jobs
    /// running per unit of weight than `running`'s group, and has not
    /// used more per unit of weight than that group has, counting the
    /// running job's use so far. So a tenant's runs ahead of others stop
    /// at its weight's part of the running jobs, and a tenant that has
    /// used more never goes ahead of one that used less: with one thread,
    /// a light tenant's run would otherwise be set aside for a heavy
    /// tenant's jobs one after another (the heavy one has none running
    /// while its run ahead goes on, so it always has fewer), as long as
    /// heavy had jobs queued. With one group queued, or the running job's
    /// own group next, nothing is taken: a set-aside serves only a tenant
    /// that is waiting behind another one.
    pub fn pop_ahead_of(&mut self, running: Share, used: u64) -> Option<(Share, T)> {
        let at = self.next_index()?;
        let next = self.jobs.get(at)?.0;
        if next.group == running.group {
            return None;
        }
        let of = |group: u32| {
            self.group(group)
                .map_or((0, 0), |g| (u64::from(g.running), g.served))
        };
        let ((next_running, next_served), (its_running, its_served)) =
            (of(next.group), of(running.group));
        let (wn, wr) = (
            u64::from(next.weight.max(1)),
            u64::from(running.weight.max(1)),
        );
        // running(next) / wn < running(running) / wr, without division.
        if next_running * wr >= its_running * wn {
            return None;
        }
        if next_served > its_served.saturating_add(used / wr) {
            return None;
        }
        self.pop()
    }

    fn next_index(&self) -> Option<usize> {
        let first = self.jobs.front()?;
        if self.groups.iter().filter(|g| g.queued > 0).count() <= 1 {
            // One group queued: in order.
            return Some(0);
        }
        // Each queued group's first job: (index, running, served, weight).
        let key = |group: u32| {
            self.group(group)
                .map_or((0, 0), |g| (u64::from(g.running), g.served))
        };
        let (r, served) = key(first.0.group);
        let mut best = (0usize, r, served, u64::from(first.0.weight.max(1)));
        let mut seen: Vec<u32> = vec![first.0.group];
        for (i, (share, _)) in self.jobs.iter().enumerate().skip(1) {
            if seen.contains(&share.group) {
                continue;
            }
            seen.push(share.group);
            let (r, served) = key(share.group);
            let w = u64::from(share.weight.max(1));
            // Fewer running per unit of weight (r / w < best.r / best.w,
            // without division); then less used per unit of weight
            // (`served`); ties keep the earlier job.
            let (a, b) = (r * best.3, best.1 * w);
            if a < b || (a == b && served < best.2) {
                best = (i, r, served, w);
            }
        }
        Some(best.0)
    }

    /// A job of `share` taken by [`ShareQueue::pop`] ended, having cost
    /// `cost` (fuel on a node, run time in the simulation: one unit per
    /// queue).
    pub fn finished(&mut self, share: Share, cost: u64) {
        let g = self.slot(share.group);
        g.running = g.running.saturating_sub(1);
        g.served = g
            .served
            .saturating_add(cost / u64::from(share.weight.max(1)));
        if g.queued == 0 && g.running == 0 {
            self.forget_idle();
        }
    }

    /// Takes every queued job (a closing executor).
    pub fn drain(&mut self) -> Vec<T> {
        for g in &mut self.groups {
            g.queued = 0;
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
    fn a_group_with_fewer_running_goes_first() {
        let mut q = ShareQueue::default();
        for j in 0..8 {
            q.push(s(1, 1), j);
        }
        assert_eq!(q.pop().map(|(_, j)| j), Some(0));
        assert_eq!(q.pop().map(|(_, j)| j), Some(1));
        q.push(s(2, 1), 100);
        q.finished(s(1, 1), 10);
        assert_eq!(q.pop().map(|(sh, j)| (sh.group, j)), Some((2, 100)));
        // Then heavy's, in order.
        assert_eq!(q.pop().map(|(_, j)| j), Some(2));
    }

    /// One thread: nothing runs when it chooses, so what each group's
    /// ended runs cost decides, per unit of weight; level, the older job.
    #[test]
    fn one_thread_takes_turns_by_cost() {
        let mut q = ShareQueue::default();
        q.push(s(1, 1), 0);
        assert_eq!(q.pop().map(|(_, j)| j), Some(0));
        for j in 1..5 {
            q.push(s(1, 1), j);
        }
        q.push(s(2, 1), 100);
        q.push(s(2, 1), 101);
        q.finished(s(1, 1), 10);
        // Heavy has used 10, light nothing.
        assert_eq!(q.pop().map(|(_, j)| j), Some(100));
        q.finished(s(2, 1), 10);
        // Level: the older job.
        assert_eq!(q.pop().map(|(_, j)| j), Some(1));
        q.finished(s(1, 1), 10);
        assert_eq!(q.pop().map(|(_, j)| j), Some(101));
        // A run that cost 30 lets heavy's next two go first.
        q.push(s(2, 1), 102);
        q.finished(s(2, 1), 30);
        assert_eq!(q.pop().map(|(_, j)| j), Some(2));
        q.finished(s(1, 1), 10);
        assert_eq!(q.pop().map(|(_, j)| j), Some(3));
        q.finished(s(1, 1), 10);
        // Level again (40 each): the older job.
        assert_eq!(q.pop().map(|(_, j)| j), Some(4));
        assert_eq!(q.pop().map(|(_, j)| j), Some(102));

        // A group that comes back starts level with the others: no credit
        // for having been idle.
        let mut q = ShareQueue::default();
        q.push(s(1, 1), 0);
        q.pop();
        q.finished(s(1, 1), 1000);
        q.push(s(1, 1), 1);
        q.push(s(2, 1), 100);
        q.push(s(1, 1), 2);
        q.push(s(2, 1), 101);
        q.pop();
        q.finished(s(1, 1), 10);
        assert_eq!(q.pop().map(|(_, j)| j), Some(100));
    }

    /// A tenant with many jobs queued is not held back for them: with
    /// heavy (weight 3) refilled as fast as it runs and light (weight 1)
    /// holding twelve queued, four threads still start light's jobs at
    /// about its part, a quarter. (Counting queued jobs against a group,
    /// as this order once did, started none of light's here.)
    #[test]
    fn a_group_with_many_queued_is_not_starved() {
        let heavy = s(1, 3);
        let light = s(2, 1);
        let mut q = ShareQueue::default();
        let mut running: VecDeque<Share> = VecDeque::new();
        for j in 0..12 {
            q.push(light, 1000 + j);
        }
        for j in 0..4 {
            q.push(heavy, j);
        }
        for _ in 0..4 {
            running.push_back(q.pop().unwrap().0);
        }
        let mut light_starts = 0;
        for j in 0..100 {
            let ended = running.pop_front().unwrap();
            q.finished(ended, 10);
            q.push(heavy, 100 + j);
            if ended == light {
                q.push(light, 2000 + j);
            }
            let (sh, _) = q.pop().unwrap();
            if sh == light {
                light_starts += 1;
            }
            running.push_back(sh);
        }
        assert!((20..=30).contains(&light_starts), "{light_starts}");
    }

    /// Equal counts per weight: the job that waited longest. Weights
    /// count: a group of weight 1 with none running goes before one of
    /// weight 3 with one.
    #[test]
    fn ties_go_to_the_oldest_and_weights_count() {
        let mut q = ShareQueue::default();
        q.push(s(1, 1), 10);
        q.push(s(2, 1), 20);
        q.push(s(1, 1), 11);
        q.push(s(2, 1), 21);
        // Level: oldest first; then the group with none running.
        assert_eq!(order(&mut q), vec![10, 20, 11, 21]);

        let mut q = ShareQueue::default();
        q.push(s(1, 3), 0);
        q.push(s(1, 3), 1);
        q.push(s(2, 1), 2);
        assert_eq!(q.pop().map(|(_, j)| j), Some(0));
        q.push(s(2, 1), 3);
        // 0/1 < 1/3.
        assert_eq!(q.pop().map(|(_, j)| j), Some(2));
        // 1/3 < 1/1.
        assert_eq!(q.pop().map(|(_, j)| j), Some(1));
        q.finished(s(1, 3), 10);
        q.finished(s(1, 3), 10);
        // Only the weight-1 group is left queued: in order.
        assert_eq!(order(&mut q), vec![3]);
    }

    /// A run is set aside only for a group with fewer running per weight,
    /// never for the running job's own group.
    #[test]
    fn only_a_waiting_lighter_group_goes_ahead_of_a_run() {
        let mut q = ShareQueue::default();
        for j in 0..4 {
            q.push(s(1, 1), j);
        }
        let (heavy, _) = q.pop().unwrap();
        // Heavy's own jobs never go ahead of heavy's run.
        assert!(q.pop_ahead_of(heavy, 0).is_none());
        q.push(s(2, 1), 100);
        assert_eq!(q.pop_ahead_of(heavy, 0).map(|(_, j)| j), Some(100));
        // Light now has as many running as heavy: its next job waits for
        // a thread.
        q.push(s(2, 1), 101);
        assert!(q.pop_ahead_of(heavy, 50).is_none());
        q.finished(s(2, 1), 10);
        assert_eq!(q.pop_ahead_of(heavy, 50).map(|(_, j)| j), Some(101));
        q.finished(s(2, 1), 10);

        // Heavy runs on two threads: light may go ahead on both, not on
        // a third.
        let (heavy2, _) = q.pop().unwrap();
        for j in 200..203 {
            q.push(s(2, 1), j);
        }
        assert_eq!(q.pop_ahead_of(heavy, 50).map(|(_, j)| j), Some(200));
        assert_eq!(q.pop_ahead_of(heavy2, 50).map(|(_, j)| j), Some(201));
        assert!(q.pop_ahead_of(heavy, 50).is_none());

        // A group of weight 1 goes ahead of a group of weight 4 with one
        // running once (0/1 < 1/4), not twice (1/1 >= 1/4).
        let mut q = ShareQueue::default();
        q.push(s(1, 4), 0);
        let (big, _) = q.pop().unwrap();
        q.push(s(1, 4), 1);
        q.push(s(1, 4), 2);
        for j in 10..13 {
            q.push(s(2, 1), j);
        }
        assert_eq!(q.pop_ahead_of(big, 0).map(|(_, j)| j), Some(10));
        assert!(q.pop_ahead_of(big, 0).is_none());
    }

    /// One thread, running a light tenant's job: the heavy tenant, which
    /// has none running but has used more, does not go ahead of it, however
    /// often the run asks. (It did: each heavy run ahead ended with heavy
    /// at none running again, so the next went ahead too, and the light
    /// run waited for as many heavy runs as heavy had queued.)
    #[test]
    fn a_group_that_used_more_does_not_go_ahead() {
        let mut q = ShareQueue::default();
        for j in 0..6 {
            q.push(s(1, 1), j);
        }
        assert_eq!(q.pop().map(|(_, j)| j), Some(0));
        // Light comes while heavy's run goes on, at heavy's use so far.
        q.push(s(2, 1), 100);
        q.finished(s(1, 1), 50);
        // The free thread takes light's job (it used less).
        let (light, j) = q.pop().unwrap();
        assert_eq!(j, 100);
        for used in [0, 10, 40] {
            assert!(q.pop_ahead_of(light, used).is_none(), "used {used}");
        }
        // Once light's run has used more than heavy, heavy may go ahead:
        // a long light run shares the thread by the weights.
        assert_eq!(q.pop_ahead_of(light, 60).map(|(_, j)| j), Some(1));
        q.finished(s(1, 1), 50);
        assert!(q.pop_ahead_of(light, 60).is_none());
        assert_eq!(q.pop_ahead_of(light, 110).map(|(_, j)| j), Some(2));
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
                running.push(sh);
                taken.push(j);
            }
            if (x >> 40).is_multiple_of(3) && !running.is_empty() {
                let sh = running.swap_remove(0);
                q.finished(sh, x % 100);
            }
        }
        while let Some((sh, j)) = q.pop() {
            running.push(sh);
            taken.push(j);
        }
        for sh in running.drain(..) {
            q.finished(sh, 1);
        }
        taken.sort_unstable();
        assert_eq!(taken, (0..1000).collect::<Vec<_>>());
        assert!(q.groups.is_empty(), "{:?}", q.groups);
    }
}
