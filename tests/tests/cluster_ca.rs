//! `ca` trust mode with real processes: `CLUSTER INIT` makes a cluster CA
//! and a join token, a node started with `--join-token` gets its peer
//! certificate and joins; a wrong secret stops the start with a clear
//! error; nodes with certificates from another CA (their own cluster CA,
//! or loopback mode's self-made one) cannot join. Any member admits (the
//! CA key reaches every member); tokens expire, are revoked and rotated
//! cluster-wide; `CLUSTER FORGET` revokes a node on every member.

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

    let b = joiner(&a, &token);
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

/// A node started with `--join ADDR --join-token TOKEN` on `data_dir`
/// that must fail: its stderr.
fn failed_join(data_dir: &std::path::Path, via: &TestNode, token: &str) -> String {
    let out = Command::new(bin("test-wasque-node"))
        .args(["--port", &free_port().to_string(), "--http-port", "0"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--join", &via.addr_str(), "--join-token", token])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run node");
    assert!(!out.status.success(), "the join should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn joiner(via: &TestNode, token: &str) -> TestNode {
    TestNode::start(&[
        "--cluster-node-timeout",
        "1500",
        "--join",
        &via.addr_str(),
        "--join-token",
        token,
    ])
}

fn node_id(n: &TestNode) -> String {
    std::fs::read_to_string(n.data_dir.join("node-id"))
        .expect("node-id file")
        .trim()
        .to_string()
}

#[test]
fn any_member_admits_and_tokens_expire_are_revoked_and_rotate() {
    let a = TestNode::start(&["--cluster-node-timeout", "1500"]);
    let first = text(&q(&a, &["CLUSTER", "INIT"]).unwrap());
    let b = joiner(&a, &first);
    // b gets the CA key from a over their link: it admits too.
    eventually(20, "b holds the CA key", || {
        info_field(&b, "cluster_can_admit") == "yes"
    });
    assert!(b.data_dir.join("tls/cluster-ca.key").exists());

    // Tokens made on b: one short-lived, one until revoked.
    let short = text(&q(&b, &["CLUSTER", "TOKEN", "CREATE", "TTL", "1"]).unwrap());
    let long = text(&q(&b, &["CLUSTER", "TOKEN", "CREATE"]).unwrap());
    assert!(short.starts_with("wasque1.") && long.starts_with("wasque1."));
    assert_ne!(short, long);
    // c joins through b, not the node that made the CA.
    let c = joiner(&b, &long);
    for n in [&a, &b, &c] {
        eventually(20, "three members", || {
            info_field(n, "cluster_reachable_nodes") == "2"
        });
    }
    // Every member learns every token (a never saw them made).
    eventually(20, "a lists b's tokens", || {
        text(&q(&a, &["CLUSTER", "TOKEN", "LIST"]).unwrap())
            .lines()
            .count()
            == 3
    });
    std::thread::sleep(Duration::from_millis(1200));
    let tmp = tempfile::tempdir().unwrap();
    let err = failed_join(&tmp.path().join("d1"), &a, &short);
    assert!(err.contains("expired"), "{err}");
    let list = text(&q(&a, &["CLUSTER", "TOKEN", "LIST"]).unwrap());
    assert!(list.contains(" expired "), "{list}");

    // Rotation on a: every older token stops admitting on every member
    // (here through c), the new one admits.
    let new = text(&q(&a, &["CLUSTER", "TOKEN", "ROTATE", "TTL", "3600"]).unwrap());
    eventually(20, "c learns the rotation", || {
        text(&q(&c, &["CLUSTER", "TOKEN", "LIST"]).unwrap())
            .lines()
            .filter(|l| l.contains(" valid "))
            .count()
            == 1
    });
    let err = failed_join(&tmp.path().join("d2"), &c, &long);
    assert!(err.contains("revoked"), "{err}");
    let err = failed_join(&tmp.path().join("d3"), &c, &first);
    assert!(err.contains("revoked"), "{err}");
    // `cluster init` no longer prints the revoked first token.
    let e = q(&a, &["CLUSTER", "INIT"]).unwrap_err().to_string();
    assert!(e.contains("TOKEN CREATE"), "{e}");
    let d = joiner(&c, &new);
    eventually(20, "d is a member", || {
        info_field(&d, "cluster_reachable_nodes") == "3"
    });

    // Bad input gets a clear error.
    let e = q(&a, &["CLUSTER", "TOKEN", "CREATE", "TTL", "0"]).unwrap_err();
    assert!(e.to_string().contains("TTL is 1 to"), "{e}");
    let e = q(&a, &["CLUSTER", "TOKEN", "REVOKE", "nosuch"]).unwrap_err();
    assert!(e.to_string().contains("no join token"), "{e}");
    let loopback = TestNode::start(&[]);
    let e = q(&loopback, &["CLUSTER", "TOKEN", "CREATE"]).unwrap_err();
    assert!(e.to_string().contains("CLUSTER INIT"), "{e}");
}

#[test]
fn a_forgotten_node_is_refused_by_every_member() {
    let a = TestNode::start(&["--cluster-node-timeout", "1500"]);
    let token = text(&q(&a, &["CLUSTER", "INIT"]).unwrap());
    let b = joiner(&a, &token);
    let tmp = tempfile::tempdir().unwrap();
    let c_dir = tmp.path().join("c");
    let c = TestNode::start_in(
        &c_dir,
        &[
            "--cluster-node-timeout",
            "1500",
            "--join",
            &a.addr_str(),
            "--join-token",
            &token,
        ],
    );
    for n in [&a, &b, &c] {
        eventually(20, "three members", || {
            info_field(n, "cluster_reachable_nodes") == "2"
        });
    }
    let c_id = node_id(&c);
    // An id no member met (a typo) is unknown, and nothing is revoked.
    let e = q(&a, &["CLUSTER", "FORGET", &"ab".repeat(20)]).unwrap_err();
    assert!(e.to_string().contains("Unknown node"), "{e}");
    assert_eq!(info_field(&a, "cluster_forgotten_nodes"), "0");
    q(&a, &["CLUSTER", "FORGET", &c_id]).unwrap();
    // b was not asked: it learns it from a.
    for n in [&a, &b] {
        eventually(20, "c is forgotten", || {
            info_field(n, "cluster_forgotten_nodes") == "1"
                && !text(&q(n, &["CLUSTER", "NODES"]).unwrap()).contains(&c_id)
        });
    }
    eventually(20, "c reaches nobody", || {
        info_field(&c, "cluster_reachable_nodes") == "0"
    });
    // c knocks again, and restarts: refused all the same.
    let port = a.addr.port().to_string();
    q(&c, &["CLUSTER", "MEET", "127.0.0.1", &port]).unwrap();
    let c_port = c.addr.port();
    c.stop();
    let c = TestNode::start_at(&c_dir, c_port, &["--cluster-node-timeout", "1500"]);
    std::thread::sleep(Duration::from_secs(3));
    for n in [&a, &b] {
        assert_eq!(info_field(n, "cluster_reachable_nodes"), "1");
        assert!(!text(&q(n, &["CLUSTER", "NODES"]).unwrap()).contains(&c_id));
    }
    assert_eq!(info_field(&c, "cluster_reachable_nodes"), "0");
    // Its id may not join again, even with a valid token.
    c.stop();
    for f in ["cluster-ca.pem", "cluster-node.pem", "cluster-node.key"] {
        let _ = std::fs::remove_file(c_dir.join("tls").join(f));
    }
    let err = failed_join(&c_dir, &b, &token);
    assert!(err.contains("was forgotten"), "{err}");
    // The members still work together.
    let id = text(&q(&a, &["ADDJOB", "q", "x", "5000", "REPLICATE", "2"]).unwrap());
    assert!(q(&b, &["SHOW", &id]).unwrap() != Value::Nil);
}
