//! Acknowledgement across the cluster, after Disque's: the node a client
//! acks a job on sends SETACK to every node that may hold a copy; each
//! holder turns its copy into an acked stub and answers GOTACK. When every
//! holder has answered, the acking node sends DELJOB and all of them
//! forget the job. Until then every holder keeps its acked stub, so no
//! holder can queue the job again while another is out of reach; a holder
//! whose DELJOB never comes collects the ack itself the same way (after
//! `ACK_RESEND_MS`), so a crashed acking node leaves nothing behind for
//! longer than the time its holders need to hear from each other.

use super::Engine;
use super::peer::PeerMsg;
use super::{Effect, Timer};
use crate::job::{Job, JobId, JobState, NodeName, UnixMs};

/// An unanswered SETACK is sent again after this long; a holder that took
/// an ack from another node starts collecting it itself after this long.
pub(super) const ACK_RESEND_MS: u64 = 1_000;
/// A synchronous add's copy not confirmed with GOTJOB is sent again after
/// this long (to a peer that came back, or whose link lost it).
const REPL_RESEND_MS: u64 = 1_000;

/// An acknowledgement not yet confirmed by every holder.
#[derive(Debug)]
pub(super) struct AckWait {
    pub pending: Vec<NodeName>,
    /// Given up after this (the job's TTL: no copy outlives it).
    pub until: UnixMs,
    pub sent_at: UnixMs,
}

impl Engine {
    /// ACKJOB / FASTACK of a job, held here or not: every other holder
    /// (or, for a job never seen here, every peer) is told to forget it.
    /// FASTACK sends DELJOB right behind the SETACK and keeps no stub:
    /// best effort, as Disque's.
    pub(super) fn ack_everywhere(&mut self, now: UnixMs, id: JobId, fast: bool) -> bool {
        let me = self.me();
        let (targets, until) = match self.jobs.get(&id) {
            Some(job) => (job.others(me).collect::<Vec<_>>(), job.expires_at),
            None if self.cluster.peers.is_empty() => (vec![], now),
            None => (
                self.cluster.peers.iter().copied().collect(),
                // The id carries the TTL (minutes): keep the ack that long.
                id.0.get_timestamp()
                    .map(|t| t.to_unix().0.saturating_mul(1000))
                    .unwrap_or(now)
                    .saturating_add(id.ttl_secs().saturating_mul(1000))
                    .max(now + ACK_RESEND_MS),
            ),
        };
        let nodes = self.jobs.get(&id).map(|j| j.nodes.clone());
        let held = self
            .jobs
            .get(&id)
            .is_some_and(|j| j.state != JobState::Acked)
            && self.remove_job(&id, "acknowledged");
        if targets.is_empty() {
            return held;
        }
        tracing::debug!(job = %id, ?targets, fast, "ack: set-ack out");
        for to in &targets {
            self.send(*to, PeerMsg::SetAck(id));
        }
        if fast {
            // The link keeps order: each holder takes the ack, then drops
            // the stub it made for it.
            for to in &targets {
                self.send(*to, PeerMsg::DelJob(id));
            }
            return held;
        }
        // Keep a durable acked stub until every holder confirmed, so a
        // crash here cannot let a holder deliver the job again.
        let nodes = nodes.unwrap_or_else(|| {
            let mut n = vec![me];
            n.extend(targets.iter().copied());
            n
        });
        if !self.jobs.contains_key(&id) {
            self.insert_acked_stub(id, until, nodes);
        }
        self.cluster.acks.insert(
            id,
            AckWait {
                pending: targets,
                until,
                sent_at: now,
            },
        );
        self.arm_tick(now);
        held
    }

    /// SETACK: another node acked the job. A copy held here becomes an
    /// acked stub (it stays until DELJOB, or until this node has collected
    /// the ack itself); the sender is told with GOTACK either way.
    pub(super) fn on_set_ack(&mut self, now: UnixMs, from: NodeName, id: JobId) {
        let me = self.me();
        tracing::debug!(job = %id, from = %from, state = ?self.jobs.get(&id).map(|j| j.state), "set-ack in");
        match self.jobs.get(&id) {
            // The sender has it acked too: one holder fewer to hear from.
            Some(j) if j.state == JobState::Acked => {
                self.send(from, PeerMsg::GotAck(id));
                self.ack_confirmed(from, id);
                return;
            }
            // A job with an asynckey is acked only by its holders: a node
            // that never held it (Disque's ack for a job never seen) could
            // not check the key, so its ack is ignored and the key cannot
            // be bypassed by asking another node.
            Some(j) if j.asynckey().is_none() || j.nodes.contains(&from) => {
                let (nodes, until) = (j.nodes.clone(), j.expires_at);
                self.remove_job(&id, "acknowledged");
                let pending: Vec<NodeName> = nodes
                    .iter()
                    .copied()
                    .filter(|n| *n != me && *n != from)
                    .collect();
                if !pending.is_empty() {
                    self.insert_acked_stub(id, until, nodes);
                    // The acking node's DELJOB normally comes first; this
                    // node collects the ack only if it does not.
                    self.cluster.acks.insert(
                        id,
                        AckWait {
                            pending,
                            until,
                            sent_at: now,
                        },
                    );
                    self.arm_tick(now);
                }
            }
            _ => {}
        }
        self.send(from, PeerMsg::GotAck(id));
    }

    /// GOTACK: `from` has the job acked or does not know it.
    pub(super) fn on_got_ack(&mut self, from: NodeName, id: JobId) {
        self.ack_confirmed(from, id);
    }

    fn ack_confirmed(&mut self, from: NodeName, id: JobId) {
        let Some(a) = self.cluster.acks.get_mut(&id) else {
            return;
        };
        a.pending.retain(|n| *n != from);
        if !a.pending.is_empty() {
            return;
        }
        self.cluster.acks.remove(&id);
        // Every holder has it acked: all of them may forget it now.
        let me = self.me();
        let holders: Vec<NodeName> = self
            .jobs
            .get(&id)
            .filter(|j| j.state == JobState::Acked)
            .map(|j| j.others(me).collect())
            .unwrap_or_default();
        tracing::debug!(job = %id, ?holders, "ack collected: del-job out");
        for to in holders {
            self.send(to, PeerMsg::DelJob(id));
        }
        self.drop_acked_stub(&id);
    }

    /// DELJOB: forget the job. Sent once an ack is collected (the copy
    /// here is an acked stub), by FASTACK, by a cancel, and for the copies
    /// of an add that was not replicated. A finished job is dropped only
    /// as an acked stub: its result is kept for the clients waiting on it.
    pub(super) fn on_del_job(&mut self, from: NodeName, id: JobId) {
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        if j.asynckey().is_some() && !j.nodes.contains(&from) {
            return;
        }
        if j.state == JobState::Acked {
            self.cluster.acks.remove(&id);
            self.drop_acked_stub(&id);
        } else if !j.state.is_finished() {
            // Nor is a copy's key whose add failed.
            self.remove_job_as(&id, "deleted (its add was not replicated)", false);
        }
    }

    fn insert_acked_stub(&mut self, id: JobId, until: UnixMs, nodes: Vec<NodeName>) {
        self.timers.set(until, Timer::Expire(id));
        self.jobs
            .insert(Box::new(Job::acked_stub(id, until, nodes)));
        self.journal_put(&id);
    }

    /// Forgets an acked stub once its ack is confirmed everywhere (or its
    /// TTL passed), without reporting the job as removed a second time.
    pub(super) fn drop_acked_stub(&mut self, id: &JobId) {
        if let Some(job) = self.jobs.get(id)
            && job.state == JobState::Acked
        {
            self.timers.cancel(job.expires_at, Timer::Expire(*id));
            self.jobs.remove(id);
            self.journal_remove(id);
        }
    }

    /// A restored acked stub: its ack goes out again until confirmed.
    pub(super) fn restore_acked_stub(&mut self, now: UnixMs, job: Job) {
        let me = self.me();
        let pending: Vec<NodeName> = job.others(me).collect();
        let id = job.id;
        self.timers.set(job.expires_at, Timer::Expire(id));
        self.cluster.acks.insert(
            id,
            AckWait {
                pending,
                until: job.expires_at,
                sent_at: 0,
            },
        );
        self.hold(job);
        self.arm_tick(now);
    }

    /// The tick's share: SETACK again to live holders that have not
    /// answered; acks past their TTL are dropped.
    pub(super) fn resend_acks(&mut self, now: UnixMs) {
        let live = &self.cluster.peers;
        let mut resend = Vec::new();
        let mut expired = Vec::new();
        self.cluster.acks.retain(|id, a| {
            if a.until <= now {
                expired.push(*id);
                return false;
            }
            if now.saturating_sub(a.sent_at) >= ACK_RESEND_MS {
                a.sent_at = now;
                for n in &a.pending {
                    if live.contains(n) {
                        resend.push((*n, *id));
                    }
                }
            }
            true
        });
        for (to, id) in resend {
            tracing::debug!(job = %id, to = %to, "set-ack resent");
            self.send(to, PeerMsg::SetAck(id));
        }
        for id in expired {
            self.drop_acked_stub(&id);
        }
    }

    /// The tick's share for synchronous adds: a copy a live peer has not
    /// confirmed is sent again (Disque retries REPLJOB the same way), so a
    /// peer restarted before it was declared down still gets it before
    /// the add's timeout.
    pub(super) fn resend_copies(&mut self, now: UnixMs) {
        let live = &self.cluster.peers;
        let mut due = Vec::new();
        for (id, p) in self.cluster.repl.iter_mut() {
            if now.saturating_sub(p.sent_at) < REPL_RESEND_MS {
                continue;
            }
            let to: Vec<NodeName> = p
                .waiting
                .iter()
                .filter(|n| live.contains(n))
                .copied()
                .collect();
            if !to.is_empty() {
                p.sent_at = now;
                due.push((*id, to));
            }
        }
        for (id, to) in due {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            let mut copy = job.clone();
            copy.state = JobState::Active;
            tracing::debug!(job = %id, ?to, "copy resent");
            self.cluster.stats.copies_sent += to.len() as u64;
            self.effects.push_back(Effect::SendMany {
                to,
                msg: PeerMsg::Replicate(Box::new(copy)),
            });
        }
    }
}
