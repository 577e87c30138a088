//! Job events over RESP, in Redis's publish/subscribe form: `SUBSCRIBE
//! jobs` (every job event of the node) and `SUBSCRIBE queue:NAME` (one
//! queue's). Each event arrives as `*3 $7 message $channel $payload`, the
//! payload a small JSON object: `{"event":"added","id":"…","queue":"…"}`
//! (`event` is one of `added`, `started`, `finished`, `failed`,
//! `requeued`, `acked`, `deleted`, `expired`; `failed` adds `"class"`).
//! `SUBSCRIBE logs:ID` receives the stdout lines of job ID while it runs
//! on this node (`{"event":"log","id":"…","queue":"…","line":"…"}`, with
//! `"dropped": n` when n lines before it were dropped by the bounds of
//! `exec/live.rs`, and `"line"` absent when only drops are told); `jobs`
//! and `queue:` channels never carry lines.
//!
//! [`Hub`] is the node's one fan-out: the driver publishes each
//! `api::JobEvent` into it (the engine builds events only while someone
//! listens: HTTP monitoring or at least one subscriber), rendering the JSON
//! once for all subscribers. Publishing never waits: it is a send on a
//! `tokio::sync::broadcast` ring of [`BACKLOG`] events. A subscriber that
//! falls more than that behind, or lets more than [`MAX_OUTPUT`] bytes pile
//! up unread, is sent `-ERR slow subscriber: ...` and disconnected; the node
//! never slows down for it.
//!
//! A subscribed connection accepts `SUBSCRIBE`, `UNSUBSCRIBE`, `PING` and
//! `QUIT`, as Redis does; it stays a subscriber connection until it closes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};

use super::Shared;
use super::frame::{self, Frame};
use crate::api::{JobEvent, JobEventKind};
use crate::job::JobId;

/// Events buffered for the slowest subscriber before it is dropped.
pub const BACKLOG: usize = 8192;
/// Bytes of unread messages one subscriber may hold before it is dropped.
pub const MAX_OUTPUT: usize = 4 << 20;
/// Channels one connection may subscribe to.
pub const MAX_CHANNELS: usize = 1024;

/// One published event: its queue (for `queue:NAME` channels) and payload.
#[derive(Debug)]
pub struct Published {
    pub queue: String,
    pub payload: Bytes,
    /// A stdout line of this job (`logs:ID` channels), not a job event.
    pub log: Option<JobId>,
}

/// The node's event fan-out. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    tx: broadcast::Sender<Arc<Published>>,
    subscribers: AtomicUsize,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        let (tx, _) = broadcast::channel(BACKLOG);
        Hub {
            inner: Arc::new(HubInner {
                tx,
                subscribers: AtomicUsize::new(0),
            }),
        }
    }

    /// Whether any connection is subscribed.
    pub fn listened(&self) -> bool {
        self.inner.subscribers.load(Ordering::Relaxed) > 0
    }

    /// Publishes a job event to every subscriber; never waits.
    pub fn publish(&self, e: &JobEvent) {
        if !self.listened() {
            return;
        }
        let mut json = serde_json::json!({
            "event": e.kind.word(),
            "id": e.id.to_string(),
            "queue": e.queue,
        });
        if let JobEventKind::Finished { class: Some(c), .. } = &e.kind {
            json["class"] = serde_json::Value::String(c.to_string());
        }
        let _ = self.inner.tx.send(Arc::new(Published {
            queue: String::from(&*e.queue),
            payload: Bytes::from(json.to_string()),
            log: None,
        }));
    }

    /// Publishes a stdout line of a running job (or, with `line: None`,
    /// only how many were dropped) to `logs:ID` listeners; never waits.
    pub fn publish_log(&self, id: JobId, queue: &str, line: Option<&str>, dropped: u64) {
        if !self.listened() {
            return;
        }
        let mut json = serde_json::json!({
            "event": "log",
            "id": id.to_string(),
            "queue": queue,
        });
        if let Some(l) = line {
            json["line"] = serde_json::Value::String(l.to_string());
        }
        if dropped > 0 {
            json["dropped"] = serde_json::Value::from(dropped);
        }
        let _ = self.inner.tx.send(Arc::new(Published {
            queue: queue.to_string(),
            payload: Bytes::from(json.to_string()),
            log: Some(id),
        }));
    }

    /// A receiver of every event published from now on, for a front door
    /// other than RESP (QUIC's `Subscribe`). Counts as a subscriber (the
    /// engine builds events while it lives); see [`Listener::recv`].
    pub fn listen(&self) -> Listener {
        Listener(self.subscribe())
    }

    fn subscribe(&self) -> Subscriber {
        self.inner.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscriber {
            rx: self.inner.tx.subscribe(),
            hub: self.clone(),
        }
    }
}

/// Events for one listener outside RESP.
pub struct Listener(Subscriber);

impl Listener {
    /// The next event; `Err(n)` when this listener fell `n` events behind
    /// (it should give up: events were lost), `Ok(None)` when the hub is
    /// gone.
    pub async fn recv(&mut self) -> Result<Option<Arc<Published>>, u64> {
        match self.0.rx.recv().await {
            Ok(p) => Ok(Some(p)),
            Err(broadcast::error::RecvError::Lagged(n)) => Err(n),
            Err(broadcast::error::RecvError::Closed) => Ok(None),
        }
    }
}

/// A receiver that counts itself out when dropped.
struct Subscriber {
    rx: broadcast::Receiver<Arc<Published>>,
    hub: Hub,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.hub.inner.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An event's payload as a tenant sees it: its queue without the tenant's
/// prefix.
pub fn unscoped_payload(payload: &[u8], prefix: &str) -> String {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(mut v) => {
            if let Some(q) = v.get("queue").and_then(|q| q.as_str())
                && let Some(rest) = q.strip_prefix(prefix)
            {
                v["queue"] = serde_json::Value::String(rest.to_string());
            }
            v.to_string()
        }
        Err(_) => String::from_utf8_lossy(payload).into_owned(),
    }
}

/// Whether `channel` receives an event of `queue`.
fn matches(channel: &str, queue: &str) -> bool {
    channel == "jobs" || channel.strip_prefix("queue:") == Some(queue)
}

/// Whether `channel` receives `p`: job events by queue, lines by job.
fn receives(channel: &str, p: &Published) -> bool {
    match p.log {
        Some(id) => channel
            .strip_prefix("logs:")
            .is_some_and(|c| c.eq_ignore_ascii_case(&id.to_string())),
        None => matches(channel, &p.queue),
    }
}

struct Sub {
    channels: BTreeSet<String>,
    out: BytesMut,
    closing: bool,
    parser: frame::Parser,
}

impl Sub {
    fn request(&mut self, args: Vec<Bytes>) {
        let name = args
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
            .unwrap_or_default();
        match name.as_str() {
            "subscribe" if args.len() < 2 => {
                super::cmd::wrong_arity("subscribe").encode(&mut self.out);
            }
            "subscribe" => {
                for ch in &args[1..] {
                    let ch = String::from_utf8_lossy(ch).into_owned();
                    if self.channels.len() >= MAX_CHANNELS && !self.channels.contains(&ch) {
                        Frame::error(
                            "ERR",
                            &format!("at most {MAX_CHANNELS} channels per connection"),
                        )
                        .encode(&mut self.out);
                        continue;
                    }
                    self.channels.insert(ch.clone());
                    self.confirm("subscribe", Some(&ch));
                }
            }
            "unsubscribe" => {
                let chosen: Vec<String> = if args.len() > 1 {
                    args[1..]
                        .iter()
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect()
                } else {
                    self.channels.iter().cloned().collect()
                };
                if chosen.is_empty() {
                    self.confirm("unsubscribe", None);
                }
                for ch in chosen {
                    self.channels.remove(&ch);
                    self.confirm("unsubscribe", Some(&ch));
                }
            }
            "ping" => Frame::Array(vec![
                Frame::text("pong"),
                args.get(1).cloned().map_or(Frame::text(""), Frame::Bulk),
            ])
            .encode(&mut self.out),
            "quit" => {
                Frame::Simple("OK".into()).encode(&mut self.out);
                self.closing = true;
            }
            _ => {
                let shown: String = name.chars().take(64).collect();
                Frame::error(
                    "ERR",
                    &format!(
                        "Can't execute '{shown}': only SUBSCRIBE / UNSUBSCRIBE / PING / QUIT are allowed in this context"
                    ),
                )
                .encode(&mut self.out);
            }
        }
    }

    fn confirm(&mut self, kind: &str, channel: Option<&str>) {
        Frame::Array(vec![
            Frame::text(kind),
            channel.map_or(Frame::Null, Frame::text),
            Frame::Integer(self.channels.len() as i64),
        ])
        .encode(&mut self.out);
    }

    fn deliver(&mut self, p: &Published) {
        for ch in &self.channels {
            if receives(ch, p) {
                Frame::Array(vec![
                    Frame::text("message"),
                    Frame::text(ch),
                    Frame::Bulk(p.payload.clone()),
                ])
                .encode(&mut self.out);
            }
        }
    }

    /// Ends the connection with the reason it is dropped.
    fn drop_slow(&mut self, why: &str) {
        tracing::info!("dropping a slow RESP subscriber: {why}");
        self.out.clear();
        Frame::error("ERR", &format!("slow subscriber: {why}; disconnected")).encode(&mut self.out);
        self.closing = true;
    }
}

/// Serves a connection that sent SUBSCRIBE (`first`), from then on. `input`
/// holds what the client sent after it, `out` what is still owed to it.
pub(super) async fn serve(
    stream: TcpStream,
    mut input: BytesMut,
    out: BytesMut,
    first: Vec<Bytes>,
    shared: Arc<Shared>,
    hub: Hub,
    mut stop: watch::Receiver<bool>,
) {
    let mut subscriber = hub.subscribe();
    let mut s = Sub {
        channels: BTreeSet::new(),
        out,
        closing: false,
        parser: frame::Parser::default(),
    };
    s.request(first);
    handle_input(&mut s, &mut input, &shared);
    let mut close_by: Option<tokio::time::Instant> = None;
    loop {
        if s.closing {
            if s.out.is_empty() {
                break;
            }
            close_by.get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_secs(1));
        }
        if !s.closing && s.out.len() > MAX_OUTPUT {
            s.drop_slow(&format!("more than {MAX_OUTPUT} bytes unread"));
            shared.subscribers_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        tokio::select! {
            r = stream.readable(), if !s.closing => {
                if r.is_err() {
                    break;
                }
                input.reserve(4 << 10);
                match super::read::read_some(&stream, &mut input) {
                    Ok(0) => break,
                    Ok(_) => handle_input(&mut s, &mut input, &shared),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
            w = stream.writable(), if !s.out.is_empty() => {
                if w.is_err() {
                    break;
                }
                match stream.try_write(&s.out) {
                    Ok(n) => {
                        let _ = s.out.split_to(n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
            ev = subscriber.rx.recv(), if !s.closing => match ev {
                Ok(p) => {
                    s.deliver(&p);
                    for _ in 0..1024 {
                        match subscriber.rx.try_recv() {
                            Ok(p) => s.deliver(&p),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                s.drop_slow(&format!("{n} events missed"));
                                shared.subscribers_dropped.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    s.drop_slow(&format!("{n} events missed"));
                    shared.subscribers_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = sleep_until(close_by), if close_by.is_some() => break,
            _ = stop.changed() => break,
        }
    }
}

fn handle_input(s: &mut Sub, input: &mut BytesMut, shared: &Shared) {
    while !s.closing {
        match s.parser.parse(input, &shared.limits) {
            Ok(None) => return,
            Ok(Some(args)) if args.is_empty() => {}
            Ok(Some(args)) => {
                shared.total_commands.fetch_add(1, Ordering::Relaxed);
                s.request(args);
            }
            Err(e) => {
                Frame::Error(format!("ERR {e}")).encode(&mut s.out);
                s.closing = true;
                input.clear();
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_match_queues() {
        assert!(matches("jobs", "q"));
        assert!(matches("queue:q", "q"));
        assert!(!matches("queue:q", "qq"));
        assert!(!matches("queue:", "q"));
        assert!(!matches("other", "q"));
    }

    #[test]
    fn subscribe_unsubscribe_replies() {
        let mut s = Sub {
            channels: BTreeSet::new(),
            out: BytesMut::new(),
            closing: false,
            parser: frame::Parser::default(),
        };
        s.request(vec![
            Bytes::from_static(b"SUBSCRIBE"),
            Bytes::from_static(b"jobs"),
            Bytes::from_static(b"queue:q"),
        ]);
        assert_eq!(
            &s.out[..],
            b"*3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$7\r\nqueue:q\r\n:2\r\n"
        );
        s.out.clear();
        s.deliver(&Published {
            queue: "q".into(),
            payload: Bytes::from_static(b"{}"),
            log: None,
        });
        assert_eq!(
            &s.out[..],
            b"*3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$2\r\n{}\r\n*3\r\n$7\r\nmessage\r\n$7\r\nqueue:q\r\n$2\r\n{}\r\n"
        );
        s.out.clear();
        s.request(vec![Bytes::from_static(b"GETJOB")]);
        assert!(s.out.starts_with(b"-ERR Can't execute 'getjob'"));
    }
}
