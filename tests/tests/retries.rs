//! Retry policies, NACK with a delay and dead-letter queues through real
//! nodes: RESP (ADDJOB's retry options, SHOW's retry fields, NACK DELAY,
//! DLQ LIST/REQUEUE/PURGE, QRETRY), the `wasque` CLI, the HTTP API, a
//! restart in the middle of a backoff, and a dead letter that outlives
//! the node that buried it (kill -9). The failing job is the `exit3`
//! guest. Every wait is bounded.

use std::time::Duration;

use redis::Value;
use wasque_tests::node::TestNode;
use wasque_tests::resp::text;
use wasque_tests::wait::eventually;
use wasque_tests::{guests, http};

fn conn(node: &TestNode) -> redis::Connection {
    wasque_tests::resp::connect(node.addr).expect("RESP connection")
}

fn q(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    wasque_tests::resp::cmd(c, args)
}

/// A SHOW field, `None` when the job or the field is missing.
fn field(c: &mut redis::Connection, id: &str, name: &str) -> Option<String> {
    wasque_tests::resp::field(c, "SHOW", id, name)
}

fn put_module(c: &mut redis::Connection, name: &str) -> String {
    let mut cmd = redis::cmd("MODULE");
    cmd.arg("PUT").arg(guests::wasm(name));
    text(&cmd.query::<Value>(c).unwrap())
}

/// The ids DLQ LIST answers.
fn dead_ids(c: &mut redis::Connection, queue: &str) -> Vec<String> {
    match q(c, &["DLQ", "LIST", queue]).unwrap() {
        Value::Array(jobs) => jobs
            .iter()
            .map(|j| match j {
                Value::Array(kv) => text(&kv[1]),
                other => panic!("not a SHOW array: {other:?}"),
            })
            .collect(),
        other => panic!("DLQ LIST: {other:?}"),
    }
}

fn count(v: redis::RedisResult<Value>) -> i64 {
    match v {
        Ok(Value::Int(n)) => n,
        other => panic!("not a count: {other:?}"),
    }
}

#[test]
fn a_failing_wasm_job_is_retried_then_dead_and_the_dlq_requeues_and_purges() {
    let node = TestNode::start(&[]);
    let mut c = conn(&node);
    let hash = put_module(&mut c, "exit3");
    let id = text(
        &q(
            &mut c,
            &[
                "ADDJOB",
                "q",
                "",
                "0",
                "MODULE",
                &hash,
                "MAXATTEMPTS",
                "3",
                "BACKOFF",
                "fixed",
                "BACKOFF-MS",
                "200",
                "RETRY-ON",
                "exit:3",
            ],
        )
        .unwrap(),
    );
    eventually(20, "the job is dead after 3 runs", || {
        field(&mut c, &id, "state").as_deref() == Some("dead")
    });
    assert_eq!(field(&mut c, &id, "retry-attempts").as_deref(), Some("3"));
    assert_eq!(field(&mut c, &id, "max-attempts").as_deref(), Some("3"));
    let err = field(&mut c, &id, "last-error").unwrap();
    assert!(err.starts_with("attempt 3: exit(3)"), "{err}");
    assert_eq!(dead_ids(&mut c, "q"), vec![id.clone()]);
    // Its queue holds nothing to run; RESULT has the last run's end.
    assert_eq!(count(q(&mut c, &["QLEN", "q"])), 0);

    assert_eq!(count(q(&mut c, &["DLQ", "REQUEUE", "q", "ALL"])), 1);
    assert!(dead_ids(&mut c, "q").is_empty());
    eventually(20, "requeued, it runs its 3 attempts again", || {
        field(&mut c, &id, "state").as_deref() == Some("dead")
    });
    assert_eq!(field(&mut c, &id, "retry-attempts").as_deref(), Some("3"));
    assert_eq!(count(q(&mut c, &["DLQ", "PURGE", "q"])), 1);
    assert!(dead_ids(&mut c, "q").is_empty());
    assert!(field(&mut c, &id, "state").is_none(), "purged");

    // Bad input gets a clear error.
    for (args, want) in [
        (
            &["ADDJOB", "q", "x", "0", "MAXATTEMPTS", "0"][..],
            "MAXATTEMPTS",
        ),
        (
            &["ADDJOB", "q", "x", "0", "RETRY-ON", "sometimes"][..],
            "unknown failure",
        ),
        (&["ADDJOB", "q", "x", "0", "BACKOFF", "wild"][..], "BACKOFF"),
        (
            &[
                "ADDJOB",
                "q",
                "x",
                "0",
                "BACKOFF-MS",
                "500",
                "BACKOFF-MAX-MS",
                "100",
            ][..],
            "BACKOFF-MAX-MS",
        ),
        (&["DLQ", "SHRED", "q"][..], "DLQ LIST"),
        (&["DLQ", "REQUEUE", "q", "not-an-id"][..], "Invalid Job ID"),
        (&["NACK", "not-an-id", "DELAY", "10"][..], "Invalid Job ID"),
        (&["QRETRY", "q", "MAXATTEMPTS"][..], "syntax"),
    ] {
        let e = q(&mut c, args).expect_err(&format!("{args:?} must be refused"));
        assert!(e.to_string().contains(want), "{args:?}: {e}");
    }
}

#[test]
fn nack_delay_holds_a_plain_job_back_and_its_last_nack_buries_it() {
    let node = TestNode::start(&[]);
    let mut c = conn(&node);
    let id = text(&q(&mut c, &["ADDJOB", "p", "work", "0", "MAXATTEMPTS", "2"]).unwrap());
    let got = q(&mut c, &["GETJOB", "NOHANG", "FROM", "p"]).unwrap();
    assert!(format!("{got:?}").contains(&id), "{got:?}");
    assert_eq!(count(q(&mut c, &["NACK", &id, "DELAY", "1500"])), 1);
    // Not back before its delay.
    assert_eq!(
        q(&mut c, &["GETJOB", "NOHANG", "FROM", "p"]).unwrap(),
        Value::Nil
    );
    let mut again = Value::Nil;
    eventually(10, "back after its delay", || {
        again = q(&mut c, &["GETJOB", "NOHANG", "FROM", "p"]).unwrap();
        again != Value::Nil
    });
    assert!(format!("{again:?}").contains(&id));
    assert_eq!(field(&mut c, &id, "nacks").as_deref(), Some("1"));
    // The second delivery was the last: this NACK sends it to p:dead.
    assert_eq!(count(q(&mut c, &["NACK", &id])), 1);
    assert_eq!(field(&mut c, &id, "state").as_deref(), Some("dead"));
    assert_eq!(
        field(&mut c, &id, "last-error").as_deref(),
        Some("attempt 2: nacked")
    );
    assert_eq!(dead_ids(&mut c, "p"), vec![id]);

    // A queue default applies to jobs added without a policy.
    let set = q(&mut c, &["QRETRY", "d", "MAXATTEMPTS", "1"]).unwrap();
    assert!(format!("{set:?}").contains("maxattempts"), "{set:?}");
    let id = text(&q(&mut c, &["ADDJOB", "d", "x", "0"]).unwrap());
    assert_eq!(field(&mut c, &id, "max-attempts").as_deref(), Some("1"));
    assert_eq!(
        q(&mut c, &["QRETRY", "d", "NONE"]).unwrap(),
        Value::Array(vec![])
    );
}

/// A job fails, the node stops during its backoff; after the restart the
/// job runs again at its time and lands in the dead-letter queue after
/// its last attempt, which a second restart keeps. The queue default set
/// with QRETRY survives too.
#[test]
fn a_job_in_backoff_survives_a_restart_and_lands_in_the_dlq() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let node = TestNode::start_in(&dir, &[]);
    let mut c = conn(&node);
    let hash = put_module(&mut c, "exit3");
    q(&mut c, &["QRETRY", "keep", "MAXATTEMPTS", "7"]).unwrap();
    let id = text(
        &q(
            &mut c,
            &[
                "ADDJOB",
                "q",
                "",
                "0",
                "MODULE",
                &hash,
                "MAXATTEMPTS",
                "2",
                "BACKOFF",
                "fixed",
                "BACKOFF-MS",
                "4000",
                "RETRY-ON",
                "exit:3",
            ],
        )
        .unwrap(),
    );
    // The attempt is counted when the run starts; its error is written
    // when it ends. Stopping before that would lose the run instead (a
    // lost run this policy does not retry: a dead letter at once).
    eventually(20, "the first run failed", || {
        field(&mut c, &id, "last-error").is_some_and(|e| !e.is_empty())
    });
    assert_eq!(field(&mut c, &id, "retry-attempts").as_deref(), Some("1"));
    assert_eq!(field(&mut c, &id, "state").as_deref(), Some("active"));
    drop(c);
    assert!(node.stop().success());

    let node = TestNode::start_in(&dir, &[]);
    let mut c = conn(&node);
    assert_eq!(field(&mut c, &id, "retry-attempts").as_deref(), Some("1"));
    eventually(20, "it ran again after the restart and is dead", || {
        field(&mut c, &id, "state").as_deref() == Some("dead")
    });
    assert_eq!(field(&mut c, &id, "retry-attempts").as_deref(), Some("2"));
    drop(c);
    assert!(node.stop().success());

    let node = TestNode::start_in(&dir, &[]);
    let mut c = conn(&node);
    assert_eq!(dead_ids(&mut c, "q"), vec![id]);
    let kept = q(&mut c, &["QRETRY", "keep"]).unwrap();
    assert!(format!("{kept:?}").contains("\"7\""), "{kept:?}");
}

#[test]
fn the_cli_and_the_http_api_list_requeue_and_purge_dead_letters() {
    let node = TestNode::start_http(&[]);
    let exit3 = guests::wasm_path("exit3");
    let o = node.wasque(&[
        "addjob",
        "cq",
        "in",
        "5000",
        "--module",
        exit3.to_str().unwrap(),
        "--max-attempts",
        "2",
        "--backoff",
        "fixed",
        "--backoff-ms",
        "50",
        "--retry-on",
        "exit:3",
        "--wait",
        "--wait-timeout",
        "20000",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "a dead job is a failure: {err}");
    assert!(
        err.contains("exit(3)") && err.contains("attempts 2 of 2"),
        "{err}"
    );

    let o = node.wasque(&["dlq", "ls", "cq"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = out.lines().next().expect("one dead letter");
    assert!(
        line.contains("attempts=2") && line.contains("exit(3)"),
        "{line}"
    );
    let id = line.split_whitespace().next().unwrap().to_string();

    let r = http::get(node.http_addr(), "/api/queues/cq/dead").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["jobs"][0]["id"], id.as_str());
    assert_eq!(doc["jobs"][0]["state"], "dead");
    assert_eq!(doc["jobs"][0]["retry"]["attempts"], 2);

    // HTTP requeue: a JSON body only.
    let http::Response { status, body, .. } =
        http::post(node.http_addr(), "/api/queues/cq/dead/requeue", Some("{}")).unwrap();
    assert_eq!(status, 400, "{body}");
    let http::Response { status, body, .. } = http::post(
        node.http_addr(),
        "/api/queues/cq/dead/requeue",
        Some(&format!("{{\"ids\": [\"{id}\"]}}")),
    )
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "{\"requeued\":1}"));
    eventually(20, "dead again after 2 more runs", || {
        let o = node.wasque(&["dlq", "ls", "cq"]);
        String::from_utf8_lossy(&o.stdout).contains(&id)
    });

    let o = node.wasque(&["dlq", "requeue", "cq"]);
    assert_eq!(o.status.code(), Some(2), "naming nothing is a usage error");
    let o = node.wasque(&["dlq", "requeue", "cq", "--all"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1");
    eventually(20, "dead again", || {
        let o = node.wasque(&["dlq", "ls", "cq"]);
        String::from_utf8_lossy(&o.stdout).contains(&id)
    });
    let o = node.wasque(&["dlq", "purge", "cq"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1");
    let o = node.wasque(&["dlq", "ls", "cq"]);
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// A plain job replicated on two nodes dies on the first (its last NACK);
/// the first is killed; the second still lists the dead letter, never
/// re-queued it after RETRY, and requeues it on demand.
#[test]
fn a_dead_letter_outlives_the_node_that_buried_it() {
    let nodes: Vec<TestNode> = (0..2)
        .map(|_| TestNode::start(&["--cluster-node-timeout", "1500"]))
        .collect();
    let mut a = conn(&nodes[0]);
    let port = nodes[1].addr.port().to_string();
    assert_eq!(
        text(&q(&mut a, &["CLUSTER", "MEET", "127.0.0.1", &port]).unwrap()),
        "OK"
    );
    let mut b = conn(&nodes[1]);
    let id = eventually_add(&mut a);
    let got = q(&mut a, &["GETJOB", "NOHANG", "FROM", "cl"]).unwrap();
    assert!(format!("{got:?}").contains(&id), "{got:?}");
    assert_eq!(count(q(&mut a, &["NACK", &id])), 1);
    eventually(10, "the other holder has the dead letter", || {
        field(&mut b, &id, "state").as_deref() == Some("dead")
    });
    let mut nodes = nodes.into_iter();
    nodes.next().unwrap().kill9();
    let b_node = nodes.next().unwrap();
    // Past RETRY (1 s) and the rescue grace: still dead, not queued.
    std::thread::sleep(Duration::from_secs(5));
    let mut b = conn(&b_node);
    assert_eq!(field(&mut b, &id, "state").as_deref(), Some("dead"));
    assert_eq!(dead_ids(&mut b, "cl"), vec![id.clone()]);
    assert_eq!(count(q(&mut b, &["DLQ", "REQUEUE", "cl", &id])), 1);
    let got = q(&mut b, &["GETJOB", "TIMEOUT", "5000", "FROM", "cl"]).unwrap();
    assert!(format!("{got:?}").contains(&id), "{got:?}");
}

/// Adds the replicated job once the two nodes see each other (an add
/// before that is refused with NOREPL).
fn eventually_add(c: &mut redis::Connection) -> String {
    let mut id = String::new();
    eventually(20, "a job with 2 copies is accepted", || {
        match q(
            c,
            &[
                "ADDJOB",
                "cl",
                "w",
                "5000",
                "REPLICATE",
                "2",
                "RETRY",
                "1",
                "MAXATTEMPTS",
                "1",
            ],
        ) {
            Ok(v) => {
                id = text(&v);
                true
            }
            Err(_) => false,
        }
    });
    id
}
