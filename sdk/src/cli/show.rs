//! `wasque show`: a readable summary, or the note's JSON with `--json`; and
//! the shared printing of a finished job's result.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use super::parse_id;
use crate::ClusterClient;
use crate::proto::{Body, JobStatus, PartStatus};

#[derive(Debug, Args)]
pub struct ShowArgs {
    id: String,
    /// Print the JSON document (see README).
    #[arg(long)]
    json: bool,
    /// The key of a job added with `asynckey K` (without it such a job
    /// answers as unknown).
    #[arg(long, value_name = "K")]
    asynckey: Option<String>,
}

pub async fn run(client: &ClusterClient, a: ShowArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&a.id)?;
    let status = match &a.asynckey {
        Some(k) => client.show_by_key(k, id).await?,
        None => client.show(id).await?,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&status.to_json())?);
    } else {
        print!("{}", summary(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// A few readable lines about a job.
pub fn summary(s: &JobStatus) -> String {
    let mut out = String::new();
    let (body, enc) = Body(&s.body).encode();
    let body: String = body.chars().take(80).collect();
    out += &format!("id:        {}\n", s.id);
    out += &format!("queue:     {}\n", s.queue);
    out += &format!("state:     {}\n", s.state);
    out += &format!(
        "body:      {body}{}\n",
        if enc.is_some() { " (base64)" } else { "" }
    );
    if let Some(m) = &s.module {
        out += &format!("module:    {m}\n");
    }
    if let Some(l) = &s.limits {
        out += &format!(
            "limits:    fuel {} · memory {} bytes · deadline {} ms\n",
            l.fuel, l.memory_bytes, l.deadline_ms
        );
    }
    out += &format!(
        "attempts:  {} (nacks {}, additional deliveries {})\n",
        s.attempts, s.nacks, s.additional_deliveries
    );
    if let Some(r) = &s.retry {
        out += &format!(
            "retry:     attempt {} of {} · backoff {} {}..{} ms · on {}\n",
            r.attempts,
            r.policy.max_attempts,
            r.policy.backoff.as_str(),
            r.policy.base_ms,
            r.policy.max_ms,
            crate::proto::retry::retry_on_text(&r.policy.retry_on)
        );
        if !r.last_error.is_empty() {
            out += &format!("last-error: {}\n", r.last_error);
        }
    }
    if let Some(a) = &s.after {
        let left = a.pending().count();
        out += &format!(
            "after{}: {} job(s), {left} not ended\n",
            if a.any { "-any" } else { "    " },
            a.deps.len()
        );
        for (id, st) in &a.deps {
            out += &format!("           {id} {st}\n");
        }
    }
    if let Some(k) = &s.idempotency_key {
        out += &format!("idem key:  {k}\n");
    }
    if let Some(p) = &s.progress {
        out += &format!("progress:  {}\n", p.text());
    }
    out += &format!("ttl:       {} s left\n", s.ttl);
    if !s.parts.is_empty() {
        out += &parts_summary(&s.parts);
    }
    if let Some(r) = &s.result {
        match &r.error_class {
            None => {
                out += &format!(
                    "result:    ok, exit 0, {} bytes of output\n",
                    r.output.len()
                )
            }
            Some(c) => out += &format!("result:    {c}: {}\n", r.message),
        }
        out += &format!(
            "           fuel {} · {:.3} ms · on node {}\n",
            r.fuel_used,
            r.duration_us as f64 / 1000.0,
            r.node
        );
    }
    out
}

/// A distributed job's parts: counts by state, then a line per part that
/// is not done (at most 20).
fn parts_summary(parts: &[PartStatus]) -> String {
    let count = |st: &str| parts.iter().filter(|p| p.state == st).count();
    let mut out = format!(
        "parts:     {} done · {} running · {} waiting · {} failed (of {})\n",
        count("done"),
        count("running"),
        count("waiting"),
        count("failed"),
        parts.len()
    );
    for p in parts.iter().filter(|p| p.state != "done").take(20) {
        out += &format!(
            "           part {}: {} · {} bytes · run {}{}{}\n",
            p.index,
            p.state,
            p.bytes,
            p.attempts,
            p.job.map(|j| format!(" · job {j}")).unwrap_or_default(),
            if p.error.is_empty() {
                String::new()
            } else {
                format!(" · last error: {}", p.error)
            }
        );
    }
    out
}

/// Prints a finished job's output on stdout, or `error: CLASS: message` on
/// stderr; the exit code says which.
pub fn print_result(s: &JobStatus) -> ExitCode {
    match &s.result {
        Some(r) if r.error_class.is_none() => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&r.output);
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Some(r) => {
            let class = r.error_class.map(|c| c.to_string()).unwrap_or_default();
            eprintln!("error: {class}: {}", r.message);
            if !r.stderr.is_empty() {
                eprintln!(
                    "--- job stderr ---\n{}",
                    String::from_utf8_lossy(&r.stderr).trim_end()
                );
            }
            ExitCode::FAILURE
        }
        None => {
            eprintln!("error: job {} is {} with no result", s.id, s.state);
            ExitCode::FAILURE
        }
    }
}
