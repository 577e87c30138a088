//! The peer protocol's frames: `u32` length, `u8` protocol version, then
//! postcard. A frame over the size bound, of a version this node does not
//! speak, or that does not decode ends the stream it came on with a logged
//! reason; the node and its other streams carry on.
//!
//! Streams: every node dials each peer it talks to and opens one
//! unidirectional stream on that connection, which starts with `Hello`
//! and then carries the engine's messages in order. Request/response
//! exchanges (the `Hello` handshake of `CLUSTER MEET`, module fetches) use
//! a bidirectional stream each. SWIM gossip travels in QUIC datagrams.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::engine::PeerMsg;
use crate::job::{ModuleHash, NodeName};

/// The version of the peer protocol this node speaks. 3: a job's rare and
/// Wasm-only fields travel together (`JobExtra`). 4: a job's retry policy
/// travels in them, and dead letters and queue retry defaults have
/// messages of their own (`PeerMsg::Life`, `PeerMsg::RetryDefault`);
/// adverts carry the tenant registry's digest, and `Tenants` frames its
/// records. 5: results may carry the error class `cancelled`, and
/// `PeerMsg::Cancel` asks peers to cancel a job. 6: adverts carry what
/// the HTTP cluster view shows of a peer: its software version, its
/// RESP and HTTP addresses, its running jobs and its queue count. 7: a
/// job's idempotency key travels in `JobExtra`, so every holder of a copy
/// dedups its adds, and `PeerMsg::Pause` carries `PAUSE ... BCAST`. 8: a
/// job's `AFTER` list travels in `JobExtra`, results may carry the class
/// `dependency`, and `PeerMsg::AfterQuery`/`AfterState` ask what a job
/// came to. 9: adverts carry the schedule registry's digest, and `Schedules`
/// frames its records (`sched/record.rs`, record format 1). 10: the module
/// catalogue: `ModuleAsk`/`ModuleAnswer` exchanges (list, users, removal,
/// a pushed copy) on streams of their own; adverts carry the module name
/// table's digest, and `ModuleNames` frames its records (`catalogue.rs`,
/// record format 1).
/// 11: adverts carry the admission set's digest and whether the sender
/// holds the CA key; `Admission` frames carry the set (join tokens,
/// forgotten nodes), `CaKey` the cluster CA key to a member without it.
pub const PEER_PROTOCOL_VERSION: u8 = 11;

/// A node introducing itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub node: NodeName,
    /// Where peers reach it (UDP, QUIC) — the RESP port is the same number.
    pub addr: SocketAddr,
    /// Changes at every start: a restarted node is a new SWIM member.
    pub incarnation: u64,
    /// PEM of the CA that signed its client-facing certificate. Peers hand
    /// it to clients that discover the cluster through them (`Nodes`), so
    /// a client that trusts one node can trust what that node vouches for.
    pub client_ca_pem: String,
}

/// What a node tells its peers about its capacity, every second.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    pub exec_slots: u32,
    pub exec_busy: u32,
    pub jobs: u64,
    /// Jobs ready in queues (plain and Wasm).
    pub queued: u64,
    pub rss_bytes: u64,
    pub modules: u32,
    /// `CLUSTER LEAVING yes`: it takes no new jobs.
    pub leaving: bool,
    /// Ready jobs of its busiest queues (for least-loaded placement).
    pub queues: Vec<(String, u64)>,
    /// The largest memory cap a job may ask for there.
    pub max_memory_bytes: u64,
    /// Modules it holds (up to 256; module affinity).
    pub module_hashes: Vec<crate::job::ModuleHash>,
    /// Digest of its tenant registry (`Tenants::digest`; 0: no tenants).
    pub tenants: u64,
    /// Wasm jobs running on its executors (the engine's count).
    pub running: u64,
    /// Queues it knows (`/api/cluster`'s `queues`).
    pub queue_count: u64,
    /// Its software version, `wasque_sdk::VERSION` (package and commit).
    pub version: String,
    /// Where its RESP door listens.
    pub resp_addr: Option<SocketAddr>,
    /// Where its HTTP door listens (`None`: HTTP is off there).
    pub http_addr: Option<SocketAddr>,
    /// Digest of its schedule registry (`Schedules::digest`; 0: none).
    pub schedules: u64,
    /// Digest of its admission set (`Admission::digest`; 0: empty).
    pub admission: u64,
    /// Whether it holds the cluster CA key (ca mode): a member that does
    /// not is sent it.
    pub can_admit: bool,
    /// Digest of its module name table (`ModuleNames::digest`; 0: none).
    pub module_names: u64,
}

/// One frame of the peer protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    Hello(Hello),
    Engine(PeerMsg),
    Advert(Advert),
    /// Ask for a module's bytes by hash.
    FetchModule(ModuleHash),
    /// The answer: the bytes, or `None` when the node lacks it.
    Module(Option<Vec<u8>>),
    /// The other side will not go on, and why.
    Refused(String),
    /// A join request (join ALPN): the token's secret and the joiner's id.
    Join {
        secret: String,
        node: String,
    },
    /// The signed credentials for a joiner.
    Joined(super::ca::Joined),
    /// Every tenant record of the sender (sent when advert digests differ).
    Tenants(Vec<crate::tenant::TenantRecord>),
    /// Every schedule record of the sender (sent when advert digests
    /// differ).
    Schedules(Vec<crate::sched::ScheduleRecord>),
    /// The sender's admission set (sent when advert digests differ).
    Admission(super::admission::AdmissionSet),
    /// The cluster CA key (PEM), to a member whose advert says it lacks it.
    CaKey(String),
    /// Every module name record of the sender (sent when advert digests
    /// differ, and to every live peer when a name is made or removed).
    ModuleNames(Vec<crate::catalogue::NameRecord>),
    /// A question about the node's modules (a stream of its own).
    ModuleAsk(ModuleAsk),
    /// Its answer.
    ModuleAnswer(ModuleAnswer),
}

/// What the module catalogue asks of a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModuleAsk {
    /// The modules it holds.
    List,
    /// Its jobs (unfinished) that need the module, held or not; with a
    /// tenant, that tenant's jobs only.
    Users {
        hash: ModuleHash,
        tenant: Option<String>,
    },
    /// Remove the module's bytes (refused while its jobs need it).
    Remove(ModuleHash),
    /// Take a copy: the bytes, checked against the hash, compiled and
    /// kept as an upload would be.
    Put(Vec<u8>),
}

/// A module held by a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldModule {
    pub hash: ModuleHash,
    pub size: u64,
    /// Its jobs queued or running there.
    pub jobs: u64,
}

/// A peer's answer to a [`ModuleAsk`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModuleAnswer {
    List(Vec<HeldModule>),
    /// How many jobs need it, and the first few of their ids.
    Users {
        held: bool,
        count: u64,
        ids: Vec<crate::job::JobId>,
    },
    /// Done (`Ok(true)`: removed; `Ok(false)`: it did not hold it), or why
    /// not.
    Done(Result<bool, String>),
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is over the bound of {1} bytes")]
    TooBig(usize, usize),
    #[error("peer speaks protocol version {0}; this node speaks {PEER_PROTOCOL_VERSION}")]
    Version(u8),
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
}

/// Encodes a frame (header and body) onto `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
    let start = out.len();
    out.extend_from_slice(&[0; 5]);
    let buf = std::mem::take(out);
    *out = postcard::to_extend(frame, buf)?;
    let len = (out.len() - start - 5) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4] = PEER_PROTOCOL_VERSION;
    Ok(())
}

/// Writes one frame.
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> Result<(), WireError> {
    let mut buf = Vec::new();
    encode(frame, &mut buf)?;
    w.write_all(&buf).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<Frame>, WireError> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > max {
        return Err(WireError::TooBig(len, max));
    }
    if head[4] != PEER_PROTOCOL_VERSION {
        return Err(WireError::Version(head[4]));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(postcard::from_bytes(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bounds_hold() {
        let f = Frame::Engine(PeerMsg::NeedJobs {
            queue: Some("q".into()),
            count: 3,
        });
        let mut buf = Vec::new();
        encode(&f, &mut buf).unwrap();
        encode(&Frame::Refused("x".into()), &mut buf).unwrap();
        let mut r = &buf[..];
        assert_eq!(read(&mut r, 1 << 20).await.unwrap(), Some(f));
        assert_eq!(
            read(&mut r, 1 << 20).await.unwrap(),
            Some(Frame::Refused("x".into()))
        );
        assert_eq!(read(&mut r, 1 << 20).await.unwrap(), None);

        let mut big = Vec::new();
        encode(&Frame::Module(Some(vec![0; 100])), &mut big).unwrap();
        assert!(matches!(
            read(&mut &big[..], 10).await,
            Err(WireError::TooBig(_, 10))
        ));
        let other = PEER_PROTOCOL_VERSION.wrapping_add(1);
        big[4] = other;
        assert!(matches!(
            read(&mut &big[..], 1 << 20).await,
            Err(WireError::Version(v)) if v == other
        ));
        let garbage = [0, 0, 0, 2, PEER_PROTOCOL_VERSION, 0xff, 0xff];
        assert!(matches!(
            read(&mut &garbage[..], 1 << 20).await,
            Err(WireError::Decode(_))
        ));
    }
}
