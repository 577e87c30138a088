//! `wasque explain ID`: why a job is where it is. Asks the job's holders
//! in turn (as `show` does), then follows a job lent to or held by
//! another node to that node ([`ClusterClient::explain`]), and prints
//! each node's answer: a sentence, then one line per reason with its
//! fields (`--json`: the documents).

use std::process::ExitCode;

use clap::Args;

use super::parse_id;
use crate::ClusterClient;
use crate::proto::Explain;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    id: String,
    /// Print the JSON documents, one per node asked, in an array.
    #[arg(long)]
    json: bool,
    /// The key of a job added with `asynckey K` (without it such a job
    /// answers as unknown).
    #[arg(long, value_name = "K")]
    asynckey: Option<String>,
}

pub async fn run(client: &ClusterClient, a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&a.id)?;
    let chain = client.explain(id, a.asynckey.as_deref()).await?;
    if a.json {
        let docs: Vec<_> = chain.iter().map(Explain::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&docs)?);
    } else {
        print!("{}", text(&chain));
    }
    Ok(ExitCode::SUCCESS)
}

/// The answers for people: per node, its sentence and its reasons.
pub fn text(chain: &[Explain]) -> String {
    let mut out = String::new();
    for (i, x) in chain.iter().enumerate() {
        if i > 0 {
            out += "\n";
        }
        out += &format!(
            "job {} is {} on node {} (queue {}):\n  {}\n",
            x.id,
            x.state,
            short(&x.node),
            x.queue,
            x.summary()
        );
        for r in &x.reasons {
            let fields = r
                .fields
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            out += &format!("  - {}: {fields}\n", r.kind);
        }
    }
    out
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
