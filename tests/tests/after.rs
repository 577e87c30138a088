//! `ADDJOB ... AFTER id...` through real nodes: a Wasm job waits (state
//! `waiting`) until the plain job it names is acknowledged, then runs; a
//! job after a failed one fails with class `dependency` (the CLI's
//! `--after`), and `AFTER-ANY` runs it anyway; a waiting job survives a
//! restart; an id this node made and no longer holds is refused. On three
//! nodes: a job waits for a job held on another node and runs when it is
//! acknowledged there; when the waiting job's node is killed, a holder
//! of its copy runs it. Every wait is bounded.

use redis::Value;
use wasque_tests::guests;
use wasque_tests::node::{TestNode, form_cluster};
use wasque_tests::resp::{field, text};
use wasque_tests::wait::eventually;

fn q(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    wasque_tests::resp::cmd(c, args)
}

fn put(c: &mut redis::Connection, guest: &str) -> String {
    let mut put = redis::cmd("MODULE");
    put.arg("PUT").arg(guests::wasm(guest));
    text(&put.query::<Value>(c).unwrap())
}

fn add(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut all = vec!["ADDJOB"];
    all.extend_from_slice(args);
    text(&q(c, &all).unwrap_or_else(|e| panic!("{all:?}: {e}")))
}

/// The `after` field of SHOW: one "id state" line per named job.
fn after_field(c: &mut redis::Connection, id: &str) -> Vec<String> {
    let Ok(Value::Array(items)) = q(c, &["SHOW", id]) else {
        return vec![];
    };
    items
        .chunks(2)
        .find(|kv| matches!(text(&kv[0]).as_str(), "after" | "after-any"))
        .map(|kv| match &kv[1] {
            Value::Array(v) => v.iter().map(text).collect(),
            _ => vec![],
        })
        .unwrap_or_default()
}

fn state(c: &mut redis::Connection, id: &str) -> Option<String> {
    field(c, "SHOW", id, "state")
}

#[test]
fn after_waits_runs_fails_and_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let node = TestNode::start_in(&dir, &["--exec-threads", "1"]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP");
    let echo = put(&mut c, "echo");
    let trap = put(&mut c, "trap");

    // Waits for a plain job until it is acknowledged, then runs.
    let a = add(&mut c, &["plain", "a", "0"]);
    let b = add(&mut c, &["w", "hello", "0", "MODULE", &echo, "AFTER", &a]);
    assert_eq!(state(&mut c, &b).as_deref(), Some("waiting"));
    assert_eq!(after_field(&mut c, &b), vec![format!("{a} pending")]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(state(&mut c, &b).as_deref(), Some("waiting"), "still");
    assert_eq!(q(&mut c, &["ACKJOB", &a]).unwrap(), Value::Int(1));
    eventually(10, "b runs once a is acknowledged", || {
        state(&mut c, &b).as_deref() == Some("done")
    });
    assert_eq!(after_field(&mut c, &b), vec![format!("{a} done")]);

    // After a failed job (the CLI's --after): fails, class dependency.
    let t = add(&mut c, &["w", "", "0", "MODULE", &trap]);
    let out = node.wasque(&["addjob", "w", "x", "0", "--module", &echo, "--after", &t]);
    assert!(out.status.success(), "{out:?}");
    let d = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eventually(10, "d fails with its dependency", || {
        field(&mut c, "RESULT", &d, "error_class").as_deref() == Some("dependency")
    });
    let msg = field(&mut c, "RESULT", &d, "message").unwrap();
    assert!(msg.contains(&t) && msg.contains("trap"), "{msg}");
    // `wasque show` says what it waited for.
    let out = node.wasque(&["show", &d]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(&format!("{t} failed: trap")), "{shown}");
    // AFTER-ANY runs all the same.
    let e = add(&mut c, &["w", "x", "0", "MODULE", &echo, "AFTER-ANY", &t]);
    eventually(10, "e runs after the failure", || {
        state(&mut c, &e).as_deref() == Some("done")
    });

    // An id this node made and no longer holds: refused, clearly.
    let err = q(
        &mut c,
        &["ADDJOB", "w", "x", "0", "MODULE", &echo, "AFTER", &a],
    )
    .unwrap_err();
    assert_eq!(err.code(), Some("NOJOB"), "{err:?}");
    assert!(err.to_string().contains("no longer holds"), "{err}");
    let err = q(&mut c, &["ADDJOB", "w", "x", "0", "AFTER", "nope"]).unwrap_err();
    assert!(err.to_string().contains("needs job ids"), "{err}");

    // A waiting job survives a restart and runs after it.
    let f = add(&mut c, &["plain", "f", "0"]);
    let g = add(&mut c, &["w", "g", "0", "MODULE", &echo, "AFTER", &f]);
    node.stop();
    let node = TestNode::start_in(&dir, &["--exec-threads", "1"]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP");
    assert_eq!(state(&mut c, &g).as_deref(), Some("waiting"));
    assert_eq!(q(&mut c, &["ACKJOB", &f]).unwrap(), Value::Int(1));
    eventually(10, "g runs once f is acknowledged", || {
        state(&mut c, &g).as_deref() == Some("done")
    });
    node.stop();
}

#[test]
fn after_a_job_on_another_node_and_after_the_waiting_node_dies() {
    let nodes: Vec<TestNode> = (0..3)
        .map(|_| TestNode::start(&["--cluster-node-timeout", "1500", "--exec-threads", "1"]))
        .collect();
    form_cluster(&nodes);
    let mut cs: Vec<_> = nodes
        .iter()
        .map(|n| wasque_tests::resp::connect(n.addr).expect("RESP"))
        .collect();
    let echo = put(&mut cs[0], "echo");
    for c in &mut cs[1..] {
        assert_eq!(put(c, "echo"), echo);
    }

    // a lives on node 0 only; b waits for it on node 2.
    let a = add(&mut cs[0], &["plain", "a", "0", "REPLICATE", "1"]);
    let b = add(
        &mut cs[2],
        &[
            "w",
            "b",
            "0",
            "REPLICATE",
            "1",
            "MODULE",
            &echo,
            "AFTER",
            &a,
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(state(&mut cs[2], &b).as_deref(), Some("waiting"));
    assert_eq!(q(&mut cs[0], &["ACKJOB", &a]).unwrap(), Value::Int(1));
    eventually(
        10,
        "b runs on node 2 once a is acknowledged on node 0",
        || state(&mut cs[2], &b).as_deref() == Some("done"),
    );

    // c on node 0; d waits for it on node 1, copies on every node; node 1
    // is killed; once c is acknowledged a holder runs d.
    let c = add(&mut cs[0], &["plain", "c", "0", "REPLICATE", "1"]);
    let d = add(
        &mut cs[1],
        &[
            "w",
            "d",
            "5000",
            "REPLICATE",
            "3",
            "RETRY",
            "2",
            "MODULE",
            &echo,
            "AFTER",
            &c,
        ],
    );
    for conn in cs.iter_mut() {
        assert_eq!(state(conn, &d).as_deref(), Some("waiting"));
    }
    let mut nodes = nodes;
    nodes.remove(1).kill9();
    cs.remove(1);
    assert_eq!(q(&mut cs[0], &["ACKJOB", &c]).unwrap(), Value::Int(1));
    eventually(30, "a surviving holder runs d", || {
        cs.iter_mut()
            .any(|conn| state(conn, &d).as_deref() == Some("done"))
    });
    for n in nodes {
        n.stop();
    }
}
