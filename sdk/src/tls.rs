//! Client-side TLS for QUIC: trust exactly the node's (or cluster's) CA,
//! with the ring crypto provider only.

use std::sync::Arc;

/// ALPN of the client protocol.
pub const CLIENT_ALPN: &[u8] = b"wasque/1";
/// ALPN of the node-to-node protocol.
pub const PEER_ALPN: &[u8] = b"wasque-peer/1";

/// Builds a QUIC client config that trusts the CA certificates in `ca_pem`
/// and speaks `alpn`.
pub fn client_tls_config(ca_pem: &[u8], alpn: &[u8]) -> Result<quinn::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let mut reader = std::io::BufReader::new(ca_pem);
    let mut n = 0;
    for cert in rustls_pemfile_certs(&mut reader)? {
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate rejected: {e}"))?;
        n += 1;
    }
    if n == 0 {
        return Err("no certificate found in the CA file".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| format!("QUIC TLS set-up: {e}"))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // A node killed outright sends no close: the idle timeout is how a
    // client learns it is gone (and fails over), so it is short, and the
    // keep-alives hold a quiet but live connection open.
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(1)));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(std::time::Duration::from_secs(8))
            .map_err(|e| format!("idle timeout: {e}"))?,
    ));
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

/// Parses every `CERTIFICATE` block of a PEM file.
pub(crate) fn rustls_pemfile_certs(
    reader: &mut dyn std::io::BufRead,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut pem = Vec::new();
    reader
        .read_to_end(&mut pem)
        .map_err(|e| format!("reading CA file: {e}"))?;
    rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file is not PEM: {e}"))
}
