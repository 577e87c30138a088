//! The QUIC client door's locks and bounds, against real node processes:
//! `CONFIG SET requirepass` over RESP applies to the next QUIC client at
//! once; a job whose body and output are at the node's maxima is shown
//! and waited on through the SDK (the reply frame bound fits it, and the
//! SDK learns it from the hello); a client that pipelines far more
//! requests than `quic-max-inflight` without reading its replies does not
//! grow the node's memory, and still gets every reply once it reads.

use std::time::{Duration, Instant};

use wasque_sdk::proto::{
    self, AddJob, ErrorCode, JobId, Request, RequestFrame, Response, ResponseFrame,
};
use wasque_sdk::{Client, ClientError};
use wasque_tests::node::TestNode;
use wasque_tests::resp;

fn config_file(dir: &std::path::Path, text: &str) -> String {
    let file = dir.join("wasque.conf");
    std::fs::write(&file, text).expect("write config");
    file.to_str().expect("utf-8 path").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_requirepass_applies_to_the_next_quic_client() {
    let node = TestNode::start(&[]);
    // No password yet: a client without a token gets in.
    let before = node.client().await;
    before.node_info().await.expect("open node answers");

    let mut c = resp::connect(node.addr).expect("resp connection");
    let set = resp::cmd(&mut c, &["CONFIG", "SET", "requirepass", "s3cret"]);
    assert!(set.is_ok(), "CONFIG SET requirepass: {set:?}");

    // At once: a new client without the password is refused at its hello.
    match Client::connect(node.client_config()).await {
        Err(ClientError::Node(e)) => assert_eq!(e.code, ErrorCode::NoAuth, "{e}"),
        Err(other) => panic!("expected NOAUTH, got {other}"),
        Ok(_) => panic!("a client without the new password was let in"),
    }
    let mut wrong = node.client_config();
    wrong.token = Some("s3cres".into());
    match Client::connect(wrong).await {
        Err(ClientError::Node(e)) => assert_eq!(e.code, ErrorCode::NoAuth, "{e}"),
        Err(other) => panic!("expected NOAUTH, got {other}"),
        Ok(_) => panic!("a client with a wrong password was let in"),
    }
    let mut right = node.client_config();
    right.token = Some("s3cret".into());
    let after = Client::connect(right)
        .await
        .expect("the new password opens");
    after
        .node_info()
        .await
        .expect("authenticated client is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_at_the_body_and_output_maxima_is_shown_and_waited_on() {
    const MAX: usize = 1 << 20;
    let tmp = tempfile::tempdir().expect("tmp");
    // Request frames are bounded by max-frame-bytes (body + 1 MiB by
    // default); the reply carries body and output, twice the body.
    let file = config_file(
        tmp.path(),
        &format!("max-body-bytes {MAX}\nmax-output-bytes {MAX}\nmax-stderr-bytes 65536\n"),
    );
    let node = TestNode::start(&["--config", &file]);
    // The client's own bound is below one such reply: it must take the
    // node's reply bound from the hello.
    let mut cfg = node.client_config();
    cfg.max_frame = MAX + (MAX / 2);
    let client = Client::connect(cfg).await.expect("connect");
    let module = client
        .put_module(wat::parse_str(wasque_tests::guests::wat_text("echo")).expect("echo.wat"))
        .await
        .expect("upload echo");
    let body: Vec<u8> = (0..MAX).map(|i| (i % 251) as u8).collect();
    let mut job = AddJob::new("big", body.clone());
    job.module = Some(module.hash);
    let id = client
        .add_job(job)
        .await
        .expect("add a body at the maximum");

    let waited = client
        .wait(id, 30_000)
        .await
        .expect("wait over QUIC")
        .expect("the job finished within 30 s");
    let result = waited.result.expect("a finished job has a result");
    assert_eq!(result.output.len(), MAX, "output at the maximum");
    assert!(result.output == body, "echo returns the body");
    assert_eq!(waited.body.len(), MAX);

    let shown = client.show(id).await.expect("show over QUIC");
    assert_eq!(shown.body, body);
    assert_eq!(
        shown.result.map(|r| r.output.len()),
        Some(MAX),
        "show carries the output"
    );
}

/// The node's resident memory, from `/proc/PID/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_replies_is_not_read_either() {
    const BODY: usize = 256 << 10;
    const INFLIGHT: usize = 8;
    const REQUESTS: u64 = 1_000;
    let tmp = tempfile::tempdir().expect("tmp");
    let file = config_file(tmp.path(), &format!("quic-max-inflight {INFLIGHT}\n"));
    let node = TestNode::start(&["--config", &file]);
    let client = node.client().await;
    let id: JobId = client
        .add_job(AddJob::new("plain", vec![7u8; BODY]))
        .await
        .expect("add a plain job");

    // A raw connection: one stream, a hello and many SHOWs, and no reads.
    let ca = std::fs::read(node.data_dir.join("tls").join("ca.pem")).expect("node CA");
    let tls = wasque_sdk::client_tls_config(&ca, wasque_sdk::CLIENT_ALPN).expect("tls");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint");
    endpoint.set_default_client_config(tls);
    let conn = endpoint
        .connect(node.addr, "127.0.0.1")
        .expect("dial")
        .await
        .expect("handshake");
    let (mut send, recv) = conn.open_bi().await.expect("stream");
    let before = rss_bytes(node.pid());
    let mut out = Vec::new();
    proto::encode_frame_into(
        &mut out,
        &RequestFrame {
            id: 0,
            request: Request::Hello {
                protocol: proto::PROTOCOL_VERSION,
                client: "hoarder".into(),
                token: None,
            },
        },
        usize::MAX,
    )
    .expect("encode");
    for n in 1..=REQUESTS {
        proto::encode_frame_into(
            &mut out,
            &RequestFrame {
                id: n,
                request: Request::Show { id },
            },
            usize::MAX,
        )
        .expect("encode");
    }
    // Small frames: all of them fit the stream's window, so the node
    // could read every one if it did not stop at its bound.
    tokio::time::timeout(Duration::from_secs(10), send.write_all(&out))
        .await
        .expect("requests written within 10 s")
        .expect("write requests");

    // Without the bound the node would queue ~REQUESTS x BODY (250 MiB) of
    // replies; with it, INFLIGHT replies and its send buffer.
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        peak = peak.max(rss_bytes(node.pid()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grew = peak.saturating_sub(before);
    assert!(
        grew < 100 << 20,
        "node memory grew by {} MiB for a client that reads nothing",
        grew >> 20
    );

    // Once the client reads, every reply comes, each a job status: the
    // node stopped reading, it did not drop the connection.
    let mut recv = tokio::io::BufReader::new(recv);
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen <= REQUESTS && Instant::now() < deadline {
        let frame: ResponseFrame = tokio::time::timeout(
            Duration::from_secs(20),
            proto::read_frame_buffered(&mut recv, 64 << 20),
        )
        .await
        .expect("a reply within 20 s")
        .expect("reply frame")
        .expect("the node ended the stream early");
        match frame.response {
            Response::Hello { .. } => assert_eq!(frame.id, 0),
            Response::Job(s) => assert_eq!(s.body.len(), BODY),
            other => panic!("reply {}: {other:?}", frame.id),
        }
        seen += 1;
    }
    assert_eq!(seen, REQUESTS + 1, "every request answered");
    conn.close(0u32.into(), b"done");
}
