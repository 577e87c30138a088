//! Scheduling on a real three-node cluster: QPOLICY set on one node is
//! known to all and kept across a restart; push placement by round-robin
//! spreads a queue evenly; Wasm jobs pushed least-loaded run on several
//! nodes; a GROUP runs on one node and moves together when it dies; bad
//! policies get clear errors.

use std::time::Duration;

use redis::Value;
use wasque_tests::node::TestNode;
use wasque_tests::wait::eventually;

fn conn(node: &TestNode) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{}/", node.addr)).expect("client");
    let c = client.get_connection().expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c
}

fn q(node: &TestNode, args: &[&str]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn(node))
}

fn text(v: &Value) -> String {
    match v {
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(" "),
        other => format!("{other:?}"),
    }
}

fn int(v: Value) -> i64 {
    redis::from_redis_value(&v).unwrap()
}

/// `cluster_reachable_nodes`: the other nodes reachable (as Disque counts).
fn reachable(node: &TestNode) -> usize {
    let info = text(&q(node, &["CLUSTER", "INFO"]).unwrap());
    info.lines()
        .find_map(|l| l.strip_prefix("cluster_reachable_nodes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn cluster(dirs: &[std::path::PathBuf]) -> Vec<TestNode> {
    let nodes: Vec<TestNode> = dirs
        .iter()
        .map(|d| TestNode::start_in(d, &["--cluster-node-timeout", "1500"]))
        .collect();
    for n in &nodes[1..] {
        q(
            &nodes[0],
            &["CLUSTER", "MEET", "127.0.0.1", &n.addr.port().to_string()],
        )
        .unwrap();
    }
    for n in &nodes {
        eventually(20, "cluster formed", || reachable(n) == nodes.len() - 1);
    }
    nodes
}

#[test]
fn policies_placement_groups_and_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let mut nodes = cluster(&dirs);

    // Bad input.
    let e = q(&nodes[0], &["QPOLICY", "q", "fastest"]).unwrap_err();
    assert!(e.to_string().contains("unknown policy"), "{e}");
    let e = q(&nodes[0], &["QPOLICY", "q", "random", "MODE", "sideways"]).unwrap_err();
    assert!(e.to_string().contains("unknown mode"), "{e}");
    assert_eq!(
        text(&q(&nodes[1], &["QPOLICY", "q"]).unwrap()),
        "least-loaded pull"
    );

    // Round-robin push: every node gets a third of the queue.
    assert_eq!(
        text(&q(&nodes[0], &["QPOLICY", "q", "round-robin", "MODE", "push"]).unwrap()),
        "round-robin push"
    );
    eventually(10, "the policy reaches every node", || {
        nodes
            .iter()
            .all(|n| text(&q(n, &["QPOLICY", "q"]).unwrap()) == "round-robin push")
    });
    for i in 0..30 {
        q(
            &nodes[0],
            &["ADDJOB", "q", &format!("j{i}"), "5000", "REPLICATE", "1"],
        )
        .unwrap();
    }
    eventually(10, "jobs placed round-robin", || {
        nodes
            .iter()
            .all(|n| int(q(n, &["QLEN", "q"]).unwrap()) == 10)
    });

    // Wasm jobs pushed least-loaded run on more than one node.
    let wasm = wasque_tests::guests::wasm("fib");
    let hash = {
        let mut cmd = redis::cmd("MODULE");
        cmd.arg("PUT").arg(&wasm);
        text(&cmd.query::<Value>(&mut conn(&nodes[0])).unwrap())
    };
    q(&nodes[0], &["QPOLICY", "w", "least-loaded", "MODE", "push"]).unwrap();
    eventually(10, "policy known", || {
        text(&q(&nodes[2], &["QPOLICY", "w"]).unwrap()) == "least-loaded push"
    });
    // One pipelined batch: the adds arrive together, as a burst would.
    let mut pipe = redis::pipe();
    for _ in 0..60 {
        pipe.cmd("ADDJOB")
            .arg(&["w", "27", "5000", "REPLICATE", "1", "MODULE", &hash]);
    }
    let added: Vec<Value> = pipe.query(&mut conn(&nodes[0])).unwrap();
    let ids: Vec<String> = added.iter().map(text).collect();
    let mut ran_on = std::collections::HashSet::new();
    for id in &ids {
        let r = q(&nodes[0], &["WAITJOB", id, "30000"]).unwrap();
        let Value::Array(f) = r else { panic!("{r:?}") };
        let node = f
            .chunks(2)
            .find(|kv| text(&kv[0]) == "node")
            .map(|kv| text(&kv[1]))
            .unwrap();
        ran_on.insert(node);
    }
    assert!(ran_on.len() >= 2, "ran on {ran_on:?}");

    // A group: on one node, then together on one other when it dies.
    for i in 0..12 {
        q(
            &nodes[i % 3],
            &[
                "ADDJOB",
                "g",
                &format!("g{i}"),
                "5000",
                "REPLICATE",
                "2",
                "RETRY",
                "60",
                "GROUP",
                "tenant-7",
            ],
        )
        .unwrap();
    }
    let lens = |nodes: &[TestNode]| -> Vec<i64> {
        nodes
            .iter()
            .map(|n| int(q(n, &["QLEN", "g"]).unwrap()))
            .collect()
    };
    eventually(10, "the group on one node", || {
        let l = lens(&nodes);
        l.iter().filter(|n| **n > 0).count() == 1 && l.iter().sum::<i64>() == 12
    });
    let owner = lens(&nodes).iter().position(|n| *n > 0).unwrap();
    let dead = nodes.remove(owner);
    dead.kill9();
    let mut last = vec![];
    let moved = (0..200).any(|_| {
        last = lens(&nodes);
        std::thread::sleep(Duration::from_millis(100));
        last.iter().filter(|n| **n > 0).count() == 1 && last.iter().sum::<i64>() == 12
    });
    assert!(moved, "the group did not move to one other node: {last:?}");

    // The policy is kept across a restart.
    let restart = dirs.iter().position(|d| *d == nodes[0].data_dir).unwrap();
    let port = nodes[0].addr.port();
    nodes.remove(0).stop();
    let back = TestNode::start_at(&dirs[restart], port, &["--cluster-node-timeout", "1500"]);
    assert_eq!(
        text(&q(&back, &["QPOLICY", "q"]).unwrap()),
        "round-robin push"
    );
}

fn result_node(node: &TestNode, id: &str) -> String {
    let r = q(node, &["WAITJOB", id, "60000"]).unwrap();
    let Value::Array(f) = r else { panic!("{r:?}") };
    f.chunks(2)
        .find(|kv| text(&kv[0]) == "node")
        .map(|kv| text(&kv[1]))
        .unwrap()
}

#[test]
fn random_push_uses_every_node_and_priority_pull_hands_out_high_priority_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let nodes = cluster(&dirs);
    let wasm = wasque_tests::guests::wasm("fib");
    let hash = {
        let mut cmd = redis::cmd("MODULE");
        cmd.arg("PUT").arg(&wasm);
        text(&cmd.query::<Value>(&mut conn(&nodes[0])).unwrap())
    };

    // random, push: with 60 jobs every node gets some.
    q(&nodes[0], &["QPOLICY", "r", "random", "MODE", "push"]).unwrap();
    let mut pipe = redis::pipe();
    for _ in 0..60 {
        pipe.cmd("ADDJOB")
            .arg(&["r", "20", "5000", "REPLICATE", "1", "MODULE", &hash]);
    }
    let ids: Vec<Value> = pipe.query(&mut conn(&nodes[0])).unwrap();
    let used: std::collections::HashSet<String> = ids
        .iter()
        .map(|id| result_node(&nodes[0], &text(id)))
        .collect();
    assert_eq!(
        used.len(),
        3,
        "random placement reached every node: {used:?}"
    );

    // priority, pull: node 1 has a backlog of low- and high-priority jobs
    // in two queues; idle peers pull the high-priority ones first.
    q(&nodes[0], &["QPOLICY", "high", "priority"]).unwrap();
    let mut pipe = redis::pipe();
    for _ in 0..150 {
        pipe.cmd("ADDJOB").arg(&[
            "low",
            "29",
            "5000",
            "REPLICATE",
            "1",
            "PRIORITY",
            "0",
            "MODULE",
            &hash,
        ]);
    }
    for _ in 0..150 {
        pipe.cmd("ADDJOB").arg(&[
            "high",
            "29",
            "5000",
            "REPLICATE",
            "1",
            "PRIORITY",
            "9",
            "MODULE",
            &hash,
        ]);
    }
    let ids: Vec<String> = pipe
        .query::<Vec<Value>>(&mut conn(&nodes[0]))
        .unwrap()
        .iter()
        .map(text)
        .collect();
    let me = text(&q(&nodes[0], &["HELLO"]).unwrap())
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let (low, high) = ids.split_at(150);
    let pulled = |ids: &[String]| {
        ids.iter()
            .filter(|id| result_node(&nodes[0], id) != me)
            .count()
    };
    let (low_away, high_away) = (pulled(low), pulled(high));
    eprintln!("pulled by peers: {high_away} of 150 high-priority, {low_away} of 150 low-priority");
    assert!(
        high_away > low_away,
        "peers pulled {high_away} high-priority and {low_away} low-priority jobs"
    );
}
