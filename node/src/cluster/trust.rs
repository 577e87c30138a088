//! Who may speak the peer protocol, in `loopback` trust mode: a peer's
//! certificate is not checked against a CA (each node made its own), but
//! its handshake signature is, and the certificate's fingerprint is pinned
//! to the node id the peer announces at its first contact. After that, a
//! different certificate claiming the same node id is refused, and peers
//! are accepted only from loopback addresses.
//!
//! The verifiers below are what make a certificate mandatory for peers:
//! the server offers client authentication to every connection (clients
//! of the client protocol send none, which is allowed), and the peer side
//! then refuses a peer-protocol connection that presented no certificate.

use std::collections::HashMap;
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
}

impl Pins {
    /// Pins `node` to `fp` on first sight; afterwards only `fp` is accepted.
    pub fn check(&self, node: NodeName, fp: Fingerprint) -> Result<(), String> {
        let mut pins = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match pins.get(&node) {
            Some(known) if *known != fp => Err(format!(
                "node {} presented a certificate other than the one pinned at its first contact",
                node.short()
            )),
            Some(_) => Ok(()),
            None => {
                pins.insert(node, fp);
                Ok(())
            }
        }
    }

    /// Forgets a node's pin (CLUSTER FORGET, CLUSTER RESET).
    pub fn forget(&self, node: &NodeName) {
        let mut pins = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        pins.remove(node);
    }

    pub fn clear(&self) {
        let mut pins = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        pins.clear();
    }
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
