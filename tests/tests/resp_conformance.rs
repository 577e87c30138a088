//! Disque's commands over RESP against a real node process, driven by an
//! independent client (the `redis` crate) and by raw sockets: replies,
//! error codes, counters, delay/retry/TTL timing (short values, bounded
//! waits), blocked-client order, pipelining, inline commands, and wasque's
//! extensions.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redis::Value;
use wasque_tests::node::TestNode;

fn start() -> TestNode {
    TestNode::start(&["--enable-debug-command", "--exec-threads", "1"])
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

fn q(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

fn ok(c: &mut redis::Connection, args: &[&str]) -> Value {
    q(c, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The error code (first word) of a refused command.
fn err(c: &mut redis::Connection, args: &[&str]) -> String {
    match q(c, args) {
        Err(e) => e.code().unwrap_or("?").to_string() + " " + e.detail().unwrap_or(""),
        Ok(v) => panic!("{args:?} succeeded: {v:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        other => panic!("not a string: {other:?}"),
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        other => panic!("not an array: {other:?}"),
    }
}

/// A field of a flat field/value array (SHOW, QSTAT, RESULT).
fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    let a = items(v);
    a.chunks(2)
        .find(|kv| text(&kv[0]) == name)
        .map(|kv| &kv[1])
        .unwrap_or_else(|| panic!("no field {name} in {v:?}"))
}

fn add(c: &mut redis::Connection, queue: &str, body: &str, opts: &[&str]) -> String {
    let mut args = vec!["ADDJOB", queue, body, "0"];
    args.extend_from_slice(opts);
    text(&ok(c, &args))
}

fn qlen(c: &mut redis::Connection, queue: &str) -> i64 {
    int(&ok(c, &["QLEN", queue]))
}

/// Polls until `f` holds, at most `secs`.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn add_get_ack_and_show() {
    let node = start();
    let mut c = conn(&node);
    assert_eq!(text(&ok(&mut c, &["PING"])), "PONG");
    let id = add(&mut c, "q", "hello", &[]);
    assert_eq!(id.len(), 36, "a canonical UUID: {id}");
    assert_eq!(qlen(&mut c, "q"), 1);
    let show = ok(&mut c, &["SHOW", &id]);
    for f in [
        "id",
        "queue",
        "state",
        "repl",
        "ttl",
        "ctime",
        "delay",
        "retry",
        "nacks",
        "additional-deliveries",
        "nodes-delivered",
        "nodes-confirmed",
        "next-requeue-within",
        "next-awake-within",
        "body",
    ] {
        field(&show, f);
    }
    assert_eq!(text(field(&show, "state")), "queued");
    assert_eq!(int(field(&show, "retry")), 300);
    assert!((86_399..=86_400).contains(&int(field(&show, "ttl"))));

    let got = ok(&mut c, &["GETJOB", "FROM", "q"]);
    let job = items(&items(&got)[0]);
    assert_eq!(
        (text(&job[0]), text(&job[1]), text(&job[2])),
        ("q".into(), id.clone(), "hello".into())
    );
    assert_eq!(text(field(&ok(&mut c, &["SHOW", &id]), "state")), "active");
    assert_eq!(int(&ok(&mut c, &["ACKJOB", &id])), 1);
    assert_eq!(ok(&mut c, &["SHOW", &id]), Value::Nil);
    assert_eq!(int(&ok(&mut c, &["ACKJOB", &id])), 0);
    assert_eq!(int(&ok(&mut c, &["FASTACK", &id])), 0);
}

#[test]
fn getjob_options_nohang_timeout_count_withcounters() {
    let node = start();
    let mut c = conn(&node);
    assert_eq!(
        ok(&mut c, &["GETJOB", "NOHANG", "FROM", "empty"]),
        Value::Nil
    );
    let t = Instant::now();
    assert_eq!(
        ok(&mut c, &["GETJOB", "TIMEOUT", "150", "FROM", "empty"]),
        Value::Nil
    );
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(140) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    for i in 0..3 {
        add(&mut c, "a", &format!("a{i}"), &[]);
    }
    add(&mut c, "b", "b0", &[]);
    let got = ok(
        &mut c,
        &["GETJOB", "COUNT", "10", "WITHCOUNTERS", "FROM", "b", "a"],
    );
    let bodies: Vec<String> = items(&got).iter().map(|j| text(&items(j)[2])).collect();
    assert_eq!(bodies, ["b0", "a0", "a1", "a2"]);
    let first = items(&items(&got)[0]);
    assert_eq!(first.len(), 7);
    assert_eq!(text(&first[3]), "nacks");
    assert_eq!(text(&first[5]), "additional-deliveries");
}

#[test]
fn blocked_clients_are_served_in_arrival_order() {
    let node = start();
    let mut waiters = Vec::new();
    for i in 0..3 {
        let mut c = conn(&node);
        waiters.push(std::thread::spawn(move || {
            let v = ok(&mut c, &["GETJOB", "TIMEOUT", "15000", "FROM", "fifo"]);
            (i, text(&items(&items(&v)[0])[2]))
        }));
        // Let this client block before the next one arrives.
        let mut probe = conn(&node);
        assert!(eventually(10, || {
            let st = ok(&mut probe, &["QSTAT", "fifo"]);
            st != Value::Nil && int(field(&st, "blocked")) == i + 1
        }));
    }
    let mut c = conn(&node);
    for body in ["first", "second", "third"] {
        add(&mut c, "fifo", body, &[]);
    }
    let mut got: Vec<(i64, String)> = waiters
        .into_iter()
        .map(|w| w.join().expect("waiter"))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (0, "first".into()),
            (1, "second".into()),
            (2, "third".into())
        ]
    );
}

#[test]
fn retry_delay_and_ttl_timing() {
    let node = start();
    let mut c = conn(&node);
    // RETRY: an unacked delivery comes back, counted.
    let id = add(&mut c, "r", "x", &["RETRY", "1"]);
    ok(&mut c, &["GETJOB", "FROM", "r"]);
    assert_eq!(qlen(&mut c, "r"), 0);
    assert!(
        eventually(5, || qlen(&mut c, "r") == 1),
        "re-queued after RETRY"
    );
    let got = ok(&mut c, &["GETJOB", "WITHCOUNTERS", "FROM", "r"]);
    assert_eq!(
        int(&items(&items(&got)[0])[6]),
        1,
        "one additional delivery"
    );
    ok(&mut c, &["ACKJOB", &id]);

    // RETRY 0: at most once.
    let once = add(&mut c, "r0", "x", &["RETRY", "0"]);
    ok(&mut c, &["GETJOB", "FROM", "r0"]);
    std::thread::sleep(Duration::from_millis(1_300));
    assert_eq!(qlen(&mut c, "r0"), 0);
    assert_eq!(
        text(field(&ok(&mut c, &["SHOW", &once]), "state")),
        "active"
    );

    // DELAY: not queued before its time.
    let d = add(&mut c, "d", "x", &["DELAY", "1"]);
    assert_eq!(qlen(&mut c, "d"), 0);
    assert!(int(field(&ok(&mut c, &["SHOW", &d]), "next-awake-within")) > 0);
    assert!(
        eventually(5, || qlen(&mut c, "d") == 1),
        "queued after DELAY"
    );

    // TTL: gone whatever its state.
    let t = add(&mut c, "t", "x", &["TTL", "1"]);
    assert!(
        eventually(5, || ok(&mut c, &["SHOW", &t]) == Value::Nil),
        "expired"
    );
    assert_eq!(qlen(&mut c, "t"), 0);
}

#[test]
fn nack_working_enqueue_dequeue_deljob() {
    let node = start();
    let mut c = conn(&node);
    let id = add(&mut c, "w", "x", &["RETRY", "30", "TTL", "600"]);
    ok(&mut c, &["GETJOB", "FROM", "w"]);
    assert_eq!(int(&ok(&mut c, &["WORKING", &id])), 30);
    assert_eq!(int(&ok(&mut c, &["NACK", &id])), 1);
    assert_eq!(int(field(&ok(&mut c, &["SHOW", &id]), "nacks")), 1);
    assert_eq!(qlen(&mut c, "w"), 1);
    assert_eq!(int(&ok(&mut c, &["DEQUEUE", &id])), 1);
    assert_eq!(qlen(&mut c, "w"), 0);
    assert_eq!(int(&ok(&mut c, &["ENQUEUE", &id])), 1);
    assert_eq!(int(&ok(&mut c, &["ENQUEUE", &id])), 0, "already queued");
    assert_eq!(int(&ok(&mut c, &["DELJOB", &id])), 1);
    assert_eq!(qlen(&mut c, "w"), 0);
    let gone = "0193a4b2-7c1e-7a3f-8e21-4c5d00a1b2c3";
    assert!(err(&mut c, &["WORKING", gone]).starts_with("NOJOB"));
}

#[test]
fn queue_introspection_and_pause() {
    let node = start();
    let mut c = conn(&node);
    let ids: Vec<String> = (0..4)
        .map(|i| add(&mut c, "p", &format!("{i}"), &[]))
        .collect();
    add(&mut c, "other", "o", &[]);
    let peek = ok(&mut c, &["QPEEK", "p", "2"]);
    let peeked: Vec<String> = items(&peek).iter().map(|j| text(&items(j)[1])).collect();
    assert_eq!(peeked, ids[..2]);
    let newest = ok(&mut c, &["QPEEK", "p", "-1"]);
    assert_eq!(text(&items(&items(&newest)[0])[1]), ids[3]);
    assert_eq!(ok(&mut c, &["QPEEK", "none", "5"]), Value::Array(vec![]));
    let st = ok(&mut c, &["QSTAT", "p"]);
    assert_eq!((int(field(&st, "len")), int(field(&st, "jobs-in"))), (4, 4));
    assert_eq!(text(field(&st, "pause")), "none");
    assert_eq!(ok(&mut c, &["QSTAT", "nope"]), Value::Nil);

    let scan = ok(&mut c, &["QSCAN", "BUSYLOOP"]);
    let mut names: Vec<String> = items(&items(&scan)[1]).iter().map(text).collect();
    names.sort();
    assert_eq!(names, ["other", "p"]);
    assert_eq!(text(&items(&scan)[0]), "0");
    let js = ok(
        &mut c,
        &["JSCAN", "0", "COUNT", "2", "QUEUE", "p", "STATE", "queued"],
    );
    assert_eq!(items(&items(&js)[1]).len(), 2);
    assert_ne!(text(&items(&js)[0]), "0", "more to come");
    let all = ok(&mut c, &["JSCAN", "BUSYLOOP", "REPLY", "all"]);
    assert_eq!(items(&items(&all)[1]).len(), 5);
    field(&items(&items(&all)[1])[0], "body");
    assert!(err(&mut c, &["JSCAN", "STATE", "bogus"]).contains("Invalid job state"));

    assert_eq!(text(&ok(&mut c, &["PAUSE", "p", "in"])), "in");
    assert!(err(&mut c, &["ADDJOB", "p", "x", "0"]).starts_with("PAUSED"));
    assert_eq!(text(&ok(&mut c, &["PAUSE", "p", "out"])), "out");
    assert_eq!(ok(&mut c, &["GETJOB", "NOHANG", "FROM", "p"]), Value::Nil);
    assert_eq!(text(&ok(&mut c, &["PAUSE", "p", "all"])), "all");
    assert_eq!(text(&ok(&mut c, &["PAUSE", "p", "state"])), "all");
    assert_eq!(text(&ok(&mut c, &["PAUSE", "p", "none", "bcast"])), "none");
    assert!(ok(&mut c, &["GETJOB", "NOHANG", "FROM", "p"]) != Value::Nil);
}

#[test]
fn refusals_carry_disques_error_codes() {
    let node = start();
    let mut c = conn(&node);
    assert!(err(&mut c, &["ADDJOB", "q", "x", "0", "REPLICATE", "3"]).starts_with("NOREPL"));
    add(&mut c, "m", "x", &[]);
    assert!(err(&mut c, &["ADDJOB", "m", "x", "0", "MAXLEN", "1"]).starts_with("MAXLEN"));
    assert!(
        err(
            &mut c,
            &["ACKJOB", "D-dcb833cf-8YL1NT17e9+wsA/09NqxscQI-05a1"]
        )
        .starts_with("BADID")
    );
    assert!(err(&mut c, &["SHOW", "not-an-id"]).starts_with("BADID"));
    assert!(err(&mut c, &["NOSUCHCMD"]).contains("unknown command"));
    assert!(err(&mut c, &["SHOW"]).contains("wrong number of arguments"));
    assert!(err(&mut c, &["QPEEK", "q", "lots"]).contains("not an integer"));
    assert!(err(&mut c, &["ADDJOB", "q", "x", "-1"]).contains("timeout"));
    assert!(err(&mut c, &["ADDJOB", "q", "x", "0", "TTL", "0"]).contains("TTL"));
    assert!(err(&mut c, &["ADDJOB", "q", "x", "0", "RETRY", "-1"]).contains("RETRY"));
    assert!(
        err(
            &mut c,
            &["ADDJOB", "q", "x", "0", "DELAY", "10", "TTL", "5"]
        )
        .contains("DELAY")
    );
    assert!(err(&mut c, &["ADDJOB", "q", "x", "0", "PRIORITY", "10"]).contains("PRIORITY"));
    assert!(err(&mut c, &["GETJOB", "COUNT", "0", "FROM", "q"]).contains("COUNT"));
    assert!(err(&mut c, &["GETJOB", "FROM"]).contains("syntax"));
    assert!(err(&mut c, &["CLUSTER", "BOGUS"]).starts_with("ERR"));
    assert!(err(&mut c, &["HELLO", "3"]).starts_with("NOPROTO"));
    let hello = ok(&mut c, &["HELLO"]);
    assert_eq!(int(&items(&hello)[0]), 1);
    assert_eq!(text(&items(&hello)[1]).len(), 40);
    assert!(err(&mut c, &["AUTH", "x"]).contains("no password is set"));
    let info = text(&ok(&mut c, &["INFO"]));
    assert!(
        info.contains("registered_jobs:1") && info.contains("registered_queues:1"),
        "{info}"
    );
    let jobs = text(&ok(&mut c, &["INFO", "jobs"]));
    assert!(jobs.starts_with("# Jobs") && !jobs.contains("# Queues"));
    // DEBUG needs the test flag; this node has it.
    assert_eq!(ok(&mut c, &["DEBUG", "FLUSHALL"]), Value::Okay);
    assert_eq!(qlen(&mut c, "m"), 0);
    let plain = TestNode::start(&[]);
    let mut p = conn(&plain);
    assert!(err(&mut p, &["DEBUG", "FLUSHALL"]).contains("--enable-debug-command"));
}

#[test]
fn config_get_set_and_auth() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("wasque.conf");
    std::fs::write(&file, "requirepass s3cret\nappendonly no\n").expect("write");
    let node = TestNode::start(&["--config", file.to_str().expect("utf8")]);
    let mut c = conn(&node);
    assert!(err(&mut c, &["PING"]).starts_with("NOAUTH"));
    assert!(err(&mut c, &["AUTH", "wrong"]).starts_with("WRONGPASS"));
    assert_eq!(ok(&mut c, &["AUTH", "s3cret"]), Value::Okay);
    assert_eq!(text(&ok(&mut c, &["PING"])), "PONG");
    let port = ok(&mut c, &["CONFIG", "GET", "port"]);
    assert_eq!(text(&items(&port)[1]), node.addr.port().to_string());
    assert_eq!(
        ok(&mut c, &["CONFIG", "SET", "maxclients", "50"]),
        Value::Okay
    );
    // `max*` matches maxclients, maxmemory, ...: pairs, in any order.
    let maxes = ok(&mut c, &["CONFIG", "GET", "max*"]);
    let maxclients = items(&maxes)
        .chunks(2)
        .find(|kv| text(&kv[0]) == "maxclients")
        .map(|kv| text(&kv[1]));
    assert_eq!(maxclients.as_deref(), Some("50"), "{maxes:?}");
    assert!(err(&mut c, &["CONFIG", "SET", "port", "1"]).contains("Unsupported"));
    assert_eq!(ok(&mut c, &["CONFIG", "REWRITE"]), Value::Okay);
    let rewritten = std::fs::read_to_string(&file).expect("read");
    assert!(
        rewritten.contains("maxclients 50") && rewritten.contains("appendonly no"),
        "{rewritten}"
    );
}

#[test]
fn plain_jobs_finish_result_and_waitjob() {
    let node = start();
    let mut c = conn(&node);
    let id = add(&mut c, "ext", "in", &[]);
    assert_eq!(ok(&mut c, &["RESULT", &id]), Value::Nil, "not finished");
    ok(&mut c, &["GETJOB", "FROM", "ext"]);
    let node_addr = node.addr;
    let waiter_id = id.clone();
    let waiter = std::thread::spawn(move || {
        let client = redis::Client::open(format!("redis://{node_addr}/")).expect("client");
        let mut w = client.get_connection().expect("conn");
        let mut cmd = redis::cmd("WAITJOB");
        cmd.arg(&waiter_id).arg(10_000);
        cmd.query::<Value>(&mut w).expect("waitjob")
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        ok(&mut c, &["FINISH", &id, "out", "EXIT", "0"]),
        Value::Okay
    );
    let r = waiter.join().expect("waiter");
    assert_eq!(text(field(&r, "state")), "done");
    assert_eq!(text(field(&r, "output")), "out");
    assert_eq!(int(field(&r, "exit_code")), 0);
    let r = ok(&mut c, &["RESULT", &id]);
    assert_eq!(text(field(&r, "output")), "out");
    assert_eq!(ok(&mut c, &["WAITJOB", &id, "10"]), r);
    assert!(err(&mut c, &["RESULT", "0193a4b2-7c1e-7a3f-8e21-4c5d00a1b2c3"]).starts_with("ERR"));
    assert!(err(&mut c, &["RESULT", "nope"]).starts_with("BADID"));
}

/// A WASI module printing "hi" on stdout.
const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

#[test]
fn wasm_jobs_over_resp() {
    let node = start();
    let mut c = conn(&node);
    let bytes = wat::parse_str(HELLO_WAT).expect("wat");
    let mut put = redis::cmd("MODULE");
    put.arg("PUT").arg(&bytes[..]);
    let hash: String = put.query(&mut c).expect("module put");
    assert_eq!(hash.len(), 64);
    let list = ok(&mut c, &["MODULE", "LIST"]);
    assert_eq!(items(&list).len(), 1);
    let id = add(
        &mut c,
        "wq",
        "",
        &["MODULE", &hash, "FUEL", "100000", "PRIORITY", "5"],
    );
    let r = ok(&mut c, &["WAITJOB", &id, "20000"]);
    assert_eq!(text(field(&r, "state")), "done", "{r:?}");
    assert_eq!(text(field(&r, "output")), "hi");
    assert_eq!(*field(&r, "error_class"), Value::Nil);
    for f in ["message", "fuel_used", "duration_ms", "node"] {
        field(&r, f);
    }
    assert_eq!(
        ok(&mut c, &["GETJOB", "NOHANG", "FROM", "wq"]),
        Value::Nil,
        "workers never get Wasm jobs"
    );
    let unknown = "0".repeat(64);
    assert!(err(&mut c, &["ADDJOB", "wq", "x", "0", "MODULE", &unknown]).starts_with("NOMODULE"));
    ok(&mut c, &["ACKJOB", &id]);
    assert_eq!(ok(&mut c, &["MODULE", "DEL", &hash]), Value::Okay);
}

fn raw(node: &TestNode) -> TcpStream {
    let s = TcpStream::connect(node.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Reads until `want` bytes arrived or the peer closes.
fn read_n(s: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while out.len() < want {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn pings_fine(node: &TestNode) {
    let mut s = raw(node);
    s.write_all(b"PING\r\n").expect("write");
    assert_eq!(read_n(&mut s, 7), b"+PONG\r\n");
}

#[test]
fn inline_commands_and_pipelining() {
    let node = start();
    let mut s = raw(&node);
    s.write_all(b"PING\r\nPING hello\r\nQLEN \"my queue\"\r\n")
        .expect("write");
    assert_eq!(
        read_n(&mut s, 7 + 11 + 4),
        b"+PONG\r\n$5\r\nhello\r\n:0\r\n"
    );

    // Thousands of commands in one write, replies in order.
    let n = 5_000;
    let mut batch = Vec::new();
    for i in 0..n {
        let body = format!("job{i}");
        batch.extend_from_slice(
            format!(
                "*4\r\n$6\r\nADDJOB\r\n$4\r\npipe\r\n${}\r\n{body}\r\n$1\r\n0\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    batch.extend_from_slice(b"*2\r\n$4\r\nQLEN\r\n$4\r\npipe\r\n");
    s.write_all(&batch).expect("write");
    let want = n * 39 + format!(":{n}\r\n").len();
    let got = read_n(&mut s, want);
    assert_eq!(got.len(), want);
    assert!(got.ends_with(format!(":{n}\r\n").as_bytes()));
    assert_eq!(got.iter().filter(|b| **b == b'+').count(), n);
}

/// The node reads a socket once per readiness event (a short read ends
/// it): a request that arrives a few bytes at a time, a reply that
/// needs a read of exactly the room offered, and a request sent with the
/// client's close in the same event must each still be answered.
#[test]
fn requests_in_pieces_and_a_half_close_are_answered() {
    let node = start();
    let mut s = raw(&node);
    s.set_nodelay(true).expect("nodelay");
    let pieces = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
    for chunk in pieces.chunks(3) {
        s.write_all(chunk).expect("write");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_n(&mut s, 11), b"$5\r\nhello\r\n");

    // A big value, larger than the 16 KiB first read, in one write.
    let big = "x".repeat(100_000);
    let req = format!("*2\r\n$4\r\nECHO\r\n${}\r\n{big}\r\n", big.len());
    s.write_all(req.as_bytes()).expect("write");
    let want = format!("${}\r\n{big}\r\n", big.len());
    assert_eq!(read_n(&mut s, want.len()), want.as_bytes());

    // PING then the client's end of the stream: the reply, then the close.
    let mut s = raw(&node);
    s.write_all(b"PING\r\n").expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("half-close");
    let (got, closed) = read_to_close(&mut s);
    assert_eq!(got, b"+PONG\r\n");
    assert!(closed, "the node did not close after the client's end");
}

#[test]
fn bad_input_is_answered_and_the_node_stays_up() {
    let node = start();
    // Garbage that is not RESP: an inline line that is not a command.
    let mut s = raw(&node);
    s.write_all(b"\x00\xff\xfegarbage\r\n").expect("write");
    assert!(read_n(&mut s, 5).starts_with(b"-ERR"));
    pings_fine(&node);
    // Broken framing: answered, then closed.
    let mut s = raw(&node);
    s.write_all(b"*1\r\n+PING\r\n").expect("write");
    let got = read_n(&mut s, 1 << 16);
    assert!(
        got.starts_with(b"-ERR Protocol error"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    pings_fine(&node);
    // A bulk length over the bound, refused before its bytes come.
    let mut s = raw(&node);
    s.write_all(b"*2\r\n$6\r\nMODULE\r\n$99999999999\r\n")
        .expect("write");
    let got = read_n(&mut s, 1 << 16);
    assert!(
        got.starts_with(b"-ERR Protocol error: invalid bulk length"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    pings_fine(&node);
    // A half-sent bulk string, then the client goes away.
    let mut s = raw(&node);
    s.write_all(b"*3\r\n$6\r\nADDJOB\r\n$100\r\nonly a few bytes")
        .expect("write");
    drop(s);
    pings_fine(&node);
    // 10,000 arguments: parsed and answered.
    let mut s = raw(&node);
    let mut req = b"*10001\r\n$6\r\nACKJOB\r\n".to_vec();
    for _ in 0..10_000 {
        req.extend_from_slice(b"$1\r\nx\r\n");
    }
    s.write_all(&req).expect("write");
    assert!(read_n(&mut s, 6).starts_with(b"-BADID"));
    s.write_all(b"PING\r\n").expect("write");
    assert_eq!(
        read_n(&mut s, 7),
        b"+PONG\r\n",
        "same connection still serves"
    );
    // Unknown commands, wrong arity, bad ids, out-of-range numbers: replies.
    let mut c = conn(&node);
    for bad in [
        &["FOO", "bar"][..],
        &["ADDJOB", "q"],
        &["SHOW", "x"],
        &["QPEEK", "q", "99999999999999999999999"],
        &["GETJOB", "TIMEOUT", "-5", "FROM", "q"],
        &["ADDJOB", "q", "x", "0", "REPLICATE", "70000"],
    ] {
        assert!(q(&mut c, bad).is_err(), "{bad:?}");
    }
    pings_fine(&node);
}

#[test]
#[ignore = "needs redis-cli: scripts/test.sh runs it"]
fn redis_cli_smoke() {
    wasque_tests::tools::require("redis-cli", "apt-get install redis-tools");
    let node = start();
    let port = node.addr.port().to_string();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["PING"]), "PONG");
    let id = cli(&["ADDJOB", "smoke", "body", "0"]);
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(cli(&["QLEN", "smoke"]), "1");
    let got = cli(&["GETJOB", "FROM", "smoke"]);
    assert!(got.contains(&id) && got.contains("body"), "{got}");
    assert_eq!(cli(&["ACKJOB", &id]), "1");
    assert!(cli(&["INFO", "jobs"]).contains("registered_jobs:0"));
}

/// Reads until the node closes the connection (or 10 s pass): what it
/// answered, and whether it closed.
fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
    (out, false)
}

/// A node started from a config file of `text` (kept with the node).
fn start_conf(text: &str) -> (TestNode, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("wasque.conf");
    std::fs::write(&file, text).expect("write");
    let node = TestNode::start(&["--config", file.to_str().expect("utf8")]);
    (node, tmp)
}

#[test]
fn http_requests_to_the_resp_port_are_dropped_unanswered() {
    let node = start();
    for req in [
        &b"POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\nPING"[..],
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"get /x HTTP/1.0\r\n\r\n",
        b"*2\r\n$5\r\nHost:\r\n$9\r\nlocalhost\r\n",
        b"*1\r\n$4\r\nPOST\r\n",
    ] {
        let mut s = raw(&node);
        s.write_all(req).expect("write");
        let (got, closed) = read_to_close(&mut s);
        assert!(closed, "{}: closed", String::from_utf8_lossy(req));
        assert!(
            got.is_empty(),
            "{}: nothing answered, got {}",
            String::from_utf8_lossy(req),
            String::from_utf8_lossy(&got)
        );
    }
    // POST and Host: close a connection at any time; the replies owed
    // before them still go out.
    let mut s = raw(&node);
    s.write_all(b"PING\r\nPOST / HTTP/1.1\r\nPING\r\n")
        .expect("write");
    let (got, closed) = read_to_close(&mut s);
    assert!(closed);
    assert_eq!(got, b"+PONG\r\n");
    pings_fine(&node);
}

#[test]
fn before_auth_a_stranger_gets_small_bounds() {
    let (node, _tmp) = start_conf("requirepass s3cret\n");
    let refused = |req: &[u8], what: &str| {
        let mut s = raw(&node);
        s.write_all(req).expect("write");
        let (got, closed) = read_to_close(&mut s);
        assert!(
            got.starts_with(b"-ERR Protocol error"),
            "{what}: {}",
            String::from_utf8_lossy(&got)
        );
        assert!(closed, "{what}: closed");
    };
    refused(b"*11\r\n", "eleven arguments before AUTH");
    // The header alone is refused: its 16 KiB + 1 bytes are never sent.
    refused(
        b"*2\r\n$4\r\nAUTH\r\n$16385\r\n",
        "a long argument before AUTH",
    );
    refused(&[b'A'; (16 << 10) + 8], "a long inline line before AUTH");

    // The handshake itself fits, and after it the full bounds apply, even
    // pipelined in the same write.
    let mut s = raw(&node);
    let mut req =
        b"*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$6\r\ns3cret\r\n*12\r\n$4\r\nPING\r\n".to_vec();
    for _ in 0..11 {
        req.extend_from_slice(b"$1\r\nx\r\n");
    }
    req.extend_from_slice(b"*2\r\n$4\r\nECHO\r\n$20000\r\n");
    req.extend_from_slice(&[b'e'; 20000]);
    req.extend_from_slice(b"\r\nPING\r\n");
    s.write_all(&req).expect("write");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.ends_with(b"+PONG\r\n") && Instant::now() < deadline {
        let more = read_n(&mut s, 1);
        if more.is_empty() {
            break;
        }
        got.extend(more);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("+OK\r\n-ERR wrong number of arguments"),
        "{text}"
    );
    assert!(!text.contains("Protocol error"), "{text}");
    assert!(
        text.contains(&format!("$20000\r\n{}\r\n+PONG\r\n", "e".repeat(20000))),
        "a 20 KB argument after AUTH"
    );
}

#[test]
fn a_request_over_the_total_bound_is_refused_while_parsing() {
    // Arguments of up to 1 MiB, requests of up to 1.2 MB.
    let (node, _tmp) = start_conf(
        "max-module-bytes 1mb\nmax-body-bytes 1mb\nmax-frame-bytes 2mb\nproto-max-bulk-len 1mb\nresp-max-request-bytes 1200000\n",
    );
    let mut s = raw(&node);
    // One 700 kB argument: served.
    let mut req = b"*2\r\n$4\r\nECHO\r\n$700000\r\n".to_vec();
    req.extend_from_slice(&vec![b'a'; 700_000]);
    req.extend_from_slice(b"\r\n");
    s.write_all(&req).expect("write");
    assert_eq!(read_n(&mut s, 9 + 700_002).len(), 9 + 700_002);
    // Two of them in one request: refused at the second header, before
    // its bytes are sent.
    let mut req = b"*3\r\n$4\r\nECHO\r\n$700000\r\n".to_vec();
    req.extend_from_slice(&vec![b'a'; 700_000]);
    req.extend_from_slice(b"\r\n$700000\r\n");
    s.write_all(&req).expect("write");
    let (got, closed) = read_to_close(&mut s);
    assert!(
        got.starts_with(b"-ERR Protocol error: request too big"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(closed);
    pings_fine(&node);
}

/// Resident memory of a process, from /proc (Linux), in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[test]
fn a_burst_of_show_on_a_big_job_from_a_client_that_does_not_read_stays_bounded() {
    const BODY: usize = 4 << 20;
    const BURST: usize = 100;
    let node = start();
    let mut c = conn(&node);
    let body = "b".repeat(BODY);
    let id = text(&ok(&mut c, &["ADDJOB", "big", &body, "0"]));
    drop(body);
    // One SHOW read normally, so the steady allocations are counted before.
    let shown = ok(&mut c, &["SHOW", &id]);
    assert!(matches!(shown, Value::Array(_)));
    std::thread::sleep(Duration::from_millis(200));
    let before = rss(node.pid());

    // 100 SHOWs in one write (under 6 KB), and the client reads nothing:
    // unbounded, that is 100 x 4 MB of replies held by the node.
    let mut s = raw(&node);
    let one = format!("*2\r\n$4\r\nSHOW\r\n${}\r\n{id}\r\n", id.len());
    s.write_all(one.repeat(BURST).as_bytes()).expect("write");
    let mut peak = before;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        peak = peak.max(rss(node.pid()));
        std::thread::sleep(Duration::from_millis(20));
    }
    let grew = peak.saturating_sub(before);
    eprintln!("RSS grew by {} MB during the burst", grew >> 20);
    assert!(
        grew < 200 << 20,
        "the node grew by {} MB for a burst of {BURST} SHOWs of a {} MB job",
        grew >> 20,
        BODY >> 20
    );

    // The client drains: every reply comes, in full, then the connection
    // still serves.
    s.write_all(b"PING\r\n").expect("write");
    let mut got = 0usize;
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tail.ends_with(b"+PONG\r\n") && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got += n;
                tail.extend_from_slice(&buf[..n]);
                let keep = tail.len().saturating_sub(16);
                tail.drain(..keep);
            }
        }
    }
    assert!(tail.ends_with(b"+PONG\r\n"), "the connection serves again");
    assert!(got > BURST * BODY, "all {BURST} replies came: {got} bytes");
}

#[test]
fn config_set_refuses_what_a_line_cannot_carry_and_rewrite_round_trips() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("wasque.conf");
    std::fs::write(
        &file,
        "# a comment kept\nrequirepass s3cret\nappendonly no\nrequirepass s3cret\n",
    )
    .expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let cfg = file.to_str().expect("utf8");
    let data = tmp.path().join("data");
    let node = TestNode::start_in(&data, &["--config", cfg]);
    let mut c = conn(&node);
    assert_eq!(ok(&mut c, &["AUTH", "s3cret"]), Value::Okay);

    // A newline would smuggle a directive into the rewritten file.
    for bad in [
        "x\nbind 0.0.0.0",
        "x\r\nbind 0.0.0.0",
        "nul\0byte",
        "tab\there",
        "del\u{7f}",
    ] {
        let e = err(&mut c, &["CONFIG", "SET", "requirepass", bad]);
        assert!(
            e.starts_with("ERR") && e.contains("control character"),
            "{bad:?}: {e}"
        );
    }
    let e = err(&mut c, &["CONFIG", "SET", "requirepass", &"p".repeat(5000)]);
    assert!(e.contains("longer than"), "{e}");
    // Nothing changed: the old password still opens a new connection.
    let mut c2 = conn(&node);
    assert_eq!(ok(&mut c2, &["AUTH", "s3cret"]), Value::Okay);

    // Quotes, spaces, backslashes and a would-be comment: accepted, and
    // written so that the file reads back exactly this.
    let hostile = r#"a "quoted" pass\with\\slashes #not-a-comment 'single' ünï"#;
    assert_eq!(
        ok(&mut c, &["CONFIG", "SET", "requirepass", hostile]),
        Value::Okay
    );
    assert_eq!(
        ok(&mut c, &["CONFIG", "SET", "maxclients", "77"]),
        Value::Okay
    );
    assert_eq!(ok(&mut c, &["CONFIG", "REWRITE"]), Value::Okay);
    let meta = std::fs::metadata(&file).expect("stat");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "mode kept");
    let written = std::fs::read_to_string(&file).expect("read");
    assert!(written.starts_with("# a comment kept\n"), "{written}");
    assert_eq!(
        written.matches("requirepass").count(),
        1,
        "one line: {written}"
    );
    assert!(!written.contains("bind"), "{written}");
    assert!(written.contains("maxclients 77\n"), "{written}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("rewrite"))
        .collect();
    assert!(leftovers.is_empty(), "no temp file left: {leftovers:?}");
    drop((c, c2));
    node.stop();

    // Restarted from the rewritten file: the password round-trips exactly
    // and no directive was injected.
    let node = TestNode::start_in(&data, &["--config", cfg]);
    let mut c = conn(&node);
    assert!(err(&mut c, &["PING"]).starts_with("NOAUTH"));
    assert!(err(&mut c, &["AUTH", "s3cret"]).starts_with("WRONGPASS"));
    assert_eq!(ok(&mut c, &["AUTH", hostile]), Value::Okay);
    let got = ok(&mut c, &["CONFIG", "GET", "requirepass"]);
    assert_eq!(text(&items(&got)[1]), hostile);
    let got = ok(&mut c, &["CONFIG", "GET", "bind"]);
    assert_eq!(text(&items(&got)[1]), "127.0.0.1");
    let got = ok(&mut c, &["CONFIG", "GET", "maxclients"]);
    assert_eq!(text(&items(&got)[1]), "77");
}
