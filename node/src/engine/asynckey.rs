//! The `asynckey` lock: a job added with `asynckey K` is shown, waited on,
//! acknowledged, deleted, nacked or re-queued only by a request carrying
//! K ([`Command::WithKey`]), whatever door it came through. A request
//! without K, or with another key, gets exactly what it would get for a
//! job this node does not hold, so ids cannot be probed. The node's
//! password does not open a keyed job: the key is the job's own secret.
//!
//! This is the one place the lock is checked: every door hands the engine
//! a command, and [`Engine::unlock`] runs before any job-addressed command
//! does.

use super::{Engine, RequestId, no_job, worker};
use crate::api::Command;
use crate::job::JobId;

impl Engine {
    /// A command with the jobs `key` does not open taken out: for a command
    /// on one job, the reply a missing job gets (and `None`, nothing left
    /// to do); for a command on many, the locked ids dropped, as unknown
    /// ones are. A JSCAN carries the key so it lists the jobs it opens.
    pub(super) fn unlock(
        &mut self,
        req: RequestId,
        key: Option<&str>,
        cmd: Command,
    ) -> Option<Command> {
        let locked = |e: &Engine, id: &JobId| e.jobs.get(id).is_some_and(|j| !j.opens_with(key));
        let keep = |e: &Engine, ids: Vec<JobId>| -> Vec<JobId> {
            ids.into_iter().filter(|id| !locked(e, id)).collect()
        };
        Some(match cmd {
            Command::Show { id } | Command::Wait { id, .. } | Command::Explain { id }
                if locked(self, &id) =>
            {
                self.reply(req, no_job(&id));
                return None;
            }
            Command::Working { id } if locked(self, &id) => {
                self.reply(req, worker::job_not_known());
                return None;
            }
            Command::Ack { ids, fast } => Command::Ack {
                ids: keep(self, ids),
                fast,
            },
            Command::DelJob { ids } => Command::DelJob {
                ids: keep(self, ids),
            },
            Command::Cancel { ids } => {
                let first = ids.first().copied();
                let ids = keep(self, ids);
                match first {
                    Some(first) if ids.is_empty() => {
                        self.reply(req, no_job(&first));
                        return None;
                    }
                    _ => Command::Cancel { ids },
                }
            }
            Command::Nack { ids, delay_ms } => Command::Nack {
                ids: keep(self, ids),
                delay_ms,
            },
            Command::Dlq(mut d) => {
                d.key = key.map(str::to_string);
                Command::Dlq(d)
            }
            Command::Enqueue { ids } => Command::Enqueue {
                ids: keep(self, ids),
            },
            Command::Dequeue { ids } => Command::Dequeue {
                ids: keep(self, ids),
            },
            Command::JScan(mut j) => {
                j.key = key.map(str::to_string);
                Command::JScan(j)
            }
            // A key on a key: the inner one is ignored, the outer applies.
            Command::WithKey { cmd, .. } => return self.unlock(req, key, *cmd),
            other => other,
        })
    }
}
