//! The node's TLS identity: a local CA and a node certificate signed by it,
//! made with rcgen on first start under `DATA_DIR/tls/` and reused after.
//! Clients trust `tls/ca.pem` (the CLI finds it through `--data-dir`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not a valid PEM {what}: {reason} (delete the tls/ folder to make a new identity; clients must then trust the new ca.pem)"
    )]
    Pem {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("certificate generation: {0}")]
    Gen(#[from] rcgen::Error),
    #[error("TLS set-up: {0}")]
    Tls(String),
}

/// The node's certificate chain and key, ready for rustls.
pub struct Identity {
    pub ca_pem: String,
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Where `ca.pem` lives (clients' trust anchor).
    pub ca_path: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads the identity under `data_dir/tls`, creating it first if absent.
    /// `names` are extra subject names (IPs or DNS names) for the node cert.
    pub fn load_or_create(
        data_dir: &Path,
        node_id: &str,
        names: &[String],
    ) -> Result<Identity, IdentityError> {
        let dir = data_dir.join("tls");
        let ca_cert = dir.join("ca.pem");
        let node_cert = dir.join("node.pem");
        let node_key = dir.join("node.key");
        if !node_cert.exists() || !node_key.exists() || !ca_cert.exists() {
            std::fs::create_dir_all(&dir).map_err(|source| IdentityError::Io {
                path: dir.clone(),
                source,
            })?;
            create(&dir, node_id, names)?;
        }
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| IdentityError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let ca_pem = String::from_utf8_lossy(&read(&ca_cert)?).into_owned();
        let pem_err = |path: &Path, what, e: rustls::pki_types::pem::Error| IdentityError::Pem {
            path: path.to_path_buf(),
            what,
            reason: e.to_string(),
        };
        let chain_pem = read(&node_cert)?;
        let mut cert_chain = CertificateDer::pem_slice_iter(&chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(&node_cert, "certificate", e))?;
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| pem_err(&ca_cert, "certificate", e))?;
        cert_chain.push(ca_der);
        let key = PrivateKeyDer::from_pem_slice(&read(&node_key)?)
            .map_err(|e| pem_err(&node_key, "private key", e))?;
        Ok(Identity {
            ca_pem,
            cert_chain,
            key,
            ca_path: ca_cert,
        })
    }

    /// A rustls server config for QUIC with this identity and `alpn`.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, IdentityError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| IdentityError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| IdentityError::Tls(e.to_string()))?;
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        cfg.max_early_data_size = 0;
        Ok(cfg)
    }
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "wasque local CA");
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

fn create(dir: &Path, node_id: &str, names: &[String]) -> Result<(), IdentityError> {
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params().self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params(), &ca_key);

    let node_key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("wasque node {node_id}"));
    p.distinguished_name = dn;
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let mut sans = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::DnsName(format!("{node_id}.wasque").try_into()?),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        SanType::IpAddress(
            "::1"
                .parse()
                .map_err(|_| rcgen::Error::CouldNotParseCertificate)?,
        ),
    ];
    for n in names {
        match n.parse::<IpAddr>() {
            Ok(ip) => sans.push(SanType::IpAddress(ip)),
            Err(_) => sans.push(SanType::DnsName(n.clone().try_into()?)),
        }
    }
    sans.dedup();
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let node_cert = p.signed_by(&node_key, &issuer)?;

    write_private(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
    write_private(&dir.join("node.key"), node_key.serialize_pem().as_bytes())?;
    write_file(&dir.join("node.pem"), node_cert.pem().as_bytes())?;
    // ca.pem last: its presence marks a complete identity.
    write_file(&dir.join("ca.pem"), ca_cert.pem().as_bytes())?;
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    std::fs::write(path, bytes).map_err(|source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    write_secret(path, bytes).map_err(|source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a secret (a private key, the join secret): the bytes go to a
/// new file created with mode 0600 (never readable by others, not even
/// for a moment before a chmod), synced, then renamed over `path`.
pub fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".new");
    let tmp = path.with_file_name(tmp_name);
    // A leftover of a crash mid-write holds nothing anyone was given.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    let mut f = open.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path(), "abc", &["10.1.2.3".into()]).unwrap();
        let b = Identity::load_or_create(dir.path(), "abc", &[]).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.cert_chain, b.cert_chain);
        assert!(a.server_config(&[b"x"]).is_ok());
    }

    #[test]
    fn a_damaged_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path(), "abc", &[]).unwrap();
        std::fs::write(dir.path().join("tls/node.key"), b"garbage").unwrap();
        let e = Identity::load_or_create(dir.path(), "abc", &[]).unwrap_err();
        assert!(e.to_string().contains("node.key"), "{e}");
    }
}
