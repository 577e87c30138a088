//! `Executor`: the cheap-clone handle the node's runtime holds. It owns the
//! engine, the module cache and the threads, and stops them when the last
//! handle goes.

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use wasque_sdk::proto::{JobId, JobResult, ModuleHash};

use super::cache::ModuleCache;
use super::config::ExecConfig;
use super::engine;
use super::error::ExecError;
use super::pool::{Core, JobQueue, Threads};
use super::{ExecDone, ExecRequest, ExecStats, PutOutcome};

/// A handle on the node's executor. Clones share one executor; it stops
/// when [`Executor::shutdown`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Core>,
    threads: Mutex<Option<Threads>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let threads = self
            .threads
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(mut t) = threads.take() {
            t.stop(&self.core);
        }
    }
}

impl Executor {
    /// Opens the module cache under `data_dir` (`data_dir/modules/` holds
    /// `<sha256hex>.wasm` blobs, `data_dir/artifacts/` precompiled code),
    /// loads every stored module (from its artifact when it was compiled by
    /// an identical engine, recompiling and rewriting it otherwise), starts
    /// `cfg.threads` executor threads and the epoch ticker. Finished jobs
    /// are sent to `done`.
    pub fn open(
        cfg: ExecConfig,
        data_dir: &Path,
        done: UnboundedSender<ExecDone>,
    ) -> Result<Executor, ExecError> {
        let mut cfg = cfg;
        cfg.threads = cfg.threads.max(1);
        if cfg.epoch_tick.is_zero() {
            cfg.epoch_tick = Duration::from_millis(1);
        }
        let built = engine::build(&cfg)?;
        let cache = ModuleCache::open(built.engine, built.compat, data_dir, cfg.max_module_bytes)?;
        let core = Arc::new(Core {
            cfg,
            cache,
            queue: JobQueue::default(),
            done,
            busy: AtomicU32::new(0),
            jobs_run: AtomicU64::new(0),
            pagemap_scan: built.pagemap_scan,
            cancels: Mutex::default(),
            live: super::LiveFeed::default(),
            ran_ahead: AtomicU64::new(0),
        });
        let threads = Threads::start(&core)?;
        Ok(Executor {
            inner: Arc::new(Inner {
                core,
                threads: Mutex::new(Some(threads)),
            }),
        })
    }

    /// Every module the node has: hash and size in bytes, ordered by hash.
    pub fn modules(&self) -> Vec<(ModuleHash, u64)> {
        self.inner.core.cache.list()
    }

    /// Whether the node has the module.
    pub fn has_module(&self, hash: &ModuleHash) -> bool {
        self.inner.core.cache.contains(hash)
    }

    /// Validates and stores a module. Only a core Wasm binary is accepted
    /// (never WAT text); its imports must all be WASI preview 1 functions
    /// and it must export `_start`. A module is compiled once per node: a
    /// hash the node already has returns `compiled_now: false` at once.
    /// The blob and its precompiled artifact are written atomically.
    ///
    /// Blocking (it may compile for a while): call it on `spawn_blocking`.
    pub fn put_module(&self, bytes: &[u8]) -> Result<PutOutcome, ExecError> {
        self.inner.core.cache.put(bytes)
    }

    /// The module's bytes as uploaded (for a peer fetching it by hash).
    /// Blocking: reads a file.
    pub fn module_bytes(&self, hash: &ModuleHash) -> Option<Vec<u8>> {
        self.inner.core.cache.blob(hash)
    }

    /// Forgets a module and deletes its files; `Ok(false)` if the node did
    /// not have it. Jobs already running it finish normally.
    pub fn remove_module(&self, hash: &ModuleHash) -> Result<bool, ExecError> {
        self.inner.core.cache.remove(hash)
    }

    /// Queues a job for the executor threads. Never blocks. Its
    /// [`ExecDone`] goes to the `done` channel (after a shutdown, at once,
    /// with `ErrorClass::Internal`).
    pub fn submit(&self, req: ExecRequest) {
        let core = &self.inner.core;
        core.cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(req.job, Arc::default());
        if let Some(req) = core.queue.push(req) {
            let r = core.internal("the executor is shut down".into());
            core.finish(&req, r);
        }
    }

    /// Cancels a submitted job: a run in progress stops within one cancel
    /// check (about 20 ms of Wasm, or of a guest's sleep) and one not yet
    /// started ends at once, both with `ErrorClass::Cancelled`. `false`
    /// when the executor has no such job (never submitted, or finished).
    pub fn cancel(&self, job: &JobId) -> bool {
        let cancels = self
            .inner
            .core
            .cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match cancels.get(job) {
            Some(flag) => {
                flag.store(true, std::sync::atomic::Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Runs a job on the calling thread and returns its result (tests,
    /// benchmarks). Call it from a plain thread or `spawn_blocking`, not
    /// from inside an async task. It is never set aside for a queued job:
    /// the caller's thread runs only the job it was given.
    pub fn run_here(&self, req: &ExecRequest) -> JobResult {
        self.inner.core.run_alone(req)
    }

    /// The feed of progress reports and stdout lines of running jobs
    /// (`live.rs`): the driver takes it when it changes.
    pub fn live(&self) -> super::LiveFeed {
        self.inner.core.live.clone()
    }

    /// The executor's counters.
    pub fn stats(&self) -> ExecStats {
        let core = &self.inner.core;
        ExecStats {
            threads: u32::try_from(core.cfg.threads).unwrap_or(u32::MAX),
            busy: core.busy.load(Ordering::Relaxed),
            jobs_run: core.jobs_run.load(Ordering::Relaxed),
            modules_compiled: core.cache.compiled.load(Ordering::Relaxed),
            modules_loaded: core.cache.loaded.load(Ordering::Relaxed),
            ran_ahead: core.ran_ahead.load(Ordering::Relaxed),
            pagemap_scan: core.pagemap_scan,
        }
    }

    /// Stops the threads: queued jobs that never started are sent back as
    /// `ErrorClass::Internal` (retryable), running jobs finish or reach
    /// their deadline. Later `submit`s fail the same way. Also done when
    /// the last handle is dropped. Blocks until the threads have ended.
    pub fn shutdown(&self) {
        let taken = self
            .inner
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut t) = taken {
            t.stop(&self.inner.core);
        }
    }
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The handle is shared across the runtime's tasks and threads.
#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Executor>();
}
