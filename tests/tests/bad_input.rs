//! Bad input over QUIC: broken modules, bounds, unknown hashes, malformed
//! and oversized frames, a client vanishing mid-upload. Each gets a clear
//! error and the node keeps serving.

use std::time::Duration;

use wasque_sdk::proto::{
    self, AddJob, ErrorCode, ModuleHash, Request, RequestFrame, Response, ResponseFrame,
};
use wasque_sdk::{Client, ClientError};
use wasque_tests::guests;
use wasque_tests::node::TestNode;

fn node_error(r: Result<impl std::fmt::Debug, ClientError>) -> proto::WireError {
    match r {
        Err(ClientError::Node(e)) => e,
        other => panic!("expected a node error, got {other:?}"),
    }
}

async fn still_serves(c: &Client) {
    let wc = c.put_module(guests::wasm("wordcount")).await.unwrap().hash;
    let mut job = AddJob::new("q", b"a b c".to_vec());
    job.module = Some(wc);
    let s = c.run(job, 30_000).await.unwrap();
    assert_eq!(s.result.unwrap().output, b"3\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_modules_are_refused_with_invalid_module() {
    let node = TestNode::start(&[]);
    let c = node.client().await;
    for (what, bytes) in [
        ("not wasm", b"hello, I am not a module".to_vec()),
        ("empty", Vec::new()),
        ("truncated", guests::wasm("echo")[..100].to_vec()),
        ("wat text", b"(module (func (export \"_start\")))".to_vec()),
        (
            "bad magic version",
            vec![0x00, 0x61, 0x73, 0x6d, 0x02, 0x00, 0x00, 0x00],
        ),
    ] {
        let e = node_error(c.put_module(bytes).await);
        assert_eq!(e.code, ErrorCode::BadModule, "{what}: {e}");
        assert!(e.message.contains("invalid-module"), "{what}: {e}");
    }
    // A valid module that imports something the sandbox does not grant.
    let wat = guests::wat_text("import_unknown");
    let bytes = wat_to_wasm(&wat);
    let e = node_error(c.put_module(bytes).await);
    assert_eq!(e.code, ErrorCode::BadModule);
    assert!(e.message.contains("nope"), "names the import: {e}");
    still_serves(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_and_unknown_modules() {
    let node = TestNode::start(&[]);
    let c = node.client().await;
    // Payload over the bound (8 MiB by default).
    let wc = c.put_module(guests::wasm("wordcount")).await.unwrap().hash;
    let mut job = AddJob::new("q", vec![b'x'; (8 << 20) + 1]);
    job.module = Some(wc);
    let e = node_error(c.add_job(job).await);
    assert!(e.code == ErrorCode::TooBig, "payload over the bound: {e}");
    // Unknown module hash.
    let mut job = AddJob::new("q", b"x".to_vec());
    job.module = Some(ModuleHash::of(b"no such module"));
    let e = node_error(c.add_job(job).await);
    assert_eq!(e.code, ErrorCode::NoModule);
    // Limits over the node maximum.
    let mut job = AddJob::new("q", b"x".to_vec());
    job.module = Some(wc);
    job.limits.memory_bytes = Some(1 << 40);
    let e = node_error(c.add_job(job).await);
    assert_eq!(e.code, ErrorCode::Quota);
    still_serves(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_over_the_size_bound_is_refused() {
    let node = TestNode::start(&[]);
    // The bound comes from the config file.
    drop(node);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("node.conf");
    std::fs::write(&conf, "max-module-bytes 100kb\n").unwrap();
    let node = TestNode::start(&["--config", conf.to_str().unwrap()]);
    let c = node.client().await;
    let e = node_error(c.put_module(vec![0u8; 200 * 1024]).await);
    assert_eq!(e.code, ErrorCode::TooBig, "{e}");
    assert!(e.message.contains("102400"), "{e}");
    still_serves(&c).await;
}

/// A raw QUIC stream to the node, to send what the SDK never would.
async fn raw_stream(node: &TestNode) -> (quinn::Endpoint, quinn::Connection) {
    let ca = std::fs::read(node.data_dir.join("tls/ca.pem")).unwrap();
    let cfg = wasque_sdk::client_tls_config(&ca, wasque_sdk::CLIENT_ALPN).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(cfg);
    let conn = ep.connect(node.addr, "127.0.0.1").unwrap().await.unwrap();
    (ep, conn)
}

async fn read_reply(recv: &mut quinn::RecvStream) -> Option<ResponseFrame> {
    tokio::time::timeout(Duration::from_secs(10), proto::read_frame(recv, 1 << 20))
        .await
        .expect("node answered in time")
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_close_only_their_stream() {
    let node = TestNode::start(&[]);
    let (_ep, conn) = raw_stream(&node).await;

    // Garbage bytes in a frame.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut bad = 6u32.to_be_bytes().to_vec();
    bad.extend_from_slice(&[0xff; 6]);
    send.write_all(&bad).await.unwrap();
    let r = read_reply(&mut recv).await.expect("an error reply");
    assert!(
        matches!(r.response, Response::Error(ref e) if e.message.contains("malformed")),
        "{r:?}"
    );

    // A length prefix far over the bound: refused before the body is read.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let r = read_reply(&mut recv).await.expect("an error reply");
    assert!(
        matches!(r.response, Response::Error(ref e) if e.code == ErrorCode::TooBig),
        "{r:?}"
    );

    // A request before hello is fine on a node without a password; an
    // unsupported protocol version is refused clearly.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = RequestFrame {
        id: 1,
        request: Request::Hello {
            protocol: 999,
            client: "test".into(),
            token: None,
        },
    };
    send.write_all(&proto::encode_frame(&hello, 1 << 20).unwrap())
        .await
        .unwrap();
    let r = read_reply(&mut recv).await.unwrap();
    assert!(
        matches!(r.response, Response::Error(ref e) if e.code == ErrorCode::Unsupported),
        "{r:?}"
    );

    // The same connection still works for good frames.
    let info = RequestFrame {
        id: 2,
        request: Request::NodeInfo,
    };
    send.write_all(&proto::encode_frame(&info, 1 << 20).unwrap())
        .await
        .unwrap();
    let r = read_reply(&mut recv).await.unwrap();
    assert_eq!(r.id, 2);
    assert!(matches!(r.response, Response::NodeInfo(_)));

    still_serves(&node.client().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_vanishing_mid_upload_leaves_nothing_behind() {
    let node = TestNode::start(&[]);
    {
        let (ep, conn) = raw_stream(&node).await;
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        let head = RequestFrame {
            id: 1,
            request: Request::PutModule {
                size: 1_000_000,
                opts: Default::default(),
            },
        };
        send.write_all(&proto::encode_frame(&head, 1 << 20).unwrap())
            .await
            .unwrap();
        send.write_all(&guests::wasm("echo")[..1000]).await.unwrap();
        conn.close(0u32.into(), b"gone");
        ep.wait_idle().await;
    }
    let c = node.client().await;
    assert!(
        c.list_modules().await.unwrap().modules.is_empty(),
        "no half module stored"
    );
    still_serves(&c).await;
}

fn wat_to_wasm(text: &str) -> Vec<u8> {
    // The node refuses WAT text, so tests turn fixtures into binary with a
    // tiny encoder: the fixtures used here are small enough for `wat`.
    wat::parse_str(text).expect("fixture parses")
}
