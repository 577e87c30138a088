//! The node's configuration: defaults, then a Disque-style file
//! (`directive value` lines), then command-line flags, resolved into one
//! [`Config`]. With no file and no flags the defaults run a working single
//! node on 127.0.0.1:7711.
//!
//! Two stages, as in ripgrep: [`RawConfig`] holds what the file and flags
//! said (no I/O after reading the file), [`RawConfig::resolve`] checks it and
//! fills defaults.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::job::Limits;

/// Default port of RESP (TCP) and QUIC (UDP), Disque's.
pub const DEFAULT_PORT: u16 = 7711;
/// HTTP listens on the node port plus this (7711 → 7780) unless set.
pub const HTTP_PORT_OFFSET: u16 = 69;

/// `appendfsync`, with Disque's meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendFsync {
    Always,
    EverySec,
    No,
}

/// The resolved configuration of one node.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    /// `None`: HTTP off.
    pub http_port: Option<u16>,
    pub data_dir: PathBuf,
    /// Peers to join at start (`--join HOST:PORT`, repeatable).
    pub joins: Vec<String>,
    pub logfile: Option<PathBuf>,
    /// A `tracing` filter (Disque's levels mapped: verbose → debug, notice → info).
    pub loglevel: String,
    pub pidfile: Option<PathBuf>,
    pub appendonly: bool,
    pub appendfsync: AppendFsync,
    pub cluster_node_timeout_ms: u64,
    /// `join-token` / `--join-token`: join a `ca`-mode cluster through
    /// the `--join` addresses (see `wasque cluster init`).
    pub join_token: Option<String>,
    pub requirepass: Option<String>,
    /// Executor threads; default one per core.
    pub exec_threads: usize,
    /// Threads of the async runtime (sockets, QUIC, the engine's driver),
    /// Redis's `io-threads`; default one per four cores, at least one.
    pub io_threads: usize,
    pub default_limits: Limits,
    pub max_limits: Limits,
    pub max_output_bytes: usize,
    pub max_stderr_bytes: usize,
    pub max_module_bytes: usize,
    pub max_body_bytes: usize,
    pub max_frame_bytes: usize,
    pub max_jobs: usize,
    pub max_connections: usize,
    /// RESP: the largest bulk string (`proto-max-bulk-len`), at least the
    /// module-size bound so MODULE PUT fits.
    pub resp_max_bulk_bytes: usize,
    /// RESP: most arguments in one request (`resp-max-args`).
    pub resp_max_args: usize,
    /// RESP: close a client idle this many seconds (`timeout`); 0 = never.
    pub resp_idle_timeout_secs: u64,
    /// Allow DEBUG FLUSHALL (`--enable-debug-command`, test nodes only).
    pub enable_debug_command: bool,
    /// The file the node was started from (for CONFIG REWRITE).
    pub config_file: Option<PathBuf>,
    /// Redis-only directives found in the file, to log once as ignored.
    pub ignored: Vec<String>,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// What the file and the flags said, before defaults.
#[derive(Clone, Debug, Default)]
pub struct RawConfig {
    /// directive → (value, where it was set: "file:line" or "--flag").
    values: BTreeMap<String, (String, String)>,
    joins: Vec<String>,
    ignored: Vec<String>,
}

/// Directives of Disque that wasque honours with Disque's meaning, and
/// wasque's own; the value checker for each is in `resolve`.
const KNOWN: &[&str] = &[
    "port",
    "bind",
    "dir",
    "logfile",
    "loglevel",
    "pidfile",
    "appendonly",
    "appendfsync",
    "cluster-node-timeout",
    "join-token",
    "requirepass",
    "daemonize",
    "http-port",
    "exec-threads",
    "io-threads",
    "fuel-default",
    "fuel-max",
    "memory-default",
    "memory-max",
    "deadline-default",
    "deadline-max",
    "max-output-bytes",
    "max-stderr-bytes",
    "max-module-bytes",
    "max-body-bytes",
    "max-frame-bytes",
    "max-jobs",
    "maxclients",
    "enable-debug-command",
    "proto-max-bulk-len",
    "resp-max-args",
    "timeout",
];

/// Directives that only mean something to Redis or to parts of Disque that
/// wasque does differently: accepted and logged once as ignored.
const IGNORED: &[&str] = &[
    "tcp-backlog",
    "database",
    "databases",
    "cluster-enabled",
    "cluster-config-file",
    "cluster-migration-barrier",
    "save",
    "stop-writes-on-bgsave-error",
    "slave-serve-stale-data",
    "slave-read-only",
    "repl-diskless-sync",
    "repl-diskless-sync-delay",
    "repl-ping-slave-period",
    "repl-disable-tcp-nodelay",
    "slave-priority",
    "min-slaves-to-write",
    "min-slaves-max-lag",
    "lazyfree-lazy-eviction",
    "lazyfree-lazy-expire",
    "lazyfree-lazy-server-del",
    "slave-lazy-flush",
    "activerehashing",
    "tcp-keepalive",
    "hz",
    "protected-mode",
    "supervised",
    "unixsocket",
    "unixsocketperm",
    "syslog-enabled",
    "syslog-ident",
    "syslog-facility",
    "appendfilename",
    "no-appendfsync-on-rewrite",
    "auto-aof-rewrite-percentage",
    "auto-aof-rewrite-min-size",
    "aof-load-truncated",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "latency-monitor-threshold",
    "client-output-buffer-limit",
    "aof-rewrite-incremental-fsync",
    "rdbcompression",
    "rdbchecksum",
    "dbfilename",
];

impl RawConfig {
    /// Reads a Disque-style config file.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        RawConfig::parse(&text, path)
    }

    /// Parses config text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        let mut raw = RawConfig::default();
        for (i, line) in text.lines().enumerate() {
            let err = |message: String| ConfigError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            };
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let args = split_args(trimmed).map_err(err)?;
            let Some((name, rest)) = args.split_first() else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            if IGNORED.contains(&name.as_str()) {
                raw.ignored.push(name);
                continue;
            }
            if !KNOWN.contains(&name.as_str()) {
                return Err(err(format!(
                    "unknown directive {name:?}{}",
                    suggest(&name)
                        .map(|s| format!(" (did you mean {s:?}?)"))
                        .unwrap_or_default()
                )));
            }
            let value = match rest {
                [v] => v.clone(),
                [] => return Err(err(format!("{name} needs a value"))),
                // `bind` takes several addresses in Disque; wasque binds one.
                _ if name == "bind" => rest[0].clone(),
                _ => return Err(err(format!("{name} takes one value, got {}", rest.len()))),
            };
            let at = format!("{}:{}", path.display(), i + 1);
            raw.values.insert(name, (value, at));
        }
        Ok(raw)
    }

    /// Sets a directive from a flag (flags override the file).
    pub fn set_flag(&mut self, directive: &str, value: impl Into<String>) {
        self.values.insert(
            directive.to_string(),
            (value.into(), format!("--{directive}")),
        );
    }

    /// Adds a peer to join.
    pub fn add_join(&mut self, addr: impl Into<String>) {
        self.joins.push(addr.into());
    }

    fn get(&self, name: &str) -> Option<&(String, String)> {
        self.values.get(name)
    }

    /// Checks every value and fills the defaults.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let bad = |name: &str, why: String| -> ConfigError {
            let at = self
                .get(name)
                .map(|(_, at)| at.as_str())
                .unwrap_or("default");
            ConfigError::Invalid(format!("{at}: {name}: {why}"))
        };
        let num = |name: &str, default: u64| -> Result<u64, ConfigError> {
            match self.get(name) {
                None => Ok(default),
                Some((v, _)) => parse_size(v).map_err(|e| bad(name, e)),
            }
        };
        let port = u16::try_from(num("port", u64::from(DEFAULT_PORT))?)
            .map_err(|_| bad("port", "must be 1..=65535".into()))?;
        if port == 0 {
            return Err(bad("port", "must be 1..=65535".into()));
        }
        let http_port = match self.get("http-port") {
            None => Some(port.checked_add(HTTP_PORT_OFFSET).ok_or_else(|| {
                bad(
                    "port",
                    format!("port + {HTTP_PORT_OFFSET} for HTTP is over 65535; set http-port"),
                )
            })?),
            Some((v, _)) => match v.parse::<u16>() {
                Ok(0) => None,
                Ok(p) => Some(p),
                Err(_) => {
                    return Err(bad(
                        "http-port",
                        format!("{v:?} is not a port (0 turns HTTP off)"),
                    ));
                }
            },
        };
        let bind: IpAddr = match self.get("bind") {
            None => IpAddr::from([127, 0, 0, 1]),
            Some((v, _)) => v
                .parse()
                .map_err(|_| bad("bind", format!("{v:?} is not an IP address")))?,
        };
        let data_dir = self
            .get("dir")
            .map(|(v, _)| PathBuf::from(v))
            .unwrap_or_else(|| PathBuf::from("wasque-data"));
        let opt_path = |name: &str| {
            self.get(name)
                .map(|(v, _)| v.clone())
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let loglevel = match self.get("loglevel").map(|(v, _)| v.as_str()) {
            None => "info".to_string(),
            Some("debug") => "debug".into(),
            Some("verbose") => "debug".into(),
            Some("notice") => "info".into(),
            Some("warning") => "warn".into(),
            Some(other) => {
                return Err(bad(
                    "loglevel",
                    format!("{other:?}: expected debug, verbose, notice or warning"),
                ));
            }
        };
        let yes_no = |name: &str, default: bool| -> Result<bool, ConfigError> {
            match self.get(name).map(|(v, _)| v.to_ascii_lowercase()) {
                None => Ok(default),
                Some(v) if v == "yes" => Ok(true),
                Some(v) if v == "no" => Ok(false),
                Some(v) => Err(bad(name, format!("{v:?}: expected yes or no"))),
            }
        };
        if yes_no("daemonize", false)? {
            return Err(bad(
                "daemonize",
                "wasque-node does not daemonize: run it under a service manager (systemd, runit) or `&` and use `daemonize no`".into(),
            ));
        }
        let appendonly = yes_no("appendonly", true)?;
        let appendfsync = match self.get("appendfsync").map(|(v, _)| v.as_str()) {
            None | Some("everysec") => AppendFsync::EverySec,
            Some("always") => AppendFsync::Always,
            Some("no") => AppendFsync::No,
            Some(v) => {
                return Err(bad(
                    "appendfsync",
                    format!("{v:?}: expected always, everysec or no"),
                ));
            }
        };
        let requirepass = self
            .get("requirepass")
            .map(|(v, _)| v.clone())
            .filter(|v| !v.is_empty());
        if !bind.is_loopback() && requirepass.is_none() {
            return Err(ConfigError::Invalid(format!(
                "protected mode: binding {bind} (beyond loopback) requires `requirepass` so that strangers cannot run code on this node; set it, or bind 127.0.0.1"
            )));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let exec_threads = num("exec-threads", cores as u64)? as usize;
        if exec_threads == 0 || exec_threads > 1024 {
            return Err(bad("exec-threads", "must be 1..=1024".into()));
        }
        // One per four cores by default, at least one: the executor threads
        // do the heavy work, and on a small machine one I/O thread hands
        // work between fewer threads than one per core does (a wake-up of an
        // idle runtime thread costs more than the work it steals): 2 cores
        // spent 9 % less CPU per job end to end over QUIC and served ADDJOB
        // over RESP faster (benches/README.md, "RESP" and "session 7").
        let io_threads = num("io-threads", default_io_threads(cores) as u64)? as usize;
        if io_threads == 0 || io_threads > 256 {
            return Err(bad("io-threads", "must be 1..=256".into()));
        }
        let default_limits = Limits {
            fuel: num("fuel-default", 1_000_000_000)?,
            memory_bytes: num("memory-default", 64 << 20)?,
            deadline_ms: num("deadline-default", 10_000)?,
        };
        let max_limits = Limits {
            fuel: num("fuel-max", 100_000_000_000)?,
            memory_bytes: num("memory-max", 256 << 20)?,
            deadline_ms: num("deadline-max", 300_000)?,
        };
        for (name, d, m) in [
            ("fuel-default", default_limits.fuel, max_limits.fuel),
            (
                "memory-default",
                default_limits.memory_bytes,
                max_limits.memory_bytes,
            ),
            (
                "deadline-default",
                default_limits.deadline_ms,
                max_limits.deadline_ms,
            ),
        ] {
            if d == 0 || d > m {
                return Err(bad(
                    name,
                    format!("{d} must be > 0 and at most its maximum {m}"),
                ));
            }
        }
        if max_limits.memory_bytes > 4 << 30 {
            return Err(bad(
                "memory-max",
                "at most 4gb (32-bit Wasm memories)".into(),
            ));
        }
        let max_body_bytes = num("max-body-bytes", 8 << 20)? as usize;
        let max_frame_bytes = num("max-frame-bytes", (max_body_bytes + (1 << 20)) as u64)? as usize;
        if max_frame_bytes <= max_body_bytes {
            return Err(bad(
                "max-frame-bytes",
                "must be larger than max-body-bytes".into(),
            ));
        }
        let max_module_bytes = num("max-module-bytes", 64 << 20)? as usize;
        let resp_max_bulk_bytes = num(
            "proto-max-bulk-len",
            (max_module_bytes.max(max_frame_bytes) + (1 << 20)) as u64,
        )? as usize;
        if resp_max_bulk_bytes < max_module_bytes.max(max_body_bytes) {
            return Err(bad(
                "proto-max-bulk-len",
                "must be at least max-module-bytes and max-body-bytes".into(),
            ));
        }
        let resp_max_args = num("resp-max-args", 1 << 20)? as usize;
        if resp_max_args < 3 {
            return Err(bad("resp-max-args", "must be at least 3".into()));
        }
        Ok(Config {
            bind,
            port,
            http_port,
            data_dir,
            joins: self.joins.clone(),
            logfile: opt_path("logfile"),
            loglevel,
            pidfile: opt_path("pidfile"),
            appendonly,
            appendfsync,
            cluster_node_timeout_ms: num("cluster-node-timeout", 15_000)?,
            join_token: self.values.get("join-token").map(|(v, _)| v.clone()),
            requirepass,
            exec_threads,
            io_threads,
            default_limits,
            max_limits,
            max_output_bytes: num("max-output-bytes", 8 << 20)? as usize,
            max_stderr_bytes: num("max-stderr-bytes", 64 << 10)? as usize,
            max_module_bytes,
            max_body_bytes,
            max_frame_bytes,
            max_jobs: num("max-jobs", 10_000_000)? as usize,
            max_connections: num("maxclients", 10_000)? as usize,
            resp_max_bulk_bytes,
            resp_max_args,
            resp_idle_timeout_secs: num("timeout", 0)?,
            enable_debug_command: yes_no("enable-debug-command", false)?,
            config_file: None,
            ignored: self.ignored.clone(),
        })
    }
}

impl Config {
    /// The defaults alone: a single node on 127.0.0.1:7711.
    pub fn defaults() -> Config {
        RawConfig::default()
            .resolve()
            .expect("the defaults are valid")
    }
}

/// The default `io-threads` for a machine of `cores` cores.
fn default_io_threads(cores: usize) -> usize {
    (cores / 4).max(1)
}

/// Splits a config line into words, honouring "double" and 'single' quotes
/// (so `logfile ""` is one directive with an empty value).
fn split_args(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else {
            return Ok(out);
        };
        let mut word = String::new();
        if c == '"' || c == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(ch) = chars.next() {
                if ch == c {
                    closed = true;
                    break;
                }
                if ch == '\\' && c == '"' {
                    match chars.next() {
                        Some('n') => word.push('\n'),
                        Some('t') => word.push('\t'),
                        Some(other) => word.push(other),
                        None => break,
                    }
                } else {
                    word.push(ch);
                }
            }
            if !closed {
                return Err("unbalanced quotes".into());
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err("closing quote must be followed by a space".into());
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                word.push(ch);
                chars.next();
            }
        }
        out.push(word);
    }
}

/// Parses a number with Redis's unit suffixes: `1k` = 1000, `1kb` = 1024,
/// likewise m/mb, g/gb.
pub fn parse_size(v: &str) -> Result<u64, String> {
    let lower = v.to_ascii_lowercase();
    let (digits, mult) = [
        ("gb", 1u64 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("g", 1_000_000_000),
        ("m", 1_000_000),
        ("k", 1_000),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suf, m)| lower.strip_suffix(suf).map(|d| (d.to_string(), *m)))
    .unwrap_or((lower.clone(), 1));
    let n: u64 = digits
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{v:?} is not a number (units: k, kb, m, mb, g, gb)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{v:?} is too large"))
}

fn suggest(name: &str) -> Option<&'static str> {
    // The distance is at least the difference in length: names further
    // than 2 apart in length are never suggested, so skip their O(n*m).
    let chars = name.chars().count();
    KNOWN
        .iter()
        .chain(IGNORED)
        .copied()
        .filter(|k| k.len().abs_diff(chars) <= 2)
        .map(|k| (edit_distance(name, k), k))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, _)| *d <= 2)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: &str = include_str!("../tests/data/disque.conf");

    #[test]
    fn the_notes_config_loads_as_given() {
        let raw = RawConfig::parse(NOTE, Path::new("disque.conf")).unwrap();
        let c = raw.resolve().unwrap();
        assert_eq!(c.port, 7711);
        assert_eq!(c.http_port, Some(7780));
        assert_eq!(c.cluster_node_timeout_ms, 5000);
        assert!(c.pidfile.is_some());
        assert!(c.logfile.is_none());
        assert!(c.ignored.contains(&"tcp-backlog".to_string()));
        assert!(c.ignored.contains(&"save".to_string()));
    }

    #[test]
    fn defaults_run_a_single_local_node() {
        let c = Config::defaults();
        assert_eq!(c.port, 7711);
        assert_eq!(c.http_port, Some(7780));
        assert!(c.bind.is_loopback());
        assert_eq!(c.data_dir, PathBuf::from("wasque-data"));
        assert!(c.appendonly);
        assert_eq!(c.appendfsync, AppendFsync::EverySec);
    }

    #[test]
    fn flags_override_the_file_and_http_follows_port() {
        let mut raw = RawConfig::parse("port 7000\nhttp-port 9000\n", Path::new("f")).unwrap();
        raw.set_flag("port", "17711");
        let c = raw.resolve().unwrap();
        assert_eq!(c.port, 17711);
        assert_eq!(c.http_port, Some(9000));
        let raw = RawConfig::parse("port 17711\n", Path::new("f")).unwrap();
        assert_eq!(raw.resolve().unwrap().http_port, Some(17780));
        let raw = RawConfig::parse("http-port 0\n", Path::new("f")).unwrap();
        assert_eq!(raw.resolve().unwrap().http_port, None);
    }

    #[test]
    fn io_threads_follow_the_cores_and_can_be_set() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Config::defaults().io_threads, (cores / 4).max(1));
        assert_eq!([1, 2, 4, 8, 16].map(default_io_threads), [1, 1, 1, 2, 4]);
        let raw = RawConfig::parse("io-threads 3\n", Path::new("f")).unwrap();
        assert_eq!(raw.resolve().unwrap().io_threads, 3);
        let e = RawConfig::parse("io-threads 0\n", Path::new("f"))
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("io-threads"), "{e}");
    }

    #[test]
    fn mistakes_name_their_line() {
        let e = RawConfig::parse("port 7711\nprot 7712\n", Path::new("x.conf")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("x.conf:2") && msg.contains("did you mean \"port\""),
            "{msg}"
        );
        let e = RawConfig::parse("appendfsync sometimes\n", Path::new("x.conf"))
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("x.conf:1"), "{e}");
        let e = RawConfig::parse("daemonize yes\n", Path::new("x.conf"))
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("does not daemonize"), "{e}");
        let e = RawConfig::parse("logfile \"unclosed\n", Path::new("x.conf")).unwrap_err();
        assert!(e.to_string().contains("quotes"), "{e}");
    }

    #[test]
    fn binding_beyond_loopback_needs_a_password() {
        let raw = RawConfig::parse("bind 0.0.0.0\n", Path::new("f")).unwrap();
        assert!(
            raw.resolve()
                .unwrap_err()
                .to_string()
                .contains("protected mode")
        );
        let raw = RawConfig::parse("bind 0.0.0.0\nrequirepass s3cret\n", Path::new("f")).unwrap();
        assert!(raw.resolve().is_ok());
    }

    #[test]
    fn sizes_take_redis_units() {
        assert_eq!(parse_size("64mb").unwrap(), 64 << 20);
        assert_eq!(parse_size("1k").unwrap(), 1000);
        assert_eq!(parse_size("1_000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999gb").is_err());
    }
}
