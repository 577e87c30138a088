//! CANCEL through a real node over RESP: a queued job is removed, a
//! running Wasm job (the `spin` guest, a 60 s deadline) ends with error
//! class `cancelled` long before its deadline, an unknown id and a
//! finished job answer clear errors; on three nodes, a queued job with
//! three copies cancelled through another holder leaves no copy, and a
//! job running on node 0 cancelled from node 1 ends `cancelled` there.
//! Every wait is bounded.

use std::time::{Duration, Instant};

use redis::Value;
use wasque_tests::node::TestNode;
use wasque_tests::resp::{field, text};
use wasque_tests::wait::eventually;
use wasque_tests::{guests, http};

fn q(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    wasque_tests::resp::cmd(c, args)
}

#[test]
fn cancel_queued_running_unknown_and_finished() {
    let node = TestNode::start(&["--exec-threads", "1"]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP connection");

    // A queued plain job: removed.
    let id = text(&q(&mut c, &["ADDJOB", "plain", "body", "0"]).unwrap());
    assert_eq!(q(&mut c, &["CANCEL", &id]).unwrap(), Value::Int(1));
    assert_eq!(q(&mut c, &["QLEN", "plain"]).unwrap(), Value::Int(0));
    assert!(field(&mut c, "SHOW", &id, "state").is_none(), "gone");

    // Through the CLI (QUIC): the count, then a clear error once gone.
    let id2 = text(&q(&mut c, &["ADDJOB", "plain", "body", "0"]).unwrap());
    let out = node.wasque(&["cancel", &id2]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    assert_eq!(q(&mut c, &["QLEN", "plain"]).unwrap(), Value::Int(0));
    let out = node.wasque(&["cancel", &id2]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&id2),
        "{out:?}"
    );

    // The same id again: unknown now, a clear NOJOB.
    let err = q(&mut c, &["CANCEL", &id]).unwrap_err();
    assert_eq!(err.code(), Some("NOJOB"), "{err:?}");
    assert!(err.to_string().contains(&id), "{err}");

    // A running Wasm job: interrupted, class `cancelled`, well before
    // its 60 s deadline.
    let mut put = redis::cmd("MODULE");
    put.arg("PUT").arg(guests::wasm("spin"));
    let hash = text(&put.query::<Value>(&mut c).unwrap());
    let id = text(
        &q(
            &mut c,
            &[
                "ADDJOB",
                "wasm",
                "",
                "0",
                "MODULE",
                &hash,
                "FUEL",
                "90000000000",
                "DEADLINE",
                "60000",
            ],
        )
        .unwrap(),
    );
    eventually(10, "the spin job runs", || {
        field(&mut c, "SHOW", &id, "state").as_deref() == Some("active")
    });
    let asked = Instant::now();
    assert_eq!(q(&mut c, &["CANCEL", &id]).unwrap(), Value::Int(1));
    eventually(20, "the spin job ends cancelled", || {
        field(&mut c, "RESULT", &id, "error_class").as_deref() == Some("cancelled")
    });
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        field(&mut c, "SHOW", &id, "state").as_deref(),
        Some("failed")
    );

    // Finished: nothing to cancel, said so.
    let err = q(&mut c, &["CANCEL", &id]).unwrap_err();
    assert!(err.to_string().contains("already finished"), "{err}");
    node.stop();
}

/// Meets every node from the first and waits until all see all.
fn form(nodes: &[TestNode]) {
    let mut c = wasque_tests::resp::connect(nodes[0].addr).expect("RESP");
    for n in &nodes[1..] {
        let port = n.addr.port().to_string();
        q(&mut c, &["CLUSTER", "MEET", "127.0.0.1", &port]).expect("MEET");
    }
    for n in nodes {
        let mut c = wasque_tests::resp::connect(n.addr).expect("RESP");
        eventually(20, "every node sees every other", || {
            let info = text(&q(&mut c, &["CLUSTER", "INFO"]).unwrap());
            info.lines()
                .find_map(|l| l.strip_prefix("cluster_reachable_nodes:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                == Some(nodes.len() - 1)
        });
    }
}

#[test]
fn cancel_reaches_every_holder_and_the_node_running_the_job() {
    let nodes: Vec<TestNode> = (0..3)
        .map(|_| TestNode::start(&["--cluster-node-timeout", "1500", "--exec-threads", "1"]))
        .collect();
    form(&nodes);
    let mut cs: Vec<_> = nodes
        .iter()
        .map(|n| wasque_tests::resp::connect(n.addr).expect("RESP"))
        .collect();

    // A queued job with three copies, cancelled through another holder.
    let id = text(
        &q(
            &mut cs[0],
            &["ADDJOB", "q", "body", "5000", "REPLICATE", "3"],
        )
        .unwrap(),
    );
    for c in cs.iter_mut() {
        assert!(
            field(c, "SHOW", &id, "state").is_some(),
            "every node holds it"
        );
    }
    assert_eq!(q(&mut cs[1], &["CANCEL", &id]).unwrap(), Value::Int(1));
    for c in cs.iter_mut() {
        eventually(10, "the copy is gone", || {
            field(c, "SHOW", &id, "state").is_none()
        });
    }

    // A Wasm job running on node 0, cancelled from node 1.
    let mut put = redis::cmd("MODULE");
    put.arg("PUT").arg(guests::wasm("spin"));
    let hash = text(&put.query::<Value>(&mut cs[0]).unwrap());
    let id = text(
        &q(
            &mut cs[0],
            &[
                "ADDJOB",
                "w",
                "",
                "5000",
                "REPLICATE",
                "3",
                "MODULE",
                &hash,
                "FUEL",
                "90000000000",
                "DEADLINE",
                "60000",
            ],
        )
        .unwrap(),
    );
    eventually(20, "the spin job runs somewhere", || {
        cs.iter_mut()
            .any(|c| field(c, "SHOW", &id, "state").as_deref() == Some("active"))
    });
    // Let it start on whichever node runs it.
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    assert_eq!(q(&mut cs[1], &["CANCEL", &id]).unwrap(), Value::Int(1));
    eventually(20, "the result says cancelled on the node asked", || {
        field(&mut cs[1], "RESULT", &id, "error_class").as_deref() == Some("cancelled")
    });
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    for n in nodes {
        n.stop();
    }
}

#[test]
fn cancel_over_http_takes_json_only_and_answers_404_for_an_unknown_id() {
    let node = TestNode::start_http(&[]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP connection");
    let id = text(&q(&mut c, &["ADDJOB", "h", "body", "0"]).unwrap());
    let path = format!("/api/jobs/{id}/cancel");
    // No JSON body (what a cross-site form could send): refused, kept.
    let http::Response { status, .. } = http::post(node.http_addr(), &path, None).unwrap();
    assert_eq!(status, 400);
    assert_eq!(q(&mut c, &["QLEN", "h"]).unwrap(), Value::Int(1));
    let http::Response { status, body, .. } =
        http::post(node.http_addr(), &path, Some("{}")).unwrap();
    assert_eq!(
        (status, body.contains("\"cancelled\":1")),
        (200, true),
        "{body}"
    );
    assert_eq!(q(&mut c, &["QLEN", "h"]).unwrap(), Value::Int(0));
    let http::Response { status, body, .. } =
        http::post(node.http_addr(), &path, Some("{}")).unwrap();
    assert_eq!(status, 404, "{body}");
    node.stop();
}

/// Another tenant's job answers CANCEL exactly as a missing job does, and
/// stays; its owner can cancel it.
#[test]
fn a_tenant_cannot_cancel_another_tenants_job() {
    let node = TestNode::start(&[]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP");
    q(
        &mut c,
        &["CONFIG", "SET", "requirepass", "admin-pw-for-cancel"],
    )
    .expect("password");
    let mut admin = wasque_tests::resp::connect(node.addr).expect("RESP");
    q(&mut admin, &["AUTH", "admin-pw-for-cancel"]).expect("admin AUTH");
    let mut token = |name: &str| match q(&mut admin, &["TENANT", "ADD", name]).expect("TENANT ADD")
    {
        Value::Array(v) => text(&v[2]),
        other => panic!("TENANT ADD answered {other:?}"),
    };
    let (alice_tok, bob_tok) = (token("alice"), token("bob"));
    let mut alice = wasque_tests::resp::connect(node.addr).expect("RESP");
    q(&mut alice, &["AUTH", "alice", &alice_tok]).expect("alice AUTH");
    let mut bob = wasque_tests::resp::connect(node.addr).expect("RESP");
    q(&mut bob, &["AUTH", "bob", &bob_tok]).expect("bob AUTH");

    let id = text(&q(&mut alice, &["ADDJOB", "q", "mine", "0"]).unwrap());
    // A missing id, for the answer to compare with.
    let gone = text(&q(&mut bob, &["ADDJOB", "q", "x", "0"]).unwrap());
    assert_eq!(q(&mut bob, &["DELJOB", &gone]).unwrap(), Value::Int(1));
    let missing = q(&mut bob, &["CANCEL", &gone]).unwrap_err();
    let other = q(&mut bob, &["CANCEL", &id]).unwrap_err();
    assert_eq!(other.code(), missing.code(), "{other:?} vs {missing:?}");
    assert_eq!(
        other.to_string().replace(&id, "ID"),
        missing.to_string().replace(&gone, "ID")
    );
    assert_eq!(
        q(&mut alice, &["QLEN", "q"]).unwrap(),
        Value::Int(1),
        "kept"
    );
    assert_eq!(q(&mut alice, &["CANCEL", &id]).unwrap(), Value::Int(1));
    assert_eq!(q(&mut alice, &["QLEN", "q"]).unwrap(), Value::Int(0));
    node.stop();
}
