//! `wasque dlq ls|requeue|purge QUEUE` (a queue's dead letters, over
//! QUIC) and the retry-policy flags of `wasque addjob`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{parse_id, usage};
use crate::ClusterClient;
use crate::proto::retry::parse_retry_on;
use crate::proto::{Backoff, RetryPolicy};

/// A job's retry policy on the command line; any flag gives the job a
/// policy, the others at their defaults (README, Retries).
#[derive(Debug, Default, Args)]
pub struct RetryArgs {
    /// Runs (Wasm jobs) or deliveries (plain jobs) allowed before the job
    /// goes to its queue's dead-letter queue.
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// fixed or exp (doubling, with jitter).
    #[arg(long, value_name = "KIND")]
    backoff: Option<String>,
    /// The first wait between attempts, ms.
    #[arg(long, value_name = "MS")]
    backoff_ms: Option<u64>,
    /// The longest wait between attempts, ms.
    #[arg(long, value_name = "MS")]
    backoff_max_ms: Option<u64>,
    /// The failures retried, comma-separated: exit:N, node-loss, trap,
    /// out-of-fuel, deadline, memory-limit, ... (none: retry nothing).
    #[arg(long, value_name = "LIST")]
    retry_on: Option<String>,
}

impl RetryArgs {
    /// The policy the flags ask for; `None` when no flag was given.
    pub fn policy(&self) -> anyhow::Result<Option<RetryPolicy>> {
        let any = self.max_attempts.is_some()
            || self.backoff.is_some()
            || self.backoff_ms.is_some()
            || self.backoff_max_ms.is_some()
            || self.retry_on.is_some();
        if !any {
            return Ok(None);
        }
        let mut p = RetryPolicy::new(self.max_attempts.unwrap_or(1));
        if let Some(b) = &self.backoff {
            p.backoff =
                Backoff::parse(b).ok_or_else(|| usage(format!("--backoff {b:?}: fixed or exp")))?;
        }
        if let Some(ms) = self.backoff_ms {
            p.base_ms = ms;
            p.max_ms = p.max_ms.max(ms);
        }
        if let Some(ms) = self.backoff_max_ms {
            p.max_ms = ms;
        }
        if let Some(l) = &self.retry_on {
            p.retry_on = parse_retry_on(l).map_err(usage)?;
        }
        p.check().map_err(usage)?;
        Ok(Some(p))
    }
}

#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// List a queue's dead letters held by the node: id, attempts, last
    /// error (`--json`: one status document a line).
    Ls {
        queue: String,
        #[arg(long, default_value_t = 100)]
        count: u32,
        #[arg(long)]
        json: bool,
    },
    /// Queue dead letters again with fresh attempts: the IDs given, or
    /// every one with --all.
    Requeue {
        queue: String,
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Forget every dead letter of the queue, on every node holding one.
    Purge { queue: String },
}

pub async fn run(client: &ClusterClient, cmd: DlqCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DlqCmd::Ls { queue, count, json } => {
            for s in client.dlq_list(&queue, count.max(1)).await? {
                if json {
                    println!("{}", serde_json::to_string(&s.to_json())?);
                    continue;
                }
                let (attempts, error) = s
                    .retry
                    .as_ref()
                    .map(|r| (r.attempts, r.last_error.as_str()))
                    .unwrap_or((s.attempts, ""));
                println!("{} attempts={attempts} {error}", s.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCmd::Requeue { queue, ids, all } => {
            if ids.is_empty() && !all {
                return Err(usage("name the dead letters to requeue, or give --all"));
            }
            let ids = ids
                .iter()
                .map(|s| parse_id(s))
                .collect::<Result<Vec<_>, _>>()?;
            println!("{}", client.dlq_requeue(&queue, ids).await?);
            Ok(ExitCode::SUCCESS)
        }
        DlqCmd::Purge { queue } => {
            println!("{}", client.dlq_purge(&queue).await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
