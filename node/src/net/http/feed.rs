//! The event feed, `GET /api/events`: server-sent events of job events
//! (`event: job`) and, once a second, the node's stats and its view of
//! the cluster's members (`event: tick`).
//!
//! Bounded in three ways: the node puts at most
//! [`crate::monitor::FEED_JOB_EVENTS_PER_SEC`] job events a second on the
//! feed (failures have their own budget; the rest are counted in each
//! tick's `skipped_jobs`); each client is forwarded at most
//! [`JOB_EVENTS_PER_SEC`] a second (a burst of twice that), the rest
//! counted in an `event: skipped`; and a client that reads so
//! slowly that the node's buffer of [`crate::monitor::FEED_CAPACITY`]
//! items passes it is sent `event: dropped` and disconnected (a browser's
//! `EventSource` reconnects by itself). At most [`MAX_FEED_CLIENTS`] at
//! once.
//!
//! The ticker renders the stats once for all clients, and only while at
//! least one is connected.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use super::{AppState, HttpError, api, render};
use crate::api::{Inspection, Query};
use crate::job::UnixMs;
use crate::monitor::FeedItem;
use crate::runtime::now_ms;

/// Feed clients at once.
pub const MAX_FEED_CLIENTS: usize = 64;
/// Job events forwarded to one client per second.
pub const JOB_EVENTS_PER_SEC: u32 = 200;
/// Queues a tick lists (the first by name; the API pages the rest).
pub const TICK_QUEUES: usize = 50;
/// How often the ticker sends the node's stats.
pub const TICK_EVERY: Duration = Duration::from_secs(1);
/// Least time between two ticks sent for membership changes.
pub const MEMBER_TICK_GAP: Duration = Duration::from_millis(100);

/// `GET /api/events`.
pub async fn events(
    State(st): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    let n = st.inner.feed_clients.fetch_add(1, Ordering::AcqRel);
    let mut guard = ClientGuard {
        st: st.clone(),
        counted: false,
    };
    if n >= MAX_FEED_CLIENTS {
        return Err(HttpError::unavailable(format!(
            "the event feed serves at most {MAX_FEED_CLIENTS} clients"
        )));
    }
    st.monitor().metrics().feed_clients.inc();
    guard.counted = true;
    let client = Client {
        rx: st.monitor().subscribe(),
        stop: st.inner.stop.clone(),
        bucket: Bucket::new(now_ms()),
        skipped: 0,
        pending: None,
        done: false,
        guard,
    };
    // A first event at once, so a client knows the feed is live.
    let hello = Event::default()
        .event("hello")
        .data(json!({ "node": st.handle().node_id() }).to_string());
    let stream = futures_util::stream::unfold((Some(hello), client), |(first, mut c)| async move {
        if let Some(ev) = first {
            return Some((Ok(ev), (None, c)));
        }
        let ev = c.next().await?;
        Some((Ok(ev), (None, c)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One feed client's state.
struct Client {
    rx: broadcast::Receiver<FeedItem>,
    stop: watch::Receiver<bool>,
    bucket: Bucket,
    skipped: u64,
    pending: Option<Event>,
    done: bool,
    guard: ClientGuard,
}

impl Client {
    async fn next(&mut self) -> Option<Event> {
        if let Some(ev) = self.pending.take() {
            return Some(ev);
        }
        if self.done {
            return None;
        }
        loop {
            let item = tokio::select! {
                _ = self.stop.wait_for(|s| *s) => return None,
                item = self.rx.recv() => item,
            };
            match item {
                Ok(FeedItem::Tick(json)) => {
                    let tick = Event::default().event("tick").data(&*json);
                    if self.skipped > 0 {
                        let n = std::mem::take(&mut self.skipped);
                        self.pending = Some(tick);
                        return Some(
                            Event::default()
                                .event("skipped")
                                .data(json!({ "jobs": n }).to_string()),
                        );
                    }
                    return Some(tick);
                }
                Ok(FeedItem::Job(j)) => {
                    if self.bucket.take(now_ms()) {
                        return Some(Event::default().event("job").data(j.to_json().to_string()));
                    }
                    self.skipped += 1;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.done = true;
                    self.guard.st.monitor().metrics().feed_dropped.inc();
                    return Some(
                        Event::default().event("dropped").data(
                            json!({ "reason": "reading too slowly", "missed": n }).to_string(),
                        ),
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Counts a client out when its stream ends (or it was refused).
struct ClientGuard {
    st: AppState,
    /// Whether the client was accepted and counted in the gauge.
    counted: bool,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.st.inner.feed_clients.fetch_sub(1, Ordering::AcqRel);
        if self.counted {
            self.st.monitor().metrics().feed_clients.dec();
        }
    }
}

/// A token bucket: [`JOB_EVENTS_PER_SEC`] a second, bursts of twice that.
struct Bucket {
    tokens: f64,
    at: UnixMs,
}

impl Bucket {
    fn new(now: UnixMs) -> Bucket {
        Bucket {
            tokens: f64::from(JOB_EVENTS_PER_SEC),
            at: now,
        }
    }

    fn take(&mut self, now: UnixMs) -> bool {
        let rate = f64::from(JOB_EVENTS_PER_SEC);
        let elapsed = now.saturating_sub(self.at) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(2.0 * rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Once a second: housekeeping of the rates, and a stats tick for the
/// feed's clients (rendered only while someone listens). A change of a
/// member's state (a peer declared down, say) sends a tick at once, so
/// the dashboard shows it as soon as the membership knows it.
pub async fn ticker(st: AppState) {
    let mut every = tokio::time::interval(TICK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = st.inner.stop.clone();
    let mut members = Some(st.handle().cluster().watch_members());
    loop {
        let on_time = tokio::select! {
            _ = every.tick() => true,
            changed = async {
                match members.as_mut() {
                    Some(m) => m.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !changed {
                    // The cluster layer is gone: ticks on time only.
                    members = None;
                    continue;
                }
                false
            }
            _ = stop.wait_for(|s| *s) => return,
        };
        let now = now_ms();
        if on_time {
            st.monitor().tick(now);
        }
        if st.inner.feed_clients.load(Ordering::Acquire) == 0 {
            continue;
        }
        match tick(&st, now).await {
            Ok(json) => st.monitor().publish_tick(Arc::from(json.to_string())),
            Err(e) => tracing::debug!("stats tick skipped: {}", e.message),
        }
        if !on_time {
            // A burst of membership changes makes one tick per
            // MEMBER_TICK_GAP at most (the watch keeps only the latest).
            tokio::time::sleep(MEMBER_TICK_GAP).await;
        }
    }
}

/// The stats tick: every member this node knows (as `/api/cluster` lists
/// them), the first queues, and the last full second.
async fn tick(st: &AppState, now: UnixMs) -> Result<serde_json::Value, HttpError> {
    let stats = api::stats(st).await?;
    let Inspection::Queues(page) = st
        .ask(Query::Queues {
            cursor: None,
            limit: TICK_QUEUES,
            prefix: None,
        })
        .await?
    else {
        return Err(HttpError::internal("unexpected answer from the engine"));
    };
    let last = st.monitor().history(now, 1);
    Ok(json!({
        "at": now,
        "skipped_jobs": st.monitor().take_feed_skipped(),
        "nodes": api::members(st, &stats, &st.handle().cluster().peers(), now),
        "queues": page.queues.iter().map(|q| render::queue(st, q, now)).collect::<Vec<_>>(),
        "more_queues": page.next.is_some(),
        "second": last.first().map(render::second),
    }))
}
