//! `wasque worker QUEUE [-q QUEUE]... [-t MS] [--single-process]
//! [--concurrency N] [--exec 'CMD ARGS']`: an external worker for plain
//! jobs, over RESP.
//!
//! Each slot holds one RESP connection and loops: a blocking `GETJOB`
//! (woken by the enqueue itself, no polling; it returns every second at
//! most so a stop is noticed), then the job. With `--exec`, CMD runs under
//! `sh -c` in its own process group with the body on stdin: exit 0
//! `FINISH`es the job with stdout as the result (the node itself drops the
//! result of a `nocache` job once present waiters have it, so the worker
//! need not know which jobs are `nocache`); any other exit, or running past
//! `-t` ms (the whole group is killed), `NACK`s it. While CMD runs, the
//! slot sends `WORKING` so the node does not queue the job again: first
//! after a second, then every half of the time the node says is left.
//! Without `--exec`, each job is printed (`ID BODY`) and acknowledged.
//!
//! SIGINT once: take no new jobs, finish the ones held (a job that arrives
//! meanwhile is released with `NACK`), exit. SIGINT twice: kill running
//! commands and `NACK` their jobs at once.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::queue::{Got, parse_jobs, print_job};
use super::resp::{Nodes, Resp, Value};
use super::usage;

/// Longest blocking GETJOB before the slot looks at the stop flag.
const GETJOB_SLICE_MS: u64 = 1000;
/// Largest stdout kept as a job's result; more fails the job.
const MAX_OUTPUT: u64 = 64 << 20;
/// How long to wait for a finished command's stdout to close (a background
/// child may hold it).
const STDOUT_GRACE: Duration = Duration::from_secs(5);
/// Most slots one worker runs.
const MAX_CONCURRENCY: usize = 1024;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The queue to take jobs from.
    queue: String,
    /// More queues to take jobs from.
    #[arg(short = 'q', long = "queue", value_name = "QUEUE")]
    more: Vec<String>,
    /// How long one command may run, in ms, before it is killed and its job
    /// NACKed (default: no limit).
    #[arg(short = 't', long = "timeout", value_name = "MS")]
    timeout: Option<u64>,
    /// One job at a time, in this one process.
    #[arg(long, conflicts_with = "concurrency")]
    single_process: bool,
    /// Jobs handled at once (each on its own connection).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// The command each job runs, through `sh -c`, body on stdin.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
}

/// What the signal handler tells the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stop {
    Running,
    /// Finish what is held, take nothing new.
    Drain,
    /// Kill and release what is held.
    Abort,
}

pub async fn run(
    seeds: &[String],
    password: Option<&str>,
    a: WorkerArgs,
) -> anyhow::Result<ExitCode> {
    let slots = if a.single_process { 1 } else { a.concurrency };
    if slots == 0 || slots > MAX_CONCURRENCY {
        return Err(usage(format!(
            "--concurrency must be between 1 and {MAX_CONCURRENCY}"
        )));
    }
    if a.timeout == Some(0) {
        return Err(usage("-t must be more than 0 ms"));
    }
    let mut queues = vec![a.queue.clone()];
    queues.extend(a.more.iter().cloned());
    // Connect every slot first, so an unreachable node fails at once.
    let nodes = Arc::new(Nodes::new(seeds));
    let mut conns = Vec::with_capacity(slots);
    for _ in 0..slots {
        conns.push(nodes.connect(password).await?);
    }
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    tokio::spawn(async move {
        for next in [Stop::Drain, Stop::Abort] {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            match next {
                Stop::Drain => eprintln!(
                    "worker: stopping; finishing the jobs held (interrupt again to release them)"
                ),
                _ => eprintln!("worker: releasing the jobs held"),
            }
            let _ = stop_tx.send(next);
        }
    });
    eprintln!(
        "worker: taking jobs from {} ({slots} at a time)",
        queues.join(", ")
    );
    let mut tasks = Vec::with_capacity(slots);
    for conn in conns {
        let slot = Slot {
            conn,
            nodes: nodes.clone(),
            password: password.map(String::from),
            queues: queues.clone(),
            exec: a.exec.clone(),
            timeout: a.timeout.map(Duration::from_millis),
            stop: stop_rx.clone(),
            failures: 0,
        };
        tasks.push(tokio::spawn(slot.run()));
    }
    let mut code = ExitCode::SUCCESS;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("error: {e:#}");
                code = ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("error: a worker slot failed: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// Writing a job to stdout failed: the end of the worker, not of its node.
#[derive(Debug, thiserror::Error)]
#[error("writing to stdout: {0}")]
struct StdoutGone(std::io::Error);

/// How long a worker slot looks for another node once its node is gone.
const FAILOVER_FOR: Duration = Duration::from_secs(30);

struct Slot {
    conn: Resp,
    /// Where to go when the node dies.
    nodes: Arc<Nodes>,
    password: Option<String>,
    /// Commands that failed in a row (reset by one that succeeds).
    failures: u32,
    queues: Vec<String>,
    exec: Option<String>,
    timeout: Option<Duration>,
    stop: watch::Receiver<Stop>,
}

/// How one command ended.
enum Outcome {
    Done(Vec<u8>),
    Failed(String),
}

impl Slot {
    fn stopping(&self) -> bool {
        *self.stop.borrow() != Stop::Running
    }

    async fn run(mut self) -> anyhow::Result<()> {
        let slice = GETJOB_SLICE_MS.to_string();
        loop {
            if self.stopping() {
                return Ok(());
            }
            let mut cmd: Vec<&[u8]> = vec![b"GETJOB", b"TIMEOUT", slice.as_bytes(), b"FROM"];
            cmd.extend(self.queues.iter().map(|q| q.as_bytes()));
            let reply = match self.conn.call(&cmd).await {
                Ok(r) => r,
                Err(e) => {
                    self.fail_over(e).await?;
                    continue;
                }
            };
            if let Value::Error(e) = &reply
                && e.starts_with("PAUSED")
            {
                tokio::time::sleep(Duration::from_millis(GETJOB_SLICE_MS)).await;
                continue;
            }
            for job in parse_jobs(reply)? {
                // A node that dies while a job is in hand: the job is
                // delivered again by its other holders after its RETRY.
                if let Err(e) = self.job(job).await {
                    if e.downcast_ref::<StdoutGone>().is_some() {
                        return Err(e);
                    }
                    self.fail_over(e).await?;
                    break;
                }
            }
        }
    }

    /// After a failed command, waits before taking the next job: 100 ms,
    /// doubling with each failure in a row, up to 5 s. A command that
    /// always fails (a missing binary, say) then costs a few NACKs a
    /// second, not a hot loop of them.
    async fn back_off(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let ms = (100u64 << (self.failures - 1).min(6)).min(5_000);
        if self.failures >= 3 {
            eprintln!(
                "worker: {} failures in a row; waiting {ms} ms before the next job",
                self.failures
            );
        }
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = stop.changed() => {}
        }
    }

    /// The node went away: connect to another node of the cluster, for
    /// up to [`FAILOVER_FOR`]; the error if none answers.
    async fn fail_over(&mut self, why: anyhow::Error) -> anyhow::Result<()> {
        eprintln!("worker: lost the node ({why:#}); moving to another");
        let until = Instant::now() + FAILOVER_FOR;
        loop {
            match self.nodes.connect(self.password.as_deref()).await {
                Ok(c) => {
                    self.conn = c;
                    return Ok(());
                }
                Err(e) if Instant::now() >= until || self.stopping() => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    async fn job(&mut self, job: Got) -> anyhow::Result<()> {
        if self.stopping() {
            return self.nack(&job, "the worker is stopping").await;
        }
        let Some(exec) = self.exec.clone() else {
            print_job(&job).map_err(|e| anyhow::Error::new(StdoutGone(e)))?;
            let r = self.conn.call(&[b"ACKJOB", job.id.as_bytes()]).await?;
            if let Value::Error(e) = r {
                eprintln!("worker: ACKJOB {}: {e}", job.id);
            }
            return Ok(());
        };
        match self.execute(&exec, &job).await? {
            Outcome::Done(output) => {
                self.failures = 0;
                let r = self
                    .conn
                    .call(&[b"FINISH", job.id.as_bytes(), &output])
                    .await?;
                if let Value::Error(e) = r {
                    eprintln!("worker: FINISH {}: {e}", job.id);
                }
                Ok(())
            }
            Outcome::Failed(why) => {
                self.nack(&job, &why).await?;
                self.back_off().await;
                Ok(())
            }
        }
    }

    async fn nack(&mut self, job: &Got, why: &str) -> anyhow::Result<()> {
        let id = &job.id;
        eprintln!("worker: job {id} ({}): {why}; NACK", job.queue);
        let r = self.conn.call(&[b"NACK", id.as_bytes()]).await?;
        if let Value::Error(e) = r {
            eprintln!("worker: NACK {id}: {e}");
        }
        Ok(())
    }

    /// Runs CMD for one job, keeping the job alive with WORKING.
    async fn execute(&mut self, exec: &str, job: &Got) -> anyhow::Result<Outcome> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(exec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own group: the terminal's Ctrl-C reaches the worker only
            // (which decides what to do), and a kill reaches sh's children.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Ok(Outcome::Failed(format!("cannot start sh: {e}"))),
        };
        let pid = child.id();
        if let Some(mut stdin) = child.stdin.take() {
            let body = job.body.clone();
            tokio::spawn(async move {
                // A command that does not read its stdin is not an error.
                let _ = stdin.write_all(&body).await;
            });
        }
        let reader = child.stdout.take().map(|out| {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                out.take(MAX_OUTPUT + 1)
                    .read_to_end(&mut buf)
                    .await
                    .map(|_| buf)
            })
        });
        let started = Instant::now();
        let deadline = self.timeout.map(|t| started + t);
        let mut working_at = started + Duration::from_secs(1);
        let mut stop = self.stop.clone();
        let status = loop {
            tokio::select! {
                s = child.wait() => break s,
                _ = sleep_until(deadline), if deadline.is_some() => {
                    kill_group(pid);
                    let _ = child.wait().await;
                    let ms = self.timeout.map_or(0, |t| t.as_millis());
                    return Ok(Outcome::Failed(format!("killed after {ms} ms (-t)")));
                }
                _ = async { let _ = stop.wait_for(|s| *s == Stop::Abort).await; } => {
                    kill_group(pid);
                    let _ = child.wait().await;
                    return Ok(Outcome::Failed("killed: the worker was interrupted".into()));
                }
                _ = tokio::time::sleep_until(working_at) => {
                    working_at = match self.conn.call(&[b"WORKING", job.id.as_bytes()]).await? {
                        Value::Int(secs) => {
                            Instant::now() + Duration::from_millis((secs.max(1) as u64) * 500)
                        }
                        // TOOLATE and the like: nothing more to postpone.
                        _ => Instant::now() + Duration::from_secs(86_400 * 365),
                    };
                }
            }
        };
        let status = match status {
            Ok(s) => s,
            Err(e) => return Ok(Outcome::Failed(format!("waiting for the command: {e}"))),
        };
        let output = match reader {
            None => Vec::new(),
            Some(r) => match tokio::time::timeout(STDOUT_GRACE, r).await {
                Ok(Ok(Ok(buf))) => buf,
                Ok(Ok(Err(e))) => return Ok(Outcome::Failed(format!("reading stdout: {e}"))),
                Ok(Err(e)) => return Ok(Outcome::Failed(format!("reading stdout: {e}"))),
                Err(_) => {
                    kill_group(pid);
                    return Ok(Outcome::Failed(
                        "the command exited but its stdout stayed open".into(),
                    ));
                }
            },
        };
        if !status.success() {
            return Ok(Outcome::Failed(format!("the command failed ({status})")));
        }
        if output.len() as u64 > MAX_OUTPUT {
            return Ok(Outcome::Failed(format!(
                "the command wrote more than {MAX_OUTPUT} bytes"
            )));
        }
        Ok(Outcome::Done(output))
    }
}

/// Kills the process group the command leads.
fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) on the process group of a child we spawned with
    // `process_group(0)` (so its group id is its pid) and have not reaped.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
