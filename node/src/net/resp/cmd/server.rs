//! Commands about the connection and the server: PING, ECHO, AUTH, HELLO,
//! INFO, CONFIG GET/SET/REWRITE, DEBUG, CLUSTER, COMMAND, CLIENT, QUIT.
//! The connection answers them itself, from the front door's [`Shared`]
//! state; INFO also asks the runtime for the node's figures.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Action, Args, Render, wrong_arity};
use crate::api::{Command, NodeInfo};
use crate::net::resp::Shared;
use crate::net::resp::frame::Frame;
use crate::runtime::Handle;

/// A command the connection answers itself.
#[derive(Debug)]
pub enum ServerCmd {
    Ping(Option<Bytes>),
    Echo(Bytes),
    /// `AUTH password` or Redis 6's `AUTH user password`.
    Auth {
        user: Option<String>,
        password: Bytes,
    },
    Hello {
        version: Option<Bytes>,
    },
    ConfigGet(String),
    ConfigSet(String, String),
    ConfigRewrite,
    ConfigResetStat,
    Quit,
}

pub fn parse(a: &Args) -> Result<Action, Frame> {
    let server = |c| Ok(Action::Server(c));
    match a.name {
        "ping" if a.len() > 2 => Err(wrong_arity("ping")),
        "ping" => server(ServerCmd::Ping(a.words.get(1).cloned())),
        "echo" => server(ServerCmd::Echo(a.bytes(1))),
        // AUTH password, or AUTH default password (Redis 6 clients).
        "auth" if a.len() == 2 => server(ServerCmd::Auth {
            user: None,
            password: a.bytes(1),
        }),
        "auth" if a.len() == 3 => server(ServerCmd::Auth {
            user: Some(String::from_utf8_lossy(&a.bytes(1)).into_owned()),
            password: a.bytes(2),
        }),
        "auth" => Err(wrong_arity("auth")),
        "hello" => server(ServerCmd::Hello {
            version: a.words.get(1).cloned(),
        }),
        "info" if a.len() > 2 => Err(super::syntax()),
        "info" => Ok(Action::Info(
            a.words
                .get(1)
                .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase()),
        )),
        "config" => config(a),
        "debug" if a.is(1, "flushall") && a.len() == 2 => {
            Ok(Action::Engine(Command::FlushAll, Render::Ok))
        }
        "debug" if a.is(1, "panic-driver") && a.len() == 2 => {
            Ok(Action::Engine(Command::DebugPanicDriver, Render::Ok))
        }
        "debug" if super::cluster::parse_debug(a).is_some() => {
            super::cluster::parse_debug(a).expect("checked")
        }
        "debug" => Err(Frame::error(
            "ERR",
            "unknown DEBUG subcommand: only DEBUG FLUSHALL, PARTITION, HEAL or PANIC-DRIVER (on a node started with --enable-debug-command)",
        )),
        "cluster" => super::cluster::parse(a),
        // redis-cli asks for the command table when it starts; an empty
        // one makes it fall back to plain behaviour.
        "command" => Ok(Action::Reply(Frame::Array(vec![]))),
        "client" => Ok(Action::Reply(Frame::Simple("OK".into()))),
        "quit" => server(ServerCmd::Quit),
        _ => Err(Frame::error("ERR", "unknown command")),
    }
}

fn config(a: &Args) -> Result<Action, Frame> {
    let sub = String::from_utf8_lossy(a.get(1)).to_ascii_lowercase();
    let c = match (sub.as_str(), a.len()) {
        ("get", 3) => ServerCmd::ConfigGet(a.text(2)?),
        ("set", 4) => ServerCmd::ConfigSet(a.text(2)?.to_ascii_lowercase(), a.text(3)?),
        ("rewrite", 2) => ServerCmd::ConfigRewrite,
        ("resetstat", 2) => ServerCmd::ConfigResetStat,
        ("get" | "set" | "rewrite" | "resetstat", _) => return Err(wrong_arity("config")),
        _ => {
            return Err(Frame::error(
                "ERR",
                "CONFIG subcommand must be one of GET, SET, REWRITE, RESETSTAT",
            ));
        }
    };
    Ok(Action::Server(c))
}

/// Directives CONFIG SET changes on a running node.
pub const SETTABLE: &[&str] = &[
    "requirepass",
    "maxclients",
    "timeout",
    "cluster-node-timeout",
    "maxmemory",
    "appendonly",
];

/// The largest `cluster-node-timeout` CONFIG SET takes, in ms (a day).
pub const MAX_NODE_TIMEOUT_MS: u64 = 86_400_000;

/// A `cluster-node-timeout` value for CONFIG SET: whole milliseconds,
/// 1 to [`MAX_NODE_TIMEOUT_MS`] (below 100 the node runs with 100).
pub fn parse_node_timeout(value: &str) -> Result<std::time::Duration, String> {
    match value.trim().parse::<u64>() {
        Ok(ms) if (1..=MAX_NODE_TIMEOUT_MS).contains(&ms) => {
            Ok(std::time::Duration::from_millis(ms))
        }
        _ => Err(format!(
            "cluster-node-timeout is in milliseconds, 1 to {MAX_NODE_TIMEOUT_MS}"
        )),
    }
}

/// Every directive CONFIG GET shows, with its value now.
pub fn config_values(s: &Shared, handle: &Handle) -> Vec<(String, String)> {
    let c = &s.config;
    let auth = handle.auth();
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let password = auth.password().map(|p| p.to_string()).unwrap_or_default();
    vec![
        ("port".into(), c.port.to_string()),
        ("bind".into(), c.bind.to_string()),
        ("dir".into(), c.data_dir.display().to_string()),
        ("appendonly".into(), yes(handle.journaling())),
        ("maxmemory".into(), handle.maxmemory().to_string()),
        (
            "appendfsync".into(),
            match c.appendfsync {
                crate::config::AppendFsync::Always => "always",
                crate::config::AppendFsync::EverySec => "everysec",
                crate::config::AppendFsync::No => "no",
            }
            .into(),
        ),
        (
            "cluster-node-timeout".into(),
            handle.cluster().node_timeout().as_millis().to_string(),
        ),
        (
            "cluster-announce-ip".into(),
            c.announce_host.clone().unwrap_or_default(),
        ),
        (
            "cluster-announce-port".into(),
            c.announce_port.unwrap_or(0).to_string(),
        ),
        ("requirepass".into(), password),
        (
            "maxclients".into(),
            s.max_clients.load(Ordering::Relaxed).to_string(),
        ),
        (
            "timeout".into(),
            s.idle_timeout_secs.load(Ordering::Relaxed).to_string(),
        ),
        ("proto-max-bulk-len".into(), s.limits.max_bulk.to_string()),
        ("resp-max-args".into(), s.limits.max_args.to_string()),
        ("max-body-bytes".into(), c.max_body_bytes.to_string()),
        ("max-module-bytes".into(), c.max_module_bytes.to_string()),
        ("max-jobs".into(), c.max_jobs.to_string()),
        (
            "idempotency-window".into(),
            c.idempotency_window_secs.to_string(),
        ),
        (
            "idempotency-max-tombstones".into(),
            c.idempotency_max_tombstones.to_string(),
        ),
        ("exec-threads".into(), c.exec_threads.to_string()),
        ("io-threads".into(), c.io_threads.to_string()),
        ("loglevel".into(), c.loglevel.clone()),
        ("daemonize".into(), "no".into()),
    ]
}

/// Redis-style glob: `*`, `?` and literal characters, case-insensitive.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p.eq_ignore_ascii_case(t) => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// INFO's text, Disque's sections and fields plus wasque's.
pub fn info_text(section: Option<&str>, n: &NodeInfo, s: &Shared, handle: &Handle) -> String {
    let section = section.unwrap_or("default");
    let all = section == "all" || section == "everything";
    let default = section == "default" || all;
    let want = |name: &str| default || section == name;
    let mut out = String::new();
    let mut add = |title: &str, lines: Vec<(String, String)>| {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str(&format!("# {title}\r\n"));
        for (k, v) in lines {
            out.push_str(&format!("{k}:{v}\r\n"));
        }
    };
    let kv = |k: &str, v: String| (k.to_string(), v);
    if want("server") {
        add(
            "Server",
            vec![
                kv("disque_version", n.version.clone()),
                kv("wasque_version", n.version.clone()),
                kv("run_id", n.node_id.clone()),
                kv("node_id", n.node_id.clone()),
                kv("process_id", std::process::id().to_string()),
                kv("tcp_port", s.config.port.to_string()),
                kv("uptime_in_seconds", n.uptime_secs.to_string()),
                kv("uptime_in_days", (n.uptime_secs / 86_400).to_string()),
                kv("arch_bits", (usize::BITS).to_string()),
                kv("os", std::env::consts::OS.to_string()),
            ],
        );
    }
    if want("clients") {
        add(
            "Clients",
            vec![
                kv(
                    "connected_clients",
                    s.clients.load(Ordering::Relaxed).to_string(),
                ),
                kv(
                    "blocked_clients",
                    s.blocked.load(Ordering::Relaxed).to_string(),
                ),
            ],
        );
    }
    if want("memory") {
        let rss = rss_bytes();
        add(
            "Memory",
            vec![
                kv("used_memory", rss.to_string()),
                kv("used_memory_human", human(rss)),
                kv("used_memory_rss", rss.to_string()),
                kv("maxmemory", handle.maxmemory().to_string()),
            ],
        );
    }
    if want("jobs") {
        add("Jobs", vec![kv("registered_jobs", n.jobs.to_string())]);
    }
    if want("queues") {
        add(
            "Queues",
            vec![kv("registered_queues", n.queues.to_string())],
        );
    }
    if want("persistence") {
        add(
            "Persistence",
            vec![
                kv("loading", "0".into()),
                kv("aof_enabled", u8::from(handle.journaling()).to_string()),
                kv(
                    "aof_state",
                    if handle.journaling() { "on" } else { "off" }.into(),
                ),
            ],
        );
    }
    if want("stats") {
        add(
            "Stats",
            vec![
                kv(
                    "total_connections_received",
                    s.total_connections.load(Ordering::Relaxed).to_string(),
                ),
                kv(
                    "total_commands_processed",
                    s.total_commands.load(Ordering::Relaxed).to_string(),
                ),
                kv(
                    "rejected_connections",
                    s.rejected.load(Ordering::Relaxed).to_string(),
                ),
            ],
        );
    }
    if want("executor") {
        add(
            "Executor",
            vec![
                kv("executor_threads", n.executor_threads.to_string()),
                kv("executor_busy", n.executor_busy.to_string()),
                kv("jobs_run", n.jobs_run.to_string()),
                kv("modules", n.modules.to_string()),
                kv("modules_compiled", n.modules_compiled.to_string()),
                kv("modules_loaded", n.modules_loaded.to_string()),
                kv("pagemap_scan", u8::from(n.pagemap_scan).to_string()),
            ],
        );
    }
    out
}

/// The process's resident set size (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn human(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2}G", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.2}M", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.2}K", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::{glob, parse_node_timeout};

    #[test]
    fn node_timeouts() {
        assert_eq!(parse_node_timeout("3000").unwrap().as_millis(), 3000);
        assert_eq!(parse_node_timeout("1").unwrap().as_millis(), 1);
        for bad in [
            "0",
            "-1",
            "",
            "3s",
            "1.5",
            "86400001",
            "99999999999999999999999",
        ] {
            let e = parse_node_timeout(bad).unwrap_err();
            assert!(e.contains("milliseconds"), "{bad}: {e}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob(b"*", b"port"));
        assert!(glob(b"max*", b"maxclients"));
        assert!(glob(b"p?rt", b"PORT"));
        assert!(!glob(b"max*", b"port"));
    }
}
