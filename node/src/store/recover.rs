//! Start-up: open the job store, read every job back, hand them to the
//! engine ([`Engine::restore`]) and log what was found, kept and dropped.

use std::cell::RefCell;
use std::path::Path;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use super::{JobStore, STORE_DIR, StoreError, Written};
use crate::config::Config;
use crate::engine::{Engine, RestoreReport};
use crate::job::UnixMs;

/// Opens the job store (with `appendonly yes`) and restores the engine from
/// it. `None` with `appendonly no`: nothing is read or written.
pub fn open_and_restore(
    cfg: &Config,
    data_dir: &Path,
    engine: &mut Engine,
    now: UnixMs,
    written: UnboundedSender<Written>,
) -> Result<Option<JobStore>, StoreError> {
    if !cfg.appendonly {
        if data_dir.join(STORE_DIR).exists() {
            tracing::warn!(
                "appendonly no: the job store in {} is neither read nor written",
                data_dir.join(STORE_DIR).display()
            );
        }
        return Ok(None);
    }
    let t0 = Instant::now();
    let mut rep = RestoreReport::default();
    let (store, load) = {
        let engine = RefCell::new(&mut *engine);
        JobStore::open(
            data_dir,
            cfg.appendfsync,
            written,
            |n| engine.borrow_mut().restore_begin(n),
            |rec| match rec {
                super::record::Record::Job(job) => {
                    engine.borrow_mut().restore_job(now, job, &mut rep)
                }
                super::record::Record::Tomb(t) => {
                    engine.borrow_mut().restore_tombstone(now, t, &mut rep)
                }
            },
        )?
    };
    engine.restore_end(now);
    if load.open.journal_bytes_dropped > 0 {
        tracing::warn!(
            path = %load.path.display(),
            "job store: cut a torn or corrupt journal tail of {} bytes (a write interrupted by a crash or power loss); everything before it is recovered",
            load.open.journal_bytes_dropped
        );
    }
    for (key, why) in &load.undecodable {
        tracing::error!(key = %key, "job store: record skipped (left on disk): {why}");
    }
    tracing::info!(
        records = load.records,
        restored = rep.restored,
        ready = rep.ready,
        delayed = rep.delayed,
        expired = rep.expired,
        requeued_running = rep.requeued_running,
        dropped_at_most_once = rep.dropped_at_most_once,
        delivered = rep.delivered,
        finished = rep.finished,
        tombstones = rep.tombstones,
        undecodable = load.undecodable.len(),
        disk_bytes = load.disk_bytes,
        check_ms = load.open.check_ms,
        open_ms = load.open_ms,
        read_ms = load.elapsed_ms,
        total_ms = t0.elapsed().as_millis() as u64,
        "job store recovered"
    );
    Ok(Some(store))
}
