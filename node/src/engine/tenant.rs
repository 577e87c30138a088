//! A tenant's view of the engine: [`Command::As`] runs a command inside
//! the tenant's namespace (`tenant/mod.rs`). Queue names it gives get its
//! prefix; ids of jobs outside its queues answer as jobs this node does
//! not hold (so ids cannot be probed); lists hold only its own; replies
//! to it have the prefix taken off again. Its quotas are checked here,
//! before the command runs: a refused add changes nothing.
//!
//! This is the one place isolation is decided: every door hands the
//! engine a command, wrapped in `As` when the client is a tenant.

use std::sync::Arc;

use super::{Engine, RequestId, no_job, no_module, worker};
use crate::api::{AddJob, Command, ErrorCode, Inspection, JobScanItem, Query, Reply, TenantStat};
use crate::job::{JobId, UnixMs};
use crate::tenant::Tenant;

/// What the engine keeps per tenant between commands: its rate bucket,
/// its use (metrics, fair share) and its refusals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantUse {
    /// Token bucket of `jobs-per-sec`: tokens left, and when last filled.
    bucket: f64,
    filled_at: UnixMs,
    /// Fuel its Wasm jobs used on this node.
    pub fuel_used: u64,
    /// Memory-seconds: each run's memory cap times its run time.
    pub memory_ms: u128,
    /// Wasm runs finished on this node.
    pub runs: u64,
    /// Adds refused, by quota name.
    pub refused: std::collections::BTreeMap<&'static str, u64>,
}

impl Engine {
    /// Runs `cmd` as `tenant`: the command rewritten into the tenant's
    /// namespace, or its refusal answered (`None`).
    pub(super) fn scope(
        &mut self,
        now: UnixMs,
        req: RequestId,
        t: &Arc<Tenant>,
        cmd: Command,
    ) -> Option<Command> {
        let visible =
            |e: &Engine, id: &JobId| e.jobs.get(id).is_none_or(|j| t.owns_queue(&j.queue));
        let keep = |e: &Engine, ids: Vec<JobId>| -> Vec<JobId> {
            ids.into_iter().filter(|id| visible(e, id)).collect()
        };
        let refuse = |e: &mut Engine, reply: Reply| {
            e.reply(req, reply);
            None
        };
        self.fair.set_weight(&t.name, t.quotas.weight);
        let cmd = match cmd {
            Command::AddJob(a) => match self.tenant_add(now, t, *a) {
                Ok(a) => Command::AddJob(Box::new(a)),
                Err(reply) => return refuse(self, reply),
            },
            Command::AddPart { parent, .. }
            | Command::Show { id: parent }
            | Command::Explain { id: parent }
            | Command::Wait { id: parent, .. }
                if !visible(self, &parent) =>
            {
                return refuse(self, no_job(&parent));
            }
            Command::Working { id } if !visible(self, &id) => {
                return refuse(self, worker::job_not_known());
            }
            Command::Finish { id, .. } if !visible(self, &id) => {
                return refuse(self, no_job(&id));
            }
            // Other tenants' ids answer as missing ones (cancel.rs names
            // the first id when none is known).
            Command::Cancel { ids } => {
                let first = ids.first().copied();
                let ids = keep(self, ids);
                match first {
                    Some(first) if ids.is_empty() => return refuse(self, no_job(&first)),
                    _ => Command::Cancel { ids },
                }
            }
            Command::Ack { ids, fast } => Command::Ack {
                ids: keep(self, ids),
                fast,
            },
            Command::DelJob { ids } => Command::DelJob {
                ids: keep(self, ids),
            },
            Command::Nack { ids, delay_ms } => Command::Nack {
                ids: keep(self, ids),
                delay_ms,
            },
            Command::Dlq(mut d) => {
                d.queue = t.queue(&d.queue);
                Command::Dlq(d)
            }
            Command::QRetry { queue, set } => Command::QRetry {
                queue: t.queue(&queue),
                set,
            },
            Command::Enqueue { ids } => Command::Enqueue {
                ids: keep(self, ids),
            },
            Command::Dequeue { ids } => Command::Dequeue {
                ids: keep(self, ids),
            },
            Command::ListModules => {
                let modules = t.modules.keys().filter_map(|h| self.module(h)).collect();
                let cat = wasque_sdk::proto::ModuleCatalogue {
                    modules,
                    unanswered: Vec::new(),
                };
                return refuse(self, Reply::Modules(cat));
            }
            Command::StatModule { hash } | Command::DeleteModule { hash }
                if !t.modules.contains_key(&hash) =>
            {
                return refuse(self, no_module(&hash));
            }
            Command::DeleteModule { hash } => {
                // The tenant gives up its claim (the door then asks the
                // registry); the files go only when nobody owns them.
                let used = self
                    .jobs
                    .values()
                    .filter(|j| t.owns_queue(&j.queue) && !j.state.is_finished())
                    .filter(|j| j.module() == Some(hash))
                    .count();
                let reply = if used > 0 {
                    Reply::error(
                        ErrorCode::Err,
                        format!(
                            "module {hash} is used by {used} queued or running job(s) of yours; ack or delete them first"
                        ),
                    )
                } else {
                    Reply::Ok
                };
                return refuse(self, reply);
            }
            Command::GetJob(mut g) => {
                for q in &mut g.queues {
                    *q = t.queue(q);
                }
                Command::GetJob(g)
            }
            Command::QLen { queue } => Command::QLen {
                queue: t.queue(&queue),
            },
            Command::QPeek { queue, count } => Command::QPeek {
                queue: t.queue(&queue),
                count,
            },
            Command::QStat { queue } => Command::QStat {
                queue: t.queue(&queue),
            },
            Command::Pause { queue, set, bcast } => Command::Pause {
                queue: t.queue(&queue),
                set,
                bcast,
            },
            Command::QPolicy { queue, set } => Command::QPolicy {
                queue: t.queue(&queue),
                set,
            },
            Command::QScan(mut q) => {
                q.prefix = Some(t.prefix.to_string());
                Command::QScan(q)
            }
            Command::JScan(mut j) => {
                j.queue = j.queue.map(|q| t.queue(&q));
                j.prefix = Some(t.prefix.to_string());
                Command::JScan(j)
            }
            Command::Inspect(q) => Command::Inspect(match q {
                Query::Stats => {
                    return refuse(
                        self,
                        Reply::error(ErrorCode::NoAuth, "node figures are the admin's"),
                    );
                }
                Query::Queues { cursor, limit, .. } => Query::Queues {
                    prefix: Some(t.prefix.to_string()),
                    cursor: cursor.map(|c| t.queue(&c)),
                    limit,
                },
                Query::Queue { name } => Query::Queue {
                    name: t.queue(&name),
                },
                Query::Jobs(mut j) => {
                    j.queue = j.queue.map(|q| t.queue(&q));
                    j.prefix = Some(t.prefix.to_string());
                    Query::Jobs(j)
                }
                Query::Tenants { .. } => Query::Tenants {
                    names: vec![t.name.to_string()],
                },
            }),
            Command::FlushAll | Command::DebugPanicDriver | Command::As { .. } => {
                return refuse(
                    self,
                    Reply::error(ErrorCode::NoAuth, "this command is the admin's"),
                );
            }
            Command::WithKey { key, cmd } => Command::WithKey {
                key,
                cmd: Box::new(self.scope(now, req, t, *cmd)?),
            },
            other => other,
        };
        Some(cmd)
    }

    /// An add by a tenant: its module must be its own, its limits within
    /// its quotas (which also cap the node's defaults), its job count and
    /// rate under theirs. The queue gets the tenant's prefix.
    fn tenant_add(&mut self, now: UnixMs, t: &Tenant, mut a: AddJob) -> Result<AddJob, Reply> {
        for m in a.module.iter().chain(a.map.as_ref().map(|s| &s.map)) {
            if !t.modules.contains_key(m) {
                return Err(no_module(m));
            }
        }
        // A duplicate of an add the node remembers adds nothing: no quota
        // applies to it (`idem.rs` answers it).
        if let Some(key) = a.idempotency_key.as_deref()
            && self.idem_lookup(now, &t.queue(&a.queue), key).is_some()
        {
            a.queue = t.queue(&a.queue);
            return Ok(a);
        }
        let q = &t.quotas;
        let d = self.cfg.default_limits;
        let caps = [
            ("max-fuel", q.max_fuel, &mut a.limits.fuel, d.fuel),
            (
                "max-memory",
                q.max_memory_bytes,
                &mut a.limits.memory_bytes,
                d.memory_bytes,
            ),
        ];
        for (name, cap, asked, default) in caps {
            let Some(cap) = cap else { continue };
            match *asked {
                Some(v) if v > cap => {
                    let msg = format!(
                        "quota {name} of tenant {} is {cap}; the job asks for {v}",
                        t.name
                    );
                    return Err(self.quota_refusal(&t.name, name, msg));
                }
                Some(_) => {}
                None => *asked = Some(default.min(cap)),
            }
        }
        if let Some(max) = q.max_jobs
            && self.jobs.tenant_jobs(&t.name) >= max
        {
            let msg = format!(
                "quota max-jobs of tenant {} is {max}, and it holds {max} jobs on this node; ack or delete some first",
                t.name
            );
            return Err(self.quota_refusal(&t.name, "max-jobs", msg));
        }
        if let Some(rate) = q.jobs_per_sec {
            let u = self.tenant_use.entry(t.name.clone()).or_default();
            let burst = rate as f64;
            if u.filled_at == 0 {
                u.bucket = burst;
            } else {
                let secs = now.saturating_sub(u.filled_at) as f64 / 1000.0;
                u.bucket = (u.bucket + secs * rate as f64).min(burst);
            }
            u.filled_at = now;
            if u.bucket < 1.0 {
                let msg = format!(
                    "quota jobs-per-sec of tenant {} is {rate}; try again in a moment",
                    t.name
                );
                return Err(self.quota_refusal(&t.name, "jobs-per-sec", msg));
            }
            u.bucket -= 1.0;
        }
        a.queue = t.queue(&a.queue);
        Ok(a)
    }

    fn quota_refusal(&mut self, tenant: &Arc<str>, quota: &'static str, msg: String) -> Reply {
        let u = self.tenant_use.entry(tenant.clone()).or_default();
        *u.refused.entry(quota).or_default() += 1;
        Reply::error(ErrorCode::Quota, msg)
    }

    /// Tenants' weights for the fair share, as the registry has them (the
    /// runtime passes them on at start and as they change; a tenant's own
    /// commands also carry its weight).
    pub fn set_tenant_weight(&mut self, tenant: &str, weight: u32) {
        self.fair.set_weight(tenant, weight);
    }

    /// Per-tenant use and refusals, for metrics.
    pub fn tenant_use(&self) -> impl Iterator<Item = (&Arc<str>, &TenantUse)> {
        self.tenant_use.iter()
    }

    /// Jobs a tenant holds on this node.
    pub fn tenant_jobs(&self, tenant: &str) -> u64 {
        self.jobs.tenant_jobs(tenant)
    }

    /// A tenant's figures on this node (zeros for one never seen here),
    /// with `ready` jobs in its queues.
    pub(super) fn tenant_stat(&self, name: String, ready: u64) -> TenantStat {
        let mut st = TenantStat {
            jobs: self.jobs.tenant_jobs(&name),
            ready,
            ..TenantStat::default()
        };
        if let Some(u) = self.tenant_use.get(name.as_str()) {
            st.runs = u.runs;
            st.fuel_used = u.fuel_used;
            st.memory_byte_ms = u.memory_ms;
            st.refused = u.refused.iter().map(|(k, v)| (*k, *v)).collect();
        }
        st.name = name;
        st
    }

    /// Notes a finished run against its tenant (if its queue has one).
    pub(super) fn charge_tenant(&mut self, queue: &str, fuel: u64, memory_bytes: u64, us: u64) {
        let Some(name) = crate::tenant::tenant_of_queue(queue) else {
            return;
        };
        let u = match self.tenant_use.get_mut(name) {
            Some(u) => u,
            None => self.tenant_use.entry(Arc::from(name)).or_default(),
        };
        u.fuel_used = u.fuel_used.saturating_add(fuel);
        u.memory_ms = u
            .memory_ms
            .saturating_add(u128::from(memory_bytes) * u128::from(us) / 1000);
        u.runs += 1;
    }
}

/// The reply a tenant sees: queue names without its prefix.
pub(super) fn unscope(prefix: &str, reply: &mut Reply) {
    let strip = |q: &mut String| {
        if let Some(rest) = q.strip_prefix(prefix) {
            *q = rest.to_string();
        }
    };
    match reply {
        Reply::Job(s) => strip(&mut s.queue),
        Reply::Jobs(list) => list.iter_mut().for_each(|j| strip(&mut j.queue)),
        Reply::QStat(s) => strip(&mut s.name),
        Reply::QueueScan { queues, .. } => queues.iter_mut().for_each(strip),
        Reply::JobScan { jobs, .. } => {
            for j in jobs {
                if let JobScanItem::Full(s) = j {
                    strip(&mut s.queue);
                }
            }
        }
        Reply::Inspect(i) => match &mut **i {
            Inspection::Queues(p) => {
                p.queues.iter_mut().for_each(|q| strip(&mut q.name));
                if let Some(n) = &mut p.next {
                    strip(n);
                }
            }
            Inspection::Queue(Some(q)) => strip(&mut q.name),
            Inspection::Jobs(p) => p.jobs.iter_mut().for_each(|j| strip(&mut j.queue)),
            _ => {}
        },
        _ => {}
    }
}
