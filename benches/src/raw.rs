//! The raw wasmtime baseline of issue 3 §8 (a), written with the recipe
//! of the stack notes by name: pooling allocator with keep-resident pages
//! and `PAGEMAP_SCAN`, one `InstancePre`, `Bytes` input pipes, `_start`
//! looked up once, a current-thread Tokio context per thread; fuel, a
//! memory cap and the same epoch ticker as wasque. Shared by the executor
//! bench (a beside b) and the end-to-end bench (a beside c).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::{
    Config, Enabled, Engine, Extern, InstanceAllocationStrategy, InstancePre, Linker, Module,
    ModuleExport, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

/// Settings shared by (a) and wasque's side of each comparison.
pub const FUEL: u64 = 10_000_000;
pub const JOB_MEMORY: u64 = 64 << 20;
pub const NODE_MEMORY: u64 = 256 << 20;
pub const EPOCH_TICK: Duration = Duration::from_millis(5);
pub const DEADLINE_MS: u64 = 10_000;

/// A request to wasque's executor with these settings: `job` running
/// `module` on `body` under `fuel`, the job memory cap and deadline above.
pub fn exec_request(
    job: wasque_sdk::proto::JobId,
    module: wasque_sdk::proto::ModuleHash,
    body: Bytes,
    fuel: u64,
) -> wasque_node::exec::ExecRequest {
    wasque_node::exec::ExecRequest {
        job,
        attempt: 1,
        module,
        body,
        args: Vec::new(),
        limits: wasque_sdk::proto::Limits {
            fuel,
            memory_bytes: JOB_MEMORY,
            deadline_ms: DEADLINE_MS,
        },
        share: Default::default(),
    }
}
pub const MAX_OUTPUT: usize = 8 << 20;
pub const MAX_STDERR: usize = 64 << 10;
pub const KEEP_RESIDENT: usize = 2 << 20;

pub struct RawCtx {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// The baseline: one engine, one `InstancePre`, `_start` looked up once.
pub struct Raw {
    engine: Engine,
    pre: InstancePre<RawCtx>,
    start: ModuleExport,
    fuel: Option<u64>,
    epoch: bool,
    _ticker: Option<Ticker>,
}

/// A thread that increments an engine's epoch every tick until dropped.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts ticking `engine` every `tick`.
    pub fn start(engine: Engine, tick: Duration) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        });
        Ticker {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Raw {
    /// `fuel`: `Some(units)` turns fuel metering on; `epoch`: epoch
    /// interruption with a ticker at `EPOCH_TICK`. Pool sized for `threads`
    /// as wasque sizes its own.
    pub fn new(wasm: &[u8], fuel: Option<u64>, epoch: bool, threads: usize) -> Raw {
        let slots = u32::try_from(threads * 2 + 8).expect("small");
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .total_stacks(slots)
            .max_memory_size(NODE_MEMORY as usize)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(Enabled::Yes);
        }
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .consume_fuel(fuel.is_some())
            .epoch_interruption(epoch);
        let engine = Engine::new(&config).expect("engine");
        let module = Module::from_binary(&engine, wasm).expect("module compiles");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c: &mut RawCtx| &mut c.wasi)
            .expect("wasi links");
        let pre = linker.instantiate_pre(&module).expect("module links");
        let start = module.get_export_index("_start").expect("_start");
        let ticker = epoch.then(|| Ticker::start(engine.clone(), EPOCH_TICK));
        Raw {
            engine,
            pre,
            start,
            fuel,
            epoch,
            _ticker: ticker,
        }
    }

    /// Runs one job and returns its stdout.
    pub fn run(&self, payload: &Bytes) -> Vec<u8> {
        let stdout = MemoryOutputPipe::new(MAX_OUTPUT);
        let stderr = MemoryOutputPipe::new(MAX_STDERR);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(payload.clone()))
            .stdout(stdout.clone())
            .stderr(stderr)
            .arg("wordcount.wasm");
        let ctx = RawCtx {
            wasi: wasi.build_p1(),
            limits: StoreLimitsBuilder::new()
                .memory_size(JOB_MEMORY as usize)
                .build(),
        };
        let mut store = Store::new(&self.engine, ctx);
        store.limiter(|c| &mut c.limits);
        if let Some(fuel) = self.fuel {
            store.set_fuel(fuel).expect("fuel on");
        }
        if self.epoch {
            let ticks = (DEADLINE_MS * 1000).div_ceil(EPOCH_TICK.as_micros() as u64) + 1;
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_trap();
        }
        let outcome = self.pre.instantiate(&mut store).and_then(|instance| {
            let Some(Extern::Func(start)) = instance.get_module_export(&mut store, &self.start)
            else {
                wasmtime::bail!("no _start");
            };
            start.typed::<(), ()>(&store)?.call(&mut store, ())
        });
        match outcome {
            Ok(()) => {}
            Err(e) if e.downcast_ref::<I32Exit>().is_some_and(|x| x.0 == 0) => {}
            Err(e) => panic!("raw job failed: {e:?}"),
        }
        drop(store);
        stdout.try_into_inner().expect("store dropped").to_vec()
    }
}

/// Runs `f` on the calling thread inside a fresh current-thread Tokio
/// context, as wasque's executor threads do.
pub fn in_tokio_context<R>(f: impl FnOnce() -> R) -> R {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let _g = rt.enter();
    f()
}

/// `jobs` raw jobs split over `threads` threads; wall time. `tokio`: each
/// thread enters its own current-thread Tokio context (else wasmtime-wasi
/// falls back to its global runtime for every WASI call).
pub fn raw_throughput(
    raw: &Raw,
    payload: &Bytes,
    threads: usize,
    jobs: usize,
    tokio: bool,
) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for i in 0..threads {
            let n = jobs / threads + usize::from(i < jobs % threads);
            s.spawn(move || {
                let work = || {
                    for _ in 0..n {
                        std::hint::black_box(raw.run(payload));
                    }
                };
                if tokio {
                    in_tokio_context(work)
                } else {
                    work()
                }
            });
        }
    });
    t.elapsed()
}
