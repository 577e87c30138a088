//! `wasque cluster init|token|forget|meet|leaving`: cluster set-up, spoken over RESP to
//! the node's TCP port (the same `CLUSTER` commands redis-cli can send).
//!
//! `init` makes the node the holder of a new cluster CA (ca trust mode)
//! and prints the join token other nodes start with:
//! `wasque-node --join HOST:PORT --join-token TOKEN`. `token` makes more
//! (with an expiry), lists, revokes and rotates them; any member admits
//! with any valid one. `forget` drops a node; in ca mode for good (every
//! member refuses its certificate).

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
    /// Join tokens (ca trust mode): create, ls, revoke, rotate.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Forget a node (its 40-hex-digit id, from `wasque nodes`). In ca
    /// trust mode the node is revoked: every member refuses it from then
    /// on, and it can come back only as a new node (empty data dir).
    Forget { node: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Make a join token and print it (members keep only its hash: it is
    /// shown once).
    Create {
        /// How long it admits: seconds, or with a unit (90s, 30m, 24h, 7d).
        /// Without it, until revoked.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
    },
    /// List join tokens: id, state (valid, expired, revoked), created and
    /// expiry (unix seconds).
    Ls,
    /// Revoke a token by its id (from `ls`), or `all`.
    Revoke { id: String },
    /// Revoke every token and print a new one.
    Rotate {
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
    },
}

/// `90`, `90s`, `30m`, `24h`, `7d` as seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 90s, 30m, 24h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit in '{s}': use s, m, h or d")),
    };
    n.checked_mul(mult)
        .filter(|t| *t >= 1)
        .ok_or_else(|| format!("'{s}' is out of range"))
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
        ClusterCmd::Forget { node } => r.call(&[b"CLUSTER", b"FORGET", node.as_bytes()]).await?,
        ClusterCmd::Token(t) => {
            let with_ttl = |verb: &'static [u8], ttl: &Option<u64>| {
                let mut args: Vec<Vec<u8>> =
                    vec![b"CLUSTER".to_vec(), b"TOKEN".to_vec(), verb.to_vec()];
                if let Some(t) = ttl {
                    args.push(b"TTL".to_vec());
                    args.push(t.to_string().into_bytes());
                }
                args
            };
            let args = match t {
                TokenCmd::Create { ttl } => with_ttl(b"CREATE", ttl),
                TokenCmd::Rotate { ttl } => with_ttl(b"ROTATE", ttl),
                TokenCmd::Ls => with_ttl(b"LIST", &None),
                TokenCmd::Revoke { id } => {
                    let mut a = with_ttl(b"REVOKE", &None);
                    a.push(id.as_bytes().to_vec());
                    a
                }
            };
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            r.call(&refs).await?
        }
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
            } else if let ClusterCmd::Token(TokenCmd::Ls) = c {
                println!(
                    "{:<14} {:<8} {:>12} {:>12}",
                    "ID", "STATE", "CREATED", "EXPIRES"
                );
                for line in text.lines() {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    if let [id, state, created, expires] = f[..] {
                        let created = created.trim_start_matches("created=");
                        let expires = expires.trim_start_matches("expires=");
                        println!("{id:<14} {state:<8} {created:>12} {expires:>12}");
                    }
                }
            } else if let (ClusterCmd::Token(TokenCmd::Revoke { .. }), Value::Int(n)) = (&c, &v) {
                println!("{n} token(s) revoked");
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
