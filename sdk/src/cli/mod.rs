//! The `wasque` command line: the original note's commands (`addjob`,
//! `show`, `client`, `ackjob`, `deljob`) plus the Wasm ones (`module`,
//! `run`, `wait`, `info`).
//!
//! Exit codes: 0 success, 1 a job failed (or a command the node refused),
//! 2 usage error, 3 the node could not be reached.

mod addjob;
mod cluster;
mod dlq;
mod docs;
mod explain;
mod logs;
mod map;
mod module;
mod queue;
mod resp;
mod run;
mod schedule;
mod show;
mod tenant;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{ClientError, ClusterClient, ClusterConfig};

/// The version and the git commit built from ("unknown" without git).
pub const VERSION: &str = crate::VERSION;

/// Command line of wasque, a job queue whose jobs are WebAssembly programs.
#[derive(Debug, Parser)]
#[command(name = "wasque", version = VERSION, about, long_about = None)]
pub struct Args {
    /// The node to talk to, or several seed nodes of a cluster,
    /// comma-separated: the CLI learns every node from them, spreads its
    /// calls by `--pick` and moves to another node if one dies.
    #[arg(
        long,
        global = true,
        env = "WASQUE_NODE",
        default_value = "127.0.0.1:7711"
    )]
    node: String,
    /// How calls pick a node of the cluster: round-robin, least-loaded, or
    /// first (the first seed while it answers).
    #[arg(
        long,
        global = true,
        env = "WASQUE_PICK",
        default_value = "round-robin"
    )]
    pick: crate::Pick,
    /// The node's data dir, to trust its CA (DATA_DIR/tls/ca.pem).
    #[arg(
        long,
        global = true,
        env = "WASQUE_DATA_DIR",
        default_value = "wasque-data"
    )]
    data_dir: PathBuf,
    /// CA certificates (PEM) to trust instead of the data dir's, one per
    /// seed if their CAs differ (comma-separated or repeated). Other
    /// nodes' CAs are learned from the seeds.
    #[arg(
        long,
        global = true,
        env = "WASQUE_CA",
        value_name = "FILE",
        value_delimiter = ','
    )]
    ca: Vec<PathBuf>,
    /// Password of a node that has `requirepass` set (the admin's).
    #[arg(long, global = true, env = "WASQUE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// A tenant's credential, `NAME:TOKEN` as `wasque tenant add` printed
    /// it; used instead of the password.
    #[arg(long, global = true, env = "WASQUE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Upload, list, inspect or delete Wasm modules.
    #[command(subcommand)]
    Module(module::ModuleCmd),
    /// Add a job: `addjob QUEUE TIMEOUT_MS [options]` reads the body from
    /// stdin; `addjob QUEUE BODY TIMEOUT_MS [options]` takes it from the
    /// argument. Options as bare words, as in Disque: `replicate [N]`,
    /// `nocache`, `async`, `asynckey K`, `delay SECS`, `retry SECS`,
    /// `ttl SECS`, `maxlen N`; a retry policy with `--max-attempts` etc.;
    /// `--idempotency-key K` makes a repeated add answer the first job.
    Addjob(addjob::AddJobArgs),
    /// Show a job's state (`--json` for the note's JSON document).
    Show(show::ShowArgs),
    /// Why a job is where it is: queued behind N jobs, waiting for a
    /// slot, delayed, in a retry's backoff, lent to or running on another
    /// node (asked in turn), ... (`--json` for the documents).
    Explain(explain::ExplainArgs),
    /// A job's stdout: its result's output, or with `-f` its lines as
    /// they come while it runs (bounded by the node), until it ends.
    Logs(logs::LogsArgs),
    /// Show a job added with `asynckey KEY`, to a holder of the key.
    Client { key: String, id: String },
    /// Wait for a job to finish and print its result.
    Wait {
        id: String,
        /// How long to wait, in ms.
        #[arg(long, default_value_t = 60_000)]
        timeout: u64,
        /// The key of a job added with `asynckey K`.
        #[arg(long, value_name = "K")]
        asynckey: Option<String>,
    },
    /// Acknowledge jobs: the node forgets them.
    Ackjob {
        #[arg(required = true)]
        ids: Vec<String>,
        /// The key of jobs added with `asynckey K`.
        #[arg(long, value_name = "K")]
        asynckey: Option<String>,
    },
    /// Delete jobs from the node, whatever their state.
    Deljob {
        #[arg(required = true)]
        ids: Vec<String>,
        /// The key of jobs added with `asynckey K`.
        #[arg(long, value_name = "K")]
        asynckey: Option<String>,
    },
    /// Cancel jobs wherever they are: queued copies removed, a running
    /// Wasm job interrupted (its result has class `cancelled`). Prints
    /// how many were cancelled.
    Cancel {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print the node's description.
    Info,
    /// Print the node's job events (of QUEUEs, or all), one JSON object a
    /// line, until interrupted: `{"event":"finished","id":"…","queue":"…"}`.
    Events { queues: Vec<String> },
    /// Run a module over many payloads: upload it, submit every payload
    /// with bounded parallelism, print results in order, summarise.
    Run(run::RunArgs),
    /// A distributed job: split `--input` into parts, run MAP on each as
    /// its own job across the cluster (a failed part is retried alone),
    /// then REDUCE over the parts' results; prints the reduce's output.
    Map(map::MapArgs),
    /// Create or show a queue (over RESP); prints `OK`.
    Queue(queue::QueueArgs),
    /// Take one job: `getjob from QUEUE [QUEUE...]` (over RESP); prints
    /// `ID BODY`.
    Getjob(queue::GetJobArgs),
    /// Run an external worker on plain jobs (over RESP): print and ack
    /// each job, or run `--exec CMD` on it and FINISH or NACK.
    Worker(worker::WorkerArgs),
    /// Cluster set-up (over RESP): `init` (cluster CA and join token),
    /// `meet HOST:PORT`, `leaving yes|no`, `info`.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Tenants (over RESP, the admin's): `add NAME [QUOTA=VALUE...]`, `ls`,
    /// `rm NAME`, `token NAME`, `revoke NAME ID`, `set NAME QUOTA=VALUE...`.
    #[command(subcommand)]
    Tenant(tenant::TenantCmd),
    /// List the cluster's nodes with their state (up, down, leaving) and
    /// load (executor slots in use, queued jobs, jobs held); `*` marks the
    /// node asked.
    Nodes {
        #[arg(long)]
        json: bool,
    },
    /// A queue's dead letters on the node named: `ls`, `requeue`, `purge`.
    #[command(subcommand)]
    Dlq(dlq::DlqCmd),
    /// Schedules (cron): `add NAME --cron EXPR [job options]`, `ls`,
    /// `show NAME`, `rm NAME`; one job per tick across the cluster.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCmd),
    /// Print a shell completion script: `wasque completions bash >
    /// ~/.local/share/bash-completion/completions/wasque`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `wasque manpage | man -l -`.
    Manpage,
}

/// Entry point of the `wasque` binary.
pub fn main() -> ExitCode {
    use std::io::IsTerminal;
    let args = Args::parse();
    // Commands that need no node and no runtime.
    match args.command {
        Cmd::Completions { shell } => return docs::completions(shell),
        Cmd::Manpage => return docs::manpage(),
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never into a file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let unreachable = e
                .downcast_ref::<ClientError>()
                .is_some_and(ClientError::is_unreachable)
                || e.downcast_ref::<resp::Unreachable>().is_some();
            if unreachable {
                ExitCode::from(3)
            } else if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A mistake in the command line found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

async fn connect(args: &Args, pick: crate::Pick) -> anyhow::Result<ClusterClient> {
    let files = if args.ca.is_empty() {
        vec![args.data_dir.join("tls").join("ca.pem")]
    } else {
        args.ca.clone()
    };
    let mut ca_pem = Vec::new();
    for f in &files {
        let pem = std::fs::read(f).map_err(|e| ClientError::CaMissing {
            path: f.clone(),
            reason: e.to_string(),
        })?;
        ca_pem.extend_from_slice(&pem);
        ca_pem.push(b'\n');
    }
    let mut cfg = ClusterConfig::new(seeds(&args.node), ca_pem);
    cfg.token = args.token.clone().or_else(|| args.password.clone());
    cfg.pick = pick;
    Ok(ClusterClient::connect(cfg).await?)
}

/// The seed addresses of `--node`.
fn seeds(node: &str) -> Vec<String> {
    node.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The node RESP commands talk to: the first seed.
fn first_seed(node: &str) -> String {
    seeds(node).into_iter().next().unwrap_or_default()
}

pub(crate) fn parse_id(s: &str) -> anyhow::Result<crate::proto::JobId> {
    s.parse()
        .map_err(|e: crate::proto::JobIdError| usage(e.to_string()))
}

async fn dispatch(args: Args) -> anyhow::Result<ExitCode> {
    // The Disque-style commands speak RESP to the node's TCP port.
    let password = args.token.as_deref().or(args.password.as_deref());
    let node = first_seed(&args.node);
    match args.command {
        Cmd::Queue(q) => return queue::queue(&node, password, q).await,
        Cmd::Getjob(g) => return queue::getjob(&node, password, g).await,
        Cmd::Worker(w) => return worker::run(&seeds(&args.node), password, w).await,
        Cmd::Cluster(c) => return cluster::run(&node, password, c).await,
        Cmd::Tenant(t) => return tenant::run(&node, password, t).await,
        Cmd::Nodes { json } => return cluster::nodes(&node, password, json).await,
        _ => {}
    }
    // `info` describes the node named, not one picked from the cluster.
    let pick = match args.command {
        Cmd::Info | Cmd::Events { .. } | Cmd::Dlq(_) => crate::Pick::First,
        _ => args.pick,
    };
    let client = connect(&args, pick).await?;
    match args.command {
        Cmd::Module(m) => module::run(&client, m).await,
        Cmd::Addjob(a) => addjob::run(&client, a).await,
        Cmd::Show(s) => show::run(&client, s).await,
        Cmd::Explain(x) => explain::run(&client, x).await,
        Cmd::Logs(l) => logs::run(&client, l).await,
        Cmd::Client { key, id } => {
            let id = parse_id(&id)?;
            let status = client.show_by_key(&key, id).await?;
            println!("{}", serde_json::to_string_pretty(&status.to_json())?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Wait {
            id,
            timeout,
            asynckey,
        } => {
            let id = parse_id(&id)?;
            let status = match &asynckey {
                Some(k) => client.wait_by_key(k, id, timeout).await?,
                None => client.wait(id, timeout).await?,
            };
            match status {
                Some(status) => Ok(show::print_result(&status)),
                None => {
                    eprintln!("error: job {id} did not finish within {timeout} ms");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Cmd::Ackjob { ids, asynckey } => {
            let ids = ids
                .iter()
                .map(|s| parse_id(s))
                .collect::<Result<Vec<_>, _>>()?;
            let n = match &asynckey {
                Some(k) => client.ack_by_key(k, ids).await?,
                None => client.ack(ids).await?,
            };
            println!("{n}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Deljob { ids, asynckey } => {
            let ids = ids
                .iter()
                .map(|s| parse_id(s))
                .collect::<Result<Vec<_>, _>>()?;
            let n = match &asynckey {
                Some(k) => client.deljob_by_key(k, ids).await?,
                None => client.deljob(ids).await?,
            };
            println!("{n}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cancel { ids } => {
            let ids = ids
                .iter()
                .map(|s| parse_id(s))
                .collect::<Result<Vec<_>, _>>()?;
            println!("{}", client.cancel(ids).await?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Info => {
            let info = client.node_info().await?;
            println!("node_id:{}", info.node_id);
            println!("version:{}", info.version);
            println!("uptime_secs:{}", info.uptime_secs);
            println!("executor_threads:{}", info.executor_threads);
            println!("executor_busy:{}", info.executor_busy);
            println!("jobs:{}", info.jobs);
            println!("queues:{}", info.queues);
            println!("modules:{}", info.modules);
            println!("modules_compiled:{}", info.modules_compiled);
            println!("modules_loaded:{}", info.modules_loaded);
            println!("jobs_run:{}", info.jobs_run);
            println!("pagemap_scan:{}", info.pagemap_scan);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Events { queues } => {
            let mut sub = client.subscribe(queues).await?;
            while let Some(ev) = sub.next().await? {
                println!("{ev}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run(r) => run::run(&client, r).await,
        Cmd::Map(m) => map::run(&client, m).await,
        Cmd::Dlq(d) => dlq::run(&client, d).await,
        Cmd::Schedule(c) => schedule::run(&client, c).await,
        Cmd::Queue(_)
        | Cmd::Getjob(_)
        | Cmd::Worker(_)
        | Cmd::Cluster(_)
        | Cmd::Tenant(_)
        | Cmd::Nodes { .. }
        | Cmd::Completions { .. }
        | Cmd::Manpage => Ok(ExitCode::SUCCESS),
    }
}
