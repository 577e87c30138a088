//! `wasque tenant add|ls|rm|token|revoke|set`: the admin's commands for
//! tenants, spoken over RESP to the node's TCP port (the `TENANT` command
//! redis-cli can send too). They need the node's password (`--password`).
//!
//! A tenant then works with its own credential: `--token NAME:TOKEN` (or
//! `WASQUE_TOKEN`), as `tenant add` and `tenant token` print it.

use std::process::ExitCode;

use clap::Subcommand;

use super::resp::{Resp, Value};

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Add a tenant and print its first token (shown once). Quotas as
    /// `QUOTA=VALUE` (see `set`).
    Add {
        name: String,
        #[arg(value_name = "QUOTA=VALUE")]
        quotas: Vec<String>,
    },
    /// List tenants: token ids, quotas, modules owned.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove a tenant: its tokens stop working at once on every node.
    /// Its jobs stay (the admin sees them under `NAME/` queues).
    Rm { name: String },
    /// Make a further token for a tenant (rotate: add, switch, revoke).
    Token { name: String },
    /// Revoke one of a tenant's tokens by its id (`ls` shows the ids).
    Revoke { name: String, id: String },
    /// Set quotas: `max-jobs=N`, `max-module-bytes=SIZE`, `max-fuel=N`,
    /// `max-memory=SIZE`, `jobs-per-sec=N`, `weight=1..1000`; `none`
    /// removes a limit; sizes take k, m, g.
    Set {
        name: String,
        #[arg(value_name = "QUOTA=VALUE", required = true)]
        quotas: Vec<String>,
    },
}

fn pairs(quotas: &[String]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for q in quotas {
        let (k, v) = q.split_once('=').ok_or_else(|| {
            super::usage(format!(
                "quota {q:?}: write it QUOTA=VALUE, e.g. max-jobs=1000"
            ))
        })?;
        out.push(k.as_bytes().to_vec());
        out.push(v.as_bytes().to_vec());
    }
    Ok(out)
}

pub async fn run(node: &str, password: Option<&str>, c: TenantCmd) -> anyhow::Result<ExitCode> {
    let mut r = Resp::connect(node, password).await?;
    let mut words: Vec<Vec<u8>> = vec![b"TENANT".to_vec()];
    match &c {
        TenantCmd::Add { name, quotas } => {
            words.extend([b"ADD".to_vec(), name.as_bytes().to_vec()]);
            words.extend(pairs(quotas)?);
        }
        TenantCmd::Ls { .. } => words.push(b"LS".to_vec()),
        TenantCmd::Rm { name } => words.extend([b"RM".to_vec(), name.as_bytes().to_vec()]),
        TenantCmd::Token { name } => words.extend([b"TOKEN".to_vec(), name.as_bytes().to_vec()]),
        TenantCmd::Revoke { name, id } => words.extend([
            b"REVOKE".to_vec(),
            name.as_bytes().to_vec(),
            id.as_bytes().to_vec(),
        ]),
        TenantCmd::Set { name, quotas } => {
            words.extend([b"SET".to_vec(), name.as_bytes().to_vec()]);
            words.extend(pairs(quotas)?);
        }
    }
    let args: Vec<&[u8]> = words.iter().map(|w| &w[..]).collect();
    let reply = r.call(&args).await?;
    if let Value::Error(e) = &reply {
        anyhow::bail!("the node refused: {e}");
    }
    match c {
        TenantCmd::Add { name, .. } | TenantCmd::Token { name } => {
            let Value::Array(items) = reply else {
                anyhow::bail!("unexpected reply: {reply:?}");
            };
            let texts: Vec<String> = items.iter().filter_map(Value::text).collect();
            let (id, token) = match texts.as_slice() {
                [_, id, token] | [id, token] => (id.clone(), token.clone()),
                _ => anyhow::bail!("unexpected reply: {items:?}"),
            };
            println!("tenant {name}: token {id} (shown once, keep it):");
            println!("{name}:{token}");
            eprintln!("use it with: export WASQUE_TOKEN={name}:{token}");
        }
        TenantCmd::Ls { json } => {
            let Value::Array(tenants) = reply else {
                anyhow::bail!("unexpected reply: {reply:?}");
            };
            let mut list = Vec::new();
            for t in tenants {
                let Value::Array(f) = t else { continue };
                let get = |k: &str| {
                    f.chunks(2)
                        .find(|p| p[0].text().as_deref() == Some(k))
                        .and_then(|p| p.get(1).cloned())
                };
                let texts = |v: Option<Value>| match v {
                    Some(Value::Array(a)) => a.iter().filter_map(Value::text).collect::<Vec<_>>(),
                    _ => Vec::new(),
                };
                let int = |v: Option<Value>| match v {
                    Some(Value::Int(n)) => n,
                    _ => 0,
                };
                let name = get("name").and_then(|v| v.text()).unwrap_or_default();
                let tokens = texts(get("tokens"));
                let quotas: Vec<(String, String)> = texts(get("quotas"))
                    .chunks(2)
                    .map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default()))
                    .collect();
                list.push((
                    name,
                    tokens,
                    quotas,
                    int(get("modules")),
                    int(get("module-bytes")),
                ));
            }
            if json {
                let v: Vec<serde_json::Value> = list
                    .iter()
                    .map(|(n, t, q, m, b)| {
                        serde_json::json!({
                            "name": n, "tokens": t,
                            "quotas": q.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                            "modules": m, "module_bytes": b,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if list.is_empty() {
                println!("no tenants (add one: wasque tenant add NAME)");
            } else {
                for (n, t, q, m, b) in list {
                    let quotas: Vec<String> = q
                        .iter()
                        .filter(|(k, v)| v != "none" && !(k == "weight" && v == "1"))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    println!(
                        "{n}  tokens: {}  modules: {m} ({b} bytes)  quotas: {}",
                        t.join(","),
                        if quotas.is_empty() {
                            "none".into()
                        } else {
                            quotas.join(" ")
                        }
                    );
                }
            }
        }
        _ => println!("OK"),
    }
    Ok(ExitCode::SUCCESS)
}
