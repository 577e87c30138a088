//! The node's one wasmtime `Engine`: the pooling allocator tuned for many
//! short jobs, fuel and epoch interruption on, and the artifact key that ties
//! precompiled code to this engine's settings.

use std::hash::{Hash, Hasher};

use sha2::Digest;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::config::ExecConfig;
use super::error::ExecError;

/// Bytes of each pooled memory (and table) kept resident between jobs and
/// reset in place instead of being returned to the kernel. A short job
/// touches less than this, so the next job in the slot takes no page faults.
const KEEP_RESIDENT: usize = 2 << 20;

/// The built engine and what it could turn on.
pub(crate) struct NodeEngine {
    pub(crate) engine: Engine,
    /// Whether `PAGEMAP_SCAN` resets pooled memory (Linux 6.7+).
    pub(crate) pagemap_scan: bool,
    /// `Engine::precompile_compatibility_hash`, as 16 hex digits: part of
    /// every artifact's file name.
    pub(crate) compat: String,
}

/// Pool slots for `threads` executor threads: three per thread (a
/// thread's last slot may still be resetting when its next job takes
/// one, and a job run ahead of a set-aside one, `run::SetAside`, takes
/// one more), plus room for `run_here` callers and module validation.
/// A slot costs address space, not memory, until it is used.
pub(crate) fn pool_slots(threads: usize) -> u32 {
    u32::try_from(threads.saturating_mul(3).saturating_add(8)).unwrap_or(u32::MAX)
}

/// Builds the engine for `cfg`.
pub(crate) fn build(cfg: &ExecConfig) -> Result<NodeEngine, ExecError> {
    let slots = pool_slots(cfg.threads.max(1));
    let max_memory = usize::try_from(cfg.max_memory_bytes).map_err(|_| {
        ExecError::Engine(format!(
            "max_memory_bytes {} does not fit this platform",
            cfg.max_memory_bytes
        ))
    })?;
    let pagemap_scan = PoolingAllocationConfig::is_pagemap_scan_available();

    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        .total_stacks(slots)
        .max_memory_size(max_memory)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT);
    if pagemap_scan {
        pool.pagemap_scan(Enabled::Yes);
    }

    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(cfg.memory_cow)
        .consume_fuel(true)
        .epoch_interruption(true);
    let engine = Engine::new(&config).map_err(|e| ExecError::Engine(format!("{e:#}")))?;
    let compat = compat_hex(&engine);
    Ok(NodeEngine {
        engine,
        pagemap_scan,
        compat,
    })
}

/// A stable digest of `Engine::precompile_compatibility_hash`: sha256 over
/// what it feeds a hasher, first 8 bytes in hex. (std's `DefaultHasher` is
/// not promised to stay the same between Rust releases.)
fn compat_hex(engine: &Engine) -> String {
    struct ShaHasher(sha2::Sha256);
    impl Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            let d = self.0.clone().finalize();
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[..8]);
            u64::from_be_bytes(b)
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = ShaHasher(sha2::Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}
