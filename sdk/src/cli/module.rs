//! `wasque module put|ls|stat|rm`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::ClusterClient;
use crate::proto::ModuleHash;

#[derive(Debug, Subcommand)]
pub enum ModuleCmd {
    /// Upload a module; prints its sha256 as the last line.
    Put {
        file: PathBuf,
        /// A name jobs may use instead of the hash (`--module NAME@VERSION`,
        /// or `--module NAME` for the latest version); needs --version.
        #[arg(long, requires = "version")]
        name: Option<String>,
        /// The version of that name (ordered part by part, numbers as
        /// numbers: 1.10 is after 1.9).
        #[arg(long, requires = "name")]
        version: Option<String>,
        /// Nodes that hold the bytes before the upload is answered, this
        /// one included.
        #[arg(long, default_value_t = 1)]
        replicate: u32,
    },
    /// List the cluster's modules, with the nodes that hold each.
    Ls,
    /// Show one module.
    Stat { hash: String },
    /// Delete a module (refused while jobs use it).
    Rm { hash: String },
}

pub async fn run(client: &ClusterClient, cmd: ModuleCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ModuleCmd::Put {
            file,
            name,
            version,
            replicate,
        } => {
            let opts = crate::proto::PutOptions {
                name,
                version,
                replicate,
            };
            let hash = put_with(client, &file, opts).await?;
            println!("{hash}");
        }
        ModuleCmd::Ls => {
            let cat = client.list_modules().await?;
            if cat.modules.is_empty() {
                eprintln!("(no modules)");
            }
            for m in &cat.modules {
                let holders: Vec<&str> = m.holders.iter().map(|h| short(h)).collect();
                let names = if m.names.is_empty() {
                    String::new()
                } else {
                    format!("  {}", m.names.join(" "))
                };
                println!(
                    "{}  {:>10} bytes  {} job(s)  on {}{names}",
                    m.hash,
                    m.size,
                    m.jobs,
                    holders.join(",")
                );
            }
            if !cat.unanswered.is_empty() {
                let ids: Vec<&str> = cat.unanswered.iter().map(|h| short(h)).collect();
                eprintln!(
                    "warning: node(s) {} did not answer: their modules are not listed",
                    ids.join(", ")
                );
            }
        }
        ModuleCmd::Stat { hash } => {
            let m = client.stat_module(parse_hash(&hash)?).await?;
            println!("hash:{}\nsize:{}\njobs:{}", m.hash, m.size, m.jobs);
        }
        ModuleCmd::Rm { hash } => {
            client.delete_module(parse_hash(&hash)?).await?;
            println!("OK");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Uploads a file and returns its hash, telling the user whether the node
/// compiled it now or already had it.
pub async fn put(client: &ClusterClient, file: &std::path::Path) -> anyhow::Result<ModuleHash> {
    put_with(client, file, crate::proto::PutOptions::default()).await
}

async fn put_with(
    client: &ClusterClient,
    file: &std::path::Path,
    opts: crate::proto::PutOptions,
) -> anyhow::Result<ModuleHash> {
    let bytes =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let info = client.put_module_with(bytes, opts).await?;
    eprintln!(
        "{}: {} bytes, {}",
        file.display(),
        info.size,
        if info.compiled_now {
            "compiled"
        } else {
            "already on the node"
        }
    );
    Ok(info.hash)
}

/// A module given as a 64-hex-digit hash, a file to upload, or a name
/// (`NAME@VERSION`, or `NAME` for its latest version) when no such file
/// exists: the name is looked up in the cluster's catalogue.
pub async fn resolve(client: &ClusterClient, spec: &str) -> anyhow::Result<ModuleHash> {
    if spec.len() == 64 && spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return parse_hash(spec);
    }
    let path = std::path::Path::new(spec);
    let name = spec.split_once('@').map_or(spec, |(n, _)| n);
    if path.exists() || crate::proto::check_module_name(name).is_err() {
        return put(client, path).await;
    }
    let cat = client.list_modules().await?;
    by_name(&cat, spec).map_err(|e| anyhow::anyhow!(e))
}

/// The module `spec` names in a catalogue (names as the client sees them).
fn by_name(cat: &crate::proto::ModuleCatalogue, spec: &str) -> Result<ModuleHash, String> {
    let (name, version) = match spec.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    };
    let mut found: Vec<(&str, ModuleHash)> = Vec::new();
    for m in &cat.modules {
        for label in &m.names {
            if let Some((n, v)) = label.split_once('@')
                && n == name
                && version.is_none_or(|want| want == v)
            {
                found.push((v, m.hash));
            }
        }
    }
    found.sort_by(|a, b| crate::proto::compare_versions(a.0, b.0));
    match found.last() {
        Some((_, hash)) => Ok(*hash),
        None => Err(format!(
            "{spec} is neither a file nor a module name the cluster knows (wasque module ls lists names)"
        )),
    }
}

/// A node id's first 8 digits, as `wasque nodes` shows them.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn parse_hash(s: &str) -> anyhow::Result<ModuleHash> {
    s.parse().map_err(|e: String| super::usage(e))
}
