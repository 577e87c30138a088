//! `ca` trust mode with real processes: `CLUSTER INIT` makes a cluster CA
//! and a join token, a node started with `--join-token` gets its peer
//! certificate and joins; a wrong secret stops the start with a clear
//! error; nodes with certificates from another CA (their own cluster CA,
//! or loopback mode's self-made one) cannot join.

use std::process::{Command, Stdio};
use std::time::Duration;

use redis::Value;
use wasque_tests::node::{TestNode, bin, free_port};
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
        other => panic!("not text: {other:?}"),
    }
}

fn info_field(node: &TestNode, name: &str) -> String {
    let info = text(&q(node, &["CLUSTER", "INFO"]).unwrap());
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn a_node_joins_with_the_token_and_foreign_certificates_are_refused() {
    let a = TestNode::start(&["--cluster-node-timeout", "1500"]);
    assert_eq!(info_field(&a, "cluster_trust"), "loopback");
    let token = text(&q(&a, &["CLUSTER", "INIT"]).unwrap());
    assert!(token.starts_with("wasque1."), "{token}");
    assert_eq!(info_field(&a, "cluster_trust"), "ca");
    // Init again: the same CA, the same token.
    assert_eq!(text(&q(&a, &["CLUSTER", "INIT"]).unwrap()), token);

    let b = TestNode::start(&[
        "--cluster-node-timeout",
        "1500",
        "--join",
        &a.addr_str(),
        "--join-token",
        &token,
    ]);
    assert!(b.data_dir.join("tls/cluster-node.pem").exists());
    assert_eq!(info_field(&b, "cluster_trust"), "ca");
    eventually(20, "a and b see each other", || {
        info_field(&a, "cluster_reachable_nodes") == "1"
            && info_field(&b, "cluster_reachable_nodes") == "1"
    });
    let id = text(&q(&a, &["ADDJOB", "q", "x", "5000", "REPLICATE", "2"]).unwrap());
    assert!(q(&b, &["SHOW", &id]).unwrap() != Value::Nil);

    // A wrong secret: the node does not start, and says why.
    let (fp, _) = token.rsplit_once('.').unwrap();
    let bad = format!("{fp}.0000");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin("test-wasque-node"))
        .args(["--port", &free_port().to_string(), "--http-port", "0"])
        .arg("--data-dir")
        .arg(tmp.path().join("c"))
        .args(["--join", &a.addr_str(), "--join-token", &bad])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run node");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret is wrong"), "{err}");

    // A node of another cluster CA, and a loopback-mode node, cannot join.
    let d = TestNode::start(&["--cluster-node-timeout", "1500"]);
    text(&q(&d, &["CLUSTER", "INIT"]).unwrap());
    let e = TestNode::start(&["--cluster-node-timeout", "1500"]);
    for n in [&d, &e] {
        let port = a.addr.port().to_string();
        q(n, &["CLUSTER", "MEET", "127.0.0.1", &port]).unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(info_field(&a, "cluster_reachable_nodes"), "1");
    assert_eq!(info_field(&d, "cluster_reachable_nodes"), "0");
    assert_eq!(info_field(&e, "cluster_reachable_nodes"), "0");
}
