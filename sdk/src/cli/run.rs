//! `wasque run MODULE --payloads FILE`: fan a module out over many
//! payloads with bounded parallelism, a progress bar on a terminal, results
//! in payload order, acks once each result is written, and a summary.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use super::{module, usage};
use crate::ClusterClient;
use crate::proto::{AddJob, JobId, JobStatus, LimitsRequest};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The module: a .wasm file or a sha256 already on the node.
    module: String,
    /// One payload per line (without its newline).
    #[arg(long, value_name = "FILE", conflicts_with = "payload_dir")]
    payloads: Option<PathBuf>,
    /// One payload per file, in file-name order.
    #[arg(long, value_name = "DIR")]
    payload_dir: Option<PathBuf>,
    /// Write each result to DIR/NNNNNN.out (a failure to NNNNNN.err)
    /// instead of stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Queue to submit to.
    #[arg(long, default_value = "default")]
    queue: String,
    /// Jobs in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to wait for each result, in ms.
    #[arg(long, default_value_t = 300_000, value_name = "MS")]
    timeout: u64,
    #[arg(long)]
    fuel: Option<u64>,
    #[arg(long, value_name = "BYTES")]
    memory: Option<u64>,
    #[arg(long, value_name = "MS")]
    deadline: Option<u64>,
    /// An argument for the module (repeatable).
    #[arg(long = "arg", value_name = "ARG")]
    args: Vec<String>,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// How one payload ended.
enum Outcome {
    Done(Box<JobStatus>),
    /// The node refused the job or the wait timed out.
    Error(String),
}

fn read_payloads(a: &RunArgs) -> anyhow::Result<Vec<Vec<u8>>> {
    if let Some(file) = &a.payloads {
        let text = std::fs::read(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        let mut lines: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        if text.ends_with(b"\n") {
            lines.pop();
        }
        for l in &mut lines {
            if l.ends_with(b"\r") {
                l.pop();
            }
        }
        return Ok(lines);
    }
    if let Some(dir) = &a.payload_dir {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        return files
            .iter()
            .map(|p| std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display())))
            .collect();
    }
    Err(usage(
        "give the payloads with --payloads FILE or --payload-dir DIR",
    ))
}

pub async fn run(client: &ClusterClient, a: RunArgs) -> anyhow::Result<ExitCode> {
    let payloads = read_payloads(&a)?;
    if a.concurrency == 0 {
        return Err(usage("--concurrency must be at least 1"));
    }
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let hash = module::resolve(client, &a.module).await?;
    let total = payloads.len();
    let bar = if a.no_progress {
        ProgressBar::hidden()
    } else {
        // Draws only when stderr is a terminal.
        ProgressBar::new(total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} jobs · {per_sec} · eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let started = Instant::now();
    let mut latency = Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut in_flight = JoinSet::new();
    let mut next = 0usize;
    let mut finished: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut next_to_write = 0usize;
    let mut to_ack: Vec<JobId> = Vec::new();
    let mut done = 0usize;
    let mut failed: HashMap<String, usize> = HashMap::new();
    let mut stdout = std::io::stdout().lock();
    let mut payloads = payloads.into_iter();

    while next_to_write < total {
        while in_flight.len() < a.concurrency
            && let Some(body) = payloads.next()
        {
            let mut job = AddJob::new(a.queue.clone(), body);
            job.module = Some(hash);
            job.args = a.args.clone();
            job.limits = LimitsRequest {
                fuel: a.fuel,
                memory_bytes: a.memory,
                deadline_ms: a.deadline,
            };
            job.wait_ms = Some(a.timeout);
            let client = client.clone();
            let index = next;
            next += 1;
            in_flight.spawn(async move {
                let t = Instant::now();
                let outcome = match client
                    .call(crate::proto::Request::AddJob(Box::new(job)))
                    .await
                {
                    Ok(crate::proto::Response::Job(s)) if s.result.is_some() => Outcome::Done(s),
                    Ok(crate::proto::Response::Job(s)) => Outcome::Error(format!(
                        "timeout: job {} did not finish within the wait ({})",
                        s.id, s.state
                    )),
                    Ok(other) => Outcome::Error(format!("unexpected reply {other:?}")),
                    Err(e) => Outcome::Error(e.to_string()),
                };
                (index, outcome, t.elapsed())
            });
        }
        let Some(joined) = in_flight.join_next().await else {
            break;
        };
        let (index, outcome, took) = joined.map_err(|e| anyhow::anyhow!("job task failed: {e}"))?;
        let _ = latency.record(took.as_micros() as u64);
        bar.inc(1);
        finished.insert(index, outcome);
        // Write, in payload order, everything that is ready.
        while let Some(outcome) = finished.remove(&next_to_write) {
            next_to_write += 1;
            match &outcome {
                Outcome::Done(s) => {
                    let r = s.result.as_ref().expect("Done carries a result");
                    match r.error_class {
                        None => done += 1,
                        Some(c) => *failed.entry(class_name(&c.to_string())).or_default() += 1,
                    }
                }
                Outcome::Error(msg) => {
                    let class = msg.split(':').next().unwrap_or("error").to_string();
                    *failed.entry(class).or_default() += 1;
                }
            }
            write_outcome(&mut stdout, a.out.as_deref(), next_to_write, &outcome, &bar)?;
            // A dead letter stays for the operator (`wasque dlq`).
            if let Outcome::Done(s) = outcome
                && s.state != crate::proto::JobState::Dead
            {
                to_ack.push(s.id);
            }
        }
        // Acknowledge written results in batches.
        if to_ack.len() >= 256 {
            client.ack(std::mem::take(&mut to_ack)).await?;
        }
    }
    if !to_ack.is_empty() {
        client.ack(to_ack).await?;
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let nfailed: usize = failed.values().sum();
    eprintln!(
        "{total} jobs: {done} done, {nfailed} failed in {:.2} s ({:.0} jobs/s); latency p50 {}, p99 {}",
        secs,
        total as f64 / secs,
        fmt_us(latency.value_at_quantile(0.5)),
        fmt_us(latency.value_at_quantile(0.99)),
    );
    let mut classes: Vec<_> = failed.into_iter().collect();
    classes.sort();
    for (class, n) in classes {
        eprintln!("  {class}: {n}");
    }
    Ok(if nfailed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn class_name(s: &str) -> String {
    s.to_string()
}

fn fmt_us(us: u64) -> String {
    if us >= 1000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

fn write_outcome(
    stdout: &mut impl Write,
    out: Option<&Path>,
    line: usize,
    outcome: &Outcome,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let (ok, bytes): (bool, Vec<u8>) = match outcome {
        Outcome::Done(s) => {
            let r = s.result.as_ref().expect("Done carries a result");
            match r.error_class {
                None => (true, r.output.clone()),
                Some(c) => (false, format!("{c}: {}\n", r.message).into_bytes()),
            }
        }
        Outcome::Error(msg) => (false, format!("{msg}\n").into_bytes()),
    };
    match out {
        Some(dir) => {
            let name = format!("{line:06}.{}", if ok { "out" } else { "err" });
            let path = dir.join(name);
            std::fs::write(&path, &bytes)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        None if ok => {
            bar.suspend(|| {
                stdout.write_all(&bytes)?;
                if !bytes.ends_with(b"\n") {
                    stdout.write_all(b"\n")?;
                }
                stdout.flush()
            })?;
        }
        None => {
            bar.suspend(|| eprint!("payload {line}: error: {}", String::from_utf8_lossy(&bytes)));
        }
    }
    Ok(())
}
