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

/// `log-format` / `--log-format`: how log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human lines (coloured only when written to a terminal).
    #[default]
    Text,
    /// One JSON object a line (`timestamp`, `level`, `fields.message`, ...).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{s:?}: expected text or json")),
        }
    }
}

/// The resolved configuration of one node.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    /// `None`: HTTP off.
    pub http_port: Option<u16>,
    /// `http-hosts`: names (besides localhost and the node's addresses)
    /// the HTTP door answers to in a request's `Host`; any other is
    /// refused (DNS rebinding). Comma-separated in the file.
    pub http_hosts: Vec<String>,
    pub data_dir: PathBuf,
    /// Peers to join at start (`--join HOST:PORT`, repeatable).
    pub joins: Vec<String>,
    /// `cluster-announce-ip` (`--announce-addr HOST:PORT`): the host, an
    /// IP or a DNS name, peers and clients are told to reach this node at
    /// instead of the bound address (Redis Cluster's directive). Never an
    /// unspecified address.
    pub announce_host: Option<String>,
    /// `cluster-announce-port`: the port announced (default: the node's).
    pub announce_port: Option<u16>,
    pub logfile: Option<PathBuf>,
    /// A `tracing` filter (Disque's levels mapped: verbose → debug, notice → info).
    pub loglevel: String,
    /// `log-format text|json`: human lines, or one JSON object a line for
    /// log shippers.
    pub log_format: LogFormat,
    pub pidfile: Option<PathBuf>,
    pub appendonly: bool,
    pub appendfsync: AppendFsync,
    pub cluster_node_timeout_ms: u64,
    /// `maxmemory` (bytes, 0 = no bound): past 75 % of it, measured as the
    /// process's resident memory, the node keeps no copy of the jobs it is
    /// given (they are replicated to peers only), and past 95 % it forgets
    /// idle empty queues after 2 s, as Disque does under memory pressure.
    pub maxmemory: u64,
    /// `join-token` / `--join-token`: join a `ca`-mode cluster through
    /// the `--join` addresses (see `wasque cluster init`).
    pub join_token: Option<String>,
    pub requirepass: Option<String>,
    /// Executor threads; default one per core.
    pub exec_threads: usize,
    /// `exec-memory-cow`: a job's memory starts as a copy-on-write
    /// mapping of its module's initial memory (default) rather than a
    /// copy of its data segments (`ExecConfig::memory_cow`).
    pub exec_memory_cow: bool,
    /// Threads of the async runtime (sockets, QUIC, the engine's driver),
    /// Redis's `io-threads`; default one per four cores, at least one.
    pub io_threads: usize,
    pub default_limits: Limits,
    pub max_limits: Limits,
    pub max_output_bytes: usize,
    pub max_stderr_bytes: usize,
    pub max_module_bytes: usize,
    pub max_body_bytes: usize,
    /// QUIC: largest request frame (`max-frame-bytes`).
    pub max_frame_bytes: usize,
    /// QUIC: requests one client connection may have unanswered
    /// (`quic-max-inflight`); past it the node stops reading the connection.
    pub quic_max_inflight: usize,
    pub max_jobs: usize,
    /// `idempotency-window` (seconds, 0 to ten years, default a day): how
    /// long after its job's creation an idempotency key is remembered (at
    /// least as long as the job is held, whatever the window).
    pub idempotency_window_secs: u64,
    /// `idempotency-max-tombstones`: most keys remembered after their jobs
    /// are gone (default 1,000,000; about 100 bytes of memory each).
    pub idempotency_max_tombstones: usize,
    pub max_connections: usize,
    /// RESP: the largest bulk string (`proto-max-bulk-len`), at least the
    /// module-size bound so MODULE PUT fits.
    pub resp_max_bulk_bytes: usize,
    /// RESP: most arguments in one request (`resp-max-args`).
    pub resp_max_args: usize,
    /// RESP: the largest whole request (`resp-max-request-bytes`), checked
    /// while parsing; at least `proto-max-bulk-len` so MODULE PUT fits.
    pub resp_max_request_bytes: usize,
    /// RESP: reply bytes rendered but unsent a client may hold before the
    /// node stops reading its requests (`resp-max-output-bytes`).
    pub resp_max_output_bytes: usize,
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
    "log-format",
    "pidfile",
    "appendonly",
    "appendfsync",
    "cluster-node-timeout",
    "maxmemory",
    "cluster-announce-ip",
    "cluster-announce-port",
    "join-token",
    "requirepass",
    "daemonize",
    "http-port",
    "http-hosts",
    "exec-threads",
    "exec-memory-cow",
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
    "quic-max-inflight",
    "max-jobs",
    "idempotency-window",
    "idempotency-max-tombstones",
    "maxclients",
    "enable-debug-command",
    "proto-max-bulk-len",
    "resp-max-args",
    "resp-max-request-bytes",
    "resp-max-output-bytes",
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
        let log_format = match self.get("log-format") {
            None => LogFormat::Text,
            Some((v, _)) => v.parse().map_err(|e| bad("log-format", e))?,
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
        let exec_memory_cow = yes_no("exec-memory-cow", true)?;
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
        let quic_max_inflight = num("quic-max-inflight", 1024)? as usize;
        if quic_max_inflight == 0 {
            return Err(bad("quic-max-inflight", "must be at least 1".into()));
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
        // A request is its arguments plus their headers: a little above
        // the largest argument, so MODULE PUT of the largest module fits.
        let resp_max_request_bytes = num(
            "resp-max-request-bytes",
            (resp_max_bulk_bytes + (1 << 20)) as u64,
        )? as usize;
        if resp_max_request_bytes < resp_max_bulk_bytes {
            return Err(bad(
                "resp-max-request-bytes",
                "must be at least proto-max-bulk-len".into(),
            ));
        }
        // Room for one reply at the default body, output and stderr bounds
        // plus pipelined small ones.
        let resp_max_output_bytes = num("resp-max-output-bytes", 32 << 20)? as usize;
        if resp_max_output_bytes == 0 {
            return Err(bad("resp-max-output-bytes", "must be > 0".into()));
        }
        let idempotency_window_secs = num("idempotency-window", 86_400)?;
        crate::api::bounds::secs("idempotency-window", idempotency_window_secs)
            .map_err(|e| bad("idempotency-window", e))?;
        let idempotency_max_tombstones = num("idempotency-max-tombstones", 1_000_000)?;
        if idempotency_max_tombstones > 1_000_000_000 {
            return Err(bad(
                "idempotency-max-tombstones",
                "at most 1000000000 (each costs about 100 bytes of memory)".into(),
            ));
        }
        let http_hosts = match self.get("http-hosts") {
            None => Vec::new(),
            Some((v, _)) => v
                .split(',')
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        };
        // Redis's empty value and port 0 both mean "not set".
        let announce_host = match self.get("cluster-announce-ip") {
            Some((v, _)) if !v.trim().is_empty() => {
                Some(check_announce_host(v.trim()).map_err(|e| bad("cluster-announce-ip", e))?)
            }
            _ => None,
        };
        let announce_port = match self.get("cluster-announce-port") {
            None => None,
            Some((v, _)) => match v.trim().parse::<u16>() {
                Ok(0) => None,
                Ok(p) => Some(p),
                Err(_) => {
                    return Err(bad(
                        "cluster-announce-port",
                        format!("{v:?} is not a port (0 announces the node's own)"),
                    ));
                }
            },
        };
        Ok(Config {
            bind,
            port,
            http_port,
            http_hosts,
            data_dir,
            joins: self.joins.clone(),
            announce_host,
            announce_port,
            logfile: opt_path("logfile"),
            loglevel,
            log_format,
            pidfile: opt_path("pidfile"),
            appendonly,
            appendfsync,
            cluster_node_timeout_ms: num("cluster-node-timeout", 15_000)?,
            maxmemory: num("maxmemory", 0)?,
            join_token: self.values.get("join-token").map(|(v, _)| v.clone()),
            requirepass,
            exec_threads,
            exec_memory_cow,
            io_threads,
            default_limits,
            max_limits,
            max_output_bytes: num("max-output-bytes", 8 << 20)? as usize,
            max_stderr_bytes: num("max-stderr-bytes", 64 << 10)? as usize,
            max_module_bytes,
            max_body_bytes,
            max_frame_bytes,
            quic_max_inflight,
            max_jobs: num("max-jobs", 10_000_000)? as usize,
            idempotency_window_secs,
            idempotency_max_tombstones: idempotency_max_tombstones as usize,
            max_connections: num("maxclients", 10_000)? as usize,
            resp_max_bulk_bytes,
            resp_max_args,
            resp_max_request_bytes,
            resp_max_output_bytes,
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

    /// The largest legal reply frame on the QUIC client door: a job's
    /// status carries its body, output and stderr at their maxima, plus
    /// `REPLY_OVERHEAD` for the other fields (ids, queue, error text, a
    /// distributed job's parts). Never below the request bound.
    pub fn max_reply_bytes(&self) -> usize {
        self.max_body_bytes
            .saturating_add(self.max_output_bytes)
            .saturating_add(self.max_stderr_bytes)
            .saturating_add(REPLY_OVERHEAD)
            .max(self.max_frame_bytes)
            .min(u32::MAX as usize)
    }
}

/// Room in a reply frame for everything but body, output and stderr: the
/// fixed fields are small; a distributed job's parts (at most 20,000,
/// `engine::gather::MAX_PARTS`) take up to about 800 bytes each.
pub const REPLY_OVERHEAD: usize = 16 << 20;

/// The default `io-threads` for a machine of `cores` cores.
fn default_io_threads(cores: usize) -> usize {
    (cores / 4).max(1)
}

/// Checks an announced host: an IP address that names one host (not
/// 0.0.0.0, `::` or a multicast group), or a DNS name. Returns it as
/// announced (a name lower-cased, an IP in its usual form).
pub fn check_announce_host(v: &str) -> Result<String, String> {
    // `[::1]` as in a URL is accepted too.
    let bare = v
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(v);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!(
                "{ip} names no single host: announce an address peers can reach"
            ));
        }
        return Ok(ip.to_string());
    }
    let name = v.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    // A name whose last label is all digits would be read as a bad IP.
    let numeric_tld = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if name.is_empty() || name.len() > 253 || numeric_tld || !name.split('.').all(label_ok) {
        return Err(format!("{v:?} is neither an IP address nor a DNS name"));
    }
    Ok(name)
}

/// Splits `HOST:PORT` (`[v6]:PORT` for an IPv6 address), as
/// `--announce-addr` takes it.
pub fn split_host_port(v: &str) -> Result<(String, u16), String> {
    let usage = || format!("{v:?}: expected HOST:PORT (an IPv6 address as [ADDR]:PORT)");
    let (host, port) = v.rsplit_once(':').ok_or_else(usage)?;
    // An IPv6 address unbracketed has colons of its own: ambiguous.
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(usage());
    }
    let port: u16 = port.parse().map_err(|_| usage())?;
    if host.is_empty() || port == 0 {
        return Err(usage());
    }
    Ok((host.to_string(), port))
}

/// A config line's words ([`crate::quoting::split_args`]), as text.
fn split_args(line: &str) -> Result<Vec<String>, String> {
    crate::quoting::split_args(line.as_bytes())?
        .into_iter()
        .map(|w| String::from_utf8(w).map_err(|_| "a value is not UTF-8 text".to_string()))
        .collect()
}

/// Why a value cannot be written into a config file (`CONFIG SET`): the
/// file is lines of text, so no control character (newline, NUL, ...)
/// may be part of a value, and a value is at most [`MAX_VALUE_BYTES`].
pub fn check_value(value: &str) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the value contains the control character {:?}; config values are one line of text",
            c
        ));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!("the value is longer than {MAX_VALUE_BYTES} bytes"));
    }
    Ok(())
}

/// Longest value `CONFIG SET` accepts.
pub const MAX_VALUE_BYTES: usize = 4096;

pub use crate::quoting::quote;

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
    fn exec_memory_cow_is_on_unless_no() {
        assert!(Config::defaults().exec_memory_cow);
        let raw = RawConfig::parse("exec-memory-cow no\n", Path::new("f")).unwrap();
        assert!(!raw.resolve().unwrap().exec_memory_cow);
        let raw = RawConfig::parse("exec-memory-cow maybe\n", Path::new("f")).unwrap();
        let e = raw.resolve().unwrap_err().to_string();
        assert!(
            e.contains("exec-memory-cow") && e.contains("yes or no"),
            "{e}"
        );
    }

    #[test]
    fn log_format_is_text_unless_json_and_refuses_others() {
        assert_eq!(Config::defaults().log_format, LogFormat::Text);
        let raw = RawConfig::parse("log-format json\n", Path::new("f")).unwrap();
        assert_eq!(raw.resolve().unwrap().log_format, LogFormat::Json);
        let raw = RawConfig::parse("log-format xml\n", Path::new("f")).unwrap();
        let e = raw.resolve().unwrap_err().to_string();
        assert!(
            e.contains("log-format") && e.contains("text or json"),
            "{e}"
        );
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
    fn announce_directives_parse_and_refuse_what_names_no_host() {
        let c = Config::defaults();
        assert_eq!((c.announce_host, c.announce_port), (None, None));
        let raw = RawConfig::parse(
            "cluster-announce-ip 10.1.2.3\ncluster-announce-port 7811\n",
            Path::new("f"),
        )
        .unwrap();
        let c = raw.resolve().unwrap();
        assert_eq!(c.announce_host.as_deref(), Some("10.1.2.3"));
        assert_eq!(c.announce_port, Some(7811));
        // Redis's "unset" values.
        let raw = RawConfig::parse(
            "cluster-announce-ip \"\"\ncluster-announce-port 0\n",
            Path::new("f"),
        )
        .unwrap();
        let c = raw.resolve().unwrap();
        assert_eq!((c.announce_host, c.announce_port), (None, None));
        assert_eq!(
            check_announce_host("Edge-1.Example.org.").unwrap(),
            "edge-1.example.org"
        );
        assert_eq!(check_announce_host("[::1]").unwrap(), "::1");
        for bad in [
            "0.0.0.0",
            "::",
            "[::]",
            "224.0.0.1",
            "a b",
            "-x.org",
            "",
            "1.2.3.256",
            "x..y",
        ] {
            assert!(check_announce_host(bad).is_err(), "{bad:?}");
        }
        let e = RawConfig::parse("cluster-announce-ip 0.0.0.0\n", Path::new("x.conf"))
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.conf:1") && e.contains("cluster-announce-ip"),
            "{e}"
        );
        let e = RawConfig::parse("cluster-announce-port 70000\n", Path::new("x.conf"))
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster-announce-port"), "{e}");
    }

    #[test]
    fn host_port_splits_names_v4_and_bracketed_v6() {
        assert_eq!(
            split_host_port("10.0.0.1:7711").unwrap(),
            ("10.0.0.1".into(), 7711)
        );
        assert_eq!(
            split_host_port("edge.example.org:1").unwrap(),
            ("edge.example.org".into(), 1)
        );
        assert_eq!(
            split_host_port("[fd00::1]:7711").unwrap(),
            ("[fd00::1]".into(), 7711)
        );
        for bad in ["10.0.0.1", "fd00::1:7711", ":7711", "h:0", "h:x", "h:70000"] {
            assert!(split_host_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_take_redis_units() {
        assert_eq!(parse_size("64mb").unwrap(), 64 << 20);
        assert_eq!(parse_size("1k").unwrap(), 1000);
        assert_eq!(parse_size("1_000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999gb").is_err());
    }

    #[test]
    fn quoted_values_read_back_exactly() {
        let hostile = [
            "s3cret",
            "",
            "x\nbind 0.0.0.0",
            "a \"quoted\" pass\\with\\slashes #not-a-comment 'single'",
            "tab\there\r\0nul",
            "ünïcødé ✓",
            "\\",
            "\"",
            "'",
            "trailing\\",
            "\\x41",
        ];
        for v in hostile {
            let line = format!("requirepass {}", quote(v));
            assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
            let args = split_args(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(args, ["requirepass", v], "{line:?}");
            let raw = RawConfig::parse(&format!("{line}\n"), Path::new("f")).expect("parses");
            assert_eq!(raw.get("requirepass").map(|(v, _)| v.as_str()), Some(v));
        }
        assert_eq!(quote("50"), "50");
        assert_eq!(quote("a b"), "\"a b\"");
    }

    #[test]
    fn escapes_in_double_and_single_quotes() {
        let got = split_args(r#"k "a\x41\n\"\\" 'it\'s' "\q""#).unwrap();
        assert_eq!(got, ["k", "aA\n\"\\", "it's", "q"]);
        assert!(split_args(r#"k "\x4""#).is_err(), "short hex");
        assert!(split_args(r#"k "\x+f""#).is_err(), "not hex");
        assert!(split_args(r#"k "\xff""#).is_err(), "not UTF-8");
        assert!(split_args(r#"k "open"#).is_err());
        assert!(split_args(r#"k "a"b"#).is_err());
    }

    #[test]
    fn values_that_a_line_cannot_carry_are_refused() {
        assert!(check_value("x\nbind 0.0.0.0").is_err());
        assert!(check_value("nul\0").is_err());
        assert!(check_value("cr\r").is_err());
        assert!(check_value("del\u{7f}").is_err());
        assert!(check_value(&"a".repeat(MAX_VALUE_BYTES + 1)).is_err());
        assert!(check_value("a \"quoted\" \\ value #x").is_ok());
    }
}
