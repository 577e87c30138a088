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
