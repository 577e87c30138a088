//! `wasque module put|ls|stat|rm`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::ClusterClient;
use crate::proto::ModuleHash;

#[derive(Debug, Subcommand)]
pub enum ModuleCmd {
    /// Upload a module; prints its sha256 as the last line.
    Put { file: PathBuf },
    /// List the node's modules.
    Ls,
    /// Show one module.
    Stat { hash: String },
    /// Delete a module (refused while jobs use it).
    Rm { hash: String },
}

pub async fn run(client: &ClusterClient, cmd: ModuleCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ModuleCmd::Put { file } => {
            let hash = put(client, &file).await?;
            println!("{hash}");
        }
        ModuleCmd::Ls => {
            let list = client.list_modules().await?;
            if list.is_empty() {
                eprintln!("(no modules)");
            }
            for m in list {
                println!("{}  {:>10} bytes  {} job(s)", m.hash, m.size, m.jobs);
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
    let bytes =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let info = client.put_module(bytes).await?;
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

/// A module given as a 64-hex-digit hash or as a file to upload.
pub async fn resolve(client: &ClusterClient, spec: &str) -> anyhow::Result<ModuleHash> {
    if spec.len() == 64 && spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return parse_hash(spec);
    }
    put(client, std::path::Path::new(spec)).await
}

fn parse_hash(s: &str) -> anyhow::Result<ModuleHash> {
    s.parse().map_err(|e: String| super::usage(e))
}
