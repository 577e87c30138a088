//! Clusters of real `wasque-node` processes on loopback, driven over RESP
//! by an independent client (the `redis` crate): meeting, replication
//! counts, SHOW listing the holders, acks reaching every holder, module
//! fetch by hash, results readable from any holder, federation, re-queue
//! after a kill -9, LEAVING, and peer authentication. Every wait is
//! bounded.

use std::time::{Duration, Instant};

use redis::Value;
use wasque_tests::node::TestNode;
use wasque_tests::wait::eventually;

/// Small enough that a dead node is noticed within a test's patience.
const NODE_TIMEOUT_MS: &str = "1500";

fn start_nodes(n: usize) -> Vec<TestNode> {
    (0..n)
        .map(|_| TestNode::start(&["--cluster-node-timeout", NODE_TIMEOUT_MS]))
        .collect()
}

fn conn(node: &TestNode) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{}/", node.addr)).expect("client");
    let c = client.get_connection().expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c
}

fn q(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

fn text(v: &Value) -> String {
    match v {
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("not text: {other:?}"),
    }
}

fn field<'a>(show: &'a Value, name: &str) -> &'a Value {
    let Value::Array(items) = show else {
        panic!("SHOW is not an array: {show:?}")
    };
    items
        .chunks(2)
        .find(|kv| text(&kv[0]) == name)
        .map(|kv| &kv[1])
        .unwrap_or_else(|| panic!("no field {name}"))
}

/// The nodes `node` reaches, itself included (CLUSTER INFO counts the
/// others, as Disque does).
fn reachable(node: &TestNode) -> usize {
    let info = text(&q(&mut conn(node), &["CLUSTER", "INFO"]).unwrap());
    info.lines()
        .find_map(|l| l.strip_prefix("cluster_reachable_nodes:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |others| others + 1)
}

/// Meets every node from the first and waits until all see all.
fn form(nodes: &[TestNode]) {
    let mut c = conn(&nodes[0]);
    for n in &nodes[1..] {
        let port = n.addr.port().to_string();
        assert_eq!(
            text(&q(&mut c, &["CLUSTER", "MEET", "127.0.0.1", &port]).unwrap()),
            "OK"
        );
    }
    for n in nodes {
        eventually(20, "every node sees every other", || {
            reachable(n) == nodes.len()
        });
    }
}

fn add(node: &TestNode, args: &[&str]) -> String {
    let mut full = vec!["ADDJOB"];
    full.extend_from_slice(args);
    text(&q(&mut conn(node), &full).expect("ADDJOB"))
}

fn shown(node: &TestNode, id: &str) -> Option<Value> {
    match q(&mut conn(node), &["SHOW", id]).unwrap() {
        Value::Nil => None,
        v => Some(v),
    }
}

fn getjob(node: &TestNode, args: &[&str]) -> Option<(String, String)> {
    let mut full = vec!["GETJOB"];
    full.extend_from_slice(args);
    match q(&mut conn(node), &full).unwrap() {
        Value::Nil => None,
        Value::Array(jobs) => {
            let Value::Array(j) = &jobs[0] else {
                panic!("bad job: {jobs:?}")
            };
            Some((text(&j[1]), text(&j[2])))
        }
        other => panic!("GETJOB: {other:?}"),
    }
}

#[test]
fn three_nodes_replicate_show_holders_and_an_ack_clears_every_copy() {
    let nodes = start_nodes(3);
    form(&nodes);
    // HELLO lists every node.
    let Value::Array(hello) = q(&mut conn(&nodes[1]), &["HELLO"]).unwrap() else {
        panic!("HELLO")
    };
    assert_eq!(hello.len(), 2 + 3);

    let id = add(&nodes[0], &["q", "payload", "5000", "REPLICATE", "3"]);
    for n in &nodes {
        let s = shown(n, &id).expect("every node holds a copy");
        let Value::Array(holders) = field(&s, "nodes-delivered") else {
            panic!("holders")
        };
        assert_eq!(holders.len(), 3);
    }
    // Disque's default: three copies when three nodes are reachable.
    let id2 = add(&nodes[1], &["q", "second", "5000"]);
    assert_eq!(
        redis::from_redis_value::<i64>(field(&shown(&nodes[2], &id2).unwrap(), "repl")).unwrap(),
        3
    );
    // More copies than nodes: refused.
    let err = q(
        &mut conn(&nodes[0]),
        &["ADDJOB", "q", "x", "1000", "REPLICATE", "4"],
    )
    .unwrap_err();
    assert_eq!(err.code(), Some("NOREPL"));

    let (got, body) = getjob(&nodes[0], &["NOHANG", "FROM", "q"]).expect("job");
    assert_eq!((got.as_str(), body.as_str()), (id.as_str(), "payload"));
    assert_eq!(
        q(&mut conn(&nodes[0]), &["ACKJOB", &id]).unwrap(),
        Value::Int(1)
    );
    for n in &nodes {
        eventually(10, "the ack reaches every holder", || {
            shown(n, &id).is_none()
        });
    }
    // The other job is still everywhere.
    for n in &nodes {
        assert!(shown(n, &id2).is_some());
    }
}

#[test]
fn a_wasm_job_runs_with_a_module_fetched_by_hash_and_its_result_is_read_anywhere() {
    let nodes = start_nodes(3);
    form(&nodes);
    let wasm = wasque_tests::guests::wasm("echo");
    let hash = {
        let mut cmd = redis::cmd("MODULE");
        cmd.arg("PUT").arg(&wasm);
        text(&cmd.query::<Value>(&mut conn(&nodes[0])).unwrap())
    };
    let id = add(
        &nodes[0],
        &[
            "w",
            "hello cluster",
            "5000",
            "REPLICATE",
            "3",
            "MODULE",
            &hash,
        ],
    );
    // Every holder fetched the module from node 1 and compiled it.
    for n in &nodes[1..] {
        eventually(30, "module fetched by hash", || {
            let v = q(&mut conn(n), &["MODULE", "LIST"]).unwrap();
            format!("{v:?}").contains(&hash)
        });
    }
    // The result is kept by every holder.
    for n in &nodes {
        let v = q(&mut conn(n), &["WAITJOB", &id, "20000"]).unwrap();
        assert_eq!(text(field(&v, "state")), "done", "{v:?}");
        assert_eq!(text(field(&v, "output")), "hello cluster");
    }
}

#[test]
fn a_starving_worker_pulls_jobs_queued_on_another_node() {
    let nodes = start_nodes(2);
    form(&nodes);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(add(
            &nodes[0],
            &["far", &format!("job{i}"), "5000", "REPLICATE", "1"],
        ));
    }
    // Node 2 has nothing queued; its blocked worker gets node 1's jobs.
    let mut got = Vec::new();
    for _ in 0..5 {
        let (id, _) =
            getjob(&nodes[1], &["TIMEOUT", "10000", "FROM", "far"]).expect("federated job");
        q(&mut conn(&nodes[1]), &["ACKJOB", &id]).unwrap();
        got.push(id);
    }
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    // Acked at node 2: node 1's copies are gone too.
    for id in &ids {
        eventually(10, "ack reaches the node the job came from", || {
            shown(&nodes[0], id).is_none()
        });
    }
}

#[test]
fn a_job_delivered_by_a_node_killed_with_sigkill_is_delivered_again_by_a_holder() {
    let mut nodes = start_nodes(3);
    form(&nodes);
    let id = add(
        &nodes[0],
        &["q", "work", "5000", "REPLICATE", "3", "RETRY", "2"],
    );
    let (got, _) = getjob(&nodes[0], &["NOHANG", "FROM", "q"]).unwrap();
    assert_eq!(got, id);
    let dead = nodes.remove(0);
    dead.kill9();
    // A worker on another node gets it once RETRY passes (no ack came).
    let started = Instant::now();
    let (again, body) =
        getjob(&nodes[0], &["TIMEOUT", "20000", "FROM", "q"]).expect("delivered again");
    assert_eq!((again.as_str(), body.as_str()), (id.as_str(), "work"));
    assert!(started.elapsed() < Duration::from_secs(20));
    let s = shown(&nodes[0], &id).unwrap();
    assert!(redis::from_redis_value::<i64>(field(&s, "additional-deliveries")).unwrap() >= 1);
    // Survivors still agree on the rest of the cluster.
    eventually(20, "the dead node is noticed", || reachable(&nodes[0]) == 2);
    // An add asking for three copies now fails; two still work.
    let err = q(
        &mut conn(&nodes[0]),
        &["ADDJOB", "q", "x", "2000", "REPLICATE", "3"],
    )
    .unwrap_err();
    assert_eq!(err.code(), Some("NOREPL"));
    add(&nodes[0], &["q", "x", "2000", "REPLICATE", "2"]);
}

#[test]
fn a_leaving_node_keeps_no_new_jobs_and_its_jobs_are_served_elsewhere() {
    let nodes = start_nodes(2);
    form(&nodes);
    let id = add(&nodes[0], &["q", "stay", "5000", "REPLICATE", "1"]);
    assert_eq!(
        text(&q(&mut conn(&nodes[0]), &["CLUSTER", "LEAVING", "yes"]).unwrap()),
        "OK"
    );
    // Disque's external replication: the add is answered, its copies are
    // all on the peer, and it is queued there.
    let ext = add(&nodes[0], &["q", "x", "1000"]);
    assert_eq!(
        q(&mut conn(&nodes[0]), &["SHOW", &ext]).unwrap(),
        Value::Nil
    );
    assert_ne!(
        q(&mut conn(&nodes[1]), &["SHOW", &ext]).unwrap(),
        Value::Nil
    );
    let err = q(
        &mut conn(&nodes[0]),
        &["ADDJOB", "q", "x", "1000", "REPLICATE", "2"],
    )
    .unwrap_err();
    assert_eq!(err.code(), Some("NOREPL"));
    // Both the moved job and the externally replicated one are served there.
    let mut got = Vec::new();
    for _ in 0..2 {
        let (one, _) = getjob(&nodes[1], &["TIMEOUT", "10000", "FROM", "q"]).expect("a job");
        got.push(one);
    }
    assert!(got.contains(&id) && got.contains(&ext), "{got:?}");
    // Peers stop placing copies on it.
    eventually(10, "peer sees the node leaving", || {
        text(&q(&mut conn(&nodes[1]), &["CLUSTER", "NODES"]).unwrap()).contains("leaving")
    });
    let err = q(
        &mut conn(&nodes[1]),
        &["ADDJOB", "q", "x", "1000", "REPLICATE", "2"],
    )
    .unwrap_err();
    assert_eq!(err.code(), Some("NOREPL"));
}

/// `PAUSE q in BCAST` on one node pauses q on the others (Disque's
/// BCAST); clearing it with BCAST clears it everywhere.
#[test]
fn pause_bcast_reaches_every_node() {
    let nodes = start_nodes(3);
    form(&nodes);
    let state = |n: &TestNode| text(&q(&mut conn(n), &["PAUSE", "q", "state"]).unwrap());
    assert_eq!(
        text(&q(&mut conn(&nodes[0]), &["PAUSE", "q", "in", "bcast"]).unwrap()),
        "in"
    );
    for n in &nodes[1..] {
        eventually(10, "a peer took the broadcast pause", || state(n) == "in");
        let err = q(&mut conn(n), &["ADDJOB", "q", "x", "1000"]).unwrap_err();
        assert_eq!(err.code(), Some("PAUSED"));
    }
    q(&mut conn(&nodes[0]), &["PAUSE", "q", "none", "bcast"]).unwrap();
    for n in &nodes {
        eventually(10, "the pause cleared everywhere", || state(n) == "none");
    }
    add(&nodes[2], &["q", "x", "1000"]);
}

#[test]
fn a_peer_without_a_certificate_cannot_exchange_a_frame() {
    let node = TestNode::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let ca = std::fs::read(node.data_dir.join("tls/ca.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![wasque_sdk::PEER_ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(crypto)));
        let conn = ep.connect(node.addr, "localhost").unwrap().await.unwrap();
        // The node closes the connection: nothing it sends is read.
        let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
            .await
            .expect("closed by the node");
        assert!(format!("{reason}").contains("certificate"), "{reason}");
    });
    // And it still serves.
    assert_eq!(text(&q(&mut conn(&node), &["PING"]).unwrap()), "PONG");
}

#[test]
fn five_nodes_replicate_five_copies_and_survive_two_deaths() {
    let mut nodes = start_nodes(5);
    form(&nodes);
    let id = add(
        &nodes[2],
        &["q", "five", "5000", "REPLICATE", "5", "RETRY", "2"],
    );
    for n in &nodes {
        let s = shown(n, &id).expect("every node holds a copy");
        let Value::Array(holders) = field(&s, "nodes-delivered") else {
            panic!("holders")
        };
        assert_eq!(holders.len(), 5);
    }
    // Two nodes die, the node that took the add among them.
    nodes.remove(2).kill9();
    nodes.remove(0).kill9();
    for n in &nodes {
        eventually(20, "the deaths are noticed", || reachable(n) == 3);
    }
    // The job is queued again by a survivor and delivered once.
    let (got, body) =
        getjob(&nodes[0], &["TIMEOUT", "15000", "FROM", "q"]).expect("delivered by a survivor");
    assert_eq!((got.as_str(), body.as_str()), (id.as_str(), "five"));
    q(&mut conn(&nodes[0]), &["ACKJOB", &id]).unwrap();
    // The acking node keeps an acked stub until the dead holders confirm
    // (Disque shows such jobs as `acked` too); the others forget it.
    for n in &nodes {
        eventually(10, "ack reaches the survivors", || {
            shown(n, &id).is_none_or(|s| text(field(&s, "state")) == "acked")
        });
    }
    // Three copies still fit; four do not.
    add(&nodes[1], &["q", "x", "5000", "REPLICATE", "3"]);
    let err = q(
        &mut conn(&nodes[1]),
        &["ADDJOB", "q", "x", "1000", "REPLICATE", "4"],
    )
    .unwrap_err();
    assert_eq!(err.code(), Some("NOREPL"));
}

#[test]
fn malformed_peer_frames_close_only_their_stream() {
    let nodes = start_nodes(2);
    form(&nodes);
    // A peer-capable client: another node's identity (loopback mode pins
    // whatever certificate a node first presents).
    let stranger = TestNode::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use rustls::pki_types::pem::PemObject;
        let dir = stranger.data_dir.join("tls");
        let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(dir.join("node.pem"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("node.key")).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let ca = std::fs::read(nodes[0].data_dir.join("tls/ca.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        tls.alpn_protocols = vec![wasque_sdk::PEER_ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(crypto)));
        let conn = ep
            .connect(nodes[0].addr, "localhost")
            .unwrap()
            .await
            .expect("a certificate lets it connect");
        // Garbage, an oversized length, a newer protocol version: each
        // stream is stopped by the node; the connection stays.
        for bytes in [
            b"garbage that is no frame at all".to_vec(),
            vec![0xff, 0xff, 0xff, 0xff, 1, 0, 0],
            vec![0, 0, 0, 1, 99, 0],
        ] {
            let mut s = conn.open_uni().await.unwrap();
            s.write_all(&bytes).await.unwrap();
            let stopped = tokio::time::timeout(Duration::from_secs(10), s.stopped())
                .await
                .expect("the node stops the stream");
            assert!(stopped.is_ok(), "{stopped:?}");
        }
        assert!(conn.close_reason().is_none(), "the connection survives");
    });
    // The node serves and the cluster still works.
    let id = add(&nodes[0], &["q", "after", "5000", "REPLICATE", "2"]);
    assert!(shown(&nodes[1], &id).is_some());
}

#[test]
fn wasque_nodes_lists_the_cluster_with_state_and_load() {
    let mut nodes = start_nodes(3);
    form(&nodes);
    let run = |node: &TestNode, json: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_test-wasque"));
        cmd.arg("--node").arg(node.addr_str()).arg("nodes");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("run wasque nodes");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run(&nodes[0], false);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.lines().next().unwrap().contains("STATE"));
    assert_eq!(table.matches(" up ").count(), 3, "{table}");
    nodes.remove(2).kill9();
    eventually(20, "the dead node is shown down", || {
        let doc: serde_json::Value = serde_json::from_str(&run(&nodes[0], true)).unwrap();
        let states: Vec<&str> = doc
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["state"].as_str().unwrap())
            .collect();
        states.iter().filter(|s| **s == "down").count() == 1 && states.len() == 3
    });
}
