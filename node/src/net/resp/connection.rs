//! One RESP client: reads requests (pipelined: everything complete in the
//! buffer is handled per read), hands commands to the engine through the
//! runtime's [`Handle`], and writes replies in request order, even though
//! the engine may answer them out of order (a blocked GETJOB does not hold
//! up the replies after it are computed, only written).
//!
//! Reads and writes are interleaved in one task with readiness, so a
//! client that pipelines without reading cannot deadlock the connection;
//! reading pauses once `max_pending` replies are owed or the output buffer
//! is large.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::Shared;
use super::cmd::server::{self, ServerCmd};
use super::cmd::{self, Action, Render};
use super::frame::{self, Frame};
use crate::api::{ErrorCode, Reply};
use crate::auth::AuthError;
use crate::runtime::{Handle, ReplyTo};

/// Output held for a client before reading pauses.
const MAX_OUTPUT: usize = 16 << 20;

/// How long a closing connection still waits for replies owed before the
/// request that closed it (a blocked GETJOB may never come).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// One owed reply.
enum Slot {
    /// Waiting for the engine (or the module compiler).
    Engine(Render),
    /// Waiting for the node's figures.
    Info(Option<String>),
    Ready(Frame),
}

struct Conn {
    shared: Arc<Shared>,
    handle: Handle,
    authed: bool,
    closing: bool,
    /// Replies owed, in request order; `first_tag` is the front's tag.
    slots: VecDeque<Slot>,
    first_tag: u64,
    tx: mpsc::UnboundedSender<(u64, Reply)>,
    out: BytesMut,
    /// A SUBSCRIBE waiting for the replies owed before it; then the
    /// connection becomes a subscriber (`pubsub`).
    subscribe: Option<Vec<Bytes>>,
}

/// Answers a client over `maxclients`, then closes.
pub async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
    let _ = stream.shutdown().await;
}

pub async fn serve(
    stream: TcpStream,
    shared: Arc<Shared>,
    handle: Handle,
    mut stop: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let authed = handle.auth().anonymous().is_some();
    let mut c = Conn {
        shared,
        handle,
        authed,
        closing: false,
        slots: VecDeque::new(),
        first_tag: 0,
        tx,
        out: BytesMut::with_capacity(16 << 10),
        subscribe: None,
    };
    let mut input = BytesMut::with_capacity(16 << 10);
    let mut close_by: Option<tokio::time::Instant> = None;
    loop {
        if c.closing && close_by.is_none() {
            close_by = Some(tokio::time::Instant::now() + CLOSE_GRACE);
        }
        c.flush_ready();
        // Write what is ready now rather than after another turn through
        // the select: the socket almost always takes it at once.
        if !c.out.is_empty() && !write_some(&stream, &mut c.out) {
            break;
        }
        if c.closing && c.slots.is_empty() && c.out.is_empty() {
            break;
        }
        if c.slots.is_empty()
            && let Some(first) = c.subscribe.take()
        {
            let hub = c.handle.pubsub().clone();
            let out = std::mem::take(&mut c.out);
            super::pubsub::serve(stream, input, out, first, c.shared, hub, stop).await;
            return;
        }
        let can_read = !c.closing
            && c.subscribe.is_none()
            && c.slots.len() < c.shared.max_pending
            && c.out.len() < MAX_OUTPUT;
        let idle_secs = c.shared.idle_timeout_secs.load(Ordering::Relaxed);
        let idle = c.slots.is_empty() && c.out.is_empty() && idle_secs > 0;
        tokio::select! {
            r = stream.readable(), if can_read => {
                if r.is_err() {
                    break;
                }
                input.reserve(16 << 10);
                match stream.try_read_buf(&mut input) {
                    Ok(0) => break,
                    Ok(_) => c.handle_input(&mut input),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
            w = stream.writable(), if !c.out.is_empty() => {
                if w.is_err() || !write_some(&stream, &mut c.out) {
                    break;
                }
            }
            Some((tag, reply)) = rx.recv() => {
                c.fill(tag, reply);
                for _ in 0..4096 {
                    let Ok((tag, reply)) = rx.try_recv() else { break };
                    c.fill(tag, reply);
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(idle_secs)), if idle => {
                tracing::debug!("closing an idle RESP client after {idle_secs} s");
                break;
            }
            _ = sleep_until(close_by), if close_by.is_some() => break,
            _ = stop.changed() => break,
        }
    }
    // Blocked GETJOBs of this client still count until answered.
    let blocked = c
        .slots
        .iter()
        .filter(|s| matches!(s, Slot::Engine(Render::GetJob)))
        .count();
    c.shared
        .blocked
        .fetch_sub(blocked as i64, Ordering::Relaxed);
}

/// Writes what the socket takes now of `out` without waiting; false when
/// the connection is broken.
fn write_some(stream: &TcpStream, out: &mut BytesMut) -> bool {
    match stream.try_write(out) {
        Ok(n) => {
            bytes::Buf::advance(out, n);
            true
        }
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

impl Conn {
    /// Handles every complete request in `input`.
    fn handle_input(&mut self, input: &mut BytesMut) {
        while !self.closing && self.subscribe.is_none() {
            match frame::parse_request(input, &self.shared.limits) {
                Ok(None) => return,
                Ok(Some(args)) if args.is_empty() => {}
                Ok(Some(args)) => {
                    self.shared.total_commands.fetch_add(1, Ordering::Relaxed);
                    self.request(args);
                }
                Err(e) => {
                    tracing::info!("closing a RESP client: {e}");
                    self.push(Slot::Ready(Frame::Error(format!("ERR {e}"))));
                    self.closing = true;
                    input.clear();
                }
            }
        }
    }

    fn request(&mut self, args: Vec<Bytes>) {
        let is_auth = args
            .first()
            .is_some_and(|n| n.eq_ignore_ascii_case(b"auth") || n.eq_ignore_ascii_case(b"quit"));
        if !self.authed && !is_auth {
            self.push(Slot::Ready(Frame::error(
                "NOAUTH",
                "Authentication required.",
            )));
            return;
        }
        if args
            .first()
            .is_some_and(|n| n.eq_ignore_ascii_case(b"subscribe"))
        {
            if args.len() < 2 {
                self.push(Slot::Ready(cmd::wrong_arity("subscribe")));
            } else {
                self.subscribe = Some(args);
            }
            return;
        }
        match cmd::parse(args) {
            Action::Reply(f) => {
                self.push(Slot::Ready(f));
            }
            Action::Engine(crate::api::Command::FlushAll, _) if !self.shared.debug_commands => {
                self.push(Slot::Ready(Frame::error(
                    "ERR",
                    "DEBUG is disabled: start the node with --enable-debug-command (test nodes only)",
                )));
            }
            Action::Engine(command, render) => {
                if render == Render::GetJob {
                    self.shared.blocked.fetch_add(1, Ordering::Relaxed);
                }
                let tag = self.push(Slot::Engine(render));
                self.handle.submit(command, self.reply_to(tag));
            }
            Action::Info(section) => {
                let tag = self.push(Slot::Info(section));
                self.handle.node_info(self.reply_to(tag));
            }
            Action::PutModule(bytes) => {
                let tag = self.push(Slot::Engine(Render::ModulePut));
                let (handle, to) = (self.handle.clone(), self.reply_to(tag));
                tokio::spawn(async move {
                    let reply = match handle.put_module(bytes.to_vec()).await {
                        Ok(info) => Reply::Module(info),
                        Err(e) => Reply::Error(e),
                    };
                    to.send(reply);
                });
            }
            Action::Server(s) => {
                let f = self.server(s);
                self.push(Slot::Ready(f));
            }
            Action::Cluster(
                cmd::cluster::ClusterCmd::Partition(_) | cmd::cluster::ClusterCmd::Heal,
            ) if !self.shared.debug_commands => {
                self.push(Slot::Ready(Frame::error(
                    "ERR",
                    "DEBUG is disabled: start the node with --enable-debug-command (test nodes only)",
                )));
            }
            Action::Cluster(c) => {
                let f = cmd::cluster::run(&self.handle, c);
                self.push(Slot::Ready(f));
            }
        }
    }

    fn server(&mut self, s: ServerCmd) -> Frame {
        let sh = self.shared.clone();
        match s {
            ServerCmd::Ping(None) => Frame::Simple("PONG".into()),
            ServerCmd::Ping(Some(b)) | ServerCmd::Echo(b) => Frame::Bulk(b),
            ServerCmd::Quit => {
                self.closing = true;
                Frame::Simple("OK".into())
            }
            ServerCmd::Auth { user, password } => {
                match self.handle.auth().verify(user.as_deref(), &password) {
                    Ok(_) => {
                        self.authed = true;
                        Frame::Simple("OK".into())
                    }
                    Err(e @ AuthError::NotConfigured) => Frame::error("ERR", &e.to_string()),
                    Err(e @ AuthError::Invalid) => {
                        self.authed = self.handle.auth().anonymous().is_some();
                        Frame::error("WRONGPASS", &e.to_string())
                    }
                }
            }
            ServerCmd::Hello { version: Some(v) } => Frame::error(
                "NOPROTO",
                &format!(
                    "unsupported protocol version {}: this node speaks RESP2 and Disque's HELLO (no argument)",
                    String::from_utf8_lossy(&v)
                        .chars()
                        .take(16)
                        .collect::<String>()
                ),
            ),
            ServerCmd::Hello { version: None } => {
                // Disque's HELLO: version, this node's id, then every
                // reachable node with its priority (1 = use it, 100 =
                // leaving: clients move away).
                let id = self.handle.node_id().to_string();
                let cluster = self.handle.cluster();
                let prio = |leaving: bool| if leaving { "100" } else { "1" };
                let mut out = vec![
                    Frame::Integer(1),
                    Frame::text(&id),
                    Frame::Array(vec![
                        Frame::text(&id),
                        Frame::text(&cluster.addr().ip().to_string()),
                        Frame::text(&sh.config.port.to_string()),
                        Frame::text(prio(cluster.leaving())),
                    ]),
                ];
                for p in cluster.peers().into_iter().filter(|p| p.up) {
                    out.push(Frame::Array(vec![
                        Frame::text(&p.node.to_string()),
                        Frame::text(&p.addr.ip().to_string()),
                        Frame::text(&p.addr.port().to_string()),
                        Frame::text(prio(p.leaving)),
                    ]));
                }
                Frame::Array(out)
            }
            ServerCmd::ConfigGet(pattern) => Frame::Array(
                server::config_values(&sh, self.handle.auth())
                    .into_iter()
                    .filter(|(k, _)| server::glob(pattern.as_bytes(), k.as_bytes()))
                    .flat_map(|(k, v)| [Frame::text(&k), Frame::text(&v)])
                    .collect(),
            ),
            ServerCmd::ConfigSet(name, value) => config_set(&sh, self.handle.auth(), &name, &value),
            ServerCmd::ConfigRewrite => config_rewrite(&sh, self.handle.auth()),
            ServerCmd::ConfigResetStat => {
                sh.total_commands.store(0, Ordering::Relaxed);
                sh.total_connections.store(0, Ordering::Relaxed);
                sh.rejected.store(0, Ordering::Relaxed);
                Frame::Simple("OK".into())
            }
        }
    }

    fn reply_to(&self, tag: u64) -> ReplyTo {
        ReplyTo {
            tx: self.tx.clone().into(),
            tag,
        }
    }

    /// Adds an owed reply; returns its tag.
    fn push(&mut self, slot: Slot) -> u64 {
        let tag = self.first_tag + self.slots.len() as u64;
        self.slots.push_back(slot);
        tag
    }

    /// An answer for the reply with `tag`.
    fn fill(&mut self, tag: u64, reply: Reply) {
        let Some(i) = tag.checked_sub(self.first_tag) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(i as usize) else {
            return;
        };
        let frame = match slot {
            Slot::Engine(render) => {
                if *render == Render::GetJob {
                    self.shared.blocked.fetch_sub(1, Ordering::Relaxed);
                }
                cmd::render(*render, reply)
            }
            Slot::Info(section) => match reply {
                Reply::NodeInfo(n) => {
                    let mut text = server::info_text(section.as_deref(), &n, &self.shared);
                    if matches!(
                        section.as_deref(),
                        None | Some("default" | "all" | "everything" | "cluster")
                    ) {
                        if !text.is_empty() {
                            text.push_str("\r\n");
                        }
                        text.push_str("# Cluster\r\n");
                        text.push_str(&cmd::cluster::info_text(&self.handle));
                    }
                    Frame::Bulk(Bytes::from(text))
                }
                Reply::Error(e) => Frame::error(e.code.as_str(), &e.message),
                _ => Frame::error(ErrorCode::Internal.as_str(), "unexpected reply to INFO"),
            },
            Slot::Ready(_) => return,
        };
        *slot = Slot::Ready(frame);
    }

    /// Moves the replies that are ready, in order, to the output buffer.
    fn flush_ready(&mut self) {
        while let Some(Slot::Ready(_)) = self.slots.front() {
            if let Some(Slot::Ready(f)) = self.slots.pop_front() {
                f.encode(&mut self.out);
            }
            self.first_tag += 1;
        }
    }
}

fn config_set(sh: &Shared, auth: &crate::auth::Auth, name: &str, value: &str) -> Frame {
    let num = || value.parse::<u64>().map_err(|_| ());
    let ok = match name {
        "requirepass" => {
            auth.set_password(Some(value.to_string()));
            Ok(())
        }
        "maxclients" => num().and_then(|n| {
            if n == 0 {
                return Err(());
            }
            sh.max_clients.store(n as usize, Ordering::Relaxed);
            Ok(())
        }),
        "timeout" => num().map(|n| sh.idle_timeout_secs.store(n, Ordering::Relaxed)),
        _ => {
            return Frame::error(
                "ERR",
                &format!(
                    "Unsupported CONFIG parameter: {name} (settable at run time: {})",
                    server::SETTABLE.join(", ")
                ),
            );
        }
    };
    match ok {
        Ok(()) => Frame::Simple("OK".into()),
        Err(()) => Frame::error(
            "ERR",
            &format!("Invalid argument '{value}' for CONFIG SET '{name}'"),
        ),
    }
}

/// Writes the values CONFIG SET changed back into the config file the node
/// started from: each directive's line is replaced, or appended.
fn config_rewrite(sh: &Shared, auth: &crate::auth::Auth) -> Frame {
    let Some(path) = &sh.config.config_file else {
        return Frame::error("ERR", "The server is running without a config file");
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return Frame::error("ERR", &format!("Rewriting config file: {e}")),
    };
    let values = server::config_values(sh, auth);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for name in server::SETTABLE {
        let Some((_, v)) = values.iter().find(|(k, _)| k == name) else {
            continue;
        };
        let new = format!(
            "{name} {}",
            if v.is_empty() {
                "\"\"".to_string()
            } else {
                v.clone()
            }
        );
        let at = lines.iter().position(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(name))
        });
        match at {
            Some(i) => lines[i] = new,
            None => lines.push(new),
        }
    }
    let tmp = path.with_extension("rewrite.tmp");
    let body = lines.join("\n") + "\n";
    match std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Frame::Simple("OK".into()),
        Err(e) => Frame::error("ERR", &format!("Rewriting config file: {e}")),
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
