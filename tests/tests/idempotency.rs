//! Idempotency keys through real node processes: `ADDJOB ... IDEMPOTENCY
//! key` answers the first job's id for a repeated add to the same queue
//! (the job is queued and run once), another queue gets a job of its
//! own, the key is still answered after the job's ack and after a
//! restart, a window of eight seconds ends, malformed keys get clear
//! errors (over RESP, in the CLI and over QUIC), a repeated SDK `run`
//! learns the acked job is gone, two tenants' same key makes two jobs
//! (and a repeat passes the `max-jobs` quota), and on a three-node
//! cluster a node that holds a copy answers the first id, before and
//! after the ack. Every wait is bounded.

use redis::Value;
use wasque_tests::guests;
use wasque_tests::node::TestNode;
use wasque_tests::resp::{field, text};
use wasque_tests::wait::eventually;

fn q(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    wasque_tests::resp::cmd(c, args)
}

/// `ADDJOB queue body 0 IDEMPOTENCY key [extra...]`: the id answered.
fn add(c: &mut redis::Connection, queue: &str, body: &str, key: &str, extra: &[&str]) -> String {
    let mut args = vec!["ADDJOB", queue, body, "0", "IDEMPOTENCY", key];
    args.extend_from_slice(extra);
    text(&q(c, &args).expect("ADDJOB"))
}

#[test]
fn a_repeated_add_answers_the_first_id_and_runs_once() {
    let node = TestNode::start_http(&["--exec-threads", "1"]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP connection");

    // A plain job: one id, queued once.
    let id = add(&mut c, "q", "first", "order-1", &[]);
    assert_eq!(add(&mut c, "q", "second", "order-1", &[]), id);
    assert_eq!(q(&mut c, &["QLEN", "q"]).unwrap(), Value::Int(1));
    assert_eq!(field(&mut c, "SHOW", &id, "body").as_deref(), Some("first"));
    // SHOW, the CLI and the JSON document name the key.
    assert_eq!(
        field(&mut c, "SHOW", &id, "idempotency-key").as_deref(),
        Some("order-1")
    );
    let out = node.wasque(&["show", &id]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("idem key:  order-1"),
        "{out:?}"
    );
    let r = wasque_tests::http::get(node.http_addr(), &format!("/api/jobs/{id}")).unwrap();
    assert!(
        r.body.contains("\"idempotency_key\":\"order-1\""),
        "{}",
        r.body
    );
    // Another queue, the same key: a job of its own.
    let other = add(&mut c, "q2", "first", "order-1", &[]);
    assert_ne!(other, id);

    // Through the CLI (QUIC): the same id, nothing added.
    let out = node.wasque(&["addjob", "q", "third", "0", "--idempotency-key", "order-1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
    assert_eq!(q(&mut c, &["QLEN", "q"]).unwrap(), Value::Int(1));

    // Acknowledged: the key still answers its id, and adds nothing.
    assert_eq!(q(&mut c, &["ACKJOB", &id]).unwrap(), Value::Int(1));
    assert_eq!(add(&mut c, "q", "late retry", "order-1", &[]), id);
    assert_eq!(q(&mut c, &["QLEN", "q"]).unwrap(), Value::Int(0));

    // A Wasm job added twice runs once.
    let mut put = redis::cmd("MODULE");
    put.arg("PUT").arg(guests::wasm("echo"));
    let hash = text(&put.query::<Value>(&mut c).unwrap());
    let w = add(&mut c, "w", "payload", "run-1", &["MODULE", &hash]);
    eventually(20, "the Wasm job finishes", || {
        field(&mut c, "SHOW", &w, "state").as_deref() == Some("done")
    });
    assert_eq!(add(&mut c, "w", "payload", "run-1", &["MODULE", &hash]), w);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(field(&mut c, "SHOW", &w, "attempts").as_deref(), Some("1"));
    assert_eq!(field(&mut c, "SHOW", &w, "state").as_deref(), Some("done"));

    // Malformed keys: clear errors, nothing added.
    let err = q(&mut c, &["ADDJOB", "q", "x", "0", "IDEMPOTENCY", ""]).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let long = "k".repeat(257);
    let err = q(&mut c, &["ADDJOB", "q", "x", "0", "IDEMPOTENCY", &long]).unwrap_err();
    assert!(err.to_string().contains("256"), "{err}");
    assert!(q(&mut c, &["ADDJOB", "q", "x", "0", "IDEMPOTENCY"]).is_err());
    let err = q(
        &mut c,
        &["ADDJOB", "q", "x", "0", "IDEMPOTENCY-WINDOW", "60"],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("needs an IDEMPOTENCY key"),
        "{err}"
    );
    let err = q(
        &mut c,
        &[
            "ADDJOB",
            "q",
            "x",
            "0",
            "IDEMPOTENCY",
            "w",
            "IDEMPOTENCY-WINDOW",
            "-1",
        ],
    )
    .unwrap_err();
    assert!(err.to_string().contains("IDEMPOTENCY-WINDOW"), "{err}");
    assert_eq!(q(&mut c, &["QLEN", "q"]).unwrap(), Value::Int(0));
    let out = node.wasque(&["addjob", "q", "x", "0", "--idempotency-key", &long]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("256"),
        "{out:?}"
    );
    // 256 bytes is fine.
    add(&mut c, "q", "x", &"k".repeat(256), &[]);

    let Value::Array(kv) = q(&mut c, &["CONFIG", "GET", "idempotency-window"]).unwrap() else {
        panic!("CONFIG GET");
    };
    assert_eq!(text(&kv[1]), "86400");

    // The figures: 4 repeats answered (RESP, CLI, after the ack, Wasm),
    // one key remembered after its job, three jobs held with a key.
    let m = wasque_tests::http::get(node.http_addr(), "/metrics").expect("/metrics");
    assert_eq!(m.status, 200);
    for line in [
        "wasque_idempotency_hits_total 4",
        "wasque_idempotency_tombstones 1",
        "wasque_idempotency_keys 3",
    ] {
        assert!(m.body.lines().any(|l| l == line), "{line} in:\n{}", m.body);
    }
    node.stop();
}

#[test]
fn keys_survive_a_restart_and_a_short_window_ends() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let conf = tmp.path().join("wasque.conf");
    std::fs::write(&conf, "idempotency-window 8\n").expect("config file");
    let conf = conf.to_string_lossy().into_owned();

    let node = TestNode::start_in(&dir, &["-c", &conf]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP connection");
    let held = add(&mut c, "q", "held", "held-key", &["TTL", "3600"]);
    let acked = add(&mut c, "q", "acked", "acked-key", &[]);
    assert_eq!(q(&mut c, &["ACKJOB", &acked]).unwrap(), Value::Int(1));
    let own = add(
        &mut c,
        "q",
        "own",
        "own-window",
        &["IDEMPOTENCY-WINDOW", "3600"],
    );
    assert_eq!(q(&mut c, &["ACKJOB", &own]).unwrap(), Value::Int(1));
    node.stop();

    let node = TestNode::start_in(&dir, &["-c", &conf]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP connection");
    assert_eq!(add(&mut c, "q", "again", "held-key", &[]), held);
    assert_eq!(add(&mut c, "q", "again", "acked-key", &[]), acked);
    assert_eq!(q(&mut c, &["QLEN", "q"]).unwrap(), Value::Int(1));

    // The window (8 s) ends: the acked job's key adds a new job; the held
    // job's key lasts as long as the job.
    let mut fresh = None;
    eventually(30, "the acked job's key is forgotten", || {
        let id = add(&mut c, "q", "new", "acked-key", &[]);
        let new = id != acked;
        if new {
            fresh = Some(id);
        }
        new
    });
    assert_eq!(add(&mut c, "q", "again", "held-key", &[]), held);
    // A key added with a window of its own (an hour) is still known.
    assert_eq!(add(&mut c, "q", "again", "own-window", &[]), own);
    assert_eq!(q(&mut c, &["QLEN", "q"]).unwrap(), Value::Int(2));
    assert!(fresh.is_some());
    node.stop();
}

/// Meets every node from the first and waits until all see all.
fn form(nodes: &[TestNode]) {
    let mut c = wasque_tests::resp::connect(nodes[0].addr).expect("RESP");
    for n in &nodes[1..] {
        let port = n.addr.port().to_string();
        q(&mut c, &["CLUSTER", "MEET", "127.0.0.1", &port]).expect("MEET");
    }
    for n in nodes {
        let mut c = wasque_tests::resp::connect(n.addr).expect("RESP");
        eventually(20, "every node sees every other", || {
            let info = text(&q(&mut c, &["CLUSTER", "INFO"]).unwrap());
            info.lines()
                .find_map(|l| l.strip_prefix("cluster_reachable_nodes:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                == Some(nodes.len() - 1)
        });
    }
}

#[test]
fn a_node_holding_a_copy_answers_the_first_id_before_and_after_the_ack() {
    let nodes: Vec<TestNode> = (0..3)
        .map(|_| TestNode::start(&["--cluster-node-timeout", "1500"]))
        .collect();
    form(&nodes);
    let mut cs: Vec<_> = nodes
        .iter()
        .map(|n| wasque_tests::resp::connect(n.addr).expect("RESP"))
        .collect();

    let rep = ["REPLICATE", "2", "RETRY", "60"];
    let id = add(&mut cs[0], "q", "body", "k", &rep);
    let holder = (1..3)
        .find(|i| field(&mut cs[*i], "SHOW", &id, "state").is_some())
        .expect("a copy on a peer");
    assert_eq!(add(&mut cs[holder], "q", "body", "k", &rep), id);
    assert_eq!(
        q(&mut cs[holder], &["QLEN", "q"]).unwrap(),
        Value::Int(0),
        "nothing queued on the holder"
    );

    // Acknowledged on the node that added it: the holder forgets the
    // copy and still answers the key.
    assert_eq!(q(&mut cs[0], &["ACKJOB", &id]).unwrap(), Value::Int(1));
    eventually(10, "the holder's copy is gone", || {
        field(&mut cs[holder], "SHOW", &id, "state").is_none()
    });
    assert_eq!(add(&mut cs[holder], "q", "body", "k", &rep), id);
    assert_eq!(add(&mut cs[0], "q", "body", "k", &rep), id);
    for n in nodes {
        n.stop();
    }
}

/// Over QUIC with the SDK: an add and a `run` (add, wait, ack in one
/// request) with a key. A repeated `run` while the first job is held
/// waits on it and gets its result; once it was acked, the repeat learns
/// the job is gone, with its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_adds_and_runs_with_a_key() {
    use wasque_sdk::proto::{AddJob, ErrorCode};
    use wasque_sdk::{Client, ClientError};
    let node = TestNode::start(&["--exec-threads", "1"]);
    let c = Client::connect(node.client_config())
        .await
        .expect("QUIC client");
    let mut a = AddJob::new("sdk", b"body".to_vec());
    a.idempotency_key = Some("sdk-1".into());
    let id = c.add_job(a.clone()).await.expect("add");
    assert_eq!(c.add_job(a.clone()).await.expect("add again"), id);
    // A key the node refuses.
    a.idempotency_key = Some(String::new());
    match c.add_job(a).await {
        Err(ClientError::Node(e)) => {
            assert_eq!(e.code, ErrorCode::Err);
            assert!(e.message.contains("empty"), "{e}");
        }
        other => panic!("{other:?}"),
    }

    let hash = c
        .put_module(guests::wasm("echo"))
        .await
        .expect("module")
        .hash;
    let mut r = AddJob::new("sdk-run", b"hello".to_vec());
    r.module = Some(hash);
    r.idempotency_key = Some("run-1".into());
    let first = c.run(r.clone(), 20_000).await.expect("run");
    assert!(first.state.is_finished(), "{first:?}");
    match c.run(r, 20_000).await {
        Err(ClientError::Node(e)) => {
            assert_eq!(e.code, ErrorCode::NoJob);
            assert!(e.message.contains(&first.id.to_string()), "{e}");
        }
        other => panic!("{other:?}"),
    }
    node.stop();
}

/// Tenants: the same key in two tenants' queue `q` makes two jobs; a
/// tenant's repeat answers its own job, also at its `max-jobs` quota (a
/// repeat adds nothing, so no quota refuses it).
#[test]
fn keys_are_per_tenant_and_a_repeat_passes_the_quota() {
    const ADMIN_PW: &str = "idem-admin-pw";
    let node = TestNode::start(&[]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP");
    assert_eq!(
        q(&mut c, &["CONFIG", "SET", "requirepass", ADMIN_PW]).unwrap(),
        Value::Okay
    );
    let mut admin = wasque_tests::resp::connect(node.addr).expect("RESP");
    assert_eq!(q(&mut admin, &["AUTH", ADMIN_PW]).unwrap(), Value::Okay);
    let mut token = |name: &str, quotas: &[&str]| {
        let mut w = vec!["TENANT", "ADD", name];
        w.extend_from_slice(quotas);
        match q(&mut admin, &w).expect("TENANT ADD") {
            Value::Array(v) => text(&v[2]),
            other => panic!("TENANT ADD answered {other:?}"),
        }
    };
    let (alice_tok, bob_tok) = (token("alice", &[]), token("bob", &["max-jobs", "1"]));
    let login = |name: &str, tok: &str| {
        let mut c = wasque_tests::resp::connect(node.addr).expect("RESP");
        assert_eq!(q(&mut c, &["AUTH", name, tok]).unwrap(), Value::Okay);
        c
    };
    let (mut alice, mut bob) = (login("alice", &alice_tok), login("bob", &bob_tok));
    let a = add(&mut alice, "q", "a", "k", &[]);
    let b = add(&mut bob, "q", "b", "k", &[]);
    assert_ne!(a, b);
    assert_eq!(add(&mut alice, "q", "again", "k", &[]), a);
    // Bob holds his one job: a new add is refused, his repeat is not.
    let err = q(&mut bob, &["ADDJOB", "q", "x", "0", "IDEMPOTENCY", "other"]).unwrap_err();
    assert!(err.to_string().contains("max-jobs"), "{err}");
    assert_eq!(add(&mut bob, "q", "again", "k", &[]), b);
    node.stop();
}
