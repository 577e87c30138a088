//! Read-only answers about the engine's state (`Command::Inspect`), and the
//! job events the engine emits for whoever watches (`Effect::Event`).
//!
//! Costs, since the driver task is blocked while an answer is computed:
//! `Stats` is O(queues), `Queue` O(1); `Queues` sorts the names of the
//! queues the node knows; `Jobs` scans every job the node holds once
//! (O(jobs × log page)), about a millisecond per 100,000 jobs. Pages are
//! bounded by [`MAX_PAGE`].

use std::collections::BinaryHeap;

use super::{Effect, Engine};
use crate::api::{
    Inspection, JobEvent, JobEventKind, JobPage, JobQuery, JobSummary, MAX_PAGE, NodeStats, Query,
    QueuePage, QueueStat, Removal,
};
use crate::job::{Job, JobId, UnixMs};
use crate::queue::{Queue, ReadyKey};

impl Engine {
    /// Answers a read-only question; changes nothing.
    pub fn inspect(&self, now: UnixMs, q: Query) -> Inspection {
        match q {
            Query::Stats => Inspection::Stats(self.node_stats()),
            Query::Queues {
                cursor,
                limit,
                prefix,
            } => Inspection::Queues(self.queue_page(now, cursor, limit, prefix.as_deref())),
            Query::Queue { name } => Inspection::Queue(self.queue_stat(now, &name)),
            Query::Jobs(q) => Inspection::Jobs(self.job_page(q)),
            Query::Tenants { names } => {
                // Ready jobs per tenant in one pass over the queues.
                let mut ready = hashbrown::HashMap::<&str, u64>::new();
                for (name, q) in self.queues.iter() {
                    if let Some(t) = crate::tenant::tenant_of_queue(name) {
                        *ready.entry(t).or_default() += q.len() as u64;
                    }
                }
                let stats = names
                    .into_iter()
                    .map(|n| {
                        let r = ready.get(n.as_str()).copied().unwrap_or(0);
                        self.tenant_stat(n, r)
                    })
                    .collect();
                Inspection::Tenants(stats)
            }
        }
    }

    fn node_stats(&self) -> NodeStats {
        let ready = self.queues.iter().map(|(_, q)| q.len() as u64).sum();
        let idem = self.idem_stats();
        NodeStats {
            node_id: self.cfg.node_id.clone(),
            jobs: self.jobs.len() as u64,
            ready,
            running: self.running as u64,
            exec_slots: self.cfg.exec_slots as u64,
            queues: self.queues.count() as u64,
            modules: self.modules.len() as u64,
            waiters: self.waiting_on.len() as u64,
            timers: self.timers.len() as u64,
            idempotency_keys: idem.keyed_jobs as u64,
            idempotency_tombstones: idem.tombstones as u64,
            idempotency_hits: idem.hits,
            idempotency_dropped: idem.dropped_early,
        }
    }

    fn queue_stat(&self, now: UnixMs, name: &str) -> Option<QueueStat> {
        self.queues.get(name).map(|q| self.stat_of(now, name, q))
    }

    fn stat_of(&self, now: UnixMs, name: &str, q: &Queue) -> QueueStat {
        // The ready order is priority first, then id (age): the oldest job
        // is the smallest id among the first job of each priority level.
        let oldest = (0..=9u8)
            .flat_map(|p| {
                let from = ReadyKey::new(p, JobId(uuid::Uuid::nil()));
                [q.wasm.range(from..).next(), q.plain.range(from..).next()]
                    .into_iter()
                    .flatten()
                    .filter(move |k| k.priority.0 == p)
            })
            .map(|k| k.id)
            .min()
            .and_then(|id| self.jobs.get(&id))
            .map(|job| (job.id, now.saturating_sub(ready_since(job))));
        QueueStat {
            name: name.to_string(),
            ready_wasm: q.wasm.len() as u64,
            ready_plain: q.plain.len() as u64,
            oldest,
            pause: q.pause.as_str(),
            blocked: q.blocked.len() as u64,
            jobs_in: q.jobs_in,
            jobs_out: q.jobs_out,
            created_at: q.created_at,
            idle_ms: now.saturating_sub(q.touched_at),
        }
    }

    fn queue_page(
        &self,
        now: UnixMs,
        cursor: Option<String>,
        limit: usize,
        prefix: Option<&str>,
    ) -> QueuePage {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut names: Vec<&str> = self
            .queues
            .iter()
            .map(|(n, _)| &**n)
            .filter(|n| cursor.as_deref().is_none_or(|c| *n > c))
            .filter(|n| prefix.is_none_or(|p| n.starts_with(p)))
            .collect();
        names.sort_unstable();
        let more = names.len() > limit;
        names.truncate(limit);
        let queues: Vec<QueueStat> = names
            .iter()
            .filter_map(|n| self.queues.get(n).map(|q| self.stat_of(now, n, q)))
            .collect();
        let next = if more {
            queues.last().map(|q| q.name.clone())
        } else {
            None
        };
        QueuePage { queues, next }
    }

    fn job_page(&self, q: JobQuery) -> JobPage {
        let limit = q.limit.clamp(1, MAX_PAGE);
        // A max-heap of the `limit + 1` smallest ids that match: the extra
        // one tells whether there is a next page.
        let mut heap: BinaryHeap<JobId> = BinaryHeap::with_capacity(limit + 2);
        for job in self.jobs.values() {
            if q.cursor.is_some_and(|c| job.id <= c)
                || q.state.is_some_and(|s| job.state != s)
                || q.queue.as_deref().is_some_and(|name| &*job.queue != name)
                || q.prefix.as_deref().is_some_and(|p| !job.queue.starts_with(p))
                // A keyed job is shown only to its key's holder (SHOW);
                // lists leave it out, as JSCAN does without the key.
                || !job.opens_with(None)
            {
                continue;
            }
            if heap.len() <= limit {
                heap.push(job.id);
            } else if heap.peek().is_some_and(|top| job.id < *top) {
                heap.pop();
                heap.push(job.id);
            }
        }
        let mut ids = heap.into_sorted_vec();
        let more = ids.len() > limit;
        ids.truncate(limit);
        let jobs: Vec<JobSummary> = ids
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .map(summary)
            .collect();
        JobPage {
            next: if more { ids.last().copied() } else { None },
            jobs,
        }
    }

    /// Turns job events on or off: the driver turns them on while anyone
    /// watches (HTTP monitoring, RESP subscribers).
    pub fn set_events(&mut self, on: bool) {
        self.cfg.events = on;
    }

    /// Emits a job event if anyone watches (`EngineConfig::events`).
    pub(super) fn emit(&mut self, job: &Job, kind: JobEventKind) {
        // The queue's name is shared with the job, not copied: this runs
        // on every add.
        if self.cfg.events {
            self.effects.push_back(Effect::Event(JobEvent {
                id: job.id,
                queue: job.queue.clone(),
                kind,
            }));
        }
    }
}

/// Since when a job has been ready: queued, or its delay ended.
pub(super) fn ready_since(job: &Job) -> UnixMs {
    job.queued_at.max(job.ready_at)
}

/// The reason words `remove_job` is called with, as an event.
pub(super) fn removal(why: &str) -> Removal {
    if why.starts_with("ack") {
        Removal::Acked
    } else if why.starts_with("expire") {
        Removal::Expired
    } else {
        Removal::Deleted
    }
}

fn summary(job: &Job) -> JobSummary {
    JobSummary {
        id: job.id,
        queue: String::from(&*job.queue),
        state: job.state,
        priority: job.priority,
        attempts: job.counters.attempts,
        module: job.module(),
        registered_at: job.created_at / 1000,
        body_bytes: job.body.len() as u64,
        error_class: job.result.as_ref().and_then(|r| r.error_class),
    }
}
