//! The transport floor of the end-to-end bench: a QUIC server with the
//! node's own endpoint settings and TLS that answers every request at once
//! with a fixed reply. No engine, no executor, no store: what the SDK
//! client, QUIC over loopback and reading and writing frames cost per job
//! on their own.

use std::net::SocketAddr;
use std::path::Path;

use tokio::io::BufReader;
use wasque_node::net::identity::Identity;
use wasque_node::net::quic::{self, QuicConfig};
use wasque_sdk::proto::{self, DEFAULT_MAX_FRAME, Request, RequestFrame, Response, ResponseFrame};

/// Binds an echo server on a free loopback port with a TLS identity under
/// `data_dir` (clients trust `data_dir/tls/ca.pem`, as for a node) and
/// serves on the current runtime until the runtime ends. Every request but
/// the hello is answered with `reply`.
pub fn start(data_dir: &Path, reply: Response) -> SocketAddr {
    let identity = Identity::load_or_create(data_dir, "echo", &[]).expect("TLS identity");
    let cfg = QuicConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], wasque_tests::node::free_port())),
        max_frame_bytes: DEFAULT_MAX_FRAME,
        max_reply_bytes: DEFAULT_MAX_FRAME,
        max_inflight: 1024,
        max_module_bytes: 0,
        max_connections: 16,
    };
    let endpoint = quic::bind(&cfg, &identity, None).expect("echo endpoint binds");
    let addr = endpoint.local_addr().expect("bound address");
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(answer(send, recv, reply.clone()));
                }
            });
        }
    });
    addr
}

/// Answers a pipelined request stream; replies to the requests of one read
/// go out in one write, as the node's writer batches them.
async fn answer(mut send: quinn::SendStream, recv: quinn::RecvStream, reply: Response) {
    let mut recv = BufReader::with_capacity(64 * 1024, recv);
    let mut out = Vec::with_capacity(64 * 1024);
    while let Ok(Some(frame)) =
        proto::read_frame_buffered::<_, RequestFrame>(&mut recv, DEFAULT_MAX_FRAME).await
    {
        let response = match frame.request {
            Request::Hello { .. } => Response::Hello {
                node: "echo".into(),
                protocol: proto::PROTOCOL_VERSION,
                max_reply_bytes: DEFAULT_MAX_FRAME as u64,
            },
            _ => reply.clone(),
        };
        let frame = ResponseFrame {
            id: frame.id,
            response,
        };
        if proto::encode_frame_into(&mut out, &frame, DEFAULT_MAX_FRAME).is_err() {
            break;
        }
        if !proto::has_whole_frame(recv.buffer()) {
            if send.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
    }
    let _ = send.finish();
}
