//! Client discovery and failover against clusters of real `wasque-node`
//! processes on loopback: the SDK's `ClusterClient` seeded with one node
//! learns every node (and the CA each one's clients trust), spreads its
//! calls by rule, and carries a stream of jobs over to the survivors when
//! the node it talks to is killed with SIGKILL; the CLI's worker moves to
//! another node when its node dies. Every wait is bounded.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::Value;
use wasque_sdk::proto::{AddJob, NodeState};
use wasque_sdk::{ClusterClient, ClusterConfig, Pick};
use wasque_tests::node::TestNode;
use wasque_tests::wait::eventually;

const NODE_TIMEOUT_MS: &str = "1500";

fn start_nodes(n: usize) -> Vec<TestNode> {
    (0..n)
        .map(|_| TestNode::start(&["--cluster-node-timeout", NODE_TIMEOUT_MS]))
        .collect()
}

fn q(node: &TestNode, args: &[&str]) -> Value {
    let client = redis::Client::open(format!("redis://{}/", node.addr)).expect("client");
    let mut c = client.get_connection().expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut c).expect("query")
}

fn text(v: &Value) -> String {
    match v {
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("not text: {other:?}"),
    }
}

/// Meets every node from the first; waits until every node sees the
/// others up and has heard each one's hello (their CAs are known).
fn form(nodes: &[TestNode]) {
    for n in &nodes[1..] {
        let port = n.addr.port().to_string();
        assert_eq!(
            text(&q(&nodes[0], &["CLUSTER", "MEET", "127.0.0.1", &port])),
            "OK"
        );
    }
    for n in nodes {
        eventually(20, "every node sees every other", || {
            let info = text(&q(n, &["CLUSTER", "INFO"]));
            info.contains(&format!("cluster_reachable_nodes:{}", nodes.len() - 1))
        });
    }
}

/// The node's id, from its `HELLO`.
fn node_id(node: &TestNode) -> String {
    match q(node, &["HELLO"]) {
        Value::Array(items) => text(&items[1]),
        other => panic!("HELLO: {other:?}"),
    }
}

/// A cluster client seeded with `seed` alone, trusting only its CA.
async fn cluster_client(seed: &TestNode, pick: Pick) -> ClusterClient {
    let ca = std::fs::read(seed.data_dir.join("tls").join("ca.pem")).expect("seed CA");
    let mut cfg = ClusterConfig::new(vec![seed.addr_str()], ca);
    cfg.pick = pick;
    cfg.refresh_every = Duration::from_millis(500);
    ClusterClient::connect(cfg).await.expect("connect")
}

/// Refreshes until the client knows `n` nodes up, each with its CA.
async fn learn_all(client: &ClusterClient, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = client.refresh().await.expect("refresh");
        let ready = nodes
            .iter()
            .filter(|x| x.state == NodeState::Up && x.ca_pem.is_some())
            .count();
        if ready == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the client learned only {ready} of {n} nodes: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_seeded_with_one_node_learns_every_node_and_spreads_its_calls() {
    let nodes = start_nodes(3);
    form(&nodes);
    let client = cluster_client(&nodes[0], Pick::RoundRobin).await;
    learn_all(&client, 3).await;
    let known: HashSet<String> = client.known_nodes().into_iter().map(|n| n.id).collect();
    assert_eq!(known.len(), 3);

    // Round-robin: nine calls reach all three nodes, trusting the two CAs
    // the client was never given.
    let mut answered = HashSet::new();
    for _ in 0..9 {
        answered.insert(client.node_info().await.expect("node info").node_id);
    }
    assert_eq!(answered, known, "round-robin did not reach every node");

    // A module uploaded to one node serves adds sent to any node (they
    // fetch it by hash), and results come back through any node.
    let module = client
        .put_module(wasque_tests::guests::wasm("echo"))
        .await
        .expect("upload");
    for i in 0..6 {
        let mut job = AddJob::new("spread", format!("job {i}").into_bytes());
        job.module = Some(module.hash);
        let id = client.add_job(job).await.expect("add");
        let status = client
            .wait(id, 30_000)
            .await
            .expect("wait")
            .expect("finished in time");
        assert_eq!(
            status.result.expect("result").output,
            format!("job {i}").into_bytes()
        );
        client.ack(vec![id]).await.expect("ack");
    }

    // Least-loaded: a node busy with a backlog is passed over.
    let ll = cluster_client(&nodes[0], Pick::LeastLoaded).await;
    learn_all(&ll, 3).await;
    let busy = ll.node_info().await.expect("info").node_id;
    let loaded = nodes
        .iter()
        .find(|n| node_id(n) == busy)
        .expect("the node that answered");
    for _ in 0..200 {
        // Plain jobs nobody takes: its queue grows.
        q(loaded, &["ADDJOB", "backlog", "x", "0", "REPLICATE", "1"]);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        ll.refresh().await.expect("refresh");
        let queued = ll
            .known_nodes()
            .into_iter()
            .find(|n| n.id == busy)
            .map_or(0, |n| n.queued);
        if queued >= 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog never showed in adverts"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..6 {
        let id = ll.node_info().await.expect("info").node_id;
        assert_ne!(id, busy, "least-loaded picked the node with the backlog");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_jobs_survives_the_client_node_being_killed_mid_stream() {
    let mut nodes = start_nodes(3);
    form(&nodes);
    let client = cluster_client(&nodes[0], Pick::RoundRobin).await;
    learn_all(&client, 3).await;
    let module = client
        .put_module(wasque_tests::guests::wasm("echo"))
        .await
        .expect("upload");
    // Let every node advertise the module before the stream starts.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    const JOBS: usize = 240;
    let done = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for i in 0..JOBS {
        let (client, done, gate) = (client.clone(), done.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = gate.acquire_owned().await.expect("open");
            let body = format!("payload {i}").into_bytes();
            let mut job = AddJob::new("stream", body.clone());
            job.module = Some(module.hash);
            let status = client.run(job, 30_000).await.expect("run");
            let out = status.result.expect("a result").output;
            assert_eq!(out, body, "job {i} came back wrong");
            done.fetch_add(1, Ordering::Relaxed);
        }));
    }
    // Kill the seed, the node the client first talked to, mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::Relaxed) < JOBS / 4 {
        assert!(Instant::now() < deadline, "the stream did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = done.load(Ordering::Relaxed);
    nodes.remove(0).kill9();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("a job never finished")
            .expect("a job failed");
    }
    assert_eq!(done.load(Ordering::Relaxed), JOBS);
    assert!(killed_at < JOBS, "the kill came after the stream ended");
    assert!(client.failovers() > 0, "no call moved off the killed node");
}

#[test]
fn the_worker_moves_to_another_node_when_its_node_dies() {
    let mut nodes = start_nodes(2);
    form(&nodes);
    // Seeds: node 0 first, so the worker starts there.
    let seeds = format!("{},{}", nodes[0].addr_str(), nodes[1].addr_str());
    let mut child = Command::new(env!("CARGO_BIN_EXE_test-wasque"))
        .args(["--node", &seeds, "worker", "failover", "--concurrency", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker");
    let (tx, lines) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next_line = |secs: u64| lines.recv_timeout(Duration::from_secs(secs)).ok();
    // It serves node 0.
    let id = text(&q(
        &nodes[0],
        &["ADDJOB", "failover", "first", "0", "REPLICATE", "1"],
    ));
    let line = next_line(20).expect("the worker printed the first job");
    assert!(line.starts_with(&id), "{line}");
    // Node 0 dies; jobs added to node 1 still reach the worker.
    nodes.remove(0).kill9();
    let id = text(&q(
        &nodes[0],
        &["ADDJOB", "failover", "second", "0", "REPLICATE", "1"],
    ));
    let line = next_line(40).expect("the worker moved to node 1");
    assert!(line.starts_with(&id) && line.ends_with("second"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
}
