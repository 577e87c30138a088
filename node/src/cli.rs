//! The `wasque-node` command line: flags over an optional Disque-style
//! config file over defaults, logging, the listeners' banner, and a clean
//! stop on SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::config::{Config, LogFormat, RawConfig};
use crate::runtime::Node;

/// The version and the git commit built from ("unknown" without git):
/// the SDK's build script finds the commit for both binaries.
pub const VERSION: &str = wasque_sdk::VERSION;

/// A wasque node: a job queue that runs WebAssembly jobs in a sandbox.
///
/// With no arguments it runs a working single node on 127.0.0.1:7711
/// (QUIC, and RESP once enabled) with its data in ./wasque-data.
#[derive(Debug, Parser)]
#[command(name = "wasque-node", version = VERSION, about, long_about = None)]
struct Args {
    /// Config file in Disque's `directive value` format (also as the first
    /// positional argument, as `disque-server FILE`).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(value_name = "CONFIG", conflicts_with = "config", hide = true)]
    config_positional: Option<PathBuf>,
    /// Port for RESP (TCP) and QUIC (UDP). Default 7711.
    #[arg(long, short = 'p', value_name = "N")]
    port: Option<u16>,
    /// HTTP port; default port + 69 (7711 → 7780); 0 turns HTTP off.
    #[arg(long, value_name = "N")]
    http_port: Option<u16>,
    /// Address to listen on. Default 127.0.0.1; anything beyond loopback
    /// needs `requirepass` (protected mode).
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// The address peers and clients are told to reach this node at
    /// (`cluster-announce-ip` and `cluster-announce-port`): an IP or a DNS
    /// name, and a port. Default: the bound address; when that is 0.0.0.0
    /// or ::, the address of the interface of the default route.
    #[arg(long, value_name = "HOST:PORT")]
    announce_addr: Option<String>,
    /// Data dir: modules, compiled artifacts, TLS identity, node id.
    /// Default ./wasque-data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A peer to join at start (repeatable); as `CLUSTER MEET` later.
    #[arg(long, value_name = "HOST:PORT")]
    join: Vec<String>,
    /// Join token from `wasque cluster init`: with --join, get this node's
    /// peer certificate from the cluster CA (ca trust mode).
    #[arg(long, value_name = "TOKEN")]
    join_token: Option<String>,
    /// How long a silent peer takes to be declared down, in ms (the
    /// `cluster-node-timeout` directive). Default 15000.
    #[arg(long, value_name = "MS")]
    cluster_node_timeout: Option<u64>,
    /// Executor threads (default: one per core).
    #[arg(long, value_name = "N")]
    exec_threads: Option<usize>,
    /// Async runtime threads: sockets, QUIC, the engine's driver (the
    /// `io-threads` directive; default one per four cores, at least one).
    #[arg(long, value_name = "N")]
    io_threads: Option<usize>,
    /// Allow DEBUG FLUSHALL over RESP (test nodes only).
    #[arg(long)]
    enable_debug_command: bool,
    /// Log filter, e.g. `info` or `wasque_node=debug` (RUST_LOG also works).
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
    /// Log lines as `text` (coloured only on a terminal) or `json`, one
    /// object a line for log shippers (the `log-format` directive).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Print this command's man page (roff) on stdout and exit.
    #[arg(long)]
    manpage: bool,
}

/// Runs the node until SIGINT or SIGTERM.
pub fn main() -> ExitCode {
    let args = Args::parse();
    if args.manpage {
        return print_manpage();
    }
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wasque-node: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg, args.log.as_deref());
    // A panic anywhere goes to the log too (with where it happened), not
    // only to stderr, which a node with a `logfile` may not keep.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic: {info}");
        default_hook(info);
    }));
    for d in &cfg.ignored {
        tracing::info!("config directive {d:?} only means something to Redis: ignored");
    }
    if !cfg.bind.is_loopback() && cfg.join_token.is_none() {
        tracing::warn!(
            "bound beyond loopback: peers from other hosts need ca trust mode (`wasque cluster init`, then --join-token on the others); until then only loopback peers are accepted"
        );
    }
    crate::heap::tune();
    let rt = match io_runtime(cfg.io_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wasque-node: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The node runs on a thread named like the runtime's workers, so that
    // with one I/O thread (a current-thread runtime, see `io_runtime`) the
    // thread doing the I/O is `wasque-io` too; main only waits for it.
    match io_thread(move || rt.block_on(run(cfg))).map(|t| t.join()) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("wasque-node: cannot start the I/O thread: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The stack of the thread that runs the node: the main thread's usual
/// 8 MiB, as the node's futures were sized on.
const IO_THREAD_STACK: usize = 8 << 20;

/// Starts a thread named `wasque-io` with the I/O threads' time slice to
/// run `f`: the thread inside the runtime's `block_on`.
fn io_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name("wasque-io".into())
        .stack_size(IO_THREAD_STACK)
        .spawn(move || {
            crate::thread_class::latency();
            f()
        })
}

/// The node's async runtime. Every thread of it is named `wasque-io` and
/// asks the I/O threads' short time slice ([`crate::thread_class`]).
///
/// With one thread (`io-threads 1`, the default below eight cores) it is
/// tokio's current-thread runtime: the thread that calls `block_on` runs
/// every task, and a task waking another (a connection handing a command
/// to the engine's driver and the driver answering) is a push onto a
/// plain queue, not the multi-thread scheduler's hand-off with its atomic
/// operations. Measured (benches/README.md, RESP, session 25): about 2 µs
/// of CPU less per add at pipeline 1. Such a runtime only runs its tasks
/// while some thread is inside its `block_on`: the binary runs the whole
/// node there; a benchmark that starts a node in-process keeps a thread
/// there ([`drive_io_runtime`]). With more threads it is the
/// multi-thread runtime with that many workers.
pub fn io_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder
        .enable_all()
        .thread_name("wasque-io")
        .on_thread_start(crate::thread_class::latency)
        .build()
}

/// Keeps a thread named `wasque-io` inside `rt.block_on` until the
/// returned sender is dropped or sent to, so that a current-thread
/// [`io_runtime`] runs its tasks while its owner does other work
/// (in-process benchmarks). Harmless on a multi-thread runtime.
pub fn drive_io_runtime(
    rt: std::sync::Arc<tokio::runtime::Runtime>,
) -> std::io::Result<(
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
)> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = io_thread(move || {
        let _ = rt.block_on(stopped);
    })?;
    Ok((stop, thread))
}

fn load(args: &Args) -> anyhow::Result<Config> {
    let mut raw = match args.config.as_ref().or(args.config_positional.as_ref()) {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    if let Some(p) = args.port {
        raw.set_flag("port", p.to_string());
    }
    if let Some(p) = args.http_port {
        raw.set_flag("http-port", p.to_string());
    }
    if let Some(b) = &args.bind {
        raw.set_flag("bind", b.clone());
    }
    if let Some(a) = &args.announce_addr {
        let (host, port) = crate::config::split_host_port(a)
            .map_err(|e| anyhow::anyhow!("--announce-addr {e}"))?;
        raw.set_flag("cluster-announce-ip", host);
        raw.set_flag("cluster-announce-port", port.to_string());
    }
    if let Some(d) = &args.data_dir {
        raw.set_flag("dir", d.to_string_lossy().into_owned());
    }
    if let Some(n) = args.exec_threads {
        raw.set_flag("exec-threads", n.to_string());
    }
    if let Some(f) = args.log_format {
        raw.set_flag(
            "log-format",
            match f {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
        );
    }
    if let Some(n) = args.io_threads {
        raw.set_flag("io-threads", n.to_string());
    }
    if let Some(t) = &args.join_token {
        raw.set_flag("join-token", t.clone());
    }
    if let Some(ms) = args.cluster_node_timeout {
        raw.set_flag("cluster-node-timeout", ms.to_string());
    }
    for j in &args.join {
        raw.add_join(j.clone());
    }
    if args.enable_debug_command {
        raw.set_flag("enable-debug-command", "yes");
    }
    let mut cfg = raw.resolve()?;
    cfg.config_file = args.config.clone().or(args.config_positional.clone());
    Ok(cfg)
}

fn init_logging(cfg: &Config, flag: Option<&str>) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter = flag
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| {
            // The store crate's own progress lines are for its developers.
            EnvFilter::new(format!("{},fjall=warn,lsm_tree=warn", cfg.loglevel))
        });
    let file = cfg.logfile.as_ref().and_then(|p| {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "wasque-node: cannot open logfile {}: {e}; logging to stderr",
                    p.display()
                );
                None
            }
        }
    });
    // Colour codes only for a person at a terminal: a file, a pipe or a
    // service manager's journal gets plain text.
    let (writer, ansi) = match file {
        Some(file) => (BoxMakeWriter::new(std::sync::Mutex::new(file)), false),
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match cfg.log_format {
        LogFormat::Text => builder.init(),
        // `level`, `message`, `target` and the event's fields at the top.
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// `--manpage`: the man page from the same definitions as `--help`.
fn print_manpage() -> ExitCode {
    use std::io::Write;
    let mut out = Vec::new();
    let page = clap_mangen::Man::new(Args::command());
    if let Err(e) = page.render(&mut out) {
        eprintln!("wasque-node: cannot render the man page: {e}");
        return ExitCode::FAILURE;
    }
    match std::io::stdout().write_all(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasque-node: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: Config) -> ExitCode {
    // Before anything listens: a SIGTERM that comes while the node starts
    // must stop it cleanly, not end it with the signal's default action.
    let signals = Signals::install();
    if let Some(pidfile) = &cfg.pidfile
        && let Err(e) = std::fs::write(pidfile, format!("{}\n", std::process::id()))
    {
        tracing::warn!("cannot write pidfile {}: {e}", pidfile.display());
    }
    let mut node = match Node::start(cfg.clone()).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("wasque-node: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One line per listener, on stdout, for scripts and people.
    println!(
        "wasque-node {} listening: quic udp://{} (clients trust {})",
        node.node_id(),
        node.quic_addr(),
        node.ca_path().display()
    );
    println!(
        "wasque-node {} listening: resp tcp://{}",
        node.node_id(),
        node.resp_addr()
    );
    if let Some(addr) = node.http_addr() {
        println!(
            "wasque-node {} listening: http http://{addr}/",
            node.node_id()
        );
    }
    if node.announce_addr() != node.quic_addr() {
        println!(
            "wasque-node {} announces: quic udp://{} (to peers and clients)",
            node.node_id(),
            node.announce_addr()
        );
    }
    tracing::info!(
        data_dir = %cfg.data_dir.display(),
        exec_threads = cfg.exec_threads,
        io_threads = cfg.io_threads,
        "node ready"
    );
    tokio::select! {
        () = signals.wait() => {}
        why = node.failed() => {
            // A dead driver or accept loop: exit at once, non-zero, rather
            // than hang with open sockets (supervise.rs). Nothing is lost
            // that a kill would not lose: the store is crash-safe.
            eprintln!("wasque-node: {why}; exiting");
            std::process::exit(70);
        }
    }
    tracing::info!("stopping");
    node.shutdown().await;
    if let Some(pidfile) = &cfg.pidfile {
        let _ = std::fs::remove_file(pidfile);
    }
    ExitCode::SUCCESS
}

/// SIGINT and SIGTERM, caught from the moment they are installed.
enum Signals {
    Unix(tokio::signal::unix::Signal, tokio::signal::unix::Signal),
    CtrlC,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => Signals::Unix(int, term),
            _ => Signals::CtrlC,
        }
    }

    async fn wait(self) {
        match self {
            Signals::Unix(mut int, mut term) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            Signals::CtrlC => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
