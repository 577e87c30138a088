//! The note's queue commands over RESP: `wasque queue`, `wasque getjob
//! from`, `wasque worker` (printing, `--exec` with FINISH, NACK on a
//! failing command, `-t` killing a slow one, SIGINT), and `SUBSCRIBE`'s
//! job events. Real node and CLI processes; every wait is bounded and
//! every child is killed by its own handle.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redis::Value;
use wasque_tests::node::TestNode;

fn cli(node: &TestNode) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_test-wasque"));
    cmd.arg("--node")
        .arg(node.addr_str())
        .arg("--data-dir")
        .arg(&node.data_dir);
    cmd
}

fn wasque(node: &TestNode, args: &[&str]) -> Output {
    let mut child = cli(node)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wasque");
    // Bounded: kill it if it runs past 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("wasque output");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("wasque {args:?} did not finish within 30 s");
}

/// A worker process; killed when dropped if still running.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    fn start(node: &TestNode, args: &[&str]) -> Worker {
        let mut child = cli(node)
            .arg("worker")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wasque worker");
        let out = child.stdout.take().expect("stdout piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker { child, lines }
    }

    /// SIGINT, then waits (bounded) for the worker to exit.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the worker did not stop within 20 s of SIGINT");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn conn(node: &TestNode) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{}/", node.addr)).expect("client");
    let c = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .expect("connect over RESP");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    c
}

fn q(c: &mut redis::Connection, args: &[&str]) -> Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        other => panic!("not a string: {other:?}"),
    }
}

/// A field of a flat field/value array (SHOW, RESULT); None when nil.
fn field(v: &Value, name: &str) -> Option<Value> {
    let Value::Array(a) = v else { return None };
    a.chunks(2)
        .find(|kv| matches!(&kv[0], Value::BulkString(b) if b == name.as_bytes()))
        .map(|kv| kv[1].clone())
}

fn add(c: &mut redis::Connection, queue: &str, body: &str) -> String {
    text(&q(c, &["ADDJOB", queue, body, "0"]))
}

/// Polls until `f` holds, at most `secs`.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn nacks(c: &mut redis::Connection, id: &str) -> i64 {
    match field(&q(c, &["SHOW", id]), "nacks") {
        Some(Value::Int(n)) => n,
        _ => 0,
    }
}

#[test]
fn queue_and_getjob_from() {
    let node = TestNode::start(&[]);
    let o = wasque(&node, &["queue", "notes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "OK\n");

    let mut c = conn(&node);
    let id = add(&mut c, "notes", "hello queue");
    let o = wasque(&node, &["queue", "notes", "--stat"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.starts_with("OK\n"), "{out}");
    assert!(out.contains("len 1"), "{out}");

    let o = wasque(&node, &["getjob", "from", "notes", "--timeout", "5000"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{id} hello queue\n")
    );
    // Delivered, not acknowledged: the user acks it.
    assert!(matches!(field(&q(&mut c, &["SHOW", &id]), "state"), Some(v) if text(&v) == "active"));

    // Nothing left: NOHANG and TIMEOUT end at once / in time, exit 1.
    let o = wasque(&node, &["getjob", "from", "notes", "--nohang"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let t = Instant::now();
    let o = wasque(&node, &["getjob", "from", "notes", "--timeout", "300"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(t.elapsed() >= Duration::from_millis(300));

    // Usage errors exit 2; an unreachable node exits 3.
    let o = wasque(&node, &["getjob", "notes", "x"]);
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(env!("CARGO_BIN_EXE_test-wasque"))
        .args(["--node", "127.0.0.1:1", "queue", "x"])
        .output()
        .expect("run wasque");
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn worker_without_exec_prints_and_acks() {
    let node = TestNode::start(&[]);
    let mut c = conn(&node);
    let a = add(&mut c, "printq", "first body");
    let b = add(&mut c, "otherq", "second body");
    let w = Worker::start(&node, &["printq", "-q", "otherq", "--single-process"]);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 2 && Instant::now() < deadline {
        if let Ok(line) = w.lines.recv_timeout(Duration::from_millis(100)) {
            got.push(line);
        }
    }
    got.sort();
    let mut want = vec![format!("{a} first body"), format!("{b} second body")];
    want.sort();
    assert_eq!(got, want);
    // Acknowledged: the node forgot them.
    assert!(eventually(10, || {
        matches!(q(&mut c, &["SHOW", &a]), Value::Nil)
            && matches!(q(&mut c, &["SHOW", &b]), Value::Nil)
    }));
    assert!(w.interrupt().success());
}

#[test]
fn worker_exec_finishes_nacks_and_kills() {
    let node = TestNode::start(&[]);
    let mut c = conn(&node);
    let script =
        r#"read x; case "$x" in fail) exit 3;; slow) sleep 30;; esac; echo "$x" | tr a-z A-Z"#;
    let w = Worker::start(
        &node,
        &["wq", "-t", "700", "--concurrency", "3", "--exec", script],
    );
    let ok = add(&mut c, "wq", "shout");
    let fail = add(&mut c, "wq", "fail");
    let slow = add(&mut c, "wq", "slow");

    // exit 0: FINISHed, stdout is the result.
    assert!(
        eventually(20, || field(&q(&mut c, &["RESULT", &ok]), "output")
            .is_some_and(|o| text(&o) == "SHOUT\n")),
        "no result for {ok}"
    );
    let r = q(&mut c, &["RESULT", &ok]);
    assert_eq!(
        field(&r, "state").map(|v| text(&v)).as_deref(),
        Some("done")
    );
    assert_eq!(field(&r, "exit_code"), Some(Value::Int(0)));
    // `wasque show` (QUIC) sees the same result.
    let o = wasque(&node, &["show", &ok, "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("show --json");
    assert_eq!(doc["state"], "done");
    assert_eq!(doc["result"]["output"], "SHOUT\n");

    // A failing command NACKs; a command past -t is killed and NACKed.
    assert!(
        eventually(20, || nacks(&mut c, &fail) >= 1),
        "fail not nacked"
    );
    let t = Instant::now();
    assert!(
        eventually(20, || nacks(&mut c, &slow) >= 1),
        "slow not nacked"
    );
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "-t did not kill in time"
    );
    assert!(w.interrupt().success());
    // Neither ended up with a result.
    assert!(matches!(q(&mut c, &["RESULT", &fail]), Value::Nil));
    assert!(matches!(q(&mut c, &["RESULT", &slow]), Value::Nil));
}

#[test]
fn sigint_lets_a_running_command_finish() {
    let node = TestNode::start(&[]);
    let mut c = conn(&node);
    let w = Worker::start(&node, &["sq", "--single-process", "--exec", "sleep 1; cat"]);
    let id = add(&mut c, "sq", "held");
    // Wait until the worker holds it, then interrupt.
    assert!(eventually(20, || {
        field(&q(&mut c, &["SHOW", &id]), "state").is_some_and(|s| text(&s) == "active")
    }));
    std::thread::sleep(Duration::from_millis(200));
    assert!(w.interrupt().success());
    let r = q(&mut c, &["RESULT", &id]);
    assert_eq!(
        field(&r, "output").map(|v| text(&v)).as_deref(),
        Some("held")
    );
}

#[test]
fn subscribe_receives_job_events() {
    let node = TestNode::start(&[]);
    let client = redis::Client::open(format!("redis://{}/", node.addr)).expect("client");
    let mut sub = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .expect("connect");
    let mut ps = sub.as_pubsub();
    ps.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    ps.subscribe("queue:evq").expect("subscribe queue");
    ps.subscribe("jobs").expect("subscribe jobs");

    let mut c = conn(&node);
    let other = add(&mut c, "elsewhere", "x");
    let id = add(&mut c, "evq", "payload");
    let got = q(&mut c, &["GETJOB", "NOHANG", "FROM", "evq"]);
    assert!(matches!(got, Value::Array(_)));
    assert_eq!(text(&q(&mut c, &["FINISH", &id, "out"])), "OK");

    fn on(seen: &[(String, serde_json::Value)], ch: &str, ev: &str, id: &str) -> bool {
        seen.iter()
            .any(|(c, j)| c == ch && j["event"] == ev && j["id"] == id)
    }
    let mut seen: Vec<(String, serde_json::Value)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    for _ in 0..100 {
        if Instant::now() > deadline
            || (on(&seen, "jobs", "finished", &id) && on(&seen, "queue:evq", "finished", &id))
        {
            break;
        }
        let Ok(msg) = ps.get_message() else { break };
        let payload: String = msg.get_payload().expect("payload");
        let json: serde_json::Value = serde_json::from_str(&payload).expect("json payload");
        seen.push((msg.get_channel_name().to_string(), json));
    }
    let on = |ch: &str, ev: &str, id: &str| on(&seen, ch, ev, id);
    assert!(on("jobs", "added", &other), "{seen:?}");
    assert!(on("jobs", "added", &id), "{seen:?}");
    assert!(on("queue:evq", "added", &id), "{seen:?}");
    assert!(on("queue:evq", "finished", &id), "{seen:?}");
    assert!(on("jobs", "finished", &id), "{seen:?}");
    // The queue channel carries only its queue.
    assert!(
        !seen
            .iter()
            .any(|(c, j)| c == "queue:evq" && j["queue"] != "evq"),
        "{seen:?}"
    );
    assert!(seen.iter().all(|(_, j)| j["queue"].is_string()));

    // A subscribed connection refuses other commands, as Redis does.
    let mut raw = std::net::TcpStream::connect(node.addr).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    use std::io::{Read, Write};
    raw.write_all(b"SUBSCRIBE jobs\r\nQLEN evq\r\nPING\r\n")
        .expect("write");
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 1024];
    while Instant::now() < deadline && !buf.ends_with(b"$4\r\npong\r\n$0\r\n\r\n") {
        match raw.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let s = String::from_utf8_lossy(&buf);
    assert!(
        s.starts_with("*3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n"),
        "{s}"
    );
    assert!(s.contains("-ERR Can't execute 'qlen'"), "{s}");
    assert!(s.ends_with("*2\r\n$4\r\npong\r\n$0\r\n\r\n"), "{s}");
}

#[test]
fn a_command_that_always_fails_backs_off_instead_of_spinning() {
    let node = TestNode::start(&[]);
    let mut c = conn(&node);
    let w = Worker::start(&node, &["bq", "--concurrency", "1", "--exec", "exit 7"]);
    let id = add(&mut c, "bq", "doomed");
    assert!(
        eventually(20, || nacks(&mut c, &id) >= 1),
        "the failing job was never NACKed"
    );
    // Without a pause the worker NACKs it again every few milliseconds;
    // with 100 ms doubling, at most a handful of times in 2.5 s.
    let first = nacks(&mut c, &id);
    std::thread::sleep(Duration::from_millis(2500));
    let more = nacks(&mut c, &id) - first;
    assert!(more >= 1, "the job was not taken again after the pause");
    assert!(
        more <= 8,
        "{more} NACKs in 2.5 s: the worker did not back off"
    );
    assert!(w.interrupt().success());
}
