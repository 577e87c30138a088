//! CANCEL: a job stopped wherever it is. A queued, delayed or waiting
//! copy is removed (and its other holders told with `DelJob`); a Wasm run
//! on this node is interrupted through the executor (`Effect::CancelRun`,
//! the run ends with error class `cancelled` and its result goes to the
//! holders as any result does); a holder's copy of a Wasm job that is in
//! hand elsewhere is kept, so the runner's result reaches it. The node
//! that takes the command does this to its copy and sends
//! `PeerMsg::Cancel` to every live peer, which do the same to theirs: the
//! node running the job need not be a holder (federation moves jobs).
//!
//! The command needs a copy on the node that takes it (as SHOW does);
//! the SDK's cluster client asks the job's holders in turn.

use super::{Effect, Engine, PeerMsg, RequestId, no_job};
use crate::api::{ErrorCode, Reply};
use crate::job::{JobId, JobState, UnixMs};

/// What cancelling one copy did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cancelled {
    /// Removed, interrupted, or kept for the runner's result.
    Yes,
    /// The job had already ended: nothing to cancel.
    Finished,
    /// This node holds no such job.
    Unknown,
}

impl Engine {
    /// `CANCEL id..`: answers how many jobs were cancelled; when none
    /// was, an error naming the first already finished job, else the
    /// first id (as for a job the node does not hold).
    pub(super) fn cancel_cmd(&mut self, now: UnixMs, req: RequestId, ids: Vec<JobId>) {
        let mut n = 0;
        let mut finished = None;
        for id in &ids {
            match self.cancel_local(now, *id) {
                Cancelled::Yes => {
                    n += 1;
                    let peers: Vec<_> = self.cluster.peers.iter().copied().collect();
                    if !peers.is_empty() {
                        self.effects.push_back(Effect::SendMany {
                            to: peers,
                            msg: PeerMsg::Cancel(*id),
                        });
                    }
                }
                Cancelled::Finished => {
                    finished.get_or_insert(*id);
                }
                Cancelled::Unknown => {}
            }
        }
        let reply = match (n, finished, ids.first()) {
            (0, Some(id), _) => Reply::error(
                ErrorCode::Err,
                format!("job {id} has already finished: nothing to cancel"),
            ),
            (0, None, Some(id)) => no_job(id),
            (0, None, None) => Reply::error(ErrorCode::Err, "CANCEL needs at least one job id"),
            (n, _, _) => Reply::Count(n),
        };
        self.reply(req, reply);
    }

    /// A peer's `PeerMsg::Cancel`: the same to this node's copy.
    pub(super) fn on_cancel(&mut self, now: UnixMs, id: JobId) {
        self.cancel_local(now, id);
    }

    /// Cancels this node's copy of `id`.
    pub(super) fn cancel_local(&mut self, now: UnixMs, id: JobId) -> Cancelled {
        let Some(job) = self.jobs.get(&id) else {
            return Cancelled::Unknown;
        };
        if job.state.is_finished() || job.state == JobState::Acked {
            return Cancelled::Finished;
        }
        if self.executing.contains(&id) {
            tracing::debug!(job = %id, "cancel: interrupting the run");
            self.effects.push_back(Effect::CancelRun(id));
            return Cancelled::Yes;
        }
        // A holder's copy of a Wasm job due now: another node has it
        // queued or running; that node removes or interrupts it, and a
        // run's result comes back here.
        let in_hand_elsewhere = job.is_wasm()
            && job.state == JobState::Active
            && job.ready_at <= now
            && !job.awaiting_retry();
        if in_hand_elsewhere {
            return Cancelled::Yes;
        }
        let me = self.cluster.me;
        let others: Vec<_> = job
            .nodes
            .iter()
            .copied()
            .filter(|n| Some(*n) != me)
            .collect();
        self.remove_job(&id, "cancelled");
        for n in others {
            self.send(n, PeerMsg::DelJob(id));
        }
        Cancelled::Yes
    }
}
