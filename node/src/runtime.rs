//! The driver: the one place that feeds the engine its events (commands
//! from front doors, finished executions, timers) and carries out the
//! effects it returns (replies, executions, module removals).
//!
//! One tokio task owns the [`Engine`]; front doors reach it through a
//! cheap-clone [`Handle`]. Executions run on the executor's own threads,
//! never on the async runtime's.

use hashbrown::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::api::{Command, ErrorCode, ModuleInfo, NodeInfo, Reply};
use crate::auth::Principal;
use crate::cluster::wire::{ModuleAnswer, ModuleAsk};
use crate::cluster::{Cluster, ClusterConfig, PeerEvent};
use crate::config::Config;
use crate::engine::{Effect, Engine, EngineConfig, RequestId};
use crate::exec::{ExecConfig, ExecDone, ExecRequest, Executor};
use crate::job::{ModuleHash, NodeName, UnixMs};
use crate::monitor::Monitor;
use crate::net::identity::Identity;
use crate::net::quic::{self, QuicConfig};
use crate::net::resp::pubsub::Hub;
use crate::store::DataDir;
use wasque_sdk::proto::WireError;

/// Where a reply goes: a front door's reply channel and the tag it gave.
#[derive(Clone, Debug)]
pub struct ReplyTo {
    pub tx: ReplyTx,
    pub tag: u64,
}

/// A front door's reply channel. The driver never waits on one: a bounded
/// channel that is full gets the reply dropped and its `overflow` called
/// (the front door then closes that connection), never a stalled driver.
#[derive(Clone)]
pub enum ReplyTx {
    /// A door that bounds its owed replies itself (RESP counts its slots;
    /// `Handle::call` awaits one reply).
    Unbounded(mpsc::UnboundedSender<(u64, Reply)>),
    /// The QUIC client door: as many slots as requests it lets in flight.
    Bounded {
        tx: mpsc::Sender<(u64, Reply)>,
        overflow: Arc<dyn Fn() + Send + Sync>,
    },
}

impl std::fmt::Debug for ReplyTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyTx::Unbounded(_) => f.write_str("ReplyTx::Unbounded"),
            ReplyTx::Bounded { tx, .. } => f
                .debug_struct("ReplyTx::Bounded")
                .field("capacity", &tx.capacity())
                .finish_non_exhaustive(),
        }
    }
}

impl From<mpsc::UnboundedSender<(u64, Reply)>> for ReplyTx {
    fn from(tx: mpsc::UnboundedSender<(u64, Reply)>) -> ReplyTx {
        ReplyTx::Unbounded(tx)
    }
}

impl ReplyTx {
    /// Whether the front door went away (its receiver is gone).
    pub fn is_closed(&self) -> bool {
        match self {
            ReplyTx::Unbounded(tx) => tx.is_closed(),
            ReplyTx::Bounded { tx, .. } => tx.is_closed(),
        }
    }
}

impl ReplyTo {
    /// Sends the reply without waiting; a front door that went away is not
    /// an error, one that let its bounded channel fill up loses the reply
    /// and is told (`overflow`).
    pub fn send(self, reply: Reply) {
        match self.tx {
            ReplyTx::Unbounded(tx) => {
                let _ = tx.send((self.tag, reply));
            }
            ReplyTx::Bounded { tx, overflow } => {
                if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send((self.tag, reply)) {
                    overflow();
                }
            }
        }
    }
}

enum Input {
    Command(Command, ReplyTo),
    NodeInfo(ReplyTo),
    ModuleAdded(ModuleHash, u64),
    ModuleFetchFailed(ModuleHash),
    Leaving(bool),
    /// A module catalogue question about this node (`Handle::ask_local`).
    ModuleAsk(ModuleAsk, tokio::sync::oneshot::Sender<ModuleAnswer>),
    /// `CONFIG SET cluster-node-timeout`, in ms.
    NodeTimeout(u64),
    /// `CONFIG SET appendonly`: journal job changes or not.
    Journal(bool),
    /// `CONFIG SET maxmemory`: compare the resident memory with it now.
    MemoryCheck,
}

/// How long the module catalogue waits for a peer's answer to a list,
/// users or removal question.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Most turns of the driver's loop a round to be written on its own
/// thread waits for commands still coming (see `Driver::carry_out`).
/// Measured at pipeline 1 (benches/README.md, RESP, session 23): with 2,
/// 5 clients were fastest and 50 no faster than with the writer thread;
/// with 8, 50 clients 12 % faster than that and 5 about 12 % slower
/// than with 2, still 1.7 times the writer thread's rate.
const ROUND_WAITS: u8 = 8;
/// How long an upload waits for a peer to take a copy (it compiles).
const PUT_TIMEOUT: Duration = Duration::from_secs(60);
/// Job ids a refused removal names per node.
const USERS_NAMED: usize = 5;

/// A front door's way into the node. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    inputs: mpsc::UnboundedSender<Input>,
    executor: Executor,
    node_id: Arc<str>,
    /// Present when the node serves HTTP (metrics, event feed).
    monitor: Option<Monitor>,
    /// Job events for RESP subscribers.
    pubsub: Hub,
    /// The job store writer's figures (`appendonly yes`).
    store: Option<Arc<crate::store::WriterStats>>,
    cluster: Cluster,
    /// The node's live credentials, asked by every front door.
    auth: Arc<crate::auth::Auth>,
    /// The schedule registry (`sched/`).
    schedules: Arc<crate::sched::Schedules>,
    /// The module name table (`catalogue.rs`).
    names: Arc<crate::catalogue::ModuleNames>,
    /// `maxmemory` now (bytes, 0 = none), read by the driver each second.
    maxmemory: Arc<AtomicU64>,
    /// Whether job changes are journaled now (`appendonly`, which CONFIG
    /// SET can turn off).
    journal: Arc<AtomicBool>,
}

impl Handle {
    /// Who may use the node (`requirepass`, read live).
    pub fn auth(&self) -> &crate::auth::Auth {
        &self.auth
    }

    /// The node's peers and links.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The schedule registry, the same on every node of the cluster.
    pub fn schedules(&self) -> &Arc<crate::sched::Schedules> {
        &self.schedules
    }

    /// Whether a job naming this module can be added here: the node holds
    /// it, or a peer advertises it (the job's node fetches it).
    pub fn module_known(&self, hash: &ModuleHash) -> bool {
        self.executor.has_module(hash)
            || self.cluster.peers().iter().any(|p| {
                p.up && p
                    .advert
                    .as_ref()
                    .is_some_and(|a| a.module_hashes.contains(hash))
            })
    }

    /// `CLUSTER LEAVING yes|no`: a leaving node refuses new jobs
    /// (`-LEAVING`), peers stop placing copies on it, and its queued jobs
    /// go to peers that ask for work.
    pub fn set_leaving(&self, on: bool) {
        self.cluster.set_leaving(on);
        let _ = self.inputs.send(Input::Leaving(on));
    }

    /// `maxmemory` in force (bytes; 0: no bound).
    pub fn maxmemory(&self) -> u64 {
        self.maxmemory.load(Ordering::Relaxed)
    }

    /// `CONFIG SET maxmemory`: the driver compares the node's resident
    /// memory with it at once, then each second.
    pub fn set_maxmemory(&self, bytes: u64) {
        self.maxmemory.store(bytes, Ordering::Relaxed);
        let _ = self.inputs.send(Input::MemoryCheck);
    }

    /// Whether job changes reach the job store now (`appendonly`).
    pub fn journaling(&self) -> bool {
        self.journal.load(Ordering::Relaxed)
    }

    /// `CONFIG SET appendonly`: turning it off stops writing job changes
    /// (the store is left as it was, as Disque leaves its AOF); turning
    /// it on is only possible while the store is still written, since a
    /// store that missed changes cannot be trusted again without a
    /// restart. Returns why not, when it cannot.
    pub fn set_journal(&self, on: bool) -> Result<(), String> {
        if on == self.journaling() {
            return Ok(());
        }
        if on {
            return Err(if self.store.is_none() {
                "the node started with appendonly no: the job store is opened at start, so set appendonly yes in the config file and restart".into()
            } else {
                "the job store missed changes since appendonly was turned off: restart the node with appendonly yes to turn it on again".into()
            });
        }
        self.journal.store(false, Ordering::Relaxed);
        let _ = self.inputs.send(Input::Journal(false));
        Ok(())
    }

    /// `CONFIG SET cluster-node-timeout`: the failure detector and the
    /// engine's wait for a down holder's peers follow the new value.
    pub fn set_node_timeout(&self, timeout: std::time::Duration) {
        self.cluster.set_node_timeout(timeout);
        let ms = self.cluster.node_timeout().as_millis() as u64;
        let _ = self.inputs.send(Input::NodeTimeout(ms));
    }

    /// The node's job-event fan-out (RESP `SUBSCRIBE`).
    pub fn pubsub(&self) -> &Hub {
        &self.pubsub
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The executor's counters (threads, busy slots, compiles).
    pub fn exec_stats(&self) -> crate::exec::ExecStats {
        self.executor.stats()
    }

    /// Why the job store cannot write right now (`None`: it can, or the
    /// node runs with `appendonly no`).
    pub fn store_broken(&self) -> Option<String> {
        self.store.as_ref().and_then(|s| s.broken())
    }

    /// Hands a command to the engine; the reply goes to `reply`.
    pub fn submit(&self, cmd: Command, reply: ReplyTo) {
        if let Err(mpsc::error::SendError(Input::Command(_, reply))) =
            self.inputs.send(Input::Command(cmd, reply))
        {
            reply.send(stopping());
        }
    }

    /// Asks for the node's description.
    pub fn node_info(&self, reply: ReplyTo) {
        if let Err(mpsc::error::SendError(Input::NodeInfo(reply))) =
            self.inputs.send(Input::NodeInfo(reply))
        {
            reply.send(stopping());
        }
    }

    /// One command, awaited (for front doors without their own reply
    /// channel, and for tests).
    pub async fn call(&self, cmd: Command) -> Reply {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.submit(
            cmd,
            ReplyTo {
                tx: tx.into(),
                tag: 0,
            },
        );
        rx.recv().await.map(|(_, r)| r).unwrap_or_else(stopping)
    }

    /// Who a principal is to the engine: commands of a tenant are wrapped
    /// in [`Command::As`] with its current snapshot; a tenant removed since
    /// it authenticated is refused.
    /// An add naming its module by name (`NAME@VERSION`, or `NAME` for the
    /// latest) gets the module's hash here, as `who` resolves it.
    pub fn scoped(&self, who: &Principal, cmd: Command) -> Result<Command, WireError> {
        let cmd = self.resolve_names(who, cmd)?;
        match who {
            Principal::Admin => Ok(cmd),
            Principal::Tenant(name) => Ok(Command::As {
                tenant: self.tenant(name)?,
                cmd: Box::new(cmd),
            }),
        }
    }

    /// Resolves an add's `module_name` to its hash (the name table is the
    /// same on every node), as `who` sees names.
    fn resolve_names(&self, who: &Principal, cmd: Command) -> Result<Command, WireError> {
        let Command::AddJob(mut a) = cmd else {
            return Ok(cmd);
        };
        if let Some(spec) = a.module_name.take() {
            if a.module.is_some() {
                return Err(WireError::new(
                    ErrorCode::Err,
                    "an add names its module by hash or by name, not both",
                ));
            }
            a.module = Some(self.resolve_module_name(who, &spec)?);
        }
        Ok(Command::AddJob(a))
    }

    /// The hash a module name (`NAME@VERSION`, or `NAME` for the latest)
    /// stands for, as `who` sees names: `NOMODULE` for an unknown one.
    pub fn resolve_module_name(
        &self,
        who: &Principal,
        spec: &str,
    ) -> Result<crate::job::ModuleHash, WireError> {
        let tenant = match who {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(&**t),
        };
        self.names.resolve(tenant, spec).map_err(|e| match e {
            crate::catalogue::NameError::Invalid(m) => WireError::new(ErrorCode::Err, m),
            other => WireError::new(ErrorCode::NoModule, other.to_string()),
        })
    }

    /// A tenant's current snapshot, or the refusal a removed one gets.
    pub fn tenant(&self, name: &str) -> Result<Arc<crate::tenant::Tenant>, WireError> {
        self.auth.tenants().get(name).ok_or_else(|| {
            WireError::new(
                ErrorCode::NoAuth,
                format!("tenant {name} no longer exists; authenticate again"),
            )
        })
    }

    /// Submits a command as `who` (see [`Handle::scoped`]).
    pub fn submit_as(&self, who: &Principal, cmd: Command, reply: ReplyTo) {
        match self.scoped(who, cmd) {
            Ok(cmd) => self.submit(cmd, reply),
            Err(e) => reply.send(Reply::Error(e)),
        }
    }

    /// A module catalogue question to this node's own driver.
    async fn ask_local(&self, ask: ModuleAsk) -> Result<ModuleAnswer, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inputs
            .send(Input::ModuleAsk(ask, tx))
            .map_err(|_| "the node is shutting down".to_string())?;
        rx.await
            .map_err(|_| "the node is shutting down".to_string())
    }

    /// The same question to this node and every live peer: each member's
    /// id and its answer, or why it gave none.
    async fn ask_everywhere(&self, ask: ModuleAsk) -> Vec<(String, Result<ModuleAnswer, String>)> {
        let (local, peers) = tokio::join!(
            self.ask_local(ask.clone()),
            self.cluster.ask_peers(ask, ASK_TIMEOUT)
        );
        let mut all = vec![(self.node_id.to_string(), local)];
        all.extend(peers.into_iter().map(|(n, a)| (n.to_string(), a)));
        all
    }

    /// `MODULE LIST` / `ListModules` / `GET /api/modules`: the union of the
    /// modules every reachable member holds, with their holders, jobs
    /// summed over the holders, and the names they are known by; members
    /// that did not answer are named. A tenant sees the modules it owns.
    pub async fn list_modules(&self, who: &Principal) -> Reply {
        let owned = match who {
            Principal::Admin => None,
            Principal::Tenant(name) => match self.tenant(name) {
                Ok(t) => Some(t),
                Err(e) => return Reply::Error(e),
            },
        };
        let mut all: std::collections::BTreeMap<ModuleHash, ModuleInfo> = Default::default();
        let mut unanswered = Vec::new();
        for (node, answer) in self.ask_everywhere(ModuleAsk::List).await {
            let list = match answer {
                Ok(ModuleAnswer::List(list)) => list,
                Ok(other) => {
                    tracing::warn!(node = %node, "module list answered with {other:?}");
                    unanswered.push(node);
                    continue;
                }
                Err(e) => {
                    tracing::info!(node = %node, "module list: {e}");
                    unanswered.push(node);
                    continue;
                }
            };
            for m in list {
                if owned
                    .as_ref()
                    .is_some_and(|t| !t.modules.contains_key(&m.hash))
                {
                    continue;
                }
                let e = all.entry(m.hash).or_insert_with(|| ModuleInfo {
                    hash: m.hash,
                    size: m.size,
                    compiled_now: false,
                    jobs: 0,
                    holders: Vec::new(),
                    names: Vec::new(),
                });
                e.jobs += m.jobs;
                e.holders.push(node.clone());
            }
        }
        let scope = match who {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(&**t),
        };
        let mut names = self.names.names_by_hash(scope);
        for m in all.values_mut() {
            m.holders.sort();
            m.names = names.remove(&m.hash).unwrap_or_default();
        }
        unanswered.sort();
        Reply::Modules(wasque_sdk::proto::ModuleCatalogue {
            modules: all.into_values().collect(),
            unanswered,
        })
    }

    /// `MODULE DEL` / `DeleteModule`: removes a module from every member
    /// that holds it. First every live member is asked which of its jobs
    /// (unfinished, the tenant's for a tenant) need it: any, or a member
    /// that does not answer, refuses the removal with the jobs (or the
    /// silent members) named, and nothing is removed. Then the admin
    /// removes the bytes on every holder (and from every tenant's list);
    /// a tenant gives up its own claim (replicated with the tenant
    /// registry), and the bytes go everywhere only when nobody else owns
    /// them. Each holder still refuses if a job came to need it meanwhile.
    pub async fn delete_module(&self, who: &Principal, hash: ModuleHash) -> Reply {
        let tenants = self.auth.tenants().clone();
        let tenant = match who {
            Principal::Admin => None,
            Principal::Tenant(name) => match self.tenant(name) {
                Ok(t) if t.modules.contains_key(&hash) => Some(name.to_string()),
                Ok(_) => return no_module_anywhere(&hash),
                Err(e) => return Reply::Error(e),
            },
        };
        let ask = ModuleAsk::Users {
            hash,
            tenant: tenant.clone(),
        };
        let mut holders = Vec::new();
        let mut used = Vec::new();
        let mut silent = Vec::new();
        for (node, answer) in self.ask_everywhere(ask).await {
            match answer {
                Ok(ModuleAnswer::Users { held, count, ids }) => {
                    if held {
                        holders.push(node.clone());
                    }
                    if count > 0 {
                        used.push((node, count, ids));
                    }
                }
                Ok(other) => silent.push(format!("{} (answered {other:?})", short(&node))),
                Err(e) => silent.push(format!("{} ({e})", short(&node))),
            }
        }
        if !used.is_empty() {
            let total: u64 = used.iter().map(|u| u.1).sum();
            let per: Vec<String> = used
                .iter()
                .map(|(node, count, ids)| {
                    let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                    let more = if *count > ids.len() as u64 {
                        ", ..."
                    } else {
                        ""
                    };
                    format!("{count} on node {} ({}{more})", short(node), ids.join(", "))
                })
                .collect();
            let whose = if tenant.is_some() { " of yours" } else { "" };
            return Reply::error(
                ErrorCode::Err,
                format!(
                    "module {hash} is needed by {total} unfinished job(s){whose}: {}; ack or delete them first",
                    per.join("; ")
                ),
            );
        }
        if !silent.is_empty() {
            return Reply::error(
                ErrorCode::Err,
                format!(
                    "module {hash} was not removed: node(s) {} did not answer, and jobs there may need it; try again once they answer (CLUSTER FORGET a node gone for good)",
                    silent.join(", ")
                ),
            );
        }
        if let Some(name) = &tenant {
            match tenants.release_module(name, &hash, now_ms()) {
                // Others own it too: their bytes stay.
                Ok(true) => {
                    self.names.drop_module(&hash, Some(name), now_ms());
                    self.cluster.push_names();
                    return Reply::Ok;
                }
                Ok(false) => {}
                Err(e) => return Reply::error(ErrorCode::Err, e.to_string()),
            }
            self.names.drop_module(&hash, Some(name), now_ms());
            self.cluster.push_names();
            // Nobody owns it now; jobs of others may still use it, in
            // which case a holder keeps its files until an admin removes
            // them.
            let _ = self.remove_on(&holders, hash).await;
            return Reply::Ok;
        }
        if holders.is_empty() {
            // Names of bytes no member holds any more go all the same.
            if self.names.names_by_hash(None).contains_key(&hash) {
                self.names.drop_module(&hash, None, now_ms());
                self.cluster.push_names();
                return Reply::Ok;
            }
            return no_module_anywhere(&hash);
        }
        let failed = self.remove_on(&holders, hash).await;
        tenants.drop_module(&hash, now_ms());
        self.names.drop_module(&hash, None, now_ms());
        self.cluster.push_names();
        if failed.is_empty() {
            Reply::Ok
        } else {
            Reply::error(
                ErrorCode::Err,
                format!(
                    "module {hash} was removed from {} of {} holder(s), not from: {}",
                    holders.len() - failed.len(),
                    holders.len(),
                    failed.join("; ")
                ),
            )
        }
    }

    /// Removes a module's bytes on these members (this node among them or
    /// not); the ones that did not, with why.
    async fn remove_on(&self, nodes: &[String], hash: ModuleHash) -> Vec<String> {
        let asks = nodes.iter().map(|node| async move {
            let answer = if **node == *self.node_id {
                self.ask_local(ModuleAsk::Remove(hash)).await
            } else {
                match NodeName::from_hex(node) {
                    Some(n) => {
                        self.cluster
                            .ask_peer(n, ModuleAsk::Remove(hash), ASK_TIMEOUT)
                            .await
                    }
                    None => Err(format!("bad node id {node}")),
                }
            };
            match answer {
                Ok(ModuleAnswer::Done(Ok(_))) => None,
                Ok(ModuleAnswer::Done(Err(e))) | Err(e) => Some(format!("{}: {e}", short(node))),
                Ok(other) => Some(format!("{}: answered {other:?}", short(node))),
            }
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Validates, compiles and stores a module (on a blocking thread: a
    /// compile can take a while), then tells the engine about it. The
    /// module becomes `who`'s: a tenant's module-bytes quota is checked
    /// first (a module it owns already costs nothing).
    ///
    /// With `opts.replicate` above 1 the bytes are pushed to live peers
    /// (not leaving) until that many nodes hold them, this one included,
    /// before the answer: a job added anywhere then finds the module even
    /// if this node goes away. Too few live peers: `-NOREPL`, the module
    /// staying where it got to.
    pub async fn put_module(
        &self,
        who: &Principal,
        bytes: Vec<u8>,
        opts: wasque_sdk::proto::PutOptions,
    ) -> Result<ModuleInfo, WireError> {
        if opts.name.is_some() != opts.version.is_some() {
            return Err(WireError::new(
                ErrorCode::Err,
                "a module name needs a version, and a version a name",
            ));
        }
        let tenants = self.auth.tenants().clone();
        let scope = match who {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(t.to_string()),
        };
        let named = opts.name.as_deref().zip(opts.version.as_deref());
        if let Some((name, version)) = named {
            // Before compiling: a name taken by other bytes is refused.
            self.names
                .check(scope.as_deref(), name, version, &ModuleHash::of(&bytes))
                .map_err(name_error)?;
        }
        let owner = match who {
            Principal::Admin => None,
            Principal::Tenant(name) => {
                let t = self.tenant(name)?;
                let hash = ModuleHash::of(&bytes);
                let size = bytes.len() as u64;
                if let Some(max) = t.quotas.max_module_bytes
                    && !t.modules.contains_key(&hash)
                {
                    let owned: u64 = t.modules.values().sum();
                    if owned.saturating_add(size) > max {
                        tenants.note_upload_refused(name);
                        return Err(WireError::new(
                            ErrorCode::Quota,
                            format!(
                                "quota max-module-bytes of tenant {name} is {max}: it owns {owned} bytes of modules, this one is {size}"
                            ),
                        ));
                    }
                }
                Some(name.clone())
            }
        };
        let copies = opts.replicate.max(1) as usize;
        let kept = (copies > 1).then(|| bytes.clone());
        let mut info = self.compile_module(bytes).await?;
        self.cluster.announce_module(info.hash);
        tenants
            .own_module(owner.as_deref(), info.hash, info.size, now_ms())
            .map_err(|e| match e {
                crate::tenant::TenantError::Invalid(m) => WireError::new(ErrorCode::Quota, m),
                other => WireError::new(ErrorCode::Internal, other.to_string()),
            })?;
        if let Some((name, version)) = named {
            self.names
                .name(scope.as_deref(), name, version, info.hash, now_ms())
                .map_err(name_error)?;
            self.cluster.push_names();
            info.names = self
                .names
                .names_by_hash(scope.as_deref())
                .remove(&info.hash)
                .unwrap_or_default();
        }
        if let Some(bytes) = kept {
            let more = self.replicate_module(bytes, copies - 1).await?;
            info.holders.extend(more);
        }
        Ok(info)
    }

    /// Pushes a module's bytes to `want` live peers (up, not leaving),
    /// trying the next peer when one fails; returns the peers that took
    /// it, or `-NOREPL` when too few did.
    async fn replicate_module(
        &self,
        bytes: Vec<u8>,
        want: usize,
    ) -> Result<Vec<String>, WireError> {
        let candidates: Vec<NodeName> = self
            .cluster
            .peers()
            .into_iter()
            .filter(|p| p.up && !p.leaving)
            .map(|p| p.node)
            .collect();
        let mut took = Vec::new();
        let mut why = Vec::new();
        let mut next = candidates.iter();
        while took.len() < want {
            let wave: Vec<NodeName> = next.by_ref().take(want - took.len()).copied().collect();
            if wave.is_empty() {
                break;
            }
            let asks = wave.iter().map(|n| {
                let ask = ModuleAsk::Put(bytes.clone());
                async move { (*n, self.cluster.ask_peer(*n, ask, PUT_TIMEOUT).await) }
            });
            for (n, answer) in futures_util::future::join_all(asks).await {
                match answer {
                    Ok(ModuleAnswer::Done(Ok(_))) => took.push(n.to_string()),
                    Ok(ModuleAnswer::Done(Err(e))) | Err(e) => {
                        why.push(format!("{}: {e}", n.short()))
                    }
                    Ok(other) => why.push(format!("{}: answered {other:?}", n.short())),
                }
            }
        }
        if took.len() < want {
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join("; "))
            };
            return Err(WireError::new(
                ErrorCode::NoRepl,
                format!(
                    "the module is on {} of the {} node(s) asked for: {} live peer(s) could take a copy{why}",
                    took.len() + 1,
                    want + 1,
                    candidates.len()
                ),
            ));
        }
        Ok(took)
    }

    async fn compile_module(&self, bytes: Vec<u8>) -> Result<ModuleInfo, WireError> {
        let exec = self.executor.clone();
        let outcome = tokio::task::spawn_blocking(move || exec.put_module(&bytes))
            .await
            .map_err(|e| WireError::new(ErrorCode::Internal, format!("compile task failed: {e}")))?
            .map_err(|e| match e {
                crate::exec::ExecError::TooLarge { .. } => {
                    WireError::new(ErrorCode::TooBig, e.to_string())
                }
                // The error class of a broken module, as a job would report it.
                crate::exec::ExecError::InvalidModule(_) => WireError::new(
                    ErrorCode::BadModule,
                    format!("{}: {e}", crate::job::ErrorClass::InvalidModule),
                ),
                _ => WireError::new(ErrorCode::Internal, e.to_string()),
            })?;
        let _ = self
            .inputs
            .send(Input::ModuleAdded(outcome.hash, outcome.size));
        if let Some(m) = &self.monitor {
            m.module_upload(outcome.compiled_now);
        }
        Ok(ModuleInfo {
            hash: outcome.hash,
            size: outcome.size,
            compiled_now: outcome.compiled_now,
            jobs: 0,
            holders: vec![self.node_id.to_string()],
            names: Vec::new(),
        })
    }
}

fn name_error(e: crate::catalogue::NameError) -> WireError {
    match e {
        crate::catalogue::NameError::Io(e) => WireError::new(
            ErrorCode::Internal,
            format!("saving the module name table: {e}"),
        ),
        other => WireError::new(ErrorCode::Err, other.to_string()),
    }
}

fn no_module_anywhere(hash: &ModuleHash) -> Reply {
    Reply::error(
        ErrorCode::NoModule,
        format!("no module {hash} in the cluster (upload it first: wasque module put FILE.wasm)"),
    )
}

/// A node id's first 8 digits, as CLUSTER NODES shows them.
fn short(node: &str) -> &str {
    node.get(..8).unwrap_or(node)
}

fn stopping() -> Reply {
    Reply::error(ErrorCode::Err, "the node is shutting down")
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] crate::store::DataDirError),
    #[error(transparent)]
    Identity(#[from] crate::net::identity::IdentityError),
    #[error("executor: {0}")]
    Exec(#[from] crate::exec::ExecError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot join the cluster: {0}")]
    Join(String),
    #[error("cluster-announce-ip: {0}")]
    Announce(String),
    #[error("tenant registry: {0}")]
    Tenants(#[from] crate::tenant::TenantError),
    #[error("schedule registry: {0}")]
    Schedules(#[from] crate::sched::ScheduleError),
    #[error("module name table: {0}")]
    Names(#[from] crate::catalogue::NameError),
    #[error("cannot listen on {addr}: {source} (is another node using this port? pass --port N)")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running node.
pub struct Node {
    handle: Handle,
    quic_addr: SocketAddr,
    /// The QUIC address peers and clients are told (net/announce.rs).
    announce_addr: SocketAddr,
    /// The bound RESP address (TCP).
    resp_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    http_state: Option<crate::net::http::AppState>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Reports of essential tasks that died (supervise.rs).
    failures: crate::supervise::Failures,
    executor: Executor,
    ca_path: std::path::PathBuf,
    _data_dir: DataDir,
}

impl Node {
    /// Opens the data dir, loads modules, binds the listeners and starts
    /// serving.
    pub async fn start(cfg: Config) -> Result<Node, StartError> {
        let data_dir = DataDir::open(&cfg.data_dir)?;
        let node_id: Arc<str> = data_dir.node_id().into();
        let (announce_ip, names) = announced_ip(&cfg).await?;
        let identity = Identity::load_or_create(data_dir.path(), &node_id, &names)?;
        let tls_dir = data_dir.path().join("tls");
        let mut cluster_ca = crate::cluster::ca::load(&tls_dir)?;
        if identity.reissued && cluster_ca.is_none() {
            tracing::warn!(
                "loopback trust mode: peers pinned this node's old certificate and refuse the new one until they `CLUSTER FORGET` this node (ca trust mode has no pins)"
            );
        }
        if cluster_ca.is_none()
            && let Some(token) = &cfg.join_token
        {
            // `ca` trust mode: get this node's peer certificate first.
            let joined = join_with_token(&cfg.joins, token, &node_id).await?;
            crate::cluster::ca::save_joined(&tls_dir, &joined)?;
            cluster_ca = crate::cluster::ca::load(&tls_dir)?;
        }

        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let executor = Executor::open(
            ExecConfig {
                threads: cfg.exec_threads,
                max_memory_bytes: cfg.max_limits.memory_bytes,
                max_output_bytes: cfg.max_output_bytes,
                max_stderr_bytes: cfg.max_stderr_bytes,
                max_module_bytes: cfg.max_module_bytes,
                memory_cow: cfg.exec_memory_cow,
                node_id: node_id.to_string(),
                ..ExecConfig::default()
            },
            data_dir.path(),
            done_tx,
        )?;

        let prefix = u32::from_str_radix(&node_id[..6], 16).unwrap_or(0);
        let mut engine = Engine::new(EngineConfig {
            node_id: node_id.to_string(),
            node_prefix: prefix,
            default_limits: cfg.default_limits,
            max_limits: cfg.max_limits,
            // A few jobs per executor thread wait in the executor's own
            // queue, so a thread that finishes a job starts the next at
            // once instead of idling for a round trip through this driver.
            exec_slots: cfg.exec_threads * EXEC_JOBS_PER_THREAD,
            exec_slots_short: cfg.exec_threads * EXEC_JOBS_PER_THREAD_SHORT,
            max_body_bytes: cfg.max_body_bytes,
            max_jobs: cfg.max_jobs,
            seed: rand::random(),
            events: cfg.http_port.is_some(),
            journal: cfg.appendonly,
            // A node declared down after a short cut is seen again within
            // about one node timeout of the heal (membership announces to
            // down members that often).
            rescue_grace_ms: cfg.cluster_node_timeout_ms.saturating_mul(2),
            idempotency_window_ms: cfg.idempotency_window_secs.saturating_mul(1000),
            idempotency_max_tombstones: cfg.idempotency_max_tombstones,
            ..EngineConfig::default()
        });
        let tenants = Arc::new(crate::tenant::Tenants::open(data_dir.path())?);
        let schedules = Arc::new(crate::sched::Schedules::open(data_dir.path())?);
        let names = Arc::new(crate::catalogue::ModuleNames::open(data_dir.path())?);
        let on_disk = executor.modules();
        tenants.adopt_modules(on_disk.iter().map(|(h, _)| *h));
        for (hash, size) in on_disk {
            engine.handle_module_added(hash, size);
        }
        let policies_file = data_dir.path().join("queue-policies");
        engine.restore_policies(load_small_file(&policies_file, "queue policies"));
        // Before the jobs: a queue paused in output keeps them to itself.
        let pauses_file = data_dir.path().join("queue-pauses");
        engine.restore_pauses(now_ms(), load_small_file(&pauses_file, "queue pauses"));
        let retry_file = data_dir.path().join("queue-retry");
        engine.restore_retry_defaults(load_small_file(&retry_file, "queue retry defaults"));
        // Jobs come back before anything is served (issue 5, store/).
        let (written_tx, written_rx) = mpsc::unbounded_channel();
        let store = crate::store::open_and_restore(
            &cfg,
            data_dir.path(),
            &mut engine,
            now_ms(),
            written_tx,
        )?;

        let quic_cfg = QuicConfig {
            addr: SocketAddr::new(cfg.bind, cfg.port),
            max_frame_bytes: cfg.max_frame_bytes,
            max_reply_bytes: cfg.max_reply_bytes(),
            max_inflight: cfg.quic_max_inflight,
            max_module_bytes: cfg.max_module_bytes,
            max_connections: cfg.max_connections,
        };
        let endpoint =
            quic::bind(&quic_cfg, &identity, cluster_ca.as_ref()).map_err(|e| match e {
                crate::net::identity::IdentityError::Io { source, .. } => StartError::Listen {
                    addr: quic_cfg.addr,
                    source,
                },
                other => StartError::Identity(other),
            })?;
        let quic_addr = endpoint.local_addr().map_err(|source| StartError::Listen {
            addr: quic_cfg.addr,
            source,
        })?;
        // What peers gossip and dial, and clients are handed: never the
        // wildcard address this node may be bound to.
        let announce_addr =
            SocketAddr::new(announce_ip, cfg.announce_port.unwrap_or(quic_addr.port()));

        let (peer_tx, peer_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let cluster = Cluster::start(
            ClusterConfig {
                me: NodeName::from_hex(&node_id).unwrap_or(NodeName([0; 20])),
                addr: announce_addr,
                node_timeout: Duration::from_millis(cfg.cluster_node_timeout_ms.max(100)),
                // A module, or a batch of moved jobs, travels in one frame.
                max_frame_bytes: cfg
                    .max_module_bytes
                    .max(cfg.max_body_bytes + cfg.max_output_bytes + cfg.max_stderr_bytes)
                    * 2
                    + (16 << 20),
                joins: cfg.joins.clone(),
                peers_file: Some(data_dir.path().join("peers")),
                tls_dir,
                tenants: tenants.clone(),
                schedules: schedules.clone(),
                names: names.clone(),
            },
            endpoint.clone(),
            &identity,
            cluster_ca,
            quic::TUNING,
            executor.clone(),
            peer_tx,
            stop_rx.clone(),
        )?;

        let store_stats = store.as_ref().map(|s| s.stats());
        let monitor = cfg
            .http_port
            .map(|_| Monitor::with_store(store_stats.as_deref()));
        let http = match cfg.http_port {
            Some(port) => {
                let addr = SocketAddr::new(cfg.bind, port);
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Listen { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| StartError::Listen { addr, source })?;
                Some((listener, bound))
            }
            None => None,
        };
        let http_addr = http.as_ref().map(|(_, a)| *a);
        let resp_want = SocketAddr::new(cfg.bind, cfg.port);
        let resp_listener =
            crate::net::resp::bind(resp_want)
                .await
                .map_err(|source| StartError::Listen {
                    addr: resp_want,
                    source,
                })?;
        let resp_addr = resp_listener
            .local_addr()
            .map_err(|source| StartError::Listen {
                addr: resp_want,
                source,
            })?;

        // Adverts name the doors as peers and clients reach them: the
        // announced host; RESP shares the node's (announced) port.
        cluster.set_doors(
            SocketAddr::new(announce_ip, announce_addr.port()),
            http_addr.map(|a| SocketAddr::new(announce_ip, a.port())),
        );
        let (inputs_tx, inputs_rx) = mpsc::unbounded_channel();
        let pubsub = Hub::new();
        let handle = Handle {
            inputs: inputs_tx,
            executor: executor.clone(),
            node_id: node_id.clone(),
            monitor: monitor.clone(),
            pubsub: pubsub.clone(),
            store: store_stats,
            cluster: cluster.clone(),
            auth: Arc::new(crate::auth::Auth::with_tenants(
                cfg.requirepass.clone(),
                tenants,
            )),
            schedules: schedules.clone(),
            names,
            maxmemory: Arc::new(AtomicU64::new(cfg.maxmemory)),
            journal: Arc::new(AtomicBool::new(cfg.appendonly)),
        };
        let started = Instant::now();
        let driver = Driver {
            engine,
            executor: executor.clone(),
            pending: HashMap::new(),
            next_req: 1,
            started,
            monitor: monitor.clone(),
            pubsub,
            store,
            written: Some(written_rx),
            released: Default::default(),
            round_waits: 0,
            round_yielded: false,
            cluster: cluster.clone(),
            inputs: handle.inputs.clone(),
            policies_file,
            pauses_file,
            retry_file,
            tenants: handle.auth.tenants().clone(),
            maxmemory: handle.maxmemory.clone(),
        };
        // Essential tasks: one that panics or ends early ends the node
        // (supervise.rs), instead of leaving open sockets that answer nothing.
        let (fatal, failures) = crate::supervise::channel();
        let (clients_tx, clients_rx) = tokio::sync::watch::channel(false);
        let essential =
            |name, fut| crate::supervise::spawn(name, fut, stop_rx.clone(), fatal.clone());
        let mut tasks = vec![
            essential(
                "driver",
                Box::pin(driver.run(inputs_rx, done_rx, peer_rx, stop_rx.clone())) as Task,
            ),
            essential(
                "quic accept loop",
                Box::pin(quic::serve(
                    endpoint,
                    quic_cfg,
                    handle.clone(),
                    cluster.clone(),
                    clients_rx,
                    stop_rx.clone(),
                )),
            ),
        ];
        // A restarted node meets its saved peers again before it opens its
        // client doors (for at most 3 s, or the node timeout if shorter:
        // peers announce to a member they hold down once per node
        // timeout), as Disque knows them from its nodes file at start.
        // Peer connections are accepted meanwhile (the peers' answers come
        // over them); clients wait.
        cluster
            .await_rejoin(Duration::from_millis(
                cfg.cluster_node_timeout_ms.min(3_000),
            ))
            .await;
        let _ = clients_tx.send(true);
        tasks.push(essential(
            "resp accept loop",
            Box::pin(crate::net::resp::serve(
                resp_listener,
                Arc::new(crate::net::resp::Shared::new(&cfg)),
                handle.clone(),
                stop_rx.clone(),
            )),
        ));
        tasks.push(essential(
            "schedule ticker",
            Box::pin(crate::sched::ticker::run(
                handle.clone(),
                schedules,
                crate::sched::Timing::for_node_timeout(cfg.cluster_node_timeout_ms),
                stop_rx.clone(),
            )),
        ));
        let mut http_state = None;
        if let (Some((listener, addr)), Some(monitor)) = (http, monitor) {
            let state = crate::net::http::AppState::new(
                handle.clone(),
                monitor,
                started,
                quic_addr,
                addr,
                // The announced name is one of this node's names.
                cfg.http_hosts
                    .iter()
                    .cloned()
                    .chain(
                        cfg.announce_host
                            .iter()
                            .filter(|h| h.parse::<std::net::IpAddr>().is_err())
                            .cloned(),
                    )
                    .collect(),
                stop_rx.clone(),
            );
            http_state = Some(state.clone());
            tasks.push(essential(
                "http server",
                Box::pin(crate::net::http::serve(listener, state)),
            ));
        }
        Ok(Node {
            handle,
            quic_addr,
            announce_addr,
            resp_addr,
            http_addr,
            http_state,
            stop,
            tasks,
            failures,
            executor,
            ca_path: identity.ca_path.clone(),
            _data_dir: data_dir,
        })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    pub fn node_id(&self) -> &str {
        self.handle.node_id()
    }

    /// The bound QUIC address (UDP).
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The QUIC address peers and clients are told to reach this node at.
    pub fn announce_addr(&self) -> SocketAddr {
        self.announce_addr
    }

    /// The bound HTTP address (TCP), when HTTP is on.
    pub fn resp_addr(&self) -> SocketAddr {
        self.resp_addr
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The HTTP front door's state, when HTTP is on (for in-process tests
    /// of the router).
    pub fn http_state(&self) -> Option<crate::net::http::AppState> {
        self.http_state.clone()
    }

    /// The CA file clients must trust.
    pub fn ca_path(&self) -> &std::path::Path {
        &self.ca_path
    }

    /// Waits until an essential task (driver, accept loops, HTTP server)
    /// panics or ends while the node is not stopping; says which and why.
    /// The node is then broken: the caller should exit non-zero.
    pub async fn failed(&mut self) -> String {
        self.failures.next().await
    }

    /// Stops the listeners and the driver, then the executor threads.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        self.executor.shutdown();
    }
}

/// An essential task's future, boxed so the tasks share one type.
type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Jobs handed to the executor per executor thread (running or next in
/// line). Deeper hides the driver round trip; shallower keeps priority
/// order and work that could move elsewhere out of the executor's queue.
const EXEC_JOBS_PER_THREAD: usize = 4;

/// The same while jobs are short (`engine::SHORT_JOB_US`): with four, a
/// thread running 12 µs jobs still slept and was woken for most of them
/// (with sixteen, the end-to-end bench's median went from 0.45x to 0.77x
/// of the raw run with one executor thread; benches/README.md).
const EXEC_JOBS_PER_THREAD_SHORT: usize = 16;

/// The IP this node announces (net/announce.rs) and the names its
/// certificate carries: the announced host as configured (an IP or a DNS
/// name), the announced IP, and the bound address unless it is 0.0.0.0.
async fn announced_ip(cfg: &Config) -> Result<(std::net::IpAddr, Vec<String>), StartError> {
    use crate::net::announce::{self, Source};
    let configured = match &cfg.announce_host {
        None => None,
        Some(host) => Some(match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip,
            Err(_) => resolve_announced(host, cfg.bind.is_ipv4()).await?,
        }),
    };
    let (ip, source) = announce::choose_ip(cfg.bind, configured, announce::detect);
    match source {
        Source::Detected => {
            tracing::info!(%ip, bound = %cfg.bind, "announcing this host's address to peers and clients (set cluster-announce-ip to choose another)");
        }
        Source::Fallback => {
            tracing::warn!(%ip, bound = %cfg.bind, "bound to every address but no routable one found: announcing loopback, which only nodes on this host can reach; set cluster-announce-ip (--announce-addr)");
        }
        Source::Configured | Source::Bound => {}
    }
    let mut names: Vec<String> = cfg.announce_host.iter().cloned().collect();
    names.push(ip.to_string());
    if !cfg.bind.is_unspecified() {
        names.push(cfg.bind.to_string());
    }
    Ok((ip, names))
}

/// Resolves an announced DNS name once, at start: an address of the bound
/// family first (an IPv4 socket cannot be reached at an IPv6 address).
async fn resolve_announced(host: &str, v4: bool) -> Result<std::net::IpAddr, StartError> {
    let addrs: Vec<std::net::IpAddr> =
        match tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host((host, 0)))
            .await
        {
            Ok(Ok(a)) => a.map(|a| a.ip()).collect(),
            Ok(Err(e)) => return Err(StartError::Announce(format!("cannot resolve {host}: {e}"))),
            Err(_) => {
                return Err(StartError::Announce(format!(
                    "resolving {host} took over 10 s"
                )));
            }
        };
    addrs
        .iter()
        .find(|ip| ip.is_ipv4() == v4 && !ip.is_unspecified())
        .or_else(|| addrs.iter().find(|ip| !ip.is_unspecified()))
        .copied()
        .ok_or_else(|| StartError::Announce(format!("{host} resolves to no usable address")))
}

/// `--join HOST:PORT --join-token T`: asks each join address in turn (a
/// few rounds: it may be starting too) for this node's peer certificate.
async fn join_with_token(
    joins: &[String],
    token: &str,
    node_id: &str,
) -> Result<crate::cluster::ca::Joined, StartError> {
    crate::cluster::ca::parse_token(token).map_err(StartError::Join)?;
    if joins.is_empty() {
        return Err(StartError::Join(
            "--join-token needs --join HOST:PORT (the node that ran `wasque cluster init`)".into(),
        ));
    }
    let mut last = String::new();
    for _round in 0..10 {
        for target in joins {
            let addrs = match tokio::net::lookup_host(target.as_str()).await {
                Ok(a) => a.collect::<Vec<_>>(),
                Err(e) => {
                    last = format!("{target}: {e}");
                    continue;
                }
            };
            for addr in addrs {
                match crate::cluster::ca::join(addr, token, node_id).await {
                    Ok(j) => {
                        tracing::info!(%addr, "joined the cluster CA: peer certificate received");
                        return Ok(j);
                    }
                    // A refusal (wrong secret, wrong CA) will not change.
                    Err(e) if e.contains("refused") || e.contains("CA") => {
                        return Err(StartError::Join(format!("{addr}: {e}")));
                    }
                    Err(e) => last = format!("{addr}: {e}"),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StartError::Join(last))
}

/// Writes one of the node's small state files (`queue-policies`,
/// `queue-pauses`): postcard, synced, then renamed over the old one, so a
/// crash leaves the old file or the new one, whole. `what` names it in logs.
fn save_small_file<T: serde::Serialize>(path: &std::path::Path, what: &str, value: &T) {
    let tmp = path.with_extension("tmp");
    let written = postcard::to_allocvec(value)
        .map_err(std::io::Error::other)
        .and_then(|b| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&b)?;
            f.sync_all()
        })
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), "cannot save {what}: {e}");
    }
}

/// Reads a file [`save_small_file`] wrote; empty when there is none (or
/// it cannot be read: logged, and the defaults apply).
fn load_small_file<T: serde::de::DeserializeOwned>(path: &std::path::Path, what: &str) -> Vec<T> {
    match std::fs::read(path) {
        Ok(b) => postcard::from_bytes(&b).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), "{what} unreadable, using defaults: {e}");
            vec![]
        }),
        Err(_) => vec![],
    }
}

/// Wall-clock now in unix milliseconds.
pub fn now_ms() -> UnixMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Driver {
    engine: Engine,
    executor: Executor,
    pending: HashMap<RequestId, ReplyTo>,
    next_req: u64,
    started: Instant,
    monitor: Option<Monitor>,
    /// RESP subscribers; the engine builds events only while someone
    /// watches (monitoring, or at least one subscriber).
    pubsub: Hub,
    /// The job store (`appendonly yes`): changes go to its writer, and the
    /// replies that depend on them wait for it.
    store: Option<crate::store::JobStore>,
    written: Option<mpsc::UnboundedReceiver<crate::store::Written>>,
    /// What the last written round let go, kept for its capacity.
    released: crate::store::Released,
    /// Turns of the loop the open round has waited to be written on this
    /// thread (see `carry_out`), 0 when it does not wait ...
    round_waits: u8,
    /// ... and whether the last ended in a yield with nothing else to do.
    round_yielded: bool,
    cluster: Cluster,
    /// The driver's own input channel, for tasks it starts (module fetches).
    inputs: mpsc::UnboundedSender<Input>,
    /// `DATA_DIR/queue-policies`: QPOLICY settings across restarts.
    policies_file: std::path::PathBuf,
    /// `DATA_DIR/queue-pauses`: PAUSE flags across restarts.
    pauses_file: std::path::PathBuf,
    /// `DATA_DIR/queue-retry`: QRETRY defaults across restarts.
    retry_file: std::path::PathBuf,
    /// The tenant registry: weights reach the engine's fair share.
    tenants: Arc<crate::tenant::Tenants>,
    /// `maxmemory` (shared with the handle, which CONFIG SET changes).
    maxmemory: Arc<AtomicU64>,
}

impl Driver {
    async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut done: mpsc::UnboundedReceiver<ExecDone>,
        mut peers: mpsc::UnboundedReceiver<PeerEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut written = self.written.take();
        // What restoring changed (expired, re-queued) goes to the store first.
        self.carry_out();
        // One timer, moved only when the engine's next deadline moves
        // (TTL ends come by slot, so under load it rarely does): a new
        // timer per turn of this loop cost a clock read and a timer-wheel
        // entry per batch of commands.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<UnixMs> = None;
        // Progress and stdout lines of running jobs (exec/live.rs).
        let live = self.executor.live();
        // The waits for a stop and for news of running jobs are made once
        // and kept across turns: made anew in every turn, each registered
        // and unregistered with its notifier (a lock each way) per batch
        // of commands (benches/README.md, RESP, session 24).
        let stopped = stop.changed();
        tokio::pin!(stopped);
        let live_news = live.changed();
        tokio::pin!(live_news);
        loop {
            self.engine
                .set_events(self.monitor.is_some() || self.pubsub.listened());
            // Lines are tapped only while someone may watch them.
            live.set_lines(self.pubsub.listened());
            let next = self.engine.poll_timeout();
            if next != armed {
                if let Some(at) = next {
                    let now = now_ms();
                    timer.as_mut().reset(
                        tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(now)),
                    );
                }
                armed = next;
            }
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                Some(d) = done.recv() => {
                    let now = now_ms();
                    // A run hands its last news over before its result.
                    self.take_live(now, &live);
                    self.engine.handle_exec_done(now, d.job, d.attempt, d.result);
                    // Take what else finished meanwhile before replying.
                    for _ in 0..1024 {
                        let Ok(d) = done.try_recv() else { break };
                        self.engine.handle_exec_done(now, d.job, d.attempt, d.result);
                    }
                }
                Some(input) = inputs.recv() => {
                    let now = now_ms();
                    self.input(now, input);
                    for _ in 0..1024 {
                        let Ok(input) = inputs.try_recv() else { break };
                        self.input(now, input);
                    }
                }
                Some(ev) = peers.recv() => {
                    let now = now_ms();
                    self.peer_event(now, ev);
                    for _ in 0..1024 {
                        let Ok(ev) = peers.try_recv() else { break };
                        self.peer_event(now, ev);
                    }
                }
                _ = &mut timer, if armed.is_some() => {
                    // Re-armed next turn, even if the deadline is the same
                    // (the clock may have read a ms early).
                    armed = None;
                    self.engine.handle_timeout(now_ms());
                }
                _ = &mut live_news => {
                    self.take_live(now_ms(), &live);
                    live_news.set(live.changed());
                }
                _ = sweep.tick() => self.sweep(),
                // Every ready connection has had its turn, and nothing came.
                _ = tokio::task::yield_now(), if self.round_waits > 0 => self.round_yielded = true,
                w = recv_written(&mut written) => match w {
                    Some(w) => self.on_written(w),
                    // No store (`appendonly no`): nothing will ever come.
                    None if self.store.is_none() => written = None,
                    // The writer ends only when the driver lets it go
                    // (below); before that, its channel closing means the
                    // thread died. Replies waiting for writes would wait
                    // forever: die too, so the supervisor ends the node.
                    None => panic!("the store writer thread died (its panic is logged above)"),
                },
            }
            self.carry_out();
        }
        // Let the store's writer write what is left, sync and close.
        if let Some(store) = self.store.take()
            && let Some(thread) = store.finish()
        {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Hands what running jobs reported to the engine (progress) and to
    /// the event hub (stdout lines, `logs:ID`).
    fn take_live(&mut self, now: UnixMs, live: &crate::exec::LiveFeed) {
        let batch = live.take();
        for (id, r) in batch.progress {
            self.engine
                .handle_progress(now, id, r.done, r.total, r.note);
        }
        for l in batch.lines {
            let Some(queue) = self.engine.job(&l.job).map(|j| j.queue.to_string()) else {
                continue;
            };
            self.pubsub
                .publish_log(l.job, &queue, l.line.as_deref(), l.dropped);
        }
    }

    /// The store wrote (or failed to write) a group of batches: carry out
    /// the replies and hand-outs that waited for it. An add that could not
    /// be written was answered with the error; the engine forgets it.
    fn on_written(&mut self, w: crate::store::Written) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let mut released = std::mem::take(&mut self.released);
        store.written(w, &mut released);
        if !released.failed_adds.is_empty() {
            self.engine
                .handle_failed_adds(now_ms(), std::mem::take(&mut released.failed_adds));
        }
        let mut now = None;
        for effect in released.effects.drain(..) {
            self.apply(effect, &mut now);
        }
        self.released = released;
    }

    fn input(&mut self, now: UnixMs, input: Input) {
        match input {
            Input::Command(Command::DebugPanicDriver, _) => {
                // DEBUG PANIC-DRIVER (test nodes only): the supervision
                // test's way to make the driver die as a bug would.
                panic!("DEBUG PANIC-DRIVER: the driver panics on request");
            }
            Input::Command(cmd, reply) => {
                // A subscriber may have come since the loop looked.
                self.engine
                    .set_events(self.monitor.is_some() || self.pubsub.listened());
                let req = RequestId(self.next_req);
                self.next_req += 1;
                self.pending.insert(req, reply);
                self.engine.handle_command(now, req, cmd);
            }
            Input::ModuleAdded(hash, size) => self.engine.handle_module_added(hash, size),
            Input::ModuleFetchFailed(hash) => self.engine.handle_module_fetch_failed(hash),
            Input::Leaving(on) => self.engine.set_leaving(on),
            Input::ModuleAsk(ask, reply) => self.module_ask(now, ask, reply),
            Input::NodeTimeout(ms) => self.engine.set_node_timeout(ms),
            Input::Journal(on) => self.engine.set_journal(on),
            Input::MemoryCheck => {
                let level = memory_level(rss_bytes(), self.maxmemory.load(Ordering::Relaxed));
                self.engine.memory_tick(now, level);
            }
            Input::NodeInfo(reply) => {
                let s = self.engine.stats();
                let x = self.executor.stats();
                reply.send(Reply::NodeInfo(Box::new(NodeInfo {
                    node_id: self.engine.config().node_id.clone(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    uptime_secs: self.started.elapsed().as_secs(),
                    executor_threads: x.threads,
                    executor_busy: x.busy,
                    jobs: s.jobs as u64,
                    queues: s.queues as u64,
                    modules: s.modules as u64,
                    modules_compiled: x.modules_compiled,
                    modules_loaded: x.modules_loaded,
                    jobs_run: x.jobs_run,
                    pagemap_scan: x.pagemap_scan,
                })));
            }
        }
    }

    fn carry_out(&mut self) {
        loop {
            let mut now = None;
            while let Some(effect) = self.engine.poll_effect() {
                // With a job store, changes go to its writer and what depends
                // on them waits (store::JobStore::admit).
                let effect = match self.store.as_mut() {
                    Some(store) => match store.admit(effect) {
                        Some(e) => e,
                        None => continue,
                    },
                    None => effect,
                };
                self.apply(effect, &mut now);
            }
            let Some(store) = self.store.as_mut() else {
                return;
            };
            // A round that may be written on this thread first yields to
            // the runtime, which runs every other ready task and looks at
            // the sockets before it polls this one again. Commands that
            // came meanwhile join the round, and it yields again, up to
            // ROUND_WAITS turns; once a yield comes back with nothing else
            // to do, or after that many turns, it is written here. Without
            // the wait, a busy thread makes each client's command a round
            // (and a `write`) of its own: 200,000 writes for 200,000 adds
            // from 50 clients, slower than the writer thread's group
            // commits.
            if store.round_is_open()
                && store.may_write_here()
                && !self.round_yielded
                && self.round_waits < ROUND_WAITS
            {
                self.round_waits += 1;
                return;
            }
            let here = self.round_waits > 0;
            self.round_waits = 0;
            self.round_yielded = false;
            match store.end_round(self.engine.job_count(), here) {
                // Written on this thread: what waited goes now, and what
                // that brings (failed adds forgotten) goes round again.
                Some(written) => self.on_written(written),
                None => return,
            }
        }
    }

    fn apply(&mut self, effect: Effect, now: &mut Option<UnixMs>) {
        {
            match effect {
                Effect::Reply { to, reply } => {
                    if let Some(r) = self.pending.remove(&to) {
                        r.send(reply);
                    }
                }
                Effect::Run(run) => self.executor.submit(ExecRequest {
                    job: run.job,
                    attempt: run.attempt,
                    module: run.module,
                    body: run.body,
                    args: run.args,
                    limits: run.limits,
                    share: run.share,
                }),
                Effect::CancelRun(id) => {
                    self.executor.cancel(&id);
                }
                Effect::RemoveModule(hash) => {
                    if let Err(e) = self.executor.remove_module(&hash) {
                        tracing::warn!(module = %hash, "removing module files: {e}");
                    }
                }
                Effect::Event(e) => {
                    self.pubsub.publish(&e);
                    if let Some(m) = &self.monitor {
                        m.job_event(*now.get_or_insert_with(now_ms), e);
                    }
                }
                // Only emitted with a store, which takes them in carry_out.
                Effect::Persist(_) => {}
                Effect::Send { to, msg } => self.cluster.send(to, msg),
                Effect::SendMany { to, msg } => self.cluster.send_many(&to, msg),
                Effect::FetchModule { hash, from } => self.fetch_module(hash, from),
                Effect::SavePolicies(all) => {
                    save_small_file(&self.policies_file, "queue policies", &all)
                }
                Effect::SavePauses(all) => save_small_file(&self.pauses_file, "queue pauses", &all),
                Effect::SaveRetryDefaults(all) => {
                    save_small_file(&self.retry_file, "queue retry defaults", &all)
                }
            }
        }
    }

    /// Answers a module catalogue question about this node (a peer's, or
    /// this node's own `Handle`).
    fn module_ask(
        &mut self,
        now: UnixMs,
        ask: ModuleAsk,
        reply: tokio::sync::oneshot::Sender<ModuleAnswer>,
    ) {
        match ask {
            ModuleAsk::List => {
                let list = self
                    .engine
                    .modules_held()
                    .into_iter()
                    .map(|(hash, size, jobs)| crate::cluster::wire::HeldModule { hash, size, jobs })
                    .collect();
                let _ = reply.send(ModuleAnswer::List(list));
            }
            ModuleAsk::Users { hash, tenant } => {
                let (count, ids) = self
                    .engine
                    .module_users(&hash, tenant.as_deref(), USERS_NAMED);
                let held = self.engine.module(&hash).is_some();
                let _ = reply.send(ModuleAnswer::Users { held, count, ids });
            }
            ModuleAsk::Remove(hash) => {
                self.cluster.forget_announced(&hash);
                if self.engine.module(&hash).is_none() {
                    let _ = reply.send(ModuleAnswer::Done(Ok(false)));
                    return;
                }
                let (tx, mut rx) = mpsc::unbounded_channel();
                let req = RequestId(self.next_req);
                self.next_req += 1;
                self.pending.insert(
                    req,
                    ReplyTo {
                        tx: tx.into(),
                        tag: 0,
                    },
                );
                self.engine
                    .handle_command(now, req, Command::DeleteModule { hash });
                tokio::spawn(async move {
                    let answer = match rx.recv().await {
                        Some((_, Reply::Ok)) => Ok(true),
                        Some((_, Reply::Error(e))) if e.code == ErrorCode::NoModule => Ok(false),
                        Some((_, Reply::Error(e))) => Err(e.message),
                        Some((_, other)) => Err(format!("unexpected reply {other:?}")),
                        None => Err("the node is shutting down".into()),
                    };
                    let _ = reply.send(ModuleAnswer::Done(answer));
                });
            }
            ModuleAsk::Put(bytes) => {
                let (exec, inputs) = (self.executor.clone(), self.inputs.clone());
                tokio::spawn(async move {
                    let outcome = tokio::task::spawn_blocking(move || exec.put_module(&bytes))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                    let answer = match outcome {
                        Ok(put) => {
                            tracing::info!(module = %put.hash, "module copy taken from a peer");
                            let _ = inputs.send(Input::ModuleAdded(put.hash, put.size));
                            Ok(true)
                        }
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(ModuleAnswer::Done(answer));
                });
            }
        }
    }

    fn peer_event(&mut self, now: UnixMs, ev: PeerEvent) {
        match ev {
            PeerEvent::Modules { ask, reply } => self.module_ask(now, ask, reply),
            PeerEvent::Message { from, msg } => self.engine.handle_peer(now, from, msg),
            PeerEvent::Peers(live) => self.engine.handle_peers(now, live),
            PeerEvent::Load(node, a) => self.engine.handle_peer_load(
                node,
                crate::engine::PeerLoad {
                    exec_slots: a.exec_slots * EXEC_JOBS_PER_THREAD as u32,
                    exec_busy: a.exec_busy,
                    queued: a.queued,
                    rss_bytes: a.rss_bytes,
                    queues: a.queues.into_iter().collect(),
                    max_memory_bytes: a.max_memory_bytes,
                    modules: a.module_hashes.into_iter().collect(),
                    sent: 0,
                },
            ),
        }
    }

    /// Fetches a module a peer has, compiles and stores it like an upload;
    /// the engine hears of it as of any new module.
    fn fetch_module(&self, hash: ModuleHash, from: NodeName) {
        let (cluster, exec, inputs) = (
            self.cluster.clone(),
            self.executor.clone(),
            self.inputs.clone(),
        );
        tokio::spawn(async move {
            let outcome = match cluster.fetch_module(from, hash).await {
                Ok(bytes) => tokio::task::spawn_blocking(move || exec.put_module(&bytes))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string())),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(put) if put.hash == hash => {
                    tracing::info!(module = %hash, peer = %from.short(), "module fetched from peer");
                    let _ = inputs.send(Input::ModuleAdded(put.hash, put.size));
                }
                Ok(put) => {
                    tracing::warn!(module = %hash, got = %put.hash, "fetched module has another hash");
                    let _ = inputs.send(Input::ModuleFetchFailed(hash));
                }
                Err(e) => {
                    tracing::warn!(module = %hash, peer = %from.short(), "module fetch failed: {e}");
                    let _ = inputs.send(Input::ModuleFetchFailed(hash));
                }
            }
        });
    }

    /// Forgets blocked requests whose client went away.
    fn sweep(&mut self) {
        let gone: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, r)| r.tx.is_closed())
            .map(|(k, _)| *k)
            .collect();
        for req in gone {
            self.pending.remove(&req);
            self.engine.handle_cancel(req);
        }
        let rss = rss_bytes();
        let level = memory_level(rss, self.maxmemory.load(Ordering::Relaxed));
        self.engine.memory_tick(now_ms(), level);
        // What peers learn of this node's capacity.
        let s = self.engine.stats();
        let x = self.executor.stats();
        // Tenants' weights, as the registry has them now (changes made on
        // a peer arrive by the registry's merge).
        for (name, weight) in self.tenants.weights() {
            self.engine.set_tenant_weight(&name, weight);
        }
        self.cluster.set_advert(crate::cluster::Advert {
            exec_slots: x.threads,
            exec_busy: x.busy,
            jobs: s.jobs as u64,
            queued: self.engine.ready_jobs() as u64,
            rss_bytes: rss,
            modules: s.modules as u32,
            leaving: false,
            queues: self.engine.busiest_queues(64),
            max_memory_bytes: self.engine.config().max_limits.memory_bytes,
            module_hashes: self.engine.module_hashes(256),
            // Filled in by the cluster layer as it sends.
            tenants: 0,
            schedules: 0,
            admission: 0,
            can_admit: false,
            module_names: 0,
            running: s.running as u64,
            queue_count: s.queues as u64,
            // Filled in by the cluster layer (`Cluster::set_advert`).
            version: String::new(),
            resp_addr: None,
            http_addr: None,
        });
    }
}

async fn recv_written(
    rx: &mut Option<mpsc::UnboundedReceiver<crate::store::Written>>,
) -> Option<crate::store::Written> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Resident memory of this process, from `/proc/self/statm` (0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Disque's memory warning level against `maxmemory` (0 when it is 0):
/// 1 past 75 %, 2 past 95 %, 3 past 100 %. wasque measures the process's
/// resident memory (Disque counts its allocations).
pub fn memory_level(used: u64, maxmemory: u64) -> u8 {
    if maxmemory == 0 {
        return 0;
    }
    let pct = |p: u64| maxmemory / 100 * p + maxmemory % 100 * p / 100;
    if used > maxmemory {
        3
    } else if used > pct(95) {
        2
    } else if used > pct(75) {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod memory_tests {
    use super::memory_level;

    #[test]
    fn memory_levels() {
        assert_eq!(memory_level(u64::MAX, 0), 0);
        assert_eq!(memory_level(75, 100), 0);
        assert_eq!(memory_level(76, 100), 1);
        assert_eq!(memory_level(95, 100), 1);
        assert_eq!(memory_level(96, 100), 2);
        assert_eq!(memory_level(100, 100), 2);
        assert_eq!(memory_level(101, 100), 3);
        assert_eq!(memory_level(60 << 20, 1), 3);
        assert_eq!(memory_level(u64::MAX, u64::MAX), 2);
    }
}
