//! `wasque schedule add|ls|show|rm`: schedules (cron) over QUIC. A
//! schedule adds one job from its template at each tick, once across the
//! cluster (README, Schedules).

use std::process::ExitCode;

use clap::Subcommand;

use super::{dlq::RetryArgs, module, usage};
use crate::ClusterClient;
use crate::proto::{JobTemplate, LimitsRequest, Missed, ScheduleInfo, ScheduleSpec};

#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Create a schedule: from its next tick on, the cluster adds one job
    /// per tick (a name in use is refused: `rm` it first).
    Add(Box<AddArgs>),
    /// List schedules: name, cron, missed policy, queue, next and last tick.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show a schedule with its recent ticks and their jobs.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule on every node.
    Rm { name: String },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// 1 to 64 of A-Z a-z 0-9 _ - . :
    name: String,
    /// When: five fields (minute hour day-of-month month day-of-week, UTC),
    /// six with a leading seconds field, or @hourly, @daily, @weekly, ...
    #[arg(long, value_name = "EXPR")]
    cron: String,
    /// The queue the jobs go to (default: the schedule's name).
    #[arg(long)]
    queue: Option<String>,
    /// Ticks missed while the cluster was down: skip them, or run-once
    /// (one job for the latest).
    #[arg(long, default_value = "skip", value_parser = missed)]
    missed: Missed,
    /// Module to run: a .wasm file (uploaded first) or a sha256; without
    /// one, plain jobs for external workers.
    #[arg(long, value_name = "FILE_OR_SHA256")]
    module: Option<String>,
    /// Each job's body.
    #[arg(long, value_name = "TEXT", conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Each job's body, read from a file now.
    #[arg(long, value_name = "FILE")]
    payload_file: Option<std::path::PathBuf>,
    /// Fuel budget (instructions).
    #[arg(long)]
    fuel: Option<u64>,
    /// Memory cap in bytes.
    #[arg(long, value_name = "BYTES")]
    memory: Option<u64>,
    /// Wall-clock deadline in ms.
    #[arg(long, value_name = "MS")]
    deadline: Option<u64>,
    /// Priority 0-9, higher first.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=9))]
    priority: u8,
    /// Collocation group key.
    #[arg(long)]
    group: Option<String>,
    /// An argument for the module (repeatable).
    #[arg(long = "arg", value_name = "ARG")]
    args: Vec<String>,
    /// Copies of each job (default: 3, or fewer reachable nodes).
    #[arg(long, value_name = "N")]
    replicate: Option<u32>,
    /// Seconds each job lives.
    #[arg(long, value_name = "SECS")]
    ttl: Option<u64>,
    /// Seconds before an unacknowledged delivery is queued again.
    #[arg(long, value_name = "SECS")]
    retry: Option<u64>,
    #[command(flatten)]
    retry_policy: RetryArgs,
}

fn missed(s: &str) -> Result<Missed, String> {
    Missed::parse(s).ok_or_else(|| format!("{s:?}: use skip or run-once"))
}

pub async fn run(client: &ClusterClient, c: ScheduleCmd) -> anyhow::Result<ExitCode> {
    match c {
        ScheduleCmd::Add(a) => {
            let a = *a;
            crate::proto::check_schedule_name(&a.name).map_err(usage)?;
            let body = match (&a.payload, &a.payload_file) {
                (Some(p), _) => p.clone().into_bytes(),
                (None, Some(f)) => std::fs::read(f)
                    .map_err(|e| usage(format!("cannot read {}: {e}", f.display())))?,
                (None, None) => Vec::new(),
            };
            let mut job = JobTemplate::new(a.queue.clone().unwrap_or_else(|| a.name.clone()), body);
            if let Some(spec) = &a.module {
                job.module = Some(module::resolve(client, spec).await?);
            }
            job.limits = LimitsRequest {
                fuel: a.fuel,
                memory_bytes: a.memory,
                deadline_ms: a.deadline,
            };
            job.priority = a.priority;
            job.group = a.group;
            job.args = a.args;
            job.replicate = a.replicate;
            job.ttl_secs = a.ttl;
            job.retry_secs = a.retry;
            job.retry = a.retry_policy.policy()?;
            let mut spec = ScheduleSpec::new(a.name, a.cron, job);
            spec.missed = a.missed;
            let name = spec.name.clone();
            client.schedule_add(spec).await?;
            let info = client.schedule(&name).await?;
            println!("{}", line(&info));
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCmd::Ls { json } => {
            let list = client.schedules().await?;
            if json {
                let docs: Vec<_> = list.iter().map(ScheduleInfo::to_json).collect();
                println!("{}", serde_json::to_string_pretty(&docs)?);
            } else {
                for s in &list {
                    println!("{}", line(s));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCmd::Show { name, json } => {
            let s = client.schedule(&name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s.to_json())?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{}", line(&s));
            if let Some(m) = s.spec.job.module {
                println!("module: {m}");
            }
            if let Some((tick, e)) = &s.last_error {
                println!("last-error: tick {} {e}", time(*tick));
            }
            for (tick, id) in &s.recent {
                println!("{} {id}", time(*tick));
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCmd::Rm { name } => {
            client.schedule_remove(&name).await?;
            println!("removed {name}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line per schedule: name, cron, policy, queue, next and last tick.
fn line(s: &ScheduleInfo) -> String {
    format!(
        "{} cron={:?} missed={} queue={} next={} last={}{}",
        s.spec.name,
        s.spec.cron,
        s.spec.missed.as_str(),
        s.spec.job.queue,
        s.next_tick_ms.map_or("never".into(), time),
        s.last_tick_ms.map_or("-".into(), time),
        s.last_job.map_or(String::new(), |id| format!(" job={id}")),
    )
}

/// A tick as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn time(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_print_as_utc_times() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(951_868_800_000 - 1000), "2000-02-29T23:59:59Z");
        assert_eq!(time(1_796_483_400_000), "2026-12-05T15:10:00Z");
    }
}
