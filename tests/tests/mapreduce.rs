//! Distributed jobs on a real three-node cluster: `wasque map` splits a
//! text, runs the word-count map on every part across the nodes and the
//! reduce over their results in order; the counts match a count made here.
//! The parent job's status lists every part while it runs; a node killed
//! during the map phase costs nothing but time; an empty input and a bad
//! chunk size get clear errors.

use std::collections::BTreeMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use redis::Value;
use wasque_tests::guests;
use wasque_tests::node::TestNode;

fn wasque_cmd(node: &TestNode, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_test-wasque"));
    cmd.arg("--node")
        .arg(node.addr_str())
        .arg("--data-dir")
        .arg(&node.data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn wait_bounded(mut child: Child, secs: u64) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wasque map did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a short command to its end (reading its output as it comes, so a
/// large output cannot block it), bounded.
fn output_bounded(mut cmd: Command, secs: u64) -> Output {
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // Our own child, by its pid.
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("command did not finish within {secs} s");
        }
    }
}

fn q(node: &TestNode, args: &[&str]) -> Value {
    let client = redis::Client::open(format!("redis://{}/", node.addr)).unwrap();
    let mut c = client.get_connection().unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut c).unwrap()
}

/// `cluster_reachable_nodes`: the other nodes reachable (as Disque counts).
fn reachable(node: &TestNode) -> usize {
    let Value::BulkString(b) = q(node, &["CLUSTER", "INFO"]) else {
        return 0;
    };
    String::from_utf8_lossy(&b)
        .lines()
        .find_map(|l| l.strip_prefix("cluster_reachable_nodes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn cluster() -> Vec<TestNode> {
    let nodes: Vec<TestNode> = (0..3)
        .map(|_| TestNode::start(&["--cluster-node-timeout", "1500"]))
        .collect();
    for n in &nodes[1..] {
        q(
            &nodes[0],
            &["CLUSTER", "MEET", "127.0.0.1", &n.addr.port().to_string()],
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes.iter().all(|n| reachable(n) == 2) {
        assert!(Instant::now() < deadline, "cluster did not form");
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes
}

/// A text with a known word count (deterministic, some 25 bytes a line).
fn text(lines: usize) -> (Vec<u8>, BTreeMap<String, u64>) {
    let words = [
        "wasm", "queue", "node", "job", "cluster", "disque", "quic", "edge",
    ];
    let mut out = Vec::new();
    let mut counts = BTreeMap::new();
    let mut x: u64 = 7;
    for line in 0..lines {
        for _ in 0..(line % 7 + 1) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let w = words[(x >> 33) as usize % words.len()];
            out.extend_from_slice(w.as_bytes());
            out.push(b' ');
            *counts.entry(w.to_string()).or_insert(0) += 1;
        }
        out.push(b'\n');
    }
    (out, counts)
}

fn parse(out: &[u8]) -> BTreeMap<String, u64> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| {
            let (w, n) = l.split_once('\t').expect("word\\tcount");
            (w.to_string(), n.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_word_count_over_the_cluster_matches_and_survives_a_kill() {
    let mut nodes = cluster();
    q(
        &nodes[0],
        &["QPOLICY", "map", "round-robin", "MODE", "push"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let (input, want) = text(12_000);
    let file = tmp.path().join("input.txt");
    std::fs::write(&file, &input).unwrap();
    let file = file.to_str().unwrap().to_string();
    let map = guests::wasm_path("wcmap");
    let reduce = guests::wasm_path("wcreduce");
    let (map, reduce) = (map.to_str().unwrap(), reduce.to_str().unwrap());

    let out = wait_bounded(
        wasque_cmd(
            &nodes[0],
            &[
                "map", map, "--input", &file, "--chunk", "8KiB", "--reduce", reduce, "--json",
            ],
        )
        .spawn()
        .unwrap(),
        120,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parts = doc["parts"].as_array().unwrap();
    assert!(parts.len() > 20, "{} parts", parts.len());
    let nodes_used: std::collections::HashSet<&str> =
        parts.iter().map(|p| p["node"].as_str().unwrap()).collect();
    assert_eq!(nodes_used.len(), 3, "parts ran on every node");
    let result = doc["reduce"]["result"]["output"].as_str().unwrap();
    assert_eq!(parse(result.as_bytes()), want);

    // Again, killing a node during the map phase.
    // A larger input in small parts, few in flight: the map phase lasts
    // long enough (seconds) to kill a node in the middle of it.
    let (big, want) = text(120_000);
    let big_file = tmp.path().join("big.txt");
    std::fs::write(&big_file, &big).unwrap();
    let big_file = big_file.to_str().unwrap().to_string();
    let mut child = wasque_cmd(
        &nodes[0],
        &[
            "map",
            map,
            "--input",
            &big_file,
            "--chunk",
            "1KiB",
            "--concurrency",
            "2",
            "--reduce",
            reduce,
            "--no-progress",
        ],
    )
    .spawn()
    .unwrap();
    // The CLI names the parent job first; its status lists the parts.
    let stderr = child.stderr.take().unwrap();
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = first_tx.send(line.clone());
            all += &line;
            all += "\n";
        }
        all
    });
    let first = (0..10)
        .map_while(|_| first_rx.recv_timeout(Duration::from_secs(30)).ok())
        .find(|l| l.starts_with("job "))
        .expect("wasque map names its job");
    let parent = first
        .strip_prefix("job ")
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("first line: {first}"))
        .to_string();
    let show = output_bounded(wasque_cmd(&nodes[0], &["show", &parent, "--json"]), 30);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(doc["state"], "waiting", "{doc}");
    let n_parts = doc["parts"].as_array().unwrap().len();
    assert!(n_parts > 1000, "{n_parts} parts");
    assert!(
        doc["parts_done"].as_u64().unwrap() < n_parts as u64,
        "the map phase is still running"
    );
    if child.try_wait().unwrap().is_some() {
        panic!("the map phase ended before the kill");
    }
    // Kill a node other than the parent's: the parent is kept by the node
    // that accepted it, not replicated (README, "Distributed jobs"); its
    // parts are, and the parts running on the victim must come back.
    let parent_prefix = format!(
        "{:06x}",
        parent
            .parse::<wasque_sdk::proto::JobId>()
            .expect("a job id")
            .node_prefix()
    );
    let victim = (0..nodes.len())
        .rev()
        .find(|i| {
            let id = std::fs::read_to_string(nodes[*i].data_dir.join("node-id")).unwrap();
            !id.trim().starts_with(&parent_prefix)
        })
        .expect("a node that does not keep the parent");
    nodes.remove(victim).kill9();
    let out = wait_bounded(child, 120);
    let err = reader.join().unwrap();
    assert!(out.status.success(), "{err}");
    assert_eq!(parse(&out.stdout), want);
    // The parent was acknowledged once its result was printed.
    let gone = output_bounded(wasque_cmd(&nodes[0], &["show", &parent]), 30);
    assert!(!gone.status.success());

    // Bad input.
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    let out = wait_bounded(
        wasque_cmd(
            &nodes[0],
            &[
                "map",
                map,
                "--input",
                empty.to_str().unwrap(),
                "--reduce",
                reduce,
            ],
        )
        .spawn()
        .unwrap(),
        30,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
    let out = wait_bounded(
        wasque_cmd(
            &nodes[0],
            &[
                "map", map, "--input", &file, "--chunk", "1 parsec", "--reduce", reduce,
            ],
        )
        .spawn()
        .unwrap(),
        30,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--chunk"));
}
