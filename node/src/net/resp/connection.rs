//! One RESP client: reads requests (pipelined: everything complete in the
//! buffer is handled per read), hands commands to the engine through the
//! runtime's [`Handle`], and writes replies in request order, even though
//! the engine may answer them out of order (a blocked GETJOB does not hold
//! up the replies after it are computed, only written).
//!
//! Reads and writes are interleaved in one task with readiness, so a
//! client that pipelines without reading cannot deadlock the connection.
//! Output is bounded in bytes (`resp-max-output-bytes`): the bytes of
//! replies rendered but unsent, plus, for each request whose reply may
//! carry a job's body or result ([`Render::is_heavy`]), the largest such
//! reply reserved before the engine is asked. Past the bound the node
//! stops reading and parsing this client's requests until it drains its
//! replies (TCP pushes back on the client); a heavy request is held until
//! its reservation fits, one at a time at least. Pausing rather than
//! closing (Redis's client-output-buffer-limit) because a slow reader
//! of big results is a legitimate client; the bound, not the close, is
//! what keeps memory flat. `max_pending` still bounds the count of owed
//! replies.
//!
//! Strangers: a request that looks like HTTP (`POST`, `Host:`, or a first
//! inline `GET ...`) closes the connection unanswered, as redis-server
//! does since 3.2.7 (a browser tricked into posting to the port); before
//! AUTH on a node with a password, requests get the small bounds of
//! [`frame::Limits::unauthenticated`].

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
use crate::auth::{AuthError, Principal};
use crate::runtime::{Handle, ReplyTo};

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
    /// Who the client is; `None` until it authenticates on a node with
    /// credentials.
    who: Option<Principal>,
    closing: bool,
    /// Resumes a request that arrives over several reads.
    parser: frame::Parser,
    /// Replies owed, in request order; `first_tag` is the front's tag.
    slots: VecDeque<Slot>,
    first_tag: u64,
    tx: mpsc::UnboundedSender<(u64, Reply)>,
    out: BytesMut,
    /// A SUBSCRIBE waiting for the replies owed before it; then the
    /// connection becomes a subscriber (`pubsub`).
    subscribe: Option<Vec<Bytes>>,
    /// Encoded size of the `Slot::Ready` replies not yet in `out`.
    ready_bytes: usize,
    /// Bytes reserved for heavy replies the engine still owes.
    reserved: usize,
    /// A heavy request waiting for room in the output bound.
    parked: Option<(crate::api::Command, Render)>,
    /// Parsing stopped at the output bound: resume once there is room.
    stalled: bool,
    /// Requests read so far (the first is checked for HTTP).
    requests: u64,
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
    let who = handle.auth().anonymous();
    let mut c = Conn {
        shared,
        handle,
        who,
        closing: false,
        parser: frame::Parser::default(),
        slots: VecDeque::new(),
        first_tag: 0,
        tx,
        out: BytesMut::with_capacity(16 << 10),
        subscribe: None,
        ready_bytes: 0,
        reserved: 0,
        parked: None,
        stalled: false,
        requests: 0,
    };
    let mut input = BytesMut::with_capacity(16 << 10);
    let mut close_by: Option<tokio::time::Instant> = None;
    // Made once, not per turn (each would register with the stop's
    // notifier and unregister, a lock each way, per request).
    let subscriber_stop = stop.clone();
    let stopped = stop.changed();
    tokio::pin!(stopped);
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
            super::pubsub::serve(stream, input, out, first, c.shared, hub, subscriber_stop).await;
            return;
        }
        // Requests left in the buffer at the output bound, now that
        // replies have drained.
        if c.stalled && c.has_room() {
            c.stalled = false;
            c.handle_input(&mut input);
            continue;
        }
        let can_read = !c.closing
            && c.subscribe.is_none()
            && !c.stalled
            && c.slots.len() < c.shared.max_pending
            && c.held() < c.shared.max_output;
        let idle_secs = c.shared.idle_timeout_secs.load(Ordering::Relaxed);
        let idle = c.slots.is_empty() && c.out.is_empty() && idle_secs > 0;
        tokio::select! {
            r = stream.readable(), if can_read => {
                if r.is_err() {
                    break;
                }
                // Grow with what has arrived (at most doubling), never
                // by what a header announces.
                input.reserve((16 << 10).max(input.len()));
                match super::read::read_some(&stream, &mut input) {
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
            _ = &mut stopped => break,
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
    /// Bytes of replies rendered but not yet taken by the socket.
    fn held(&self) -> usize {
        self.out.len() + self.ready_bytes
    }

    /// Whether parsing may go on: under the output bound, and a parked
    /// heavy request fits now.
    fn has_room(&self) -> bool {
        self.held() < self.shared.max_output && (self.parked.is_none() || self.room_for_heavy())
    }

    /// A heavy reply fits in the output bound, or nothing at all is held
    /// (one is always allowed, or the client could never be served).
    fn room_for_heavy(&self) -> bool {
        let held = self.held() + self.reserved;
        held == 0 || held + self.shared.heavy_reply <= self.shared.max_output
    }

    /// Handles every complete request in `input`, stopping at the output
    /// bound (`stalled`; the serve loop resumes it).
    fn handle_input(&mut self, input: &mut BytesMut) {
        if let Some((command, render)) = self.parked.take() {
            if !self.room_for_heavy() {
                self.parked = Some((command, render));
                self.stalled = true;
                return;
            }
            self.submit(command, render);
        }
        while !self.closing && self.subscribe.is_none() {
            if self.parked.is_some() || self.held() >= self.shared.max_output {
                self.stalled = true;
                return;
            }
            let limits = if self.who.is_some() {
                self.shared.limits
            } else {
                self.shared.limits.unauthenticated()
            };
            let inline = input.first().is_some_and(|b| *b != b'*');
            match self.parser.parse(input, &limits) {
                Ok(None) => return,
                Ok(Some(args)) if args.is_empty() => {}
                Ok(Some(args)) => {
                    self.requests += 1;
                    if looks_like_http(&args, inline, self.requests == 1) {
                        tracing::warn!(
                            "closing a RESP client that sent an HTTP request (a browser or proxy pointed at the RESP port?)"
                        );
                        self.closing = true;
                        input.clear();
                        return;
                    }
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
            .and_then(|n| std::str::from_utf8(n).ok())
            .is_some_and(crate::auth::Auth::open_to_anonymous);
        if self.who.is_none() && !is_auth {
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
            if matches!(self.who, Some(Principal::Tenant(_))) {
                self.push(Slot::Ready(no_perm("SUBSCRIBE")));
            } else if args.len() < 2 {
                self.push(Slot::Ready(cmd::wrong_arity("subscribe")));
            } else {
                self.subscribe = Some(args);
            }
            return;
        }
        let action = cmd::parse(args);
        if matches!(self.who, Some(Principal::Tenant(_)))
            && let Some(name) = admin_only(&action)
        {
            self.push(Slot::Ready(no_perm(name)));
            return;
        }
        match action {
            Action::Reply(f) => {
                self.push(Slot::Ready(f));
            }
            Action::Engine(
                crate::api::Command::FlushAll | crate::api::Command::DebugPanicDriver,
                _,
            ) if !self.shared.debug_commands => {
                self.push(Slot::Ready(Frame::error(
                    "ERR",
                    "DEBUG is disabled: start the node with --enable-debug-command (test nodes only)",
                )));
            }
            Action::Engine(crate::api::Command::DeleteModule { hash }, render) => {
                let tag = self.push(Slot::Engine(render));
                let (handle, to) = (self.handle.clone(), self.reply_to(tag));
                let who = self.principal();
                tokio::spawn(async move {
                    to.send(handle.delete_module(&who, hash).await);
                });
            }
            Action::Engine(crate::api::Command::ListModules, render) => {
                let tag = self.push(Slot::Engine(render));
                let (handle, to) = (self.handle.clone(), self.reply_to(tag));
                let who = self.principal();
                tokio::spawn(async move {
                    to.send(handle.list_modules(&who).await);
                });
            }
            Action::Engine(command, render) => {
                if render.is_heavy() && !self.room_for_heavy() {
                    self.parked = Some((command, render));
                    return;
                }
                self.submit(command, render);
            }
            Action::Info(section) => {
                let tag = self.push(Slot::Info(section));
                self.handle.node_info(self.reply_to(tag));
            }
            Action::PutModule(bytes, opts) => {
                let tag = self.push(Slot::Engine(Render::ModulePut));
                let (handle, to) = (self.handle.clone(), self.reply_to(tag));
                let who = self.principal();
                tokio::spawn(async move {
                    let reply = match handle.put_module(&who, bytes.to_vec(), opts).await {
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
            Action::Tenant(c) => {
                let auth = self.handle.auth();
                let f = cmd::tenant::run(
                    auth.tenants(),
                    c,
                    auth.is_required(),
                    crate::runtime::now_ms(),
                );
                self.push(Slot::Ready(f));
            }
            Action::Schedule(mut c, by_name) => {
                let detail = matches!(c, crate::sched::ScheduleCmd::Show(_));
                let who = self.principal();
                let resolved = match (&mut c, by_name) {
                    (crate::sched::ScheduleCmd::Add(spec), Some(name)) => self
                        .handle
                        .resolve_module_name(&who, &name)
                        .map(|hash| spec.job.module = Some(hash)),
                    _ => Ok(()),
                };
                let answer = resolved.and_then(|()| {
                    crate::sched::command::run(&self.handle, &who, c, crate::runtime::now_ms())
                });
                self.push(Slot::Ready(cmd::schedule::render(answer, detail)));
            }
        }
    }

    /// Who the client is (only called once it may send commands).
    fn principal(&self) -> Principal {
        self.who.clone().unwrap_or(Principal::Admin)
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
                    Ok(p) => {
                        self.who = Some(p);
                        Frame::Simple("OK".into())
                    }
                    Err(e @ AuthError::NotConfigured) => Frame::error("ERR", &e.to_string()),
                    Err(e @ AuthError::Invalid) => {
                        self.who = self.handle.auth().anonymous();
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
                server::config_values(&sh, &self.handle)
                    .into_iter()
                    .filter(|(k, _)| server::glob(pattern.as_bytes(), k.as_bytes()))
                    .flat_map(|(k, v)| [Frame::text(&k), Frame::text(&v)])
                    .collect(),
            ),
            ServerCmd::ConfigSet(name, value) => config_set(&sh, &self.handle, &name, &value),
            ServerCmd::ConfigRewrite => config_rewrite(&sh, &self.handle),
            ServerCmd::ConfigResetStat => {
                sh.total_commands.store(0, Ordering::Relaxed);
                sh.total_connections.store(0, Ordering::Relaxed);
                sh.rejected.store(0, Ordering::Relaxed);
                Frame::Simple("OK".into())
            }
        }
    }

    /// Hands a command to the engine, reserving room for a heavy reply.
    fn submit(&mut self, command: crate::api::Command, render: Render) {
        if render == Render::GetJob {
            self.shared.blocked.fetch_add(1, Ordering::Relaxed);
        }
        if render.is_heavy() {
            self.reserved += self.shared.heavy_reply;
        }
        let tag = self.push(Slot::Engine(render));
        self.handle
            .submit_as(&self.principal(), command, self.reply_to(tag));
    }

    fn reply_to(&self, tag: u64) -> ReplyTo {
        ReplyTo {
            tx: self.tx.clone().into(),
            tag,
        }
    }

    /// Adds an owed reply; returns its tag.
    fn push(&mut self, slot: Slot) -> u64 {
        if let Slot::Ready(f) = &slot {
            self.ready_bytes += f.encoded_len();
        }
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
                if render.is_heavy() {
                    self.reserved = self.reserved.saturating_sub(self.shared.heavy_reply);
                }
                cmd::render(*render, reply)
            }
            Slot::Info(section) => match reply {
                Reply::NodeInfo(n) => {
                    let mut text =
                        server::info_text(section.as_deref(), &n, &self.shared, &self.handle);
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
        self.ready_bytes += frame.encoded_len();
        *slot = Slot::Ready(frame);
    }

    /// Moves the replies that are ready, in order, to the output buffer.
    fn flush_ready(&mut self) {
        while let Some(Slot::Ready(_)) = self.slots.front() {
            if let Some(Slot::Ready(f)) = self.slots.pop_front() {
                let before = self.out.len();
                f.encode(&mut self.out);
                let n = self.out.len() - before;
                self.ready_bytes = self.ready_bytes.saturating_sub(n);
            }
            self.first_tag += 1;
        }
    }
}

fn config_set(sh: &Shared, handle: &crate::runtime::Handle, name: &str, value: &str) -> Frame {
    let auth = handle.auth();
    // Whatever the directive, its value must fit on one line of the file
    // CONFIG REWRITE writes (a newline would smuggle in a directive).
    if let Err(why) = crate::config::check_value(value) {
        return Frame::error(
            "ERR",
            &format!("Invalid argument for CONFIG SET '{name}': {why}"),
        );
    }
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
        "maxmemory" => match crate::config::parse_size(value) {
            Ok(bytes) => {
                handle.set_maxmemory(bytes);
                Ok(())
            }
            Err(why) => {
                return Frame::error(
                    "ERR",
                    &format!("Invalid argument '{value}' for CONFIG SET '{name}': {why}"),
                );
            }
        },
        "appendonly" => match value.to_ascii_lowercase().as_str() {
            v @ ("yes" | "no") => {
                if let Err(why) = handle.set_journal(v == "yes") {
                    return Frame::error("ERR", &format!("Unable to turn on AOF: {why}"));
                }
                Ok(())
            }
            _ => Err(()),
        },
        "cluster-node-timeout" => match server::parse_node_timeout(value) {
            Ok(t) => {
                handle.set_node_timeout(t);
                Ok(())
            }
            Err(why) => {
                return Frame::error(
                    "ERR",
                    &format!("Invalid argument '{value}' for CONFIG SET '{name}': {why}"),
                );
            }
        },
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
/// started from: each directive's first line is replaced (later ones
/// removed), or a line appended; values are quoted as the config parser
/// reads them back ([`crate::config::quote`]).
fn config_rewrite(sh: &Shared, handle: &crate::runtime::Handle) -> Frame {
    let Some(path) = &sh.config.config_file else {
        return Frame::error("ERR", "The server is running without a config file");
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return Frame::error("ERR", &format!("Rewriting config file: {e}")),
    };
    let values = server::config_values(sh, handle);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for name in server::SETTABLE {
        let Some((_, v)) = values.iter().find(|(k, _)| k == name) else {
            continue;
        };
        let new = format!("{name} {}", crate::config::quote(v));
        let is_it = |l: &String| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(name))
        };
        match lines.iter().position(is_it) {
            Some(i) => {
                lines[i] = new;
                let mut seen = 0;
                lines.retain(|l| {
                    if is_it(l) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => lines.push(new),
        }
    }
    let body = lines.join("\n") + "\n";
    match replace_file(path, body.as_bytes()) {
        Ok(()) => Frame::Simple("OK".into()),
        Err(e) => Frame::error("ERR", &format!("Rewriting config file: {e}")),
    }
}

/// Replaces `path` with `body` atomically: a temp file beside it created
/// with the original's mode (never wider for an instant, since the file
/// may hold the password), written, synced, renamed over it, and the
/// folder synced.
fn replace_file(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{name}.rewrite-{}.tmp", std::process::id()));
    // A temp file left by a crash of this same pid is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode: set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether a request is really an HTTP request sent to the RESP port:
/// `POST` or a `Host:` header line at any time (no Disque command has
/// those names), or an HTTP method as the first, inline, request.
fn looks_like_http(args: &[Bytes], inline: bool, first: bool) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    if name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:") {
        return true;
    }
    const METHODS: &[&[u8]] = &[
        b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
    ];
    inline && first && METHODS.iter().any(|m| name.eq_ignore_ascii_case(m))
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The name of a command a tenant may not send, if `a` is one: the node's
/// settings, figures, cluster and tenant registry are the admin's. Engine
/// commands are all open to it: the engine scopes them.
fn admin_only(a: &Action) -> Option<&'static str> {
    match a {
        Action::Engine(..) | Action::Reply(_) | Action::PutModule(..) | Action::Schedule(..) => {
            None
        }
        Action::Info(_) => Some("INFO"),
        Action::Cluster(_) => Some("CLUSTER"),
        Action::Tenant(_) => Some("TENANT"),
        Action::Server(s) => match s {
            ServerCmd::Ping(_)
            | ServerCmd::Echo(_)
            | ServerCmd::Quit
            | ServerCmd::Auth { .. }
            | ServerCmd::Hello { .. } => None,
            _ => Some("CONFIG"),
        },
    }
}

/// Redis's ACL refusal.
fn no_perm(command: &str) -> Frame {
    Frame::error(
        "NOPERM",
        &format!("{command} is the admin's; a tenant's token does not open it"),
    )
}
