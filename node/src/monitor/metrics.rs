//! The node's one metrics registry (`prometheus-client`), owned by the
//! node, never process-global: several nodes in one test process each have
//! their own.
//!
//! Two kinds of figures:
//! - counted as things happen: job events from the engine (carried out by
//!   the driver) and module uploads, into counters and histograms held
//!   here;
//! - read at scrape time: the engine's and the executor's own counts, put
//!   into a [`Snapshot`] by the `/metrics` handler just before encoding.
//!
//! Label sets are bounded: error classes are the fixed list of
//! [`crate::api::class_label`], and queue depths are exported for at most
//! [`MAX_QUEUE_LABELS`] queues (the deepest), per-tenant series for the
//! tenants in the registry (removed ones vanish). Never a job id.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::api::{NodeStats, TenantStat};
use crate::exec::ExecStats;

/// Most queues whose depth is exported as a labelled series.
pub const MAX_QUEUE_LABELS: usize = 100;

/// Every error class label, in a fixed order (see `class_label`).
pub const CLASSES: [&str; 10] = [
    "invalid-module",
    "out-of-fuel",
    "memory-limit",
    "deadline",
    "trap",
    "exit",
    "output-limit",
    "module-missing",
    "quota",
    "internal",
];

type Labels = Vec<(String, String)>;

/// The node's counters and histograms, updated as things happen.
#[derive(Debug)]
pub struct Metrics {
    pub added: Counter,
    pub delivered: Counter,
    pub succeeded: Counter,
    /// One counter per entry of [`CLASSES`].
    pub failed: Vec<Counter>,
    pub acked: Counter,
    pub deleted: Counter,
    pub expired: Counter,
    pub requeued: Counter,
    pub fuel: Counter,
    pub run_seconds: Histogram,
    pub wait_seconds: Histogram,
    pub uploads_compiled: Counter,
    pub uploads_present: Counter,
    pub feed_clients: Gauge,
    pub feed_dropped: Counter,
    /// What the `/metrics` handler read from the engine and executor.
    pub snapshot: Arc<Mutex<Snapshot>>,
}

/// Figures read at scrape time.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub stats: NodeStats,
    pub exec: ExecStats,
    /// (queue, ready jobs) for at most [`MAX_QUEUE_LABELS`] queues.
    pub queue_depths: Vec<(String, u64)>,
    /// Each tenant's figures, with the bytes of the modules it owns.
    pub tenants: Vec<(TenantStat, u64)>,
    pub uptime_secs: u64,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` (whose prefix
    /// is the node's, e.g. `wasque`).
    pub fn register(registry: &mut Registry) -> Metrics {
        let failed_family = Family::<Labels, Counter>::default();
        let failed = CLASSES
            .iter()
            .map(|c| failed_family.get_or_create_owned(&vec![("class".to_string(), c.to_string())]))
            .collect();
        // 10 µs .. ~168 s, ×4 per bucket: short Wasm jobs and long waits alike.
        let buckets = || exponential_buckets(0.000_01, 4.0, 13);
        let m = Metrics {
            added: Counter::default(),
            delivered: Counter::default(),
            succeeded: Counter::default(),
            failed,
            acked: Counter::default(),
            deleted: Counter::default(),
            expired: Counter::default(),
            requeued: Counter::default(),
            fuel: Counter::default(),
            run_seconds: Histogram::new(buckets()),
            wait_seconds: Histogram::new(buckets()),
            uploads_compiled: Counter::default(),
            uploads_present: Counter::default(),
            feed_clients: Gauge::default(),
            feed_dropped: Counter::default(),
            snapshot: Arc::new(Mutex::new(Snapshot::default())),
        };
        let r = registry;
        r.register("jobs_added", "Jobs added to this node", m.added.clone());
        r.register(
            "jobs_delivered",
            "Job deliveries: handed to an executor (Wasm jobs) or a worker",
            m.delivered.clone(),
        );
        r.register(
            "jobs_succeeded",
            "Wasm job executions that succeeded",
            m.succeeded.clone(),
        );
        r.register(
            "jobs_failed",
            "Wasm job executions that failed, by error class",
            failed_family,
        );
        r.register(
            "jobs_acked",
            "Jobs acknowledged (and forgotten)",
            m.acked.clone(),
        );
        r.register("jobs_deleted", "Jobs deleted", m.deleted.clone());
        r.register(
            "jobs_expired",
            "Jobs forgotten at the end of their TTL",
            m.expired.clone(),
        );
        r.register(
            "jobs_requeued",
            "Unacknowledged deliveries queued again",
            m.requeued.clone(),
        );
        r.register(
            "fuel_consumed",
            "Fuel used by finished Wasm jobs",
            m.fuel.clone(),
        );
        r.register_with_unit(
            "job_run",
            "Wall-clock run time of Wasm job executions",
            Unit::Seconds,
            m.run_seconds.clone(),
        );
        r.register_with_unit(
            "job_wait",
            "Time from ready in a queue to delivery",
            Unit::Seconds,
            m.wait_seconds.clone(),
        );
        r.register(
            "module_uploads_compiled",
            "Module uploads that were compiled (new to the module cache)",
            m.uploads_compiled.clone(),
        );
        r.register(
            "module_uploads_cached",
            "Module uploads the module cache already had (a cache hit: nothing compiled)",
            m.uploads_present.clone(),
        );
        r.register(
            "feed_clients",
            "Clients of the HTTP event feed",
            m.feed_clients.clone(),
        );
        r.register(
            "feed_clients_dropped",
            "Event feed clients dropped for reading too slowly",
            m.feed_dropped.clone(),
        );
        r.register_collector(Box::new(ScrapeCollector {
            snapshot: m.snapshot.clone(),
        }));
        m
    }

    /// Replaces the scrape-time figures.
    pub fn set_snapshot(&self, s: Snapshot) {
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = s;
    }
}

/// Encodes the scrape-time figures.
#[derive(Debug)]
struct ScrapeCollector {
    snapshot: Arc<Mutex<Snapshot>>,
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let st = &s.stats;
        let gauges: [(&str, &str, i64); 11] = [
            (
                "jobs",
                "Jobs held by this node, whatever their state",
                st.jobs as i64,
            ),
            ("jobs_ready", "Jobs ready in a queue", st.ready as i64),
            ("jobs_running", "Wasm jobs running now", st.running as i64),
            ("queues", "Queues this node knows", st.queues as i64),
            ("modules", "Modules stored on this node", st.modules as i64),
            (
                "waiters",
                "Requests blocked waiting for a job",
                st.waiters as i64,
            ),
            (
                "executor_slots",
                "Executor slots (Wasm jobs that may run at once)",
                i64::from(s.exec.threads),
            ),
            (
                "executor_slots_busy",
                "Executor slots running a job now",
                i64::from(s.exec.busy),
            ),
            (
                "uptime_seconds",
                "Seconds since the node started",
                s.uptime_secs as i64,
            ),
            (
                "idempotency_keys",
                "Jobs held that were added with an idempotency key",
                st.idempotency_keys as i64,
            ),
            (
                "idempotency_tombstones",
                "Idempotency keys remembered after their jobs are gone",
                st.idempotency_tombstones as i64,
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v);
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let counters: [(&str, &str, u64); 6] = [
            (
                "executor_jobs_run",
                "Executions finished by the executor, any outcome",
                s.exec.jobs_run,
            ),
            (
                "executor_jobs_ran_ahead",
                "Jobs run while another tenant's running job was set aside for them",
                s.exec.ran_ahead,
            ),
            (
                "module_compiles",
                "Modules compiled by Cranelift (uploads and recompiles)",
                s.exec.modules_compiled,
            ),
            (
                "module_loads",
                "Modules restored from their precompiled artifact at start",
                s.exec.modules_loaded,
            ),
            (
                "idempotency_hits",
                "Adds answered with an earlier job's id by their idempotency key",
                st.idempotency_hits,
            ),
            (
                "idempotency_tombstones_dropped",
                "Idempotency tombstones forgotten early (idempotency-max-tombstones)",
                st.idempotency_dropped,
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        if !s.queue_depths.is_empty() {
            let probe = ConstGauge::new(0i64);
            let mut fam = enc.encode_descriptor(
                "queue_depth",
                "Jobs ready in a queue (the deepest queues only)",
                None,
                probe.metric_type(),
            )?;
            for (queue, depth) in &s.queue_depths {
                let labels: Labels = vec![("queue".to_string(), queue.clone())];
                ConstGauge::new(*depth as i64).encode(fam.encode_family(&labels)?)?;
            }
        }
        encode_tenants(&mut enc, &s.tenants)
    }
}

/// The per-tenant series: one label `tenant` (plus `quota` on refusals).
fn encode_tenants(
    enc: &mut DescriptorEncoder,
    tenants: &[(TenantStat, u64)],
) -> Result<(), std::fmt::Error> {
    if tenants.is_empty() {
        return Ok(());
    }
    let label = |t: &TenantStat| -> Labels { vec![("tenant".to_string(), t.name.clone())] };
    type Figure = fn(&TenantStat, u64) -> u64;
    let gauges: [(&str, &str, Figure); 3] = [
        (
            "tenant_jobs",
            "Jobs a tenant holds on this node, whatever their state",
            |t, _| t.jobs,
        ),
        (
            "tenant_queue_depth",
            "A tenant's jobs ready in its queues",
            |t, _| t.ready,
        ),
        (
            "tenant_module_bytes",
            "Bytes of the modules a tenant owns (its max-module-bytes quota counts these)",
            |_, bytes| bytes,
        ),
    ];
    for (name, help, f) in gauges {
        let probe = ConstGauge::new(0i64);
        let mut fam = enc.encode_descriptor(name, help, None, probe.metric_type())?;
        for (t, bytes) in tenants {
            ConstGauge::new(f(t, *bytes) as i64).encode(fam.encode_family(&label(t))?)?;
        }
    }
    let counters: [(&str, &str, Figure); 2] = [
        (
            "tenant_runs",
            "Wasm runs of a tenant's jobs finished on this node",
            |t, _| t.runs,
        ),
        (
            "tenant_fuel_consumed",
            "Fuel a tenant's Wasm runs used on this node",
            |t, _| t.fuel_used,
        ),
    ];
    for (name, help, f) in counters {
        let probe = ConstCounter::new(0u64);
        let mut fam = enc.encode_descriptor(name, help, None, probe.metric_type())?;
        for (t, bytes) in tenants {
            ConstCounter::new(f(t, *bytes)).encode(fam.encode_family(&label(t))?)?;
        }
    }
    let probe = ConstCounter::new(0f64);
    let mut fam = enc.encode_descriptor(
        "tenant_memory_byte_seconds",
        "A tenant's runs' memory caps times their run times (byte-seconds)",
        None,
        probe.metric_type(),
    )?;
    for (t, _) in tenants {
        ConstCounter::new(t.memory_byte_ms as f64 / 1000.0)
            .encode(fam.encode_family(&label(t))?)?;
    }
    let probe = ConstCounter::new(0u64);
    let mut fam = enc.encode_descriptor(
        "tenant_rejected",
        "Adds and uploads refused to a tenant, by the quota exceeded",
        None,
        probe.metric_type(),
    )?;
    for (t, _) in tenants {
        for (quota, n) in &t.refused {
            let mut l = label(t);
            l.push(("quota".to_string(), (*quota).to_string()));
            ConstCounter::new(*n).encode(fam.encode_family(&l)?)?;
        }
    }
    Ok(())
}
