//! `wasque cluster init|meet|leaving`: cluster set-up, spoken over RESP to
//! the node's TCP port (the same `CLUSTER` commands redis-cli can send).
//!
//! `init` makes the node the holder of a new cluster CA (ca trust mode)
//! and prints the join token other nodes start with:
//! `wasque-node --join HOST:PORT --join-token TOKEN`.

use std::process::ExitCode;

use clap::Subcommand;

use super::resp::{Resp, Value};

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Make this node's cluster CA and print the join token.
    Init,
    /// Print `CLUSTER INFO` and `CLUSTER NODES` (one line per node: id,
    /// address, flags, advert age, link, executor load, queued, jobs).
    Info,
    /// Introduce the node to another one (`HOST:PORT`): they form or
    /// merge clusters.
    Meet { addr: String },
    /// Mark the node as leaving (`yes`) or not (`no`): it takes no new
    /// jobs and its queued jobs move to nodes that ask for work.
    Leaving { on: String },
}

pub async fn run(node: &str, password: Option<&str>, c: ClusterCmd) -> anyhow::Result<ExitCode> {
    let mut r = Resp::connect(node, password).await?;
    let reply = match &c {
        ClusterCmd::Init => r.call(&[b"CLUSTER", b"INIT"]).await?,
        ClusterCmd::Info => {
            let info = r.call(&[b"CLUSTER", b"INFO"]).await?;
            if let Value::Error(e) = &info {
                anyhow::bail!("the node refused: {e}");
            }
            print!("{}", info.text().unwrap_or_default().replace('\r', ""));
            r.call(&[b"CLUSTER", b"NODES"]).await?
        }
        ClusterCmd::Meet { addr } => {
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| super::usage("meet takes HOST:PORT"))?;
            let host = tokio::net::lookup_host(addr.as_str())
                .await
                .ok()
                .and_then(|mut a| a.next())
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|| host.to_string());
            r.call(&[b"CLUSTER", b"MEET", host.as_bytes(), port.as_bytes()])
                .await?
        }
        ClusterCmd::Leaving { on } => r.call(&[b"CLUSTER", b"LEAVING", on.as_bytes()]).await?,
    };
    match reply {
        Value::Error(e) => anyhow::bail!("the node refused: {e}"),
        v => {
            let text = v.text().unwrap_or_default();
            if let ClusterCmd::Init = c {
                println!("{text}");
                eprintln!(
                    "cluster CA made on {node}; start other nodes with:\n  wasque-node --join {node} --join-token {text}"
                );
            } else {
                println!("{}", text.trim_end());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `wasque nodes`: every node of the cluster with its state and load, from
/// the node's `CLUSTER NODES` (`--json` for a document).
pub async fn nodes(node: &str, password: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let mut r = Resp::connect(node, password).await?;
    let v = r.call(&[b"CLUSTER", b"NODES"]).await?;
    if let Value::Error(e) = &v {
        anyhow::bail!("the node refused CLUSTER NODES: {e}");
    }
    let text = v.text().unwrap_or_default();
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 {
            continue;
        }
        let flags = f[2];
        let state = if flags.contains("fail") {
            "down"
        } else if flags.contains("leaving") {
            "leaving"
        } else {
            "up"
        };
        let field = |name: &str| {
            f.iter()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or("?")
                .to_string()
        };
        rows.push((
            f[0].to_string(),
            f[1].to_string(),
            state,
            flags.contains("myself"),
            field("exec="),
            field("queued="),
            field("jobs="),
        ));
    }
    if json {
        let doc: Vec<serde_json::Value> = rows
            .iter()
            .map(|(id, addr, state, me, exec, queued, jobs)| {
                serde_json::json!({
                    "id": id, "addr": addr, "state": state, "myself": me,
                    "exec": exec, "queued": queued, "jobs": jobs,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "{:<10} {:<22} {:<8} {:>9} {:>8} {:>8}",
            "NODE", "ADDRESS", "STATE", "EXEC", "QUEUED", "JOBS"
        );
        for (id, addr, state, me, exec, queued, jobs) in &rows {
            let id = format!("{}{}", &id[..id.len().min(8)], if *me { "*" } else { "" });
            println!("{id:<10} {addr:<22} {state:<8} {exec:>9} {queued:>8} {jobs:>8}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
