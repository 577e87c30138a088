//! The executor's threads: a job queue, one std thread per executor slot
//! pulling from it, and the epoch ticker thread that makes deadlines fire.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use wasmtime::Engine;
use wasque_sdk::proto::{ErrorClass, JobId, JobResult};

use super::cache::ModuleCache;
use super::config::ExecConfig;
use super::error::ExecError;
use super::run::{self, SetAside};
use super::share::ShareQueue;
use super::{ExecDone, ExecRequest};

/// What the executor threads share.
pub(crate) struct Core {
    pub(crate) cfg: ExecConfig,
    pub(crate) cache: ModuleCache,
    pub(crate) queue: JobQueue,
    pub(crate) done: UnboundedSender<ExecDone>,
    pub(crate) busy: AtomicU32,
    pub(crate) jobs_run: AtomicU64,
    pub(crate) pagemap_scan: bool,
    /// The cancel flag of each submitted job not yet finished
    /// (`Executor::cancel`); the run's epoch callback and its sleeps
    /// check it.
    pub(crate) cancels: Mutex<HashMap<JobId, Arc<AtomicBool>>>,
    /// Progress and stdout lines of running jobs, for the driver.
    pub(crate) live: super::LiveFeed,
    /// Jobs run while another was set aside for them (`run::SetAside`).
    pub(crate) ran_ahead: AtomicU64,
}

impl Core {
    /// Runs one job on this thread; a panic (a bug in the node or in
    /// wasmtime) fails this job only. While it runs, another tenant's job
    /// that waits behind it may run ahead of it (`Core::run_waiting`).
    pub(crate) fn run(self: &Arc<Core>, req: &ExecRequest) -> JobResult {
        let core = self.clone();
        let running = req.share;
        self.run_with(
            req,
            Some(Box::new(move |used| core.run_waiting(running, used))),
        )
    }

    /// Runs a job of another tenant that may go ahead of a running job of
    /// `running` that has used `used` fuel so far, to its end, and reports
    /// it; how long it took, or `None` when none may. The job run ahead
    /// cannot itself be set aside.
    fn run_waiting(&self, running: super::Share, used: u64) -> Option<Duration> {
        let req = self.queue.take_ahead_of(running, used)?;
        let t = Instant::now();
        let result = self.run_alone(&req);
        let fuel = result.fuel_used;
        self.finish(&req, result);
        self.queue.ended(req.share, fuel);
        self.ran_ahead.fetch_add(1, Ordering::Relaxed);
        Some(t.elapsed())
    }

    /// Runs one job on this thread, never set aside.
    pub(crate) fn run_alone(&self, req: &ExecRequest) -> JobResult {
        self.run_with(req, None)
    }

    fn run_with(&self, req: &ExecRequest, set_aside: Option<SetAside>) -> JobResult {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let cancel = self.cancel_flag(&req.job);
        let result = catch_unwind(AssertUnwindSafe(|| {
            run::run(&self.cache, &self.cfg, req, &cancel, &self.live, set_aside)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(job = %req.job, panic = %what, "executor panicked running a job");
            self.internal(format!("the executor failed while running the job: {what}"))
        });
        self.busy.fetch_sub(1, Ordering::Relaxed);
        self.jobs_run.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// A result for a job the node could not run through no fault of the
    /// job (retryable).
    pub(crate) fn internal(&self, message: String) -> JobResult {
        JobResult {
            exit_code: None,
            error_class: Some(ErrorClass::Internal),
            message,
            output: Vec::new(),
            stderr: Vec::new(),
            fuel_used: 0,
            duration_us: 0,
            node: self.cfg.node_id.clone(),
        }
    }

    /// The job's cancel flag (a fresh one for a job run without `submit`).
    fn cancel_flag(&self, job: &JobId) -> Arc<AtomicBool> {
        self.cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(job)
            .cloned()
            .unwrap_or_default()
    }

    /// Sends a finished job; a closed channel means nobody waits for it.
    pub(crate) fn finish(&self, req: &ExecRequest, result: JobResult) {
        self.cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&req.job);
        let _ = self.done.send(ExecDone {
            job: req.job,
            attempt: req.attempt,
            result,
        });
    }
}

/// Jobs waiting for a thread, in tenants' order (`share.rs`; FIFO with
/// one tenant group): it is locked for a push or a pop only (a thread's
/// pop also records the end of its last job there), and a push wakes a
/// sleeper only when one sleeps
/// that no earlier push has woken yet (no syscall per job while the threads
/// are busy, nor one per job of a batch pushed while one thread wakes up).
#[derive(Default)]
pub(crate) struct JobQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: ShareQueue<ExecRequest>,
    sleeping: usize,
    /// Sleepers already woken that have not yet run: a woken thread takes
    /// a job and then every job left before it sleeps again.
    waking: usize,
    closed: bool,
}

impl JobQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a job; gives it back if the queue is closed.
    pub(crate) fn push(&self, req: ExecRequest) -> Option<ExecRequest> {
        let mut st = self.lock();
        if st.closed {
            return Some(req);
        }
        st.jobs.push(req.share, req);
        let wake = st.sleeping > st.waking;
        if wake {
            st.waking += 1;
        }
        drop(st);
        if wake {
            self.ready.notify_one();
        }
        None
    }

    /// The next job, waiting for one; `None` once closed. `ended`: the
    /// share of the job this thread ran last, which has ended, and the
    /// fuel it used.
    fn pop(&self, ended: Option<(super::Share, u64)>) -> Option<ExecRequest> {
        let mut st = self.lock();
        if let Some((share, fuel)) = ended {
            st.jobs.finished(share, fuel);
        }
        loop {
            if st.closed {
                return None;
            }
            if let Some((_, req)) = st.jobs.pop() {
                return Some(req);
            }
            st.sleeping += 1;
            st = self.ready.wait(st).unwrap_or_else(PoisonError::into_inner);
            st.sleeping -= 1;
            // A spurious wake-up may take a push's wake; that push's job is
            // still seen, by this thread now.
            st.waking = st.waking.saturating_sub(1);
        }
    }

    /// The next job if it may go ahead of a running job of `running` that
    /// has used `used` fuel so far (`ShareQueue::pop_ahead_of`); never
    /// waits.
    fn take_ahead_of(&self, running: super::Share, used: u64) -> Option<ExecRequest> {
        let mut st = self.lock();
        if st.closed {
            return None;
        }
        st.jobs.pop_ahead_of(running, used).map(|(_, req)| req)
    }

    /// A job taken by [`JobQueue::take_ahead_of`] ended, having used
    /// `fuel`.
    fn ended(&self, share: super::Share, fuel: u64) {
        self.lock().jobs.finished(share, fuel);
    }

    /// Closes the queue, wakes every thread and returns the jobs that never
    /// started.
    fn close(&self) -> Vec<ExecRequest> {
        let mut st = self.lock();
        st.closed = true;
        let left = st.jobs.drain();
        drop(st);
        self.ready.notify_all();
        left
    }
}

/// The running threads of one executor.
pub(crate) struct Threads {
    workers: Vec<JoinHandle<()>>,
    ticker: Option<(JoinHandle<()>, Arc<AtomicBool>)>,
}

impl Threads {
    /// Starts the epoch ticker and `core.cfg.threads` executor threads.
    pub(crate) fn start(core: &Arc<Core>) -> Result<Threads, ExecError> {
        let mut threads = Threads {
            workers: Vec::new(),
            ticker: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let engine = core.cache.engine().clone();
        let tick = core.cfg.epoch_tick;
        let flag = stop.clone();
        let ticker = std::thread::Builder::new()
            .name("wasque-epoch".into())
            .spawn(move || epoch_ticker(&engine, tick, &flag))
            .map_err(ExecError::Thread)?;
        threads.ticker = Some((ticker, stop));
        for i in 0..core.cfg.threads {
            let c = core.clone();
            match std::thread::Builder::new()
                .name(format!("wasque-exec-{i}"))
                // Room for two runs' Wasm stacks, one set aside under the
                // other (`run::SetAside`), and their host frames.
                .stack_size(EXEC_STACK_BYTES)
                .spawn(move || worker(&c))
            {
                Ok(h) => threads.workers.push(h),
                Err(e) => {
                    threads.stop(core);
                    return Err(ExecError::Thread(e));
                }
            }
        }
        Ok(threads)
    }

    /// Stops taking jobs, fails the queued ones as `Internal` (retryable),
    /// lets running jobs end (their deadlines still fire), then stops the
    /// ticker.
    pub(crate) fn stop(&mut self, core: &Core) {
        for req in core.queue.close() {
            let r = core.internal("the executor shut down before the job started".into());
            core.finish(&req, r);
        }
        let me = std::thread::current().id();
        for h in self.workers.drain(..) {
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
        if let Some((h, stop)) = self.ticker.take() {
            stop.store(true, Ordering::Release);
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// Native stack of an executor thread: wasmtime's Wasm stack bound is
/// 512 KiB per run by default; untouched pages cost nothing.
const EXEC_STACK_BYTES: usize = 8 << 20;

fn worker(core: &Arc<Core>) {
    crate::thread_class::batch();
    let mut ended = None;
    while let Some(req) = core.queue.pop(ended) {
        let result = core.run(&req);
        let fuel = result.fuel_used;
        core.finish(&req, result);
        ended = Some((req.share, fuel));
    }
}

/// Increments the engine's epoch every `tick` until `stop`.
fn epoch_ticker(engine: &Engine, tick: Duration, stop: &AtomicBool) {
    let mut next = Instant::now() + tick;
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < next {
            std::thread::park_timeout(next - now);
            continue;
        }
        engine.increment_epoch();
        next += tick;
        if next <= now {
            // Fell behind (a suspended VM): do not burst.
            next = now + tick;
        }
    }
}
