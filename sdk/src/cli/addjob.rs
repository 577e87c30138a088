//! `wasque addjob`: the original note's form, with Disque's options as bare
//! words, plus flags for Wasm jobs.

use std::io::Read;
use std::process::ExitCode;

use clap::Args;

use super::{module, show, usage};
use crate::ClusterClient;
use crate::proto::{AddJob, LimitsRequest, Request, Response};

#[derive(Debug, Args)]
pub struct AddJobArgs {
    /// QUEUE [BODY] TIMEOUT_MS [replicate [N]] [nocache] [async]
    /// [asynckey K] [delay S] [retry S] [ttl S] [maxlen N]
    #[arg(required = true, num_args = 2.., value_name = "WORDS")]
    words: Vec<String>,
    /// Module to run: a .wasm file (uploaded first) or a sha256.
    #[arg(long, value_name = "FILE_OR_SHA256")]
    module: Option<String>,
    /// Fuel budget (instructions).
    #[arg(long)]
    fuel: Option<u64>,
    /// Memory cap in bytes.
    #[arg(long, value_name = "BYTES")]
    memory: Option<u64>,
    /// Wall-clock deadline in ms.
    #[arg(long, value_name = "MS")]
    deadline: Option<u64>,
    /// Priority 0-9, higher first.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=9))]
    priority: u8,
    /// Collocation group key.
    #[arg(long)]
    group: Option<String>,
    /// An argument for the module (repeatable).
    #[arg(long = "arg", value_name = "ARG")]
    args: Vec<String>,
    /// Wait for the result, print it, then acknowledge the job.
    #[arg(long)]
    wait: bool,
    /// With --wait: how long to wait, in ms.
    #[arg(long, default_value_t = 300_000, value_name = "MS")]
    wait_timeout: u64,
    /// With --wait: do not acknowledge the job after printing.
    #[arg(long)]
    no_ack: bool,
    /// An idempotency key (1 to 256 bytes): adding again with the same key
    /// to the same queue prints the first job's id and adds nothing, while
    /// the node remembers the key (README, Idempotency keys).
    #[arg(long, value_name = "KEY", value_parser = idempotency_key)]
    idempotency_key: Option<String>,
    /// With --idempotency-key: how long the key outlives its job, in
    /// seconds from the add (default: the node's `idempotency-window`).
    #[arg(long, value_name = "SECS", requires = "idempotency_key")]
    idempotency_window: Option<u64>,
    /// Run only once this job has ended well (repeatable); if it failed,
    /// this one fails too, class `dependency` (README, Jobs that run after
    /// others).
    #[arg(long, value_name = "ID")]
    after: Vec<crate::proto::JobId>,
    /// With --after: run once each has ended, whatever the outcome.
    #[arg(long, requires = "after")]
    after_any: bool,
    #[command(flatten)]
    retry_policy: super::dlq::RetryArgs,
}

/// Checks a key the node would accept, so a bad one is a usage error.
fn idempotency_key(s: &str) -> Result<String, String> {
    crate::proto::check_idempotency_key(s).map(|()| s.to_string())
}

/// The parsed bare words.
#[derive(Debug, PartialEq)]
pub(crate) struct Words {
    pub queue: String,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
    pub replicate: Option<u32>,
    pub nocache: bool,
    pub asynchronous: bool,
    pub asynckey: Option<String>,
    pub delay: Option<u64>,
    pub retry: Option<u64>,
    pub ttl: Option<u64>,
    pub maxlen: Option<u64>,
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

pub(crate) fn parse_words(words: &[String]) -> Result<Words, String> {
    let queue = words.first().cloned().ok_or("missing QUEUE")?;
    let (body, timeout, mut rest) = if words.len() >= 3 && is_number(&words[2]) {
        (Some(words[1].clone().into_bytes()), &words[2], 3)
    } else if words.len() >= 2 && is_number(&words[1]) {
        (None, &words[1], 2)
    } else {
        return Err(
            "expected `addjob QUEUE TIMEOUT_MS ...` (body on stdin) or `addjob QUEUE BODY TIMEOUT_MS ...`"
                .into(),
        );
    };
    let timeout_ms = timeout
        .parse()
        .map_err(|_| format!("TIMEOUT_MS {timeout:?} is not a number"))?;
    let mut w = Words {
        queue,
        body,
        timeout_ms,
        replicate: None,
        nocache: false,
        asynchronous: false,
        asynckey: None,
        delay: None,
        retry: None,
        ttl: None,
        maxlen: None,
    };
    let num = |i: usize, what: &str| -> Result<u64, String> {
        words
            .get(i)
            .filter(|s| is_number(s))
            .ok_or_else(|| format!("{what} needs a number"))?
            .parse()
            .map_err(|_| format!("{what}: number out of range"))
    };
    while rest < words.len() {
        let word = words[rest].to_ascii_lowercase();
        rest += 1;
        match word.as_str() {
            "replicate" => {
                // Bare `replicate`: Disque's default (3, or fewer reachable nodes).
                if words.get(rest).is_some_and(|s| is_number(s)) {
                    w.replicate = Some(num(rest, "replicate")? as u32);
                    rest += 1;
                }
            }
            "nocache" => w.nocache = true,
            "async" => w.asynchronous = true,
            "asynckey" => {
                w.asynckey = Some(words.get(rest).cloned().ok_or("asynckey needs a key")?);
                rest += 1;
            }
            "delay" | "retry" | "ttl" | "maxlen" => {
                let n = num(rest, &word)?;
                rest += 1;
                match word.as_str() {
                    "delay" => w.delay = Some(n),
                    "retry" => w.retry = Some(n),
                    "ttl" => w.ttl = Some(n),
                    _ => w.maxlen = Some(n),
                }
            }
            other => return Err(format!("unknown addjob option {other:?}")),
        }
    }
    Ok(w)
}

pub async fn run(client: &ClusterClient, a: AddJobArgs) -> anyhow::Result<ExitCode> {
    let w = parse_words(&a.words).map_err(usage)?;
    let body = match w.body {
        Some(b) => b,
        None => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        }
    };
    let mut job = AddJob::new(w.queue, body);
    job.timeout_ms = w.timeout_ms;
    job.replicate = w.replicate;
    job.nocache = w.nocache;
    job.asynchronous = w.asynchronous;
    job.asynckey = w.asynckey;
    job.delay_secs = w.delay;
    job.retry_secs = w.retry;
    job.ttl_secs = w.ttl;
    job.maxlen = w.maxlen;
    job.idempotency_key = a.idempotency_key;
    job.idempotency_window_secs = a.idempotency_window;
    if !a.after.is_empty() {
        let spec = crate::proto::AfterSpec {
            ids: a.after,
            any: a.after_any,
        };
        spec.check().map_err(usage)?;
        job.after = Some(spec);
    }
    job.priority = a.priority;
    job.retry = a.retry_policy.policy()?;
    job.group = a.group;
    job.args = a.args;
    job.limits = LimitsRequest {
        fuel: a.fuel,
        memory_bytes: a.memory,
        deadline_ms: a.deadline,
    };
    if let Some(spec) = &a.module {
        job.module = Some(module::resolve(client, spec).await?);
    }
    if !a.wait {
        println!("{}", client.add_job(job).await?);
        return Ok(ExitCode::SUCCESS);
    }
    // Add and wait in one request, so the wait is registered before the
    // job can finish (a `nocache` result goes only to waiters present then).
    job.wait_ms = Some(a.wait_timeout);
    job.ack_on_result = false;
    let status = match client.call(Request::AddJob(Box::new(job))).await? {
        Response::Job(s) => *s,
        other => anyhow::bail!("unexpected reply from the node: {other:?}"),
    };
    let id = status.id;
    if !status.state.is_finished() {
        eprintln!(
            "error: job {id} did not finish within {} ms (it stays queued; `wasque wait {id}` later)",
            a.wait_timeout
        );
        return Ok(ExitCode::FAILURE);
    }
    let code = show::print_result(&status);
    if let Some(r) = &status.retry {
        eprintln!("attempts {} of {}", r.attempts, r.policy.max_attempts);
    }
    // A dead letter stays for the operator (`wasque dlq`).
    if !a.no_ack && status.state != crate::proto::JobState::Dead {
        client.ack(vec![id]).await?;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_notes_forms_parse() {
        let w = parse_words(&words("myqueue 5000 replicate nocache")).unwrap();
        assert_eq!(w.queue, "myqueue");
        assert_eq!(w.body, None);
        assert_eq!(w.timeout_ms, 5000);
        assert_eq!(w.replicate, None);
        assert!(w.nocache);
        let w = parse_words(&words("q hello 100 replicate 2 ttl 60 asynckey k async")).unwrap();
        assert_eq!(w.body.as_deref(), Some(&b"hello"[..]));
        assert_eq!(w.replicate, Some(2));
        assert_eq!(w.ttl, Some(60));
        assert_eq!(w.asynckey.as_deref(), Some("k"));
        assert!(w.asynchronous);
        // A numeric body is still a body when a timeout follows it.
        let w = parse_words(&words("q 42 5000")).unwrap();
        assert_eq!(w.body.as_deref(), Some(&b"42"[..]));
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert!(parse_words(&words("q hello")).is_err());
        assert!(parse_words(&words("q 5000 bogus")).is_err());
        assert!(parse_words(&words("q 5000 ttl")).is_err());
        assert!(parse_words(&words("q 5000 asynckey")).is_err());
    }

    #[test]
    fn idempotency_keys_are_checked_before_sending() {
        assert_eq!(idempotency_key("order-42").as_deref(), Ok("order-42"));
        assert!(idempotency_key("").is_err());
        assert!(idempotency_key(&"k".repeat(257)).is_err());
        assert!(idempotency_key(&"k".repeat(256)).is_ok());
    }
}
