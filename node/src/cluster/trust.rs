//! Who may speak the peer protocol, in `loopback` trust mode: a peer's
//! certificate is not checked against a CA (each node made its own), but
//! its handshake signature is, and the certificate's fingerprint is pinned
//! to the node id the peer announces at its first contact. After that, a
//! different certificate claiming the same node id is refused, and peers
//! are accepted only from loopback addresses. The pins are kept in
//! `DATA_DIR/tls/peer-pins` (one `NODE-ID FINGERPRINT` line each, both
//! hex), written before a new pin is trusted, so a restarted node still
//! refuses a peer whose identity changed: trust on first use means first
//! use ever, not first use since the last start.
//!
//! The verifiers below are what make a certificate mandatory for peers:
//! the server offers client authentication to every connection (clients
//! of the client protocol send none, which is allowed), and the peer side
//! then refuses a peer-protocol connection that presented no certificate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::job::NodeName;

/// The sha256 of a certificate.
pub type Fingerprint = [u8; 32];

pub fn fingerprint(cert: &[u8]) -> Fingerprint {
    Sha256::digest(cert).into()
}

/// Node id → the certificate it first presented.
#[derive(Debug, Default, Clone)]
pub struct Pins {
    inner: Arc<Mutex<HashMap<NodeName, Fingerprint>>>,
    /// Where they persist; `None` keeps them in memory only (unit tests).
    file: Option<Arc<PathBuf>>,
}

impl Pins {
    /// The pins kept at `file` (none yet if it does not exist). A file
    /// that cannot be read or parsed is an error: starting without it
    /// would trust every peer anew.
    pub fn load(file: PathBuf) -> Result<Pins, String> {
        let mut map = HashMap::new();
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() {
                        continue;
                    }
                    let (node, fp) = parse_line(line).ok_or_else(|| {
                        format!(
                            "{}: line {} is not `NODE-ID FINGERPRINT` (40 and 64 hex digits); fix or delete the file (every peer is then trusted anew at its next contact)",
                            file.display(),
                            n + 1
                        )
                    })?;
                    map.insert(node, fp);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
        Ok(Pins {
            inner: Arc::new(Mutex::new(map)),
            file: Some(Arc::new(file)),
        })
    }

    /// Pins `node` to `fp` on first sight; afterwards only `fp` is accepted.
    /// A new pin is written to the pins file before it is trusted; if it
    /// cannot be, the peer is refused.
    pub fn check(&self, node: NodeName, fp: Fingerprint) -> Result<(), String> {
        let mut pins = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match pins.get(&node) {
            Some(known) if *known != fp => Err(format!(
                "node {} presented a certificate other than the one pinned at its first contact (CLUSTER FORGET it if its identity was renewed on purpose)",
                node.short()
            )),
            Some(_) => Ok(()),
            None => {
                pins.insert(node, fp);
                if let Err(e) = self.save(&pins) {
                    pins.remove(&node);
                    return Err(format!(
                        "cannot record the pin of node {}: {e}",
                        node.short()
                    ));
                }
                Ok(())
            }
        }
    }

    /// The certificate pinned for `node`, if any.
    pub fn get(&self, node: &NodeName) -> Option<Fingerprint> {
        let pins = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        pins.get(node).copied()
    }

    /// Forgets a node's pin (CLUSTER FORGET, CLUSTER RESET).
    pub fn forget(&self, node: &NodeName) {
        let mut pins = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if pins.remove(node).is_some() {
            self.save_or_log(&pins);
        }
    }

    pub fn clear(&self) {
        let mut pins = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        pins.clear();
        self.save_or_log(&pins);
    }

    fn save_or_log(&self, pins: &HashMap<NodeName, Fingerprint>) {
        if let Err(e) = self.save(pins) {
            tracing::warn!("cannot write the peer pins file: {e}");
        }
    }

    /// Writes every pin (a small file: one line per peer ever met),
    /// synced and renamed over the old one.
    fn save(&self, pins: &HashMap<NodeName, Fingerprint>) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut lines: Vec<String> = pins
            .iter()
            .map(|(n, fp)| format!("{n} {}\n", hex::encode(fp)))
            .collect();
        lines.sort();
        crate::net::identity::write_secret(file, lines.concat().as_bytes())
    }
}

fn parse_line(line: &str) -> Option<(NodeName, Fingerprint)> {
    let mut words = line.split_whitespace();
    let (Some(node), Some(fp), None) = (words.next(), words.next(), words.next()) else {
        return None;
    };
    let node = NodeName::from_hex(node)?;
    let fp: Fingerprint = hex::decode(fp).ok()?.try_into().ok()?;
    Some((node, fp))
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// Server side: asks every connection for a certificate, requires none
/// (clients of the client protocol have none), and checks the handshake
/// signature of any certificate presented.
#[derive(Debug)]
pub struct AnyClientCert {
    algs: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    pub fn new() -> Arc<AnyClientCert> {
        Arc::new(AnyClientCert { algs: algorithms() })
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Client side (this node dialing a peer): accepts the peer's certificate
/// for the handshake; the pin is checked once the peer says who it is.
#[derive(Debug)]
pub struct AnyServerCert {
    algs: WebPkiSupportedAlgorithms,
}

impl AnyServerCert {
    pub fn new() -> Arc<AnyServerCert> {
        Arc::new(AnyServerCert { algs: algorithms() })
    }
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The fingerprint of the certificate the other end of `conn` presented.
pub fn peer_fingerprint(conn: &quinn::Connection) -> Option<Fingerprint> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().map(|c| fingerprint(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8) -> NodeName {
        NodeName([b; 20])
    }

    #[test]
    fn pins_survive_a_reload_and_a_changed_identity_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("peer-pins");
        let pins = Pins::load(file.clone()).expect("no file yet");
        pins.check(node(1), [1; 32]).expect("first contact pins");
        pins.check(node(2), [2; 32]).expect("first contact pins");
        drop(pins);
        let again = Pins::load(file.clone()).expect("reload");
        assert!(again.check(node(1), [9; 32]).is_err(), "a changed identity");
        again.check(node(1), [1; 32]).expect("the pinned identity");
        again.forget(&node(2));
        let third = Pins::load(file).expect("reload");
        third
            .check(node(2), [7; 32])
            .expect("a forgotten node is pinned anew");
    }

    #[test]
    fn a_damaged_pins_file_is_an_error_not_an_empty_trust() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("peer-pins");
        std::fs::write(&file, "not a pin\n").expect("write");
        let e = Pins::load(file).expect_err("damaged file");
        assert!(e.contains("line 1"), "{e}");
    }
}
