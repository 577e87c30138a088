//! Running one job: a fresh `Store` with the job's limits, an instance from
//! the module's `InstancePre`, a call of `_start`, and the classification of
//! how it ended from what the node itself observed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Extern, ResourceLimiter, Store, StoreContextMut, Trap, UpdateDeadline};
use wasque_sdk::proto::{ErrorClass, JobResult};

use super::ExecRequest;
use super::cache::{LoadedModule, ModuleCache};
use super::config::ExecConfig;
use super::live::{JobTap, LiveFeed};
use super::wasi::{GuestExit, GuestIo};

/// Everything a job's `Store` holds.
pub(crate) struct JobCtx {
    /// The job's streams and arguments, as WASI sees them (`wasi.rs`).
    pub(crate) io: GuestIo,
    pub(crate) limiter: MemoryLimiter,
    /// When the job started: the origin of the guest's monotonic clock.
    pub(crate) origin: Instant,
    /// When the job's wall-clock deadline passes.
    pub(crate) deadline: Instant,
    /// Set when a host call (a sleep) reached the deadline.
    pub(crate) deadline_hit: bool,
    /// Set by `Executor::cancel`; checked by the epoch callback and by
    /// sleeps.
    pub(crate) cancel: Arc<AtomicBool>,
    /// Set when the run stopped because of `cancel`.
    pub(crate) cancelled: bool,
    /// Progress and stdout lines for watchers (`live.rs`).
    pub(crate) tap: JobTap,
    /// Epoch ticks left before the deadline, and the ticks of the step
    /// the epoch callback armed last.
    ticks_left: u64,
    step: u64,
    /// Runs another tenant's waiting job while this one is set aside
    /// (`None` for a job that is itself running ahead of another).
    set_aside: Option<SetAside>,
    /// Time this run spent set aside: not counted in its deadline nor in
    /// its duration.
    aside: Duration,
}

/// Called from a running job's epoch callback with the fuel the job has
/// used so far: runs, on this thread and to its end, a job of a tenant
/// that waits behind the running one (the executor's choice,
/// `ShareQueue::pop_ahead_of`), and says how long that took; `None` when
/// no job may go ahead. This is preemption without async
/// stores: the running job's Wasm frames stay on the stack, paused in the
/// callback, while a second `Store` runs above them. A light tenant's job
/// that arrives while every thread runs a heavy tenant's long job starts
/// within one epoch tick instead of waiting for a run to end.
pub(crate) type SetAside = Box<dyn FnMut(u64) -> Option<Duration> + Send + Sync>;

/// How often a running job looks at its cancel flag: a cancelled job
/// stops within this (plus one epoch tick), well inside 100 ms, unless it
/// is set aside: then when the job run ahead of it ends.
pub(crate) const CANCEL_CHECK: Duration = Duration::from_millis(20);

/// The error a cancelled run ends with (classified from `JobCtx::cancelled`).
#[derive(Debug, thiserror::Error)]
#[error("the job was cancelled")]
pub(crate) struct Cancelled;

/// Caps linear memory and records whether it ever refused a growth, so a
/// job that then fails is classified `MemoryLimit` from this record.
pub(crate) struct MemoryLimiter {
    cap: usize,
    pub(crate) refused: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Allowed by the cap but refused further down (the pool slot): still
        // a growth the job did not get.
        self.refused = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pool's per-slot table size.
        Ok(true)
    }
}

/// Epoch ticks that cover at least `deadline_ms` with a ticker of period
/// `tick`: the deadline fires between `deadline_ms` and one tick later.
pub(crate) fn deadline_ticks(deadline_ms: u64, tick: Duration) -> u64 {
    let tick_us = u64::try_from(tick.as_micros()).unwrap_or(u64::MAX).max(1);
    deadline_ms
        .saturating_mul(1000)
        .div_ceil(tick_us)
        .saturating_add(1)
}

/// Runs `req` on the calling thread.
pub(crate) fn run(
    cache: &ModuleCache,
    cfg: &ExecConfig,
    req: &ExecRequest,
    cancel: &Arc<AtomicBool>,
    feed: &LiveFeed,
    set_aside: Option<SetAside>,
) -> JobResult {
    let started = Instant::now();
    if cancel.load(Ordering::Acquire) {
        // Cancelled before a thread took it.
        return JobResult {
            exit_code: None,
            error_class: Some(ErrorClass::Cancelled),
            message: "cancelled before it started".into(),
            output: Vec::new(),
            stderr: Vec::new(),
            fuel_used: 0,
            duration_us: 0,
            node: cfg.node_id.clone(),
        };
    }
    let Some(module) = cache.get(&req.module) else {
        return JobResult {
            exit_code: None,
            error_class: Some(ErrorClass::ModuleMissing),
            message: format!("module {} is not on this node", req.module),
            output: Vec::new(),
            stderr: Vec::new(),
            fuel_used: 0,
            duration_us: micros(started.elapsed()),
            node: cfg.node_id.clone(),
        };
    };
    let limits = &req.limits;
    let mem_cap = limits.memory_bytes.min(cfg.max_memory_bytes);

    let ctx = JobCtx {
        io: GuestIo::new(
            req.body.clone(),
            cfg.max_output_bytes,
            cfg.max_stderr_bytes,
            module.argv0.clone(),
            req.args.clone(),
        ),
        limiter: MemoryLimiter {
            cap: usize::try_from(mem_cap).unwrap_or(usize::MAX),
            refused: false,
        },
        origin: started,
        deadline: far_instant(started, limits.deadline_ms),
        deadline_hit: false,
        cancel: cancel.clone(),
        cancelled: false,
        tap: JobTap::new(req.job, feed.clone()),
        ticks_left: deadline_ticks(limits.deadline_ms, cfg.epoch_tick),
        step: 0,
        set_aside,
        aside: Duration::ZERO,
    };

    // The deadline is counted in steps of at most `CANCEL_CHECK`: at each
    // step's end the callback looks at the cancel flag, and traps with
    // `Interrupt` (the deadline, as before) once no ticks are left. A run
    // that may be set aside looks every tick (a lock of the executor's
    // queue every few ms), so a waiting tenant waits at most one tick.
    let check = if ctx.set_aside.is_some() {
        1
    } else {
        deadline_ticks(
            u64::try_from(CANCEL_CHECK.as_millis()).unwrap_or(20),
            cfg.epoch_tick,
        )
        .max(1)
    };
    let fuel = limits.fuel;
    let mut store = Store::new(cache.engine(), ctx);
    store.limiter(|c| &mut c.limiter);
    let first = store.data().ticks_left.min(check);
    store.data_mut().step = first;
    store.set_epoch_deadline(first);
    store.epoch_deadline_callback(move |mut c: StoreContextMut<'_, JobCtx>| {
        let ctx = c.data_mut();
        ctx.tap.flush_due();
        ctx.ticks_left = ctx.ticks_left.saturating_sub(ctx.step);
        if ctx.cancel.load(Ordering::Acquire) {
            ctx.cancelled = true;
            return Err(wasmtime::Error::new(Cancelled));
        }
        if ctx.ticks_left == 0 {
            return Ok(UpdateDeadline::Interrupt);
        }
        let used = fuel.saturating_sub(c.get_fuel().unwrap_or(fuel));
        let ctx = c.data_mut();
        if let Some(d) = ctx
            .set_aside
            .as_mut()
            .and_then(|run_waiting| run_waiting(used))
        {
            // The epoch moved on while the other job ran; the next
            // deadline counts from now, so only the sleeps' clock needs
            // the time added.
            ctx.deadline = ctx.deadline.checked_add(d).unwrap_or(ctx.deadline);
            ctx.aside += d;
        }
        ctx.step = ctx.ticks_left.min(check);
        Ok(UpdateDeadline::Continue(ctx.step))
    });
    let outcome = store
        .set_fuel(limits.fuel)
        .and_then(|()| call_start(&mut store, &module));
    let fuel_left = store.get_fuel().unwrap_or(0);
    let ctx = store.data_mut();
    ctx.tap.finish();
    let memory_refused = ctx.limiter.refused;
    let deadline_hit = ctx.deadline_hit;
    let cancelled = ctx.cancelled;
    let aside = ctx.aside;
    let (output, output_overflow) = ctx.io.stdout.take();
    let (log, _) = ctx.io.stderr.take();
    drop(store);
    let duration_us = micros(started.elapsed().saturating_sub(aside));

    let seen = Observed {
        outcome,
        fuel: limits.fuel,
        memory_bytes: mem_cap,
        deadline_ms: limits.deadline_ms,
        max_output: cfg.max_output_bytes,
        memory_refused,
        deadline_hit,
        output_overflow,
        cancelled,
    };
    let (exit_code, error_class, message) = classify(&seen);
    JobResult {
        exit_code,
        error_class,
        message,
        // An output over the bound is an error, not a truncated result.
        output: if output_overflow { Vec::new() } else { output },
        stderr: log,
        fuel_used: limits.fuel.saturating_sub(fuel_left),
        duration_us,
        node: cfg.node_id.clone(),
    }
}

fn call_start(store: &mut Store<JobCtx>, module: &LoadedModule) -> wasmtime::Result<()> {
    let instance = module.pre.instantiate(&mut *store)?;
    let Some(Extern::Func(start)) = instance.get_module_export(&mut *store, &module.start) else {
        wasmtime::bail!("the module's `_start` export is not a function");
    };
    start.typed::<(), ()>(&*store)?.call(&mut *store, ())
}

/// What the node saw of one run.
pub(crate) struct Observed {
    pub(crate) outcome: wasmtime::Result<()>,
    pub(crate) fuel: u64,
    pub(crate) memory_bytes: u64,
    pub(crate) deadline_ms: u64,
    pub(crate) max_output: usize,
    pub(crate) memory_refused: bool,
    pub(crate) deadline_hit: bool,
    pub(crate) output_overflow: bool,
    /// The run stopped on its cancel flag.
    pub(crate) cancelled: bool,
}

/// `(exit_code, error_class, message)` of a run, decided from the node's
/// own records in this order: fuel counter, epoch deadline, output bound,
/// memory limiter (when the job then failed), exit status, trap.
pub(crate) fn classify(seen: &Observed) -> (Option<i32>, Option<ErrorClass>, String) {
    let err = seen.outcome.as_ref().err();
    let trap = err.and_then(|e| e.downcast_ref::<Trap>()).copied();
    let exit = err.and_then(|e| e.downcast_ref::<GuestExit>()).map(|e| e.0);
    let failed = !(err.is_none() || exit == Some(0));

    if seen.cancelled && err.is_some() {
        return fail(ErrorClass::Cancelled, "cancelled while it ran".into());
    }
    if trap == Some(Trap::OutOfFuel) {
        return fail(
            ErrorClass::OutOfFuel,
            format!("ran out of fuel after {} units", seen.fuel),
        );
    }
    if trap == Some(Trap::Interrupt) || seen.deadline_hit {
        return fail(
            ErrorClass::Deadline,
            format!("deadline of {} ms passed", seen.deadline_ms),
        );
    }
    if seen.output_overflow {
        return fail(
            ErrorClass::OutputLimit,
            format!("output exceeded the limit of {} bytes", seen.max_output),
        );
    }
    if seen.memory_refused && failed {
        return fail(
            ErrorClass::MemoryLimit,
            format!("memory limit of {} bytes reached", seen.memory_bytes),
        );
    }
    match (err, exit) {
        (None, _) | (Some(_), Some(0)) => (Some(0), None, String::new()),
        (Some(_), Some(code)) => (
            Some(code),
            Some(ErrorClass::Exit(code)),
            format!("exited with status {code}"),
        ),
        (Some(e), None) => {
            if let Some(t) = trap {
                return fail(ErrorClass::Trap, t.to_string());
            }
            if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some()
            {
                return fail(
                    ErrorClass::Internal,
                    format!("no free instance slot on this node: {}", e.root_cause()),
                );
            }
            fail(ErrorClass::Trap, e.root_cause().to_string())
        }
    }
}

fn fail(class: ErrorClass, message: String) -> (Option<i32>, Option<ErrorClass>, String) {
    (None, Some(class), message)
}

/// `from + ms`, or a time that never comes when that cannot be represented.
fn far_instant(from: Instant, ms: u64) -> Instant {
    from.checked_add(Duration::from_millis(ms))
        .or_else(|| from.checked_add(Duration::from_secs(1 << 32)))
        .unwrap_or(from)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
