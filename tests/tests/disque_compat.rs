//! What Disque's own cluster suite (tests/cluster) needs of a node, on
//! real processes: `CONFIG SET cluster-node-timeout` retimes failure
//! detection at run time, `CONFIG SET maxmemory` / `appendonly` and their
//! INFO fields, `DEBUG FLUSHALL` only behind `--enable-debug-command`, and
//! `CLUSTER INFO`'s `cluster_reachable_nodes` counting the other nodes;
//! a restarted node sees its peers before it answers, and an acked job
//! stays acked on every reachable holder until all holders confirmed.
//! Every wait is bounded; every node is killed by its own handle.

use std::time::{Duration, Instant};

use redis::Value;
use wasque_tests::node::{TestNode, form_cluster};
use wasque_tests::resp::{cmd, connect, field, text};
use wasque_tests::wait::eventually;

fn q(node: &TestNode, args: &[&str]) -> redis::RedisResult<Value> {
    let mut c = connect(node.addr).expect("RESP connection");
    cmd(&mut c, args)
}

fn info_field(node: &TestNode, section: &[&str], name: &str) -> Option<String> {
    let info = text(&q(node, section).ok()?);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

/// The flags `CLUSTER NODES` on `node` shows for the peer listening on
/// `port`.
fn flags_of(node: &TestNode, port: u16) -> Option<String> {
    let nodes = text(&q(node, &["CLUSTER", "NODES"]).ok()?);
    nodes
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|w| w.len() > 2 && w[1].ends_with(&format!(":{port}")))
        .map(|w| w[2].to_string())
}

#[test]
fn config_set_cluster_node_timeout_retimes_failure_detection() {
    // Started with a long timeout: a dead peer would take ~10 s to be
    // declared down.
    let nodes: Vec<TestNode> = (0..3)
        .map(|_| TestNode::start(&["--cluster-node-timeout", "20000"]))
        .collect();
    form_cluster(&nodes);
    assert_eq!(
        info_field(&nodes[0], &["CLUSTER", "INFO"], "cluster_reachable_nodes").as_deref(),
        Some("2"),
        "Disque's count: the other nodes"
    );
    for bad in ["0", "-5", "abc", "1.5", "86400001"] {
        let err = q(&nodes[0], &["CONFIG", "SET", "cluster-node-timeout", bad]).unwrap_err();
        assert!(
            err.to_string().contains("cluster-node-timeout"),
            "{bad}: {err}"
        );
    }
    for n in &nodes[..2] {
        let ok = q(n, &["CONFIG", "SET", "cluster-node-timeout", "1000"]).unwrap();
        assert_eq!(text(&ok), "OK");
    }
    let got = q(&nodes[0], &["CONFIG", "GET", "cluster-node-timeout"]).unwrap();
    assert_eq!(
        got,
        Value::Array(vec![
            Value::BulkString(b"cluster-node-timeout".to_vec()),
            Value::BulkString(b"1000".to_vec()),
        ])
    );
    // The members are kept across the change.
    assert_eq!(
        info_field(&nodes[0], &["CLUSTER", "INFO"], "cluster_reachable_nodes").as_deref(),
        Some("2")
    );
    let mut nodes = nodes;
    let dead = nodes.pop().expect("three nodes");
    let dead_port = dead.addr.port();
    dead.kill9();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(15);
    loop {
        if flags_of(&nodes[0], dead_port).is_some_and(|f| f.split(',').any(|f| f == "fail")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead peer was never flagged fail"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "declared down in {took:?}: the 1 s timeout was not in force"
    );
    assert_eq!(
        info_field(&nodes[0], &["CLUSTER", "INFO"], "cluster_reachable_nodes").as_deref(),
        Some("1")
    );
}

#[test]
fn debug_needs_the_flag_and_config_set_takes_disques_parameters() {
    let plain = TestNode::start(&[]);
    let err = q(&plain, &["DEBUG", "FLUSHALL"]).unwrap_err();
    assert!(
        err.to_string().contains("enable-debug-command"),
        "refused without the flag: {err}"
    );
    drop(plain);

    let node = TestNode::start(&["--enable-debug-command"]);
    q(&node, &["ADDJOB", "q", "x", "0"]).unwrap();
    assert_eq!(
        info_field(&node, &["INFO"], "registered_jobs").as_deref(),
        Some("1")
    );
    assert_eq!(text(&q(&node, &["DEBUG", "FLUSHALL"]).unwrap()), "OK");
    assert_eq!(
        info_field(&node, &["INFO"], "registered_jobs").as_deref(),
        Some("0")
    );
    let err = q(&node, &["DEBUG", "NO-SUCH-THING"]).unwrap_err();
    assert!(err.to_string().contains("DEBUG"), "{err}");

    // maxmemory: sizes as in the config file; bad ones refused.
    assert_eq!(
        text(&q(&node, &["CONFIG", "SET", "maxmemory", "3mb"]).unwrap()),
        "OK"
    );
    assert_eq!(
        info_field(&node, &["INFO", "memory"], "maxmemory").as_deref(),
        Some("3145728")
    );
    let err = q(&node, &["CONFIG", "SET", "maxmemory", "lots"]).unwrap_err();
    assert!(err.to_string().contains("maxmemory"), "{err}");
    assert_eq!(
        text(&q(&node, &["CONFIG", "SET", "maxmemory", "0"]).unwrap()),
        "OK"
    );

    // appendonly: on by default; yes again is a no-op, no turns it off,
    // and it cannot come back on without a restart.
    assert_eq!(
        info_field(&node, &["INFO", "persistence"], "aof_state").as_deref(),
        Some("on")
    );
    assert_eq!(
        text(&q(&node, &["CONFIG", "SET", "appendonly", "yes"]).unwrap()),
        "OK"
    );
    assert_eq!(
        text(&q(&node, &["CONFIG", "SET", "appendonly", "no"]).unwrap()),
        "OK"
    );
    assert_eq!(
        info_field(&node, &["INFO", "persistence"], "aof_state").as_deref(),
        Some("off")
    );
    let err = q(&node, &["CONFIG", "SET", "appendonly", "yes"]).unwrap_err();
    assert!(err.to_string().contains("restart"), "{err}");
    let err = q(&node, &["CONFIG", "SET", "appendonly", "maybe"]).unwrap_err();
    assert!(err.to_string().contains("appendonly"), "{err}");
    // The node still serves.
    assert_eq!(text(&q(&node, &["PING"]).unwrap()), "PONG");
}

/// Three nodes on data dirs kept by the caller, with `extra` flags.
fn cluster_in(tmp: &std::path::Path, extra: &[&str]) -> Vec<TestNode> {
    let nodes: Vec<TestNode> = (0..3)
        .map(|i| TestNode::start_in(&tmp.join(format!("n{i}")), extra))
        .collect();
    form_cluster(&nodes);
    nodes
}

#[test]
fn a_restarted_node_sees_its_peers_before_it_answers_clients() {
    // A long node timeout: the peers' links to the killed process do not
    // fail by timeout during the test, so only a restart that reaches its
    // peers at once (and makes them redial it) passes.
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--cluster-node-timeout", "20000"];
    let mut nodes = cluster_in(tmp.path(), &args);
    let old = nodes.pop().expect("three nodes");
    let port = old.addr.port();
    old.kill9();
    let back = TestNode::start_at(&tmp.path().join("n2"), port, &args);
    // The very first answer, as Disque's suite asks right after a restart.
    assert_eq!(
        info_field(&back, &["CLUSTER", "INFO"], "cluster_reachable_nodes").as_deref(),
        Some("2"),
        "the restarted node opened its doors before it saw its peers"
    );
    let id = q(&back, &["ADDJOB", "q", "x", "2000", "REPLICATE", "3"]);
    assert!(
        matches!(&id, Ok(v) if !text(v).is_empty()),
        "a 3-copy add right after the restart: {id:?}"
    );
}

#[test]
fn an_acked_job_stays_acked_on_reachable_holders_until_every_holder_confirmed() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--cluster-node-timeout", "2000"];
    let mut nodes = cluster_in(tmp.path(), &args);
    let id = text(&q(&nodes[0], &["ADDJOB", "q", "x", "2000", "REPLICATE", "3"]).unwrap());
    let away = nodes.pop().expect("three nodes");
    let port = away.addr.port();
    away.kill9();
    let acked = q(&nodes[1], &["ACKJOB", &id]).unwrap();
    assert_eq!(acked, Value::Int(1));
    let state = |n: &TestNode| {
        let mut c = connect(n.addr).expect("RESP connection");
        field(&mut c, "SHOW", &id, "state")
    };
    // Both reachable holders keep it acked (so neither can queue it again)
    // while the third cannot confirm; they still do after the peer is
    // declared down and after their own collection rounds.
    std::thread::sleep(std::time::Duration::from_millis(3_000));
    for n in &nodes {
        assert_eq!(state(n).as_deref(), Some("acked"), "node {}", n.addr);
    }
    // The third holder comes back with the job in its store: the ack
    // reaches it, and every copy goes.
    nodes.push(TestNode::start_at(&tmp.path().join("n2"), port, &args));
    eventually(30, "the acked job gone from every node", || {
        nodes.iter().all(|n| state(n).is_none())
    });
}
