//! The `wasque` CLI as a user runs it: the original note's commands and the
//! Wasm ones, exit codes, and the JSON document.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use wasque_tests::guests;
use wasque_tests::node::TestNode;

fn wasque(node: &TestNode, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_test-wasque"));
    cmd.arg("--node")
        .arg(node.addr_str())
        .arg("--data-dir")
        .arg(&node.data_dir)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn wasque");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().expect("wasque output")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "wasque failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn module_put_addjob_wait_show_and_ack() {
    let node = TestNode::start(&[]);
    let wc = guests::wasm_path("wordcount");
    let out = stdout(&wasque(
        &node,
        &["module", "put", wc.to_str().unwrap()],
        None,
    ));
    let hash = out.lines().last().unwrap().to_string();
    assert_eq!(hash.len(), 64);
    assert!(stdout(&wasque(&node, &["module", "ls"], None)).contains(&hash));

    // The note's form: body from stdin, byte for byte, options as bare words.
    let o = wasque(
        &node,
        &[
            "addjob",
            "myqueue",
            "5000",
            "replicate",
            "nocache",
            "--module",
            &hash,
            "--wait",
        ],
        Some(b"one two three"),
    );
    assert_eq!(stdout(&o), "3\n");

    // BODY from the argument; async submit, then show.
    let id = stdout(&wasque(
        &node,
        &[
            "addjob", "myqueue", "a b", "5000", "--module", &hash, "asynckey", "k1",
        ],
        None,
    ));
    let id = id.trim();
    assert_eq!(id.len(), 36);
    // Without its key the job answers as unknown (tests/asynckey.rs has
    // every door).
    assert_eq!(wasque(&node, &["wait", id], None).status.code(), Some(1));
    assert_eq!(
        stdout(&wasque(&node, &["wait", id, "--asynckey", "k1"], None)),
        "2\n"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&wasque(
        &node,
        &["show", id, "--json", "--asynckey", "k1"],
        None,
    )))
    .unwrap();
    for field in [
        "state",
        "id",
        "replicate",
        "group",
        "ttl",
        "body",
        "next_requeue_within",
        "attempts",
        "registered_at",
        "delivery_info",
        "result",
    ] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
    assert_eq!(json["state"], "done");
    assert_eq!(json["id"], id);
    assert_eq!(json["body"], "a b");
    assert_eq!(json["group"], serde_json::Value::Null);
    assert_eq!(json["delivery_info"]["delivery_count"], 1);
    assert_eq!(json["result"]["output"], "2\n");
    assert_eq!(json["result"]["exit_code"], 0);
    assert!(json["result"]["fuel_used"].as_u64().unwrap() > 0);

    // `client KEY ID` shows it to the holder of the key, and nothing without it.
    let by_key: serde_json::Value =
        serde_json::from_str(&stdout(&wasque(&node, &["client", "k1", id], None))).unwrap();
    assert_eq!(by_key["id"], id);
    let o = wasque(&node, &["client", "wrong", id], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());

    assert_eq!(wasque(&node, &["show", id], None).status.code(), Some(1));
    let summary = stdout(&wasque(&node, &["show", id, "--asynckey", "k1"], None));
    assert!(summary.contains("state:     done"), "{summary}");
    assert_eq!(stdout(&wasque(&node, &["ackjob", id], None)).trim(), "0");
    assert_eq!(
        stdout(&wasque(&node, &["ackjob", id, "--asynckey", "k1"], None)).trim(),
        "1"
    );
    assert_eq!(
        wasque(&node, &["show", id, "--asynckey", "k1"], None)
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn binary_bodies_are_base64_in_json() {
    let node = TestNode::start(&[]);
    let id = stdout(&wasque(
        &node,
        &["addjob", "plain", "5000"],
        Some(&[0xff, 0x00, 0x01]),
    ));
    let json: serde_json::Value = serde_json::from_str(&stdout(&wasque(
        &node,
        &["show", id.trim(), "--json"],
        None,
    )))
    .unwrap();
    assert_eq!(json["body"], "/wAB");
    assert_eq!(json["body_encoding"], "base64");
    assert_eq!(json["state"], "queued");
    assert_eq!(
        stdout(&wasque(&node, &["deljob", id.trim()], None)).trim(),
        "1"
    );
}

#[test]
fn failures_and_exit_codes() {
    let node = TestNode::start(&[]);
    let trap = guests::wasm_path("trap");
    let o = wasque(
        &node,
        &[
            "addjob",
            "q",
            "x",
            "5000",
            "--module",
            trap.to_str().unwrap(),
            "--wait",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error: trap: "), "{err}");
    assert!(o.stdout.is_empty());

    // Usage errors exit 2.
    assert_eq!(
        wasque(&node, &["addjob", "q", "x"], None).status.code(),
        Some(2)
    );
    assert_eq!(
        wasque(&node, &["show", "not-an-id"], None).status.code(),
        Some(2)
    );
    assert_eq!(wasque(&node, &["bogus"], None).status.code(), Some(2));

    // An unreachable node exits 3.
    let port = wasque_tests::node::free_port();
    let o = Command::new(env!("CARGO_BIN_EXE_test-wasque"))
        .args(["--node", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&node.data_dir)
        .arg("info")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn run_fans_out_payloads_in_order() {
    let node = TestNode::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let payloads = dir.path().join("p.txt");
    let lines: Vec<String> = (1..=300).map(|i| "w ".repeat(i % 7)).collect();
    std::fs::write(&payloads, lines.join("\n") + "\n").unwrap();
    let wc = guests::wasm_path("wordcount");
    let o = wasque(
        &node,
        &[
            "run",
            wc.to_str().unwrap(),
            "--payloads",
            payloads.to_str().unwrap(),
            "--concurrency",
            "16",
        ],
        None,
    );
    let out = stdout(&o);
    let expected: String = (1..=300).map(|i| format!("{}\n", i % 7)).collect();
    assert_eq!(out, expected, "results in payload order");
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(
        summary.contains("300 jobs: 300 done, 0 failed"),
        "{summary}"
    );
    assert!(summary.contains("p99"), "{summary}");

    // --out writes one file per payload; a failure writes .err and exits 1.
    let fib = guests::wasm_path("fib");
    let p2 = dir.path().join("fib.txt");
    std::fs::write(&p2, "10\nnope\n12\n").unwrap();
    let outdir = dir.path().join("out");
    let o = wasque(
        &node,
        &[
            "run",
            fib.to_str().unwrap(),
            "--payloads",
            p2.to_str().unwrap(),
            "--out",
            outdir.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(outdir.join("000001.out")).unwrap(),
        "55\n"
    );
    assert!(
        std::fs::read_to_string(outdir.join("000002.err"))
            .unwrap()
            .starts_with("exit(2)")
    );
    assert_eq!(
        std::fs::read_to_string(outdir.join("000003.out")).unwrap(),
        "144\n"
    );
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(summary.contains("exit(2): 1"), "{summary}");
    // Every job was acknowledged: nothing left on the node.
    let info = stdout(&wasque(&node, &["info"], None));
    assert!(info.contains("jobs:0"), "{info}");
}

#[test]
fn the_notes_config_file_starts_a_node() {
    let conf = guests::repo_root().join("node/tests/data/disque.conf");
    let node = TestNode::start(&["--config", conf.to_str().unwrap()]);
    let info = stdout(&wasque(&node, &["info"], None));
    assert!(info.contains("node_id:"));
    assert!(node.stop().success());
}
