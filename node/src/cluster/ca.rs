//! `ca` trust mode: a cluster CA, made by `wasque cluster init` (RESP
//! `CLUSTER INIT`) on one node, signs every node's peer certificate; peers
//! verify each other against it both ways, from any address. A new node
//! gets its certificate with a join token, as kubeadm and k3s do:
//! `wasque1.<sha256 of the CA certificate>.<secret>`. The joiner dials the
//! signing node with the join ALPN, accepts its certificate only if it
//! chains to the CA named by the fingerprint, and sends the secret; the
//! signer answers with a certificate and key for the joiner's node id.
//!
//! Any member holding the CA key signs joins: the node that made the CA
//! sends it to members that lack it (`Frame::CaKey`, checked against the
//! CA certificate before it is kept), so a cluster admits new nodes while
//! any member is up. Which secrets admit, until when, and which nodes are
//! refused for good is the admission set (`admission.rs`).
//!
//! Files under `DATA_DIR/tls/`: `cluster-ca.pem` (every node),
//! `cluster-ca.key` (every member that has received it), `join-secret`
//! (the first token's secret, on the node that made the CA, so `cluster
//! init` can print it again), `cluster-node.pem`, `cluster-node.key`
//! (every node), `admission.json` (every member).

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::trust::fingerprint;
use crate::net::identity::IdentityError;

/// ALPN of join requests (no client certificate yet).
pub const JOIN_ALPN: &[u8] = b"wasque-join/1";
/// The DNS name in every cluster certificate; peers dial it by this name.
pub const PEER_NAME: &str = "wasque-peer";

/// This node's cluster credentials.
#[derive(Clone)]
pub struct ClusterCa {
    pub ca_pem: String,
    pub ca: CertificateDer<'static>,
    /// This node's peer certificate, then the CA.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
    /// The CA key, on a member that can sign joins.
    pub signer: Option<String>,
    /// The first token's secret (`join-secret`), on the node that made
    /// the CA.
    pub init_secret: Option<String>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("signer", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// The first join token (on the node that made the CA only).
    pub fn token(&self) -> Option<String> {
        Some(self.token_for(self.init_secret.as_ref()?))
    }

    /// The join token of a secret: it names this cluster's CA.
    pub fn token_for(&self, secret: &str) -> String {
        format!("wasque1.{}.{secret}", hex::encode(fingerprint(&self.ca)))
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        let _ = roots.add(self.ca.clone());
        roots
    }
}

/// The parts of a join token.
pub fn parse_token(token: &str) -> Result<([u8; 32], String), String> {
    let mut parts = token.trim().split('.');
    let (Some("wasque1"), Some(fp), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("a join token looks like wasque1.<64 hex digits>.<secret> (print one with `wasque cluster init`)".into());
    };
    let fp: [u8; 32] = hex::decode(fp)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the token's CA fingerprint is not 64 hex digits")?;
    Ok((fp, secret.to_string()))
}

fn io(path: &Path, source: std::io::Error) -> IdentityError {
    IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn pem_err(path: &Path, what: &'static str, e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Pem {
        path: path.to_path_buf(),
        what,
        reason: e.to_string(),
    }
}

/// Loads the cluster credentials, if this node has any.
pub fn load(tls_dir: &Path) -> Result<Option<ClusterCa>, IdentityError> {
    let ca_path = tls_dir.join("cluster-ca.pem");
    let cert_path = tls_dir.join("cluster-node.pem");
    let key_path = tls_dir.join("cluster-node.key");
    if !ca_path.exists() || !cert_path.exists() || !key_path.exists() {
        return Ok(None);
    }
    let ca_pem = std::fs::read_to_string(&ca_path).map_err(|e| io(&ca_path, e))?;
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| pem_err(&ca_path, "certificate", e))?;
    let cert_pem = std::fs::read(&cert_path).map_err(|e| io(&cert_path, e))?;
    let leaf = CertificateDer::from_pem_slice(&cert_pem)
        .map_err(|e| pem_err(&cert_path, "certificate", e))?;
    let key_pem = std::fs::read(&key_path).map_err(|e| io(&key_path, e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| pem_err(&key_path, "key", e))?;
    let ca_key = tls_dir.join("cluster-ca.key");
    let secret = tls_dir.join("join-secret");
    Ok(Some(ClusterCa {
        ca_pem,
        chain: vec![leaf, ca.clone()],
        ca,
        key: Arc::new(key),
        signer: std::fs::read_to_string(&ca_key).ok(),
        init_secret: std::fs::read_to_string(&secret)
            .ok()
            .map(|s| s.trim().to_string()),
    }))
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "wasque cluster CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    p
}

/// A peer certificate and key for `node_id`, signed by the CA key.
fn issue(ca_key_pem: &str, node_id: &str) -> Result<(String, String), IdentityError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::new(ca_params(), &ca_key);
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("wasque peer {node_id}"));
    p.distinguished_name = dn;
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    p.subject_alt_names = vec![SanType::DnsName(PEER_NAME.try_into()?)];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = p.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a cluster file; a private one (a key, the join secret) is
/// created 0600 from the start (`identity::write_secret`).
fn write(path: &Path, text: &str, private: bool) -> Result<(), IdentityError> {
    if private {
        crate::net::identity::write_secret(path, text.as_bytes()).map_err(|e| io(path, e))
    } else {
        std::fs::write(path, text).map_err(|e| io(path, e))
    }
}

/// `CLUSTER INIT`: makes the cluster CA, the join secret and this node's
/// peer certificate (once; later calls load what is there).
pub fn init(tls_dir: &Path, node_id: &str) -> Result<ClusterCa, IdentityError> {
    if let Some(ca) = load(tls_dir)? {
        if ca.signer.is_some() {
            return Ok(ca);
        }
        return Err(IdentityError::Tls(
            "this node joined a cluster CA made elsewhere; run cluster init on the node that holds cluster-ca.key".into(),
        ));
    }
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params().self_signed(&ca_key)?;
    let secret = hex::encode(rand::random::<[u8; 24]>());
    let (cert, key) = issue(&ca_key.serialize_pem(), node_id)?;
    write(
        &tls_dir.join("cluster-ca.key"),
        &ca_key.serialize_pem(),
        true,
    )?;
    write(&tls_dir.join("join-secret"), &secret, true)?;
    write(&tls_dir.join("cluster-node.key"), &key, true)?;
    write(&tls_dir.join("cluster-node.pem"), &cert, false)?;
    // Last: its presence with the node files marks the mode.
    write(&tls_dir.join("cluster-ca.pem"), &ca_cert.pem(), false)?;
    load(tls_dir)?.ok_or_else(|| IdentityError::Tls("cluster files vanished after writing".into()))
}

/// What a signing node hands a joiner.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Joined {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The signing side of a join: checks the secret against the admission
/// set (known, not expired, not revoked), refuses a forgotten node, and
/// issues a certificate.
pub fn sign_join(
    ca: &ClusterCa,
    admission: &super::admission::Admission,
    secret: &str,
    node_id: &str,
    now_ms: u64,
) -> Result<Joined, String> {
    let Some(ca_key) = &ca.signer else {
        return Err(
            "this node cannot sign joins yet: it has not received the cluster CA key (join through another member)".into(),
        );
    };
    // Compared as sha256 digests (the set keeps no secrets).
    admission.check_token(secret, now_ms)?;
    let Some(node) = crate::job::NodeName::from_hex(node_id) else {
        return Err("join refused: the node id is not 40 hex digits".into());
    };
    if admission.is_revoked_node(&node) {
        return Err(format!(
            "join refused: node {} was forgotten (CLUSTER FORGET) and may not come back; start it with an empty data dir to join as a new node",
            node.short()
        ));
    }
    let (cert_pem, key_pem) = issue(ca_key, node_id).map_err(|e| e.to_string())?;
    Ok(Joined {
        ca_pem: ca.ca_pem.clone(),
        cert_pem,
        key_pem,
    })
}

/// Checks that `key_pem` is the private key of this cluster's CA (a
/// certificate it signs must verify against the CA), before a member
/// keeps a key a peer sent.
pub fn check_ca_key(ca: &ClusterCa, key_pem: &str) -> Result<(), String> {
    let (cert_pem, _) = issue(key_pem, &"0".repeat(40)).map_err(|e| e.to_string())?;
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let v =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(ca.roots()), provider)
            .build()
            .map_err(|e| e.to_string())?;
    use rustls::client::danger::ServerCertVerifier;
    let name = ServerName::try_from(PEER_NAME).map_err(|e| e.to_string())?;
    v.verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| format!("the key does not sign for this cluster's CA: {e}"))
}

/// Keeps the CA key a peer sent (after [`check_ca_key`]).
pub fn save_ca_key(tls_dir: &Path, key_pem: &str) -> Result<(), IdentityError> {
    write(&tls_dir.join("cluster-ca.key"), key_pem, true)
}

/// Writes what a join brought.
pub fn save_joined(tls_dir: &Path, j: &Joined) -> Result<(), IdentityError> {
    write(&tls_dir.join("cluster-node.key"), &j.key_pem, true)?;
    write(&tls_dir.join("cluster-node.pem"), &j.cert_pem, false)?;
    write(&tls_dir.join("cluster-ca.pem"), &j.ca_pem, false)
}

/// The joiner's check of the signing node: its certificate must chain to
/// the CA whose fingerprint the token names.
#[derive(Debug)]
pub struct TokenVerifier {
    fp: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl TokenVerifier {
    pub fn new(fp: [u8; 32]) -> Arc<TokenVerifier> {
        Arc::new(TokenVerifier {
            fp,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }
}

impl rustls::client::danger::ServerCertVerifier for TokenVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.fp)
            .ok_or_else(|| {
                rustls::Error::General("the node's CA is not the one the join token names".into())
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Joins through the node at `addr` with `token`: returns the credentials
/// to save. Uses a client endpoint of its own (the node is not serving yet).
pub async fn join(
    addr: std::net::SocketAddr,
    token: &str,
    node_id: &str,
) -> Result<Joined, String> {
    let (fp, secret) = parse_token(token)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(TokenVerifier::new(fp))
        .with_no_client_auth();
    tls.alpn_protocols = vec![JOIN_ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let bind: std::net::SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let ep = quinn::Endpoint::client(bind).map_err(|e| format!("client endpoint: {e}"))?;
    let conn = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        ep.connect_with(quinn::ClientConfig::new(Arc::new(crypto)), addr, PEER_NAME)
            .map_err(|e| e.to_string())?,
    )
    .await
    .map_err(|_| format!("no answer from {addr}"))?
    .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    super::wire::write(
        &mut send,
        &super::wire::Frame::Join {
            secret,
            node: node_id.to_string(),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let _ = send.finish();
    let answer = super::wire::read(&mut recv, 1 << 20)
        .await
        .map_err(|e| e.to_string())?;
    conn.close(0u32.into(), b"joined");
    ep.wait_idle().await;
    match answer {
        Some(super::wire::Frame::Joined(j)) => Ok(j),
        Some(super::wire::Frame::Refused(why)) => Err(why),
        other => Err(format!("unexpected answer to a join: {other:?}")),
    }
}
