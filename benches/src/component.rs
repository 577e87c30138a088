//! A WASI preview 2 component run the way a component path in the executor
//! would run it, for the component benchmark (issue 22): wasmtime's
//! component model and wasmtime-wasi's preview 2 host, with the engine
//! settings of the node's own (pooling allocator, copy-on-write init,
//! keep-resident pages, `PAGEMAP_SCAN`, fuel, epoch interruption) and the
//! limits of [`crate::raw`]; one `CommandPre`, a fresh `Store`,
//! `ResourceTable` and `WasiCtx` per job, stdin a `MemoryInputPipe` over a
//! `Bytes` clone, stdout and stderr bounded `MemoryOutputPipe`s.

use bytes::Bytes;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    StoreLimits, StoreLimitsBuilder,
};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::raw::{
    DEADLINE_MS, EPOCH_TICK, JOB_MEMORY, KEEP_RESIDENT, MAX_OUTPUT, MAX_STDERR, NODE_MEMORY,
};

/// A job's store state: the WASI context, its resource table, its limits.
pub struct P2Ctx {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for P2Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// One engine and one pre-instantiated `wasi:cli/command` component.
pub struct P2 {
    engine: Engine,
    pre: CommandPre<P2Ctx>,
    fuel: u64,
    _ticker: crate::raw::Ticker,
}

impl P2 {
    /// Compiles `wasm` (a component) on an engine sized for `threads`
    /// threads as the node sizes its own, with fuel `fuel` per job.
    pub fn new(wasm: &[u8], fuel: u64, threads: usize) -> P2 {
        let slots = u32::try_from(threads * 2 + 8).expect("small");
        let mut pool = PoolingAllocationConfig::new();
        // A component holds several core instances (its module and the
        // shims that lower its imports): room for 8 per component.
        pool.total_component_instances(slots)
            .total_core_instances(slots * 8)
            .total_memories(slots)
            .total_tables(slots * 4)
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
            .consume_fuel(true)
            .epoch_interruption(true);
        let engine = Engine::new(&config).expect("engine");
        let component = Component::from_binary(&engine, wasm).expect("component compiles");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi links");
        let pre = CommandPre::new(linker.instantiate_pre(&component).expect("component links"))
            .expect("a wasi:cli/command");
        let ticker = crate::raw::Ticker::start(engine.clone(), EPOCH_TICK);
        P2 {
            engine,
            pre,
            fuel,
            _ticker: ticker,
        }
    }

    /// Runs one job and returns its stdout and the fuel it used.
    pub fn run(&self, payload: &Bytes) -> (Vec<u8>, u64) {
        let stdout = MemoryOutputPipe::new(MAX_OUTPUT);
        let stderr = MemoryOutputPipe::new(MAX_STDERR);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(payload.clone()))
            .stdout(stdout.clone())
            .stderr(stderr)
            .arg("wordcount.wasm");
        let ctx = P2Ctx {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(JOB_MEMORY as usize)
                .build(),
        };
        let mut store = Store::new(&self.engine, ctx);
        store.limiter(|c| &mut c.limits);
        store.set_fuel(self.fuel).expect("fuel on");
        let ticks = (DEADLINE_MS * 1000).div_ceil(EPOCH_TICK.as_micros() as u64) + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let command = self.pre.instantiate(&mut store).expect("instantiates");
        match command.wasi_cli_run().call_run(&mut store) {
            Ok(Ok(())) => {}
            Ok(Err(())) => panic!("component job exited with an error"),
            Err(e) => panic!("component job failed: {e:?}"),
        }
        let fuel_used = self.fuel - store.get_fuel().expect("fuel on");
        drop(store);
        let out = stdout.try_into_inner().expect("store dropped").to_vec();
        (out, fuel_used)
    }
}
