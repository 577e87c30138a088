//! `wasque logs ID`: a job's stdout. Without `-f`, the output in its
//! result (the job must have finished); with `-f`, its lines as they come
//! while it runs, from the node that runs it, until it finishes. Lines
//! the node's bounds dropped are said so on stderr.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use super::parse_id;
use crate::ClusterClient;

#[derive(Debug, Args)]
pub struct LogsArgs {
    id: String,
    /// Follow: print the lines the job writes while it runs, until it ends.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The key of a job added with `asynckey K`.
    #[arg(long, value_name = "K")]
    asynckey: Option<String>,
}

pub async fn run(client: &ClusterClient, a: LogsArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&a.id)?;
    let key = a.asynckey.as_deref();
    if !a.follow {
        let status = match key {
            Some(k) => client.show_by_key(k, id).await?,
            None => client.show(id).await?,
        };
        let Some(r) = &status.result else {
            anyhow::bail!(
                "job {id} is {} and has no output yet; `wasque logs -f {id}` follows its lines as they come",
                status.state
            );
        };
        let mut out = std::io::stdout().lock();
        out.write_all(&r.output)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut sub = client.logs(id, key).await?;
    let mut dropped = 0u64;
    while let Some(ev) = sub.next().await? {
        if let Some(n) = ev["dropped"].as_u64() {
            dropped += n;
            eprintln!("wasque: {n} line(s) dropped by the node's bounds");
        }
        if let Some(line) = ev["line"].as_str() {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
    }
    if dropped > 0 {
        eprintln!(
            "wasque: {dropped} line(s) in all were not streamed; the whole output is in the job's result (`wasque logs {id}`)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
