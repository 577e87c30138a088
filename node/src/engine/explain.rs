//! EXPLAIN: why a job is where it is, read from the engine's own state
//! (its state, its place in its queue's ready order, pause flags, delays
//! and backoffs, replication, executor slots and the fair share, module
//! fetches, loans to peers, holders' copies). Read-only; every door
//! renders the [`Explain`] it returns (`proto/explain.rs` lists the
//! reason kinds and their fields).
//!
//! Cost: O(1) but for the jobs counted ahead of a queued one, a walk of
//! the ready order up to the job, bounded by [`MAX_AHEAD`], and the
//! fair share's groups with ready jobs (one per tenant). Nothing is
//! asked of peers: a job in hand on another node is named with that
//! node, and the SDK's cluster client asks it in turn.

use wasque_sdk::proto::{DepState, Explain, Progress, Reason};

use super::Engine;
use crate::job::{Job, JobId, JobState, NodeName, UnixMs};
use crate::queue::{Queue, ReadyKey};

/// Most jobs counted ahead of a queued one; past it the answer says "at
/// least" (the count walks the ready order, and the driver waits).
pub const MAX_AHEAD: usize = 100_000;

impl Engine {
    /// A job running here reported its progress (the executor's feed,
    /// coalesced: only the latest counts). Kept while the run lasts; a
    /// report for a job not running here (it ended meanwhile) is dropped.
    pub fn handle_progress(&mut self, now: UnixMs, id: JobId, done: u64, total: u64, note: String) {
        self.last_now = self.last_now.max(now);
        if self.executing.contains(&id) {
            self.progress.insert(
                id,
                Progress {
                    done,
                    total,
                    note,
                    at: now,
                },
            );
        }
    }

    /// The explanation of job `id`, or `None` if this node holds no copy.
    pub(super) fn explain(&self, now: UnixMs, id: &JobId) -> Option<Explain> {
        let job = self.jobs.get(id)?;
        let mut reasons = Vec::new();
        match job.state {
            JobState::WaitRepl => reasons.push(self.why_wait_repl(now, job)),
            JobState::Waiting => reasons.push(why_waiting(job)),
            JobState::Queued => self.why_queued(now, job, &mut reasons),
            JobState::Active => self.why_active(now, job, &mut reasons),
            JobState::Done | JobState::Failed => reasons.push(why_finished(job)),
            JobState::Dead => reasons.push(why_dead(job)),
            JobState::Acked => reasons.push(self.why_acked(job)),
        }
        if reasons.is_empty() {
            reasons.push(Reason::new(
                "unknown",
                format!("{} with nothing this node waits on", job.state),
            ));
        }
        Some(Explain {
            id: *id,
            node: self.cfg.node_id.clone(),
            queue: job.queue.to_string(),
            state: job.state,
            at: now,
            reasons,
        })
    }

    fn why_wait_repl(&self, now: UnixMs, job: &Job) -> Reason {
        let Some(p) = self.cluster.repl.get(&job.id) else {
            return Reason::new(
                "wait-repl",
                "waiting for its copies on other nodes (an asynchronous add)",
            );
        };
        let answered = p.asked.len() - p.waiting.len();
        let waiting: Vec<String> = p.waiting.iter().map(NodeName::short).collect();
        Reason::new(
            "wait-repl",
            format!(
                "waiting for replication: {answered} of {} peer(s) hold their copy, waiting on {}; \
                 the add fails with NOREPL {}",
                p.asked.len(),
                list(&waiting),
                when(now, p.deadline)
            ),
        )
        .int("answered", answered as u64)
        .int("asked", p.asked.len() as u64)
        .text(
            "waiting-on",
            p.waiting
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(","),
        )
        .int("deadline-at", p.deadline)
    }

    fn why_queued(&self, now: UnixMs, job: &Job, out: &mut Vec<Reason>) {
        let wasm = job.is_wasm();
        if let Some(m) = job.module()
            && self
                .cluster
                .awaiting_module
                .get(&m)
                .is_some_and(|ids| ids.contains(&job.id))
        {
            let from = self.module_source(job, &m);
            let since = self.cluster.fetching.get(&m).copied();
            let mut r = Reason::new(
                "waiting-for-module",
                format!(
                    "waiting for its module {} to arrive from {} and be compiled{}",
                    &m.to_hex()[..12],
                    from.map_or("a peer (none that has it is live)".into(), |n| format!(
                        "node {}",
                        n.short()
                    )),
                    since.map_or(String::new(), |t| format!(" (asked {})", ago(now, t)))
                ),
            )
            .text("module", m.to_hex());
            if let Some(n) = from {
                r = r.text("from", n.to_string());
            }
            if let Some(t) = since {
                r = r.int("since-at", t);
            }
            out.push(r);
            return;
        }
        let Some(q) = self.queues.get(&job.queue) else {
            return;
        };
        out.push(queued_reason(job, q, wasm));
        if q.pause.output {
            out.push(
                Reason::new(
                    "paused",
                    format!(
                        "queue {} is paused in output: nothing is taken from it until PAUSE {} none",
                        job.queue, job.queue
                    ),
                )
                .text("queue", job.queue.to_string())
                .text("pause", q.pause.as_str()),
            );
            return;
        }
        if !wasm {
            return;
        }
        let slots = self.slots_now();
        if self.running >= slots {
            out.push(
                Reason::new(
                    "waiting-for-slot",
                    format!(
                        "every executor slot of this node is taken ({} of {slots})",
                        self.running
                    ),
                )
                .int("slots", slots as u64)
                .int("busy", self.running as u64),
            );
        }
        if let Some(tenant) = crate::tenant::tenant_of_queue(&job.queue) {
            let ready = self.queues.wasm_groups();
            let (weight, ahead) = self.fair.standing(tenant, &ready);
            if ahead > 0 {
                out.push(
                    Reason::new(
                        "fair-share",
                        format!(
                            "tenant {tenant} (weight {weight}) has used more executor time than \
                             {ahead} other tenant(s) with ready jobs: theirs go first"
                        ),
                    )
                    .text("tenant", tenant)
                    .int("weight", u64::from(weight))
                    .int("tenants-ahead", ahead as u64),
                );
            }
        }
    }

    fn why_active(&self, now: UnixMs, job: &Job, out: &mut Vec<Reason>) {
        let me = self.cluster.me;
        if self.executing.contains(&job.id) {
            let since = self.run_started.get(&job.id).copied().unwrap_or(now);
            let deadline = since.saturating_add(job.limits().deadline_ms);
            let progress = self.progress.get(&job.id);
            let mut r = Reason::new(
                "running",
                format!(
                    "running on this node ({}) since {}, attempt {}{}{}; its deadline ends it {} at the latest",
                    short_id(&self.cfg.node_id),
                    ago(now, since),
                    job.counters.attempts,
                    of_max(job),
                    progress.map_or(String::new(), |p| format!(", at {}", p.text())),
                    when(now, deadline)
                ),
            )
            .text("node", self.cfg.node_id.clone())
            .int("attempt", u64::from(job.counters.attempts))
            .int("since-at", since)
            .int("deadline-at", deadline);
            if let Some(p) = progress {
                r = r
                    .int("progress-done", p.done)
                    .int("progress-total", p.total)
                    .text("progress-note", p.note.clone());
            }
            out.push(r);
            return;
        }
        if job.awaiting_retry() {
            out.push(why_backoff(now, job));
            return;
        }
        if job.ready_at > now {
            out.push(
                Reason::new(
                    "delayed",
                    format!("delayed: it is queued {}", when(now, job.ready_at)),
                )
                .int("ready-at", job.ready_at)
                .int("in-ms", job.ready_at - now),
            );
            return;
        }
        if let Some(at) = self.cluster.will_queue.get(&job.id) {
            out.push(
                Reason::new(
                    "will-queue",
                    format!(
                        "its retry time passed: this node asked the other holders whether one has it \
                         in hand, and queues it itself {} if none says so",
                        when(now, *at)
                    ),
                )
                .int("until-at", *at),
            );
            return;
        }
        let requeue = job.requeue_at();
        let again = requeue.map_or(String::new(), |t| {
            format!(
                "; this node queues it again {} unless that node answers",
                when(now, t)
            )
        });
        if let Some(to) = self.cluster.lent.get(&job.id) {
            let up = self.cluster.peers.contains(to);
            let mut r = Reason::new(
                "lent",
                format!(
                    "lent to node {} ({}), which queues or runs it{again}",
                    to.short(),
                    if up { "up" } else { "down" }
                ),
            )
            .text("node", to.to_string())
            .flag("node-up", up);
            if let Some(t) = requeue {
                r = r.int("requeue-at", t);
            }
            out.push(r);
            return;
        }
        if !job.is_wasm() && job.counters.attempts > 0 {
            let mut r = Reason::new(
                "delivered",
                format!(
                    "delivered to a worker (attempt {}{}){}",
                    job.counters.attempts,
                    of_max(job),
                    requeue.map_or(String::new(), |t| format!(
                        "; queued again {} unless acknowledged (WORKING postpones it)",
                        when(now, t)
                    ))
                ),
            )
            .int("attempt", u64::from(job.counters.attempts));
            if let Some(t) = requeue {
                r = r.int("requeue-at", t);
            }
            out.push(r);
            return;
        }
        // A holder's copy: the node that added the job queued it (or a
        // holder that queued it after a retry time, which this node is
        // not told by name).
        let others: Vec<NodeName> = me.map_or(job.nodes.clone(), |me| job.others(me).collect());
        let adder = job.nodes.first().copied().filter(|n| Some(*n) != me);
        let Some(node) = adder.or_else(|| others.first().copied()) else {
            out.push(Reason::new(
                "held-elsewhere",
                format!("active with no other holder known{again}"),
            ));
            return;
        };
        let up = self.cluster.peers.contains(&node);
        let who = if adder.is_some() {
            format!("node {} (which added it)", node.short())
        } else {
            format!(
                "another holder ({})",
                list(&others.iter().map(NodeName::short).collect::<Vec<_>>())
            )
        };
        let mut r = Reason::new(
            "held-elsewhere",
            format!(
                "this node keeps a holder's copy; {who} has it queued, running or delivered ({}){again}",
                if up { "up" } else { "down" }
            ),
        )
        .text("node", node.to_string())
        .flag("node-up", up);
        if let Some(t) = requeue {
            r = r.int("requeue-at", t);
        }
        out.push(r);
    }

    fn why_acked(&self, job: &Job) -> Reason {
        let pending: Vec<String> = self
            .cluster
            .acks
            .get(&job.id)
            .map(|a| a.pending.iter().map(NodeName::short).collect())
            .unwrap_or_default();
        Reason::new(
            "acked",
            if pending.is_empty() {
                "acknowledged: about to be forgotten".to_string()
            } else {
                format!(
                    "acknowledged: kept until {} confirm(s) the ack",
                    list(&pending)
                )
            },
        )
        .text("pending", pending.join(","))
    }
}

/// The job's place in its queue's ready order: a walk up to it, bounded.
fn queued_reason(job: &Job, q: &Queue, wasm: bool) -> Reason {
    let order = if wasm { &q.wasm } else { &q.plain };
    let key = ReadyKey::new(job.priority, job.id);
    let (mut ahead, mut higher) = (0usize, 0usize);
    for k in order.range(..key).take(MAX_AHEAD) {
        ahead += 1;
        if k.priority.0 > job.priority {
            higher += 1;
        }
    }
    let more = if ahead == MAX_AHEAD { "at least " } else { "" };
    let taker = if wasm {
        "an executor slot"
    } else {
        "a worker's GETJOB"
    };
    let text = if ahead == 0 {
        format!(
            "first in queue {} at priority {}: waiting for {taker}",
            job.queue, job.priority
        )
    } else {
        format!(
            "queued in {} behind {more}{ahead} job(s) ({higher} of higher priority) at priority {}: waiting for {taker}",
            job.queue, job.priority
        )
    };
    Reason::new("queued", text)
        .text("queue", job.queue.to_string())
        .int("priority", u64::from(job.priority))
        .int("ahead", ahead as u64)
        .int("ahead-higher", higher as u64)
        .int("queue-len", order.len() as u64)
}

fn why_backoff(now: UnixMs, job: &Job) -> Reason {
    let (attempt, max, last) = match job.retry() {
        Some(r) => (
            r.attempts,
            Some(r.policy.max_attempts),
            r.last_error.as_str(),
        ),
        None => (job.counters.attempts, None, ""),
    };
    let what = if last.is_empty() {
        format!("attempt {attempt}")
    } else {
        format!("attempt {attempt} failed ({last})")
    };
    let next = match max {
        Some(max) => format!("attempt {} of {max}", attempt + 1),
        None => "the next attempt".to_string(),
    };
    let mut r = Reason::new(
        "retry-backoff",
        format!(
            "{what}: waiting out its backoff, {next} is queued {}",
            when(now, job.ready_at)
        ),
    )
    .int("attempt", u64::from(attempt));
    if let Some(max) = max {
        r = r.int("max-attempts", u64::from(max));
    }
    r.int("ready-at", job.ready_at)
        .int("in-ms", job.ready_at.saturating_sub(now))
        .text("last-error", last)
}

fn why_waiting(job: &Job) -> Reason {
    match job.gather() {
        Some(g) => {
            let done = g.parts.iter().filter(|p| p.done).count();
            let failed = g.parts.iter().filter(|p| p.failed).count();
            Reason::new(
                "waiting-for-parts",
                format!(
                    "a distributed job: {done} of {} part(s) done{}; its reduce runs once all are",
                    g.parts.len(),
                    if failed > 0 {
                        format!(", {failed} failed")
                    } else {
                        String::new()
                    }
                ),
            )
            .int("done", done as u64)
            .int("parts", g.parts.len() as u64)
            .int("failed", failed as u64)
        }
        None => match job.after() {
            Some(a) => {
                let pending: Vec<String> = a.pending().map(|id| id.to_string()).collect();
                let failed = a
                    .deps
                    .iter()
                    .filter(|(_, s)| matches!(s, DepState::Failed(_)))
                    .count();
                Reason::new(
                    "waiting-for-jobs",
                    format!(
                        "added {} {} job(s): {} not ended yet ({})",
                        if a.any { "AFTER-ANY" } else { "AFTER" },
                        a.deps.len(),
                        pending.len(),
                        pending.join(", ")
                    ),
                )
                .int("jobs", a.deps.len() as u64)
                .int("pending", pending.len() as u64)
                .int("failed", failed as u64)
                .flag("any", a.any)
                .text("pending-ids", pending.join(" "))
            }
            None => Reason::new("waiting-for-jobs", "waiting for jobs it comes after"),
        },
    }
}

fn why_finished(job: &Job) -> Reason {
    let Some(r) = job.result.as_deref() else {
        return Reason::new(
            "finished",
            format!(
                "{} (its result was not kept: nocache); waiting for its ACKJOB",
                job.state
            ),
        );
    };
    let how = match &r.error_class {
        None => "finished well".to_string(),
        Some(c) => format!("failed ({c}: {})", r.message),
    };
    Reason::new(
        "finished",
        format!(
            "{how} on node {}; kept until acknowledged (ACKJOB) or its TTL ends",
            short_id(&r.node)
        ),
    )
    .text(
        "class",
        r.error_class.map_or("ok".to_string(), |c| c.to_string()),
    )
    .text("node", r.node.clone())
}

fn why_dead(job: &Job) -> Reason {
    let (attempts, last) = job.retry().map_or((job.counters.attempts, ""), |r| {
        (r.attempts, r.last_error.as_str())
    });
    Reason::new(
        "dead",
        format!(
            "a dead letter of {}:dead after {attempts} attempt(s){}: DLQ REQUEUE {} runs it again",
            job.queue,
            if last.is_empty() {
                String::new()
            } else {
                format!(" (last error: {last})")
            },
            job.queue
        ),
    )
    .int("attempts", u64::from(attempts))
    .text("last-error", last)
}

/// " of N" when the job has a retry policy.
fn of_max(job: &Job) -> String {
    job.retry()
        .map_or(String::new(), |r| format!(" of {}", r.policy.max_attempts))
}

fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// "in 4.2 s" / "now" for a time ahead.
fn when(now: UnixMs, at: UnixMs) -> String {
    if at <= now {
        "now".into()
    } else {
        format!("in {}", span(at - now))
    }
}

/// "4.2 s ago" for a time passed.
fn ago(now: UnixMs, at: UnixMs) -> String {
    format!("{} ago", span(now.saturating_sub(at)))
}

/// A duration for people: ms under a second, then s, min, h.
pub fn span(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}
