//! `wasque map MAP.wasm --input FILE --chunk 1MiB --reduce REDUCE.wasm`:
//! a distributed job. The input is split into parts (at line, else word,
//! boundaries) and sent to one node, which keeps the whole job as a parent
//! job: each part runs MAP as its own job wherever the cluster places it, a
//! failed part is retried alone, and REDUCE runs over the parts' results in
//! order (see `wasque_sdk::mapreduce` for its input format). The parent's
//! id is printed first on stderr (`wasque show ID` lists its parts while it
//! runs); the reduce's output goes to stdout, progress and a per-node
//! summary to stderr (`--json` prints every part's job, node and attempts).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{module, usage};
use crate::ClusterClient;
use crate::mapreduce::{MapReduce, split};
use crate::proto::LimitsRequest;

#[derive(Debug, Args)]
pub struct MapArgs {
    /// The map module: a .wasm file or a sha256 already on the node.
    map: String,
    /// The input to split.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Part size: bytes, or with a unit (`64KiB`, `1MiB`, `1mb`).
    #[arg(long, default_value = "1MiB", value_name = "SIZE")]
    chunk: String,
    /// The reduce module: a .wasm file or a sha256.
    #[arg(long, value_name = "WASM")]
    reduce: String,
    /// Queue the parts go to (its QPOLICY decides where they run).
    #[arg(long, default_value = "map")]
    queue: String,
    /// Parts being sent to the node at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Runs of one part before the whole job fails.
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// How long the whole job may take, in ms.
    #[arg(long, default_value_t = 600_000, value_name = "MS")]
    timeout: u64,
    /// Print the parts (job, node, attempts) and the result as JSON.
    #[arg(long)]
    json: bool,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// `1MiB`, `64k`, `4096`, ... in bytes.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split_at = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split_at);
    let n: usize = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult).filter(|n| *n > 0)
}

pub async fn run(client: &ClusterClient, a: MapArgs) -> anyhow::Result<ExitCode> {
    let chunk = parse_size(&a.chunk).ok_or_else(|| {
        usage(format!(
            "--chunk {:?}: a size like 65536, 64KiB or 1MiB",
            a.chunk
        ))
    })?;
    let input = std::fs::read(&a.input)
        .map_err(|e| usage(format!("cannot read {}: {e}", a.input.display())))?;
    if input.is_empty() {
        return Err(usage(format!(
            "{} is empty: nothing to map",
            a.input.display()
        )));
    }
    let map = module::resolve(client, &a.map).await?;
    let reduce = module::resolve(client, &a.reduce).await?;
    let parts: Vec<Vec<u8>> = split(&input, chunk)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let total = parts.len();
    let bar = if a.no_progress || a.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(total as u64);
        b.set_style(
            ProgressStyle::with_template("map {bar:30} {pos}/{len} parts ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    let spec = MapReduce {
        map,
        reduce,
        queue: a.queue,
        concurrency: a.concurrency,
        attempts: a.attempts,
        timeout_ms: a.timeout,
        limits: LimitsRequest::default(),
    };
    let started = std::time::Instant::now();
    let parent = client.add_map_job(&spec, total).await?;
    // The parent's id first, so `wasque show ID` can follow the parts.
    eprintln!("job {parent}: {total} parts");
    let outcome = async {
        client.add_parts(&spec, parent, parts).await?;
        client
            .wait_map_reduce(&spec, parent, |n| bar.set_position(n as u64))
            .await
    }
    .await;
    bar.finish_and_clear();
    let outcome = outcome?;
    let output = outcome
        .reduce
        .result
        .as_ref()
        .map(|r| r.output.clone())
        .unwrap_or_default();
    if a.json {
        let parts: Vec<serde_json::Value> = outcome
            .parts
            .iter()
            .map(|p| {
                serde_json::json!({
                    "part": p.index,
                    "bytes": p.bytes,
                    "job": p.job.map(|j| j.to_string()),
                    "node": p.node,
                    "attempts": p.attempts,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "parts": parts,
            "reduce": outcome.reduce.to_json(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        use std::io::Write;
        std::io::stdout().write_all(&output)?;
        let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &outcome.parts {
            *per_node.entry(p.node.as_str()).or_default() += 1;
        }
        let retried = outcome.parts.iter().filter(|p| p.attempts > 1).count();
        eprintln!(
            "{total} parts of up to {chunk} bytes in {:.2} s ({retried} retried); parts per node: {}",
            started.elapsed().as_secs_f64(),
            per_node
                .iter()
                .map(|(n, c)| format!("{}={c}", &n[..n.len().min(8)]))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("1MiB"), Some(1 << 20));
        assert_eq!(super::parse_size("64k"), Some(64 << 10));
        assert_eq!(super::parse_size("4096"), Some(4096));
        assert_eq!(super::parse_size("0"), None);
        assert_eq!(super::parse_size("1 parsec"), None);
    }
}
