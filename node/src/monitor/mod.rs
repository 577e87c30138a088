//! What the node knows about itself for people and machines watching it:
//! the metrics registry, per-second rates, recent failures and the event
//! feed. One [`Monitor`] per node (never process-global), created when the
//! node serves HTTP; the driver hands it the engine's job events.
//!
//! - `metrics.rs`: the `prometheus-client` registry and its handles.
//! - `rates.rs`: per-second rings (queue rates, the node's history).
//! - this file: the cheap-clone handle, and the feed's items.
//!
//! Cost on the driver per job event: a few atomic adds, a histogram
//! observation, one uncontended mutex for the rates, and, only while feed
//! clients are connected and within the feed's node-wide budget
//! ([`FEED_JOB_EVENTS_PER_SEC`]), one `Arc` and a broadcast send.

mod metrics;
mod rates;

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

pub use metrics::{CLASSES, MAX_QUEUE_LABELS, Metrics, Snapshot};
pub use rates::{FEED_JOB_EVENTS_PER_SEC, Failure, HISTORY_SECS, RATE_WINDOW_SECS, Rate, Second};

use crate::api::{JobEvent, JobEventKind, Removal, class_label};
use crate::job::{ErrorClass, JobId, UnixMs};
use rates::{Count, Rates};

/// Items the feed buffers for its slowest client before dropping it.
pub const FEED_CAPACITY: usize = 4096;

/// One item of the event feed.
#[derive(Clone, Debug)]
pub enum FeedItem {
    Job(Arc<FeedJob>),
    /// A node stats tick, already rendered as JSON.
    Tick(Arc<str>),
}

/// A job event as the feed carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedJob {
    pub at: UnixMs,
    pub id: JobId,
    pub queue: String,
    /// `added`, `finished`, `failed`, `requeued`, `acked`, `deleted`, `expired`.
    pub event: &'static str,
    pub class: Option<ErrorClass>,
    pub run_us: u64,
}

impl FeedJob {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "at": self.at,
            "id": self.id.to_string(),
            "queue": self.queue,
            "event": self.event,
            "class": self.class.map(|c| c.to_string()),
            "run_ms": self.run_us as f64 / 1000.0,
        })
    }
}

/// The node's monitor. Cheap to clone.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    metrics: Metrics,
    rates: Mutex<Rates>,
    feed: broadcast::Sender<FeedItem>,
}

impl Monitor {
    pub fn new() -> Monitor {
        Monitor::with_store(None)
    }

    /// A monitor that also exports the job store's write and sync latency
    /// (`appendonly yes`).
    pub fn with_store(store: Option<&crate::store::WriterStats>) -> Monitor {
        let mut registry = Registry::with_prefix("wasque");
        let metrics = Metrics::register(&mut registry);
        if let Some(store) = store {
            registry.register(
                "store_write_seconds",
                "Time to hand one group of job changes to the store",
                store.write_seconds.clone(),
            );
            registry.register(
                "store_sync_seconds",
                "Time of one sync of the job store to disk",
                store.sync_seconds.clone(),
            );
        }
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Monitor {
            inner: Arc::new(Inner {
                registry,
                metrics,
                rates: Mutex::new(Rates::default()),
                feed,
            }),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The registry in Prometheus text format (0.0.4).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 << 10);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }

    /// The content type of [`Monitor::encode`]'s text.
    pub const CONTENT_TYPE: &'static str =
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

    /// A job event from the engine, at `now`.
    pub fn job_event(&self, now: UnixMs, e: JobEvent) {
        let m = &self.inner.metrics;
        let mut feed = None;
        let listened = self.inner.feed.receiver_count() > 0;
        let mut pass = false;
        {
            let mut rates = self.rates();
            match e.kind {
                JobEventKind::Added { .. } => {
                    m.added.inc();
                    rates.count(now, &e.queue, Count::Added);
                }
                JobEventKind::Started { ready_since, .. } => {
                    m.delivered.inc();
                    m.wait_seconds
                        .observe(now.saturating_sub(ready_since) as f64 / 1000.0);
                }
                JobEventKind::Finished {
                    class,
                    run_us,
                    fuel_used,
                } => {
                    m.run_seconds.observe(run_us as f64 / 1e6);
                    m.fuel.inc_by(fuel_used);
                    match class {
                        None => {
                            m.succeeded.inc();
                            rates.count(now, &e.queue, Count::Finished);
                        }
                        Some(c) => {
                            let label = class_label(&c);
                            if let Some(i) = CLASSES.iter().position(|l| *l == label)
                                && let Some(counter) = m.failed.get(i)
                            {
                                counter.inc();
                            }
                            rates.count(now, &e.queue, Count::Failed);
                            rates.failed(Failure {
                                at: now,
                                id: e.id.to_string(),
                                queue: String::from(&*e.queue),
                                class: c.to_string(),
                                run_us,
                            });
                        }
                    }
                    feed = Some((class, run_us));
                }
                JobEventKind::Requeued => {
                    m.requeued.inc();
                }
                JobEventKind::Removed(r) => match r {
                    Removal::Acked => {
                        m.acked.inc();
                    }
                    Removal::Deleted => {
                        m.deleted.inc();
                    }
                    Removal::Expired => {
                        m.expired.inc();
                    }
                },
            }
            if listened && !matches!(e.kind, JobEventKind::Started { .. }) {
                let failure = matches!(e.kind, JobEventKind::Finished { class: Some(_), .. });
                pass = rates.feed_take(now, failure);
            }
        }
        if !pass {
            return;
        }
        let (class, run_us) = feed.unwrap_or((None, 0));
        let item = FeedJob {
            at: now,
            event: e.kind.word(),
            id: e.id,
            queue: String::from(&*e.queue),
            class,
            run_us,
        };
        let _ = self.inner.feed.send(FeedItem::Job(Arc::new(item)));
    }

    /// A module upload: compiled now, or already in the cache.
    pub fn module_upload(&self, compiled_now: bool) {
        let m = &self.inner.metrics;
        if compiled_now {
            m.uploads_compiled.inc();
        } else {
            m.uploads_present.inc();
        }
    }

    /// A new feed client's receiver.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedItem> {
        self.inner.feed.subscribe()
    }

    /// Job events left out of the feed (over its budget) since the last
    /// call.
    pub fn take_feed_skipped(&self) -> u64 {
        self.rates().take_feed_skipped()
    }

    /// Sends a rendered stats tick to every feed client.
    pub fn publish_tick(&self, json: Arc<str>) {
        let _ = self.inner.feed.send(FeedItem::Tick(json));
    }

    /// The node's rates over the rate window.
    pub fn node_rate(&self, now: UnixMs) -> Rate {
        self.rates().node_rate(now)
    }

    /// A queue's rates over the rate window.
    pub fn queue_rate(&self, now: UnixMs, queue: &str) -> Rate {
        self.rates().queue_rate(now, queue)
    }

    /// The node's last `secs` full seconds, oldest first.
    pub fn history(&self, now: UnixMs, secs: u64) -> Vec<Second> {
        self.rates().history(now, secs)
    }

    /// Recent failures, newest first.
    pub fn failures(&self) -> Vec<Failure> {
        self.rates().failures()
    }

    /// Housekeeping, once a second: forgets idle queues' rates.
    pub fn tick(&self, now: UnixMs) {
        self.rates().evict_idle(now);
    }

    fn rates(&self) -> std::sync::MutexGuard<'_, Rates> {
        self.inner
            .rates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor::new()
    }
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}
