//! `wasque queue NAME` and `wasque getjob from QUEUE...`: the original
//! note's queue commands, spoken over RESP to the node's TCP port.
//!
//! Disque creates a queue when a job first enters it, so `queue NAME`
//! checks the name with the node (`QSTAT`) and prints `OK`, as the note
//! shows; `--stat` adds the queue's figures when it exists.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use super::resp::{Resp, Value};
use super::usage;

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The queue's name.
    name: String,
    /// Also print the queue's figures (QSTAT), one `field value` a line.
    #[arg(long)]
    stat: bool,
    /// Set the queue's scheduling policy on every node (QPOLICY):
    /// round-robin, random, least-loaded, priority or resource.
    #[arg(long, value_name = "POLICY")]
    policy: Option<String>,
    /// With --policy: push (the accepting node places each job) or pull
    /// (jobs wait where they were added; idle nodes pull them).
    #[arg(long, value_name = "MODE", requires = "policy")]
    mode: Option<String>,
}

pub async fn queue(node: &str, password: Option<&str>, a: QueueArgs) -> anyhow::Result<ExitCode> {
    if a.name.is_empty() {
        return Err(usage("a queue name cannot be empty"));
    }
    let mut c = Resp::connect(node, password).await?;
    let stat = c.call(&[b"QSTAT", a.name.as_bytes()]).await?;
    if let Value::Error(e) = &stat {
        anyhow::bail!("the node refused QSTAT: {e}");
    }
    if let Some(p) = &a.policy {
        let mode = a.mode.as_deref().unwrap_or("pull");
        let r = c
            .call(&[
                b"QPOLICY",
                a.name.as_bytes(),
                p.as_bytes(),
                b"MODE",
                mode.as_bytes(),
            ])
            .await?;
        if let Value::Error(e) = &r {
            return Err(usage(format!("the node refused the policy: {e}")));
        }
    }
    println!("OK");
    if a.policy.is_some() || a.stat {
        let r = c.call(&[b"QPOLICY", a.name.as_bytes()]).await?;
        if let Value::Array(words) = r {
            let words: Vec<String> = words.iter().filter_map(Value::text).collect();
            println!("policy {}", words.join(" "));
        }
    }
    if a.stat
        && let Value::Array(fields) = stat
    {
        for pair in fields.chunks(2) {
            let [k, v] = pair else { continue };
            println!("{} {}", k.text().unwrap_or_default(), show_value(v));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Int(n) => n.to_string(),
        Value::Nil => "-".to_string(),
        Value::Array(items) => items.iter().map(show_value).collect::<Vec<_>>().join(","),
        other => other.text().unwrap_or_default(),
    }
}

#[derive(Debug, Args)]
pub struct GetJobArgs {
    /// `from QUEUE [QUEUE...]`, as in Disque's GETJOB.
    #[arg(required = true, num_args = 2.., value_name = "from QUEUE")]
    words: Vec<String>,
    /// Do not wait: exit 1 at once when no job is ready.
    #[arg(long)]
    nohang: bool,
    /// Wait at most this many ms (default: until a job comes).
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
}

pub async fn getjob(node: &str, password: Option<&str>, a: GetJobArgs) -> anyhow::Result<ExitCode> {
    let Some((from, queues)) = a.words.split_first() else {
        return Err(usage("usage: wasque getjob from QUEUE [QUEUE...]"));
    };
    if !from.eq_ignore_ascii_case("from") || queues.is_empty() {
        return Err(usage("usage: wasque getjob from QUEUE [QUEUE...]"));
    }
    let mut c = Resp::connect(node, password).await?;
    let timeout = a.timeout.unwrap_or(0).to_string();
    let mut cmd: Vec<&[u8]> = vec![b"GETJOB"];
    if a.nohang {
        cmd.push(b"NOHANG");
    }
    cmd.extend([b"TIMEOUT".as_slice(), timeout.as_bytes(), b"FROM"]);
    cmd.extend(queues.iter().map(|q| q.as_bytes()));
    let jobs = parse_jobs(c.call(&cmd).await?)?;
    let Some(job) = jobs.into_iter().next() else {
        eprintln!("no job in {}", queues.join(", "));
        return Ok(ExitCode::FAILURE);
    };
    print_job(&job)?;
    Ok(ExitCode::SUCCESS)
}

/// One job as GETJOB hands it out.
#[derive(Debug)]
pub struct Got {
    pub queue: String,
    pub id: String,
    pub body: Vec<u8>,
}

/// GETJOB's reply: nil (none) or `[[queue, id, body, ...], ...]`.
pub fn parse_jobs(v: Value) -> anyhow::Result<Vec<Got>> {
    match v {
        Value::Nil => Ok(vec![]),
        Value::Error(e) => anyhow::bail!("the node refused GETJOB: {e}"),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(f) if f.len() >= 3 => {
                    let mut f = f.into_iter();
                    let queue = f.next().and_then(|v| v.text()).unwrap_or_default();
                    let id = f.next().and_then(|v| v.text()).unwrap_or_default();
                    let body = match f.next() {
                        Some(Value::Bulk(b)) => b,
                        _ => Vec::new(),
                    };
                    Ok(Got { queue, id, body })
                }
                other => anyhow::bail!("unexpected GETJOB entry from the node: {other:?}"),
            })
            .collect(),
        other => anyhow::bail!("unexpected GETJOB reply from the node: {other:?}"),
    }
}

/// `ID BODY` on one line, the body byte for byte.
pub fn print_job(job: &Got) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(job.id.as_bytes())?;
    out.write_all(b" ")?;
    out.write_all(&job.body)?;
    out.write_all(b"\n")?;
    out.flush()
}
