//! The scheduling evaluation's load on a real cluster (`benches/sched.sh`):
//! the simulation's batch workload (`wasque_benches::workload::batch`) as
//! fib jobs, all submitted through one node, each waited for; prints one
//! markdown row: makespan, jobs/s, wait p50/p99, urgent p99, and per node
//! (by node id) the jobs it ran and the seconds they ran for.
//!
//!   sched_load NODE DATA_DIR FIB.wasm JOBS SHORT_N LONG_N [ID,ID,...]
//!
//! The ids, when given, order the per-node columns (else by node id).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasque_benches::percentile;
use wasque_benches::workload::{self, LONG_MS, URGENT};
use wasque_sdk::proto::AddJob;
use wasque_sdk::{Client, ClientConfig};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        a.len() == 6 || a.len() == 7,
        "usage: sched_load NODE DATA_DIR FIB.wasm JOBS SHORT_N LONG_N [ID,ID,...]"
    );
    let order: Vec<String> = a
        .get(6)
        .map(|s| s.split(',').map(String::from).collect())
        .unwrap_or_default();
    let (node, dir, wasm) = (a[0].clone(), a[1].clone(), a[2].clone());
    let count: usize = a[3].parse()?;
    let (short_n, long_n): (u32, u32) = (a[4].parse()?, a[5].parse()?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = Client::connect(ClientConfig::local(&node, &dir)?).await?;
        let module = client.put_module(std::fs::read(&wasm)?).await?;
        // Peers learn the module from the next adverts.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let jobs = workload::batch(count, 7);
        let gate = Arc::new(Semaphore::new(256));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(jobs.len());
        for spec in jobs {
            let (client, gate) = (client.clone(), gate.clone());
            let n = if spec.work_ms == LONG_MS {
                long_n
            } else {
                short_n
            };
            tasks.push(tokio::spawn(async move {
                let _slot = gate.acquire_owned().await?;
                let mut job = AddJob::new(spec.queue.clone(), n.to_string().into_bytes());
                job.module = Some(module.hash);
                job.priority = spec.priority;
                job.replicate = Some(1);
                let submitted = started.elapsed();
                let id = client.add_job(job).await?;
                let status = client
                    .wait(id, 600_000)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("job {id} did not finish"))?;
                let finished = started.elapsed();
                client.ack(vec![id]).await?;
                let r = status.result.ok_or_else(|| anyhow::anyhow!("no result"))?;
                anyhow::ensure!(r.is_success(), "job failed: {}", r.message);
                let run = Duration::from_micros(r.duration_us);
                let wait = finished.saturating_sub(submitted).saturating_sub(run);
                Ok::<_, anyhow::Error>((r.node, spec.priority, wait, run, finished))
            }));
        }
        let mut waits = Vec::new();
        let mut urgent = Vec::new();
        let mut per_node: HashMap<String, (u64, Duration)> = HashMap::new();
        let mut last = Duration::ZERO;
        for t in tasks {
            let (node, prio, wait, run, finished) = t.await??;
            waits.push(wait.as_millis() as u64);
            if prio == URGENT {
                urgent.push(wait.as_millis() as u64);
            }
            let e = per_node.entry(node).or_default();
            e.0 += 1;
            e.1 += run;
            last = last.max(finished);
        }
        waits.sort_unstable();
        urgent.sort_unstable();
        let span = last.as_secs_f64().max(1e-9);
        let mut nodes: Vec<(String, (u64, Duration))> = per_node.into_iter().collect();
        nodes.sort_by_key(|(id, _)| (order.iter().position(|o| o == id), id.clone()));
        let spread = nodes
            .iter()
            .map(|(_, (n, _))| n.to_string())
            .collect::<Vec<_>>()
            .join("/");
        let busy = nodes
            .iter()
            .map(|(_, (_, run))| format!("{:.1}", run.as_secs_f64()))
            .collect::<Vec<_>>()
            .join("/");
        println!(
            "| {:.1} | {:.0} | {} | {} | {} | {} | {} |",
            span,
            count as f64 / span,
            percentile(&waits, 0.5),
            percentile(&waits, 0.99),
            percentile(&urgent, 0.99),
            spread,
            busy
        );
        Ok(())
    })
}
