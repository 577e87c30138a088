//! Distributed jobs: split one input into parts, run a map module on each
//! part as its own job (the cluster spreads them over its nodes), retry a
//! failed part alone, then run a reduce module over the parts' results in
//! order.
//!
//! The reduce module's stdin is every part's output, in part order, each
//! framed as a 4-byte little-endian length followed by the bytes; its
//! stdout is the whole job's result. `guest-examples/wcmap` and
//! `guest-examples/wcreduce` are a word count written this way.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::ClusterClient;
use crate::client::ClientError;
use crate::proto::{AddJob, JobId, JobStatus, LimitsRequest, ModuleHash};

/// What to run.
#[derive(Clone, Debug)]
pub struct MapReduce {
    pub map: ModuleHash,
    pub reduce: ModuleHash,
    pub queue: String,
    /// Parts in flight at once.
    pub concurrency: usize,
    /// Runs of one part before the whole job fails.
    pub attempts: u32,
    /// How long one part (or the reduce) may take, in ms.
    pub timeout_ms: u64,
    pub limits: LimitsRequest,
}

/// How one part went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartReport {
    pub index: usize,
    pub bytes: usize,
    /// The job that produced the result (the last attempt's).
    pub job: Option<JobId>,
    /// Which node ran it.
    pub node: String,
    pub attempts: u32,
}

/// The outcome of a distributed job.
#[derive(Clone, Debug)]
pub struct MapReduceOutcome {
    /// The reduce job's status; its result is the whole job's result.
    pub reduce: JobStatus,
    pub parts: Vec<PartReport>,
}

/// Why a distributed job failed.
#[derive(Debug, thiserror::Error)]
pub enum MapReduceError {
    #[error("the input is empty: nothing to map")]
    EmptyInput,
    #[error("part {index} failed {attempts} time(s); last: {reason}")]
    Part {
        index: usize,
        attempts: u32,
        reason: String,
    },
    #[error("the reduce step failed: {0}")]
    Reduce(String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Splits `input` into parts of at most about `chunk` bytes, cutting after
/// the last newline (else the last whitespace) before each boundary, so a
/// line or word is never split when it fits in a part.
pub fn split(input: &[u8], chunk: usize) -> Vec<&[u8]> {
    let chunk = chunk.max(1);
    let mut parts = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        if rest.len() <= chunk {
            parts.push(rest);
            break;
        }
        let window = &rest[..chunk];
        let cut = window
            .iter()
            .rposition(|b| *b == b'\n')
            .or_else(|| window.iter().rposition(|b| b.is_ascii_whitespace()))
            .map_or(chunk, |i| i + 1);
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    parts
}

/// The reduce module's input: each result framed by its length.
pub fn frame(results: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(results.iter().map(|r| r.len() + 4).sum());
    for r in results {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

fn failure(s: &JobStatus) -> Option<String> {
    match &s.result {
        None => Some(format!(
            "job {} did not finish in time (state {})",
            s.id, s.state
        )),
        Some(r) if !r.is_success() => Some(format!(
            "{}{}",
            r.error_class.map(|c| c.to_string()).unwrap_or_default(),
            if r.message.is_empty() {
                String::new()
            } else {
                format!(": {}", r.message)
            }
        )),
        Some(_) => None,
    }
}

impl ClusterClient {
    /// Runs a distributed job over `parts`; `progress` is called with the
    /// number of parts done after each one finishes.
    pub async fn map_reduce(
        &self,
        spec: &MapReduce,
        parts: Vec<Vec<u8>>,
        progress: impl Fn(usize) + Send + Sync + 'static,
    ) -> Result<MapReduceOutcome, MapReduceError> {
        if parts.is_empty() || parts.iter().all(|p| p.is_empty()) {
            return Err(MapReduceError::EmptyInput);
        }
        let gate = Arc::new(Semaphore::new(spec.concurrency.max(1)));
        let progress = Arc::new(progress);
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(parts.len());
        for (index, body) in parts.into_iter().enumerate() {
            let (client, spec, gate) = (self.clone(), spec.clone(), gate.clone());
            let (progress, done) = (progress.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = gate.acquire_owned().await.expect("semaphore open");
                let bytes = body.len();
                let mut last = String::new();
                for attempt in 1..=spec.attempts.max(1) {
                    let mut job = AddJob::new(spec.queue.clone(), body.clone());
                    job.module = Some(spec.map);
                    job.limits = spec.limits;
                    let status = match client.run(job, spec.timeout_ms).await {
                        Ok(s) => s,
                        Err(e) if e.is_unreachable() => return Err(MapReduceError::Client(e)),
                        Err(e) => {
                            last = e.to_string();
                            continue;
                        }
                    };
                    match failure(&status) {
                        None => {
                            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            progress(n);
                            let r = status.result.expect("checked");
                            return Ok((
                                PartReport {
                                    index,
                                    bytes,
                                    job: Some(status.id),
                                    node: r.node.clone(),
                                    attempts: attempt,
                                },
                                r.output,
                            ));
                        }
                        Some(why) => last = why,
                    }
                }
                Err(MapReduceError::Part {
                    index,
                    attempts: spec.attempts.max(1),
                    reason: last,
                })
            }));
        }
        let mut reports = Vec::with_capacity(tasks.len());
        let mut outputs = Vec::with_capacity(tasks.len());
        for t in tasks {
            let (report, out) = t
                .await
                .map_err(|e| MapReduceError::Reduce(format!("a part's task failed: {e}")))??;
            reports.push(report);
            outputs.push(out);
        }
        let mut job = AddJob::new(spec.queue.clone(), frame(&outputs));
        job.module = Some(spec.reduce);
        job.limits = spec.limits;
        let reduce = self.run(job, spec.timeout_ms).await?;
        if let Some(why) = failure(&reduce) {
            return Err(MapReduceError::Reduce(why));
        }
        Ok(MapReduceOutcome {
            reduce,
            parts: reports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cuts_at_lines_then_words_and_keeps_every_byte() {
        let text = b"one two\nthree four five\nsix";
        let parts = split(text, 10);
        assert_eq!(parts.concat(), text.to_vec());
        assert_eq!(parts[0], b"one two\n");
        assert!(parts.iter().all(|p| p.len() <= 10));
        // No whitespace at all: a hard cut.
        assert_eq!(split(b"abcdefgh", 3), vec![&b"abc"[..], b"def", b"gh"]);
        assert!(split(b"", 4).is_empty());
    }

    #[test]
    fn frames_are_length_prefixed_in_order() {
        let f = frame(&[b"ab".to_vec(), vec![], b"c".to_vec()]);
        assert_eq!(f, [2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0, 1, 0, 0, 0, b'c']);
    }
}
