//! Distributed jobs: split one input into parts, and let the cluster run
//! a map module on each part as its own job, retry a failed part alone,
//! then run a reduce module over the parts' results in order.
//!
//! The node keeps the whole job as a parent job (see `Request::AddPart`):
//! its status (`wasque show ID`) lists every part's state, job, node and
//! runs while it runs, and its result is the reduce module's output. This
//! module splits the input, adds the parent and its parts, and waits.
//!
//! The reduce module's stdin is every part's output, in part order, each
//! framed as a 4-byte little-endian length followed by the bytes
//! ([`frame`]); its stdout is the whole job's result.
//! `guest-examples/wcmap` and `guest-examples/wcreduce` are a word count
//! written this way.

use crate::ClusterClient;
use crate::client::ClientError;
use crate::proto::{
    AddJob, ErrorCode, JobId, JobStatus, LimitsRequest, MapSpec, ModuleHash, PartStatus,
};

/// What to run.
#[derive(Clone, Debug)]
pub struct MapReduce {
    pub map: ModuleHash,
    pub reduce: ModuleHash,
    pub queue: String,
    /// Parts being sent to the node at once (the node queues every part
    /// it has; the queue's policy spreads them over the cluster).
    pub concurrency: usize,
    /// Runs of one part before the whole job fails.
    pub attempts: u32,
    /// How long the whole job (parts and reduce) may take, in ms.
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
    /// The parent job's status; its result is the reduce module's output.
    pub reduce: JobStatus,
    pub parts: Vec<PartReport>,
}

/// Why a distributed job failed.
#[derive(Debug, thiserror::Error)]
pub enum MapReduceError {
    #[error("the input is empty: nothing to map")]
    EmptyInput,
    #[error("distributed job {id} failed: {reason}")]
    Failed { id: JobId, reason: String },
    #[error("distributed job {id} did not finish within {ms} ms (see `wasque show {id}`)")]
    Timeout { id: JobId, ms: u64 },
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
    crate::proto::frame_parts(results)
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
    /// Runs a distributed job over `parts` and acknowledges it once its
    /// result is in ([`Self::add_map_job`], [`Self::add_parts`],
    /// [`Self::wait_map_reduce`] in turn); `progress` is called with the
    /// number of parts done whenever it changes.
    pub async fn map_reduce(
        &self,
        spec: &MapReduce,
        parts: Vec<Vec<u8>>,
        progress: impl Fn(usize),
    ) -> Result<MapReduceOutcome, MapReduceError> {
        if parts.is_empty() || parts.iter().all(|p| p.is_empty()) {
            return Err(MapReduceError::EmptyInput);
        }
        let parent = self.add_map_job(spec, parts.len()).await?;
        self.add_parts(spec, parent, parts).await?;
        self.wait_map_reduce(spec, parent, progress).await
    }

    /// Adds the parent of a distributed job of `parts` parts; returns its
    /// id (`wasque show ID` lists its parts).
    pub async fn add_map_job(
        &self,
        spec: &MapReduce,
        parts: usize,
    ) -> Result<JobId, MapReduceError> {
        if parts == 0 {
            return Err(MapReduceError::EmptyInput);
        }
        let mut job = AddJob::new(spec.queue.clone(), Vec::new());
        job.module = Some(spec.reduce);
        job.limits = spec.limits;
        job.ttl_secs = Some((spec.timeout_ms / 1000).max(60) + 60);
        job.map = Some(MapSpec {
            map: spec.map,
            parts: u32::try_from(parts).unwrap_or(u32::MAX),
            attempts: spec.attempts.max(1),
        });
        // The two modules may have been uploaded to different nodes a
        // moment ago; a node learns of its peers' modules from their
        // adverts within about a second, so NOMODULE is worth a few tries.
        let mut tries = 0;
        loop {
            match self.add_job(job.clone()).await {
                Err(ClientError::Node(w)) if w.code == ErrorCode::NoModule && tries < 8 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                r => return Ok(r?),
            }
        }
    }

    /// Sends the parts' inputs, `spec.concurrency` at a time; the node
    /// answers each at once (it queues the part's job), so this takes
    /// about the time of the upload.
    pub async fn add_parts(
        &self,
        spec: &MapReduce,
        parent: JobId,
        parts: Vec<Vec<u8>>,
    ) -> Result<(), MapReduceError> {
        let mut sending = tokio::task::JoinSet::new();
        let mut parts = parts.into_iter().enumerate();
        loop {
            while sending.len() < spec.concurrency.max(1) {
                let Some((i, body)) = parts.next() else {
                    break;
                };
                let client = self.clone();
                sending.spawn(async move { client.add_part(parent, i as u32, body).await });
            }
            match sending.join_next().await {
                None => return Ok(()),
                Some(Ok(r)) => {
                    r?;
                }
                Some(Err(e)) => {
                    return Err(MapReduceError::Failed {
                        id: parent,
                        reason: format!("sending a part failed: {e}"),
                    });
                }
            }
        }
    }

    /// Waits for a distributed job's result (woken by the node when the
    /// reduce ends; between wake-ups, at most every 500 ms, it reads the
    /// parts' progress for `progress`), then acknowledges it.
    pub async fn wait_map_reduce(
        &self,
        spec: &MapReduce,
        parent: JobId,
        progress: impl Fn(usize),
    ) -> Result<MapReduceOutcome, MapReduceError> {
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(spec.timeout_ms);
        let mut seen = usize::MAX;
        let status = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(MapReduceError::Timeout {
                    id: parent,
                    ms: spec.timeout_ms,
                });
            }
            let slice = left.min(std::time::Duration::from_millis(500)).as_millis() as u64;
            if let Some(s) = self.wait(parent, slice.max(1)).await? {
                progress(PartStatus::done(&s.parts));
                break s;
            }
            let now = self.show(parent).await?;
            let done = PartStatus::done(&now.parts);
            if done != seen {
                seen = done;
                progress(done);
            }
        };
        self.ack(vec![parent]).await?;
        if let Some(why) = failure(&status) {
            return Err(MapReduceError::Failed {
                id: parent,
                reason: why,
            });
        }
        let reports = status
            .parts
            .iter()
            .map(|p| PartReport {
                index: p.index as usize,
                bytes: p.bytes as usize,
                job: p.job,
                node: p.node.clone(),
                attempts: p.attempts,
            })
            .collect();
        Ok(MapReduceOutcome {
            reduce: status,
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
