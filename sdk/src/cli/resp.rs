//! A small RESP2 client for the CLI's Disque-style commands (`queue`,
//! `getjob`, `worker`), which speak the node's TCP port like any Disque
//! client would.
//!
//! Hand-written rather than the `redis` crate on purpose: the worker holds
//! one connection per slot and parks it in a blocking `GETJOB`, then sends
//! `WORKING`/`FINISH`/`NACK` strictly one at a time on it. That is exactly
//! one request and one reply in flight: no pooling, multiplexing, response
//! timeouts or RESP3 negotiation to switch off, and bodies stay raw bytes.
//! The node's own codec lives in `wasque-node`, which this crate must not
//! depend on. About 150 lines, bounded on every length it reads.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest bulk string accepted from the node (a job body or a result).
const MAX_BULK: usize = 512 << 20;
/// Most elements of one array reply.
const MAX_ARRAY: usize = 1 << 20;
/// Deepest nesting of arrays (GETJOB replies are two deep).
const MAX_DEPTH: usize = 8;
/// Longest status, error or integer line.
const MAX_LINE: usize = 64 << 10;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// One RESP2 value as the node sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    /// An error reply: its code (`ERR`, `NOJOB`, ...) and message together.
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<Value>),
    Nil,
}

impl Value {
    /// The value as text, for bulk and simple strings.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// The nodes a long-running RESP client (the worker) may use: the seeds
/// given, plus every node the cluster's `HELLO` lists. When a node dies,
/// [`Nodes::connect`] moves to the next one that answers.
pub struct Nodes {
    addrs: std::sync::Mutex<Vec<String>>,
    turn: std::sync::atomic::AtomicUsize,
}

impl Nodes {
    pub fn new(seeds: &[String]) -> Nodes {
        Nodes {
            addrs: std::sync::Mutex::new(seeds.to_vec()),
            turn: Default::default(),
        }
    }

    fn list(&self) -> Vec<String> {
        self.addrs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Connects to the next node in turn that answers, trying each known
    /// node once; learns the cluster's nodes from its `HELLO`.
    pub async fn connect(&self, password: Option<&str>) -> anyhow::Result<Resp> {
        let addrs = self.list();
        let start = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut last = None;
        for k in 0..addrs.len() {
            let addr = &addrs[(start + k) % addrs.len()];
            match Resp::connect(addr, password).await {
                Ok(mut c) => {
                    if let Ok(v) = c.call(&[b"HELLO"]).await {
                        self.learn(&v);
                    }
                    return Ok(c);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| unreachable_node("(no node)", "no address given")))
    }

    /// Takes in the nodes of a `HELLO` reply that take work (priority 1).
    fn learn(&self, hello: &Value) {
        let Value::Array(items) = hello else { return };
        let mut addrs = self
            .addrs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for item in items.iter().skip(2) {
            let Value::Array(f) = item else { continue };
            let text = |i: usize| f.get(i).and_then(Value::text).unwrap_or_default();
            let (ip, port, prio) = (text(1), text(2), text(3));
            let addr = if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            };
            if prio == "1" && !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
}

/// One connection to a node's RESP port.
pub struct Resp {
    io: BufReader<TcpStream>,
}

impl Resp {
    /// Connects (bounded by 10 s) and authenticates when a password is set.
    pub async fn connect(addr: &str, password: Option<&str>) -> anyhow::Result<Resp> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable_node(addr, "timed out"))?
            .map_err(|e| unreachable_node(addr, &e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut c = Resp {
            io: BufReader::new(stream),
        };
        // A tenant's `NAME:wqt_...` is Redis 6's `AUTH user password`.
        let auth: Option<Vec<&[u8]>> = password.map(|p| match p.split_once(':') {
            Some((user, secret)) if secret.starts_with("wqt_") => {
                vec![&b"AUTH"[..], user.as_bytes(), secret.as_bytes()]
            }
            _ => vec![&b"AUTH"[..], p.as_bytes()],
        });
        if let Some(words) = auth
            && let Value::Error(e) = c.call(&words).await?
        {
            bail!("AUTH refused: {e}");
        }
        Ok(c)
    }

    /// Sends one command and reads its reply. An error reply is a value,
    /// not an `Err`: callers branch on it (`-NOJOB`, `-PAUSED`, ...).
    pub async fn call(&mut self, args: &[&[u8]]) -> anyhow::Result<Value> {
        self.send(args).await?;
        self.read().await
    }

    /// Sends one command without reading.
    pub async fn send(&mut self, args: &[&[u8]]) -> anyhow::Result<()> {
        let mut buf = Vec::with_capacity(64 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        self.io
            .get_mut()
            .write_all(&buf)
            .await
            .context("writing to the node")
    }

    /// Reads one reply.
    pub async fn read(&mut self) -> anyhow::Result<Value> {
        self.value(0).await
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        let mut line = Vec::new();
        let n = (&mut self.io)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .context("reading from the node")?;
        if n == 0 {
            bail!("the node closed the connection");
        }
        if !line.ends_with(b"\r\n") {
            bail!("protocol error: reply line too long or unterminated");
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).context("protocol error: reply line is not UTF-8")
    }

    fn value(&mut self, depth: usize) -> BoxFuture<'_, anyhow::Result<Value>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                bail!("protocol error: reply nested too deep");
            }
            let line = self.line().await?;
            let (kind, rest) = line.split_at(line.len().min(1));
            let num = || -> anyhow::Result<i64> {
                rest.parse::<i64>()
                    .with_context(|| format!("protocol error: bad length {rest:?}"))
            };
            Ok(match kind {
                "+" => Value::Simple(rest.to_string()),
                "-" => Value::Error(rest.to_string()),
                ":" => Value::Int(num()?),
                "$" => {
                    let n = num()?;
                    if n < 0 {
                        return Ok(Value::Nil);
                    }
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    if n > MAX_BULK {
                        bail!("protocol error: bulk string of {n} bytes is over the bound");
                    }
                    let mut b = vec![0; n + 2];
                    self.io
                        .read_exact(&mut b)
                        .await
                        .context("reading from the node")?;
                    b.truncate(n);
                    Value::Bulk(b)
                }
                "*" => {
                    let n = num()?;
                    if n < 0 {
                        return Ok(Value::Nil);
                    }
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    if n > MAX_ARRAY {
                        bail!("protocol error: array of {n} elements is over the bound");
                    }
                    let mut items = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        items.push(self.value(depth + 1).await?);
                    }
                    Value::Array(items)
                }
                _ => bail!("protocol error: unexpected reply {line:?}"),
            })
        })
    }
}

/// The node could not be reached: the CLI's exit code 3.
fn unreachable_node(addr: &str, why: &str) -> anyhow::Error {
    anyhow::Error::new(Unreachable(format!(
        "cannot reach the node's RESP port at {addr}: {why}"
    )))
}

/// A node that cannot be reached over RESP (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);
