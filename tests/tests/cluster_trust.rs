//! The peer door's locks in loopback trust mode, against real node
//! processes on loopback: pins survive a restart (a node whose identity
//! changed is still refused); gossip from a connection whose peer has not
//! said who it is is dropped; `CLUSTER MEET` beyond loopback is refused;
//! every key and the join secret are files of mode 0600. Bounded waits.

use std::path::Path;
use std::time::Duration;

use redis::Value;
use wasque_node::cluster::wire::{self, Frame, Hello};
use wasque_node::job::NodeName;
use wasque_node::net::identity::Identity;
use wasque_tests::node::TestNode;
use wasque_tests::wait::eventually;

fn conn(node: &TestNode) -> redis::Connection {
    wasque_tests::resp::connect(node.addr).expect("resp connection")
}

fn q(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    wasque_tests::resp::cmd(c, args)
}

fn text(v: &Value) -> String {
    match v {
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("not text: {other:?}"),
    }
}

fn info_field(node: &TestNode, name: &str) -> u64 {
    info_at(node.addr, name)
}

fn info_at(addr: std::net::SocketAddr, name: &str) -> u64 {
    let mut c = wasque_tests::resp::connect(addr).expect("resp connection");
    let info = text(&q(&mut c, &["CLUSTER", "INFO"]).expect("CLUSTER INFO"));
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

#[test]
fn a_restarted_node_still_refuses_a_peer_whose_identity_changed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = TestNode::start_in(&a_dir, &["--cluster-node-timeout", "1500"]);
    let b = TestNode::start_in(&b_dir, &["--cluster-node-timeout", "1500"]);
    let (a_port, b_port) = (a.addr.port(), b.addr.port());
    let a_port_s = a_port.to_string();
    let met = q(&mut conn(&b), &["CLUSTER", "MEET", "127.0.0.1", &a_port_s]);
    assert_eq!(text(&met.expect("first meeting")), "OK");
    eventually(20, "A sees B", || {
        info_field(&a, "cluster_reachable_nodes") == 1
    });
    a.stop();
    b.stop();

    // B comes back with the same node id but a new certificate (its tls/
    // folder is gone, pins included); A comes back from its data dir.
    std::fs::remove_dir_all(b_dir.join("tls")).expect("wipe B's identity");
    let a = TestNode::start_at(&a_dir, a_port, &["--cluster-node-timeout", "1500"]);
    let b = TestNode::start_at(&b_dir, b_port, &["--cluster-node-timeout", "1500"]);
    // MEET answers at once and meets in the background: A must keep B out
    // (its restart from the peers file and this MEET both fail the pin).
    let met = q(&mut conn(&b), &["CLUSTER", "MEET", "127.0.0.1", &a_port_s]);
    assert_eq!(text(&met.expect("MEET is queued")), "OK");
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < deadline {
        assert_eq!(
            info_field(&a, "cluster_known_nodes"),
            1,
            "A let in a peer whose certificate is not the one it pinned before its restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn cluster_meet_beyond_loopback_is_refused_in_loopback_trust_mode() {
    let node = TestNode::start(&[]);
    // 0.0.0.0 is not a loopback address; nothing is dialled when refused.
    let err = q(&mut conn(&node), &["CLUSTER", "MEET", "0.0.0.0", "7711"])
        .expect_err("MEET beyond loopback in loopback trust mode");
    let msg = err.to_string();
    assert!(
        msg.contains("loopback trust mode") && msg.contains("cluster init"),
        "a clear refusal: {msg}"
    );
    assert_eq!(info_field(&node, "cluster_known_nodes"), 1);
}

/// A peer-ALPN connection with a certificate of its own, as any local
/// process could open.
async fn rogue_peer(dir: &Path, node: &TestNode) -> (quinn::Endpoint, quinn::Connection, Hello) {
    let id = "ab".repeat(20);
    let identity = Identity::load_or_create(dir, &id, &[]).expect("rogue identity");
    let dial =
        wasque_node::cluster::dial_config(&identity.cert_chain, &identity.key, None).expect("dial");
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    ep.set_default_client_config(dial);
    let conn = tokio::time::timeout(
        Duration::from_secs(5),
        ep.connect(node.addr, wasque_node::cluster::ca::PEER_NAME)
            .expect("dial"),
    )
    .await
    .expect("handshake within 5 s")
    .expect("handshake");
    let hello = Hello {
        node: NodeName::from_hex(&id).expect("hex id"),
        addr: ep.local_addr().expect("local addr"),
        incarnation: 1,
        client_ca_pem: identity.ca_pem.clone(),
    };
    (ep, conn, hello)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_before_a_verified_hello_is_dropped() {
    let node = TestNode::start(&[]);
    let addr = node.addr;
    let dropped = || async move {
        tokio::task::spawn_blocking(move || info_at(addr, "cluster_gossip_dropped"))
            .await
            .expect("info")
    };
    let wait_for = |want: u64| async move {
        let mut seen = 0;
        for _ in 0..50 {
            seen = dropped().await;
            if seen >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    };
    assert_eq!(dropped().await, 0);

    // A connection that never says who it is: none of its gossip reaches
    // SWIM (a few are held for a Hello that never comes, then dropped).
    let tmp = tempfile::tempdir().expect("tmp");
    let (ep, conn, _) = rogue_peer(tmp.path(), &node).await;
    for i in 0..40u8 {
        conn.send_datagram(bytes::Bytes::from(vec![i; 64]))
            .expect("datagram");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.close(0u32.into(), b"never said hello");
    ep.wait_idle().await;
    assert_eq!(
        wait_for(40).await,
        40,
        "every datagram of an unverified connection was dropped"
    );

    // Once its Hello is verified (pinned on first use), a connection's
    // gossip, including what raced ahead of the Hello, goes on to SWIM.
    let (_ep, conn, hello) = rogue_peer(tmp.path(), &node).await;
    for i in 0..5u8 {
        conn.send_datagram(bytes::Bytes::from(vec![i; 64]))
            .expect("datagram");
    }
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    wire::write(&mut send, &Frame::Hello(hello))
        .await
        .expect("hello");
    let _ = send.finish();
    let answer = tokio::time::timeout(Duration::from_secs(5), wire::read(&mut recv, 1 << 20))
        .await
        .expect("answer within 5 s")
        .expect("answer");
    assert!(matches!(answer, Some(Frame::Hello(_))), "{answer:?}");
    for i in 0..5u8 {
        conn.send_datagram(bytes::Bytes::from(vec![i; 64]))
            .expect("datagram");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    conn.close(0u32.into(), b"done");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        dropped().await,
        40,
        "a verified peer's gossip is not dropped"
    );
}

#[test]
fn keys_and_the_join_secret_are_private_files() {
    use std::os::unix::fs::PermissionsExt;
    let node = TestNode::start(&[]);
    let token = q(&mut conn(&node), &["CLUSTER", "INIT"]).expect("CLUSTER INIT");
    assert!(text(&token).starts_with("wasque1."), "{token:?}");
    let tls = node.data_dir.join("tls");
    for name in [
        "ca.key",
        "node.key",
        "cluster-ca.key",
        "join-secret",
        "cluster-node.key",
    ] {
        let mode = std::fs::metadata(tls.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
    }
}
