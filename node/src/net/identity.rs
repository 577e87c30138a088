//! The node's TLS identity: a local CA and a node certificate signed by it,
//! made with rcgen on first start under `DATA_DIR/tls/` and reused after.
//! Clients trust `tls/ca.pem` (the CLI finds it through `--data-dir`).
//!
//! The node certificate names the node's addresses (the announced one and
//! the bound one) besides localhost, since clients check the address they
//! dial against it. `tls/node-names` records the names it was issued for;
//! when they change at a start, the certificate is issued again by the
//! same local CA with the same key, so clients that trust `ca.pem` keep
//! trusting the node.

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
    /// Whether this start issued the node certificate again because the
    /// node's names changed (see [`Identity::load_or_create`]).
    pub reissued: bool,
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
    /// `names` are extra subject names (IPs or DNS names) for the node
    /// cert; if they are not the ones it was issued for, it is issued
    /// again (same CA, same key) and the change is logged.
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
        let reissued = renew_if_renamed(&dir, node_id, names)?;
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
            reissued,
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
    let node_key = KeyPair::generate()?;
    let node_cert = issue_node_cert(node_id, names, &ca_key, &node_key)?;

    write_private(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
    write_private(&dir.join("node.key"), node_key.serialize_pem().as_bytes())?;
    write_file(&dir.join("node.pem"), node_cert.as_bytes())?;
    // ca.pem last: its presence marks a complete identity.
    write_file(&dir.join("ca.pem"), ca_cert.pem().as_bytes())?;
    Ok(())
}

/// The names as recorded in `tls/node-names`: sorted, once each.
fn name_set(names: &[String]) -> Vec<String> {
    let mut v: Vec<String> = names
        .iter()
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Issues the node certificate again when `names` are not the ones it
/// was issued for. A data dir from before `node-names` existed counts as
/// issued for the names its certificate covers, so an unchanged node
/// keeps its certificate (loopback peers pinned it). Returns whether it
/// issued one.
fn renew_if_renamed(dir: &Path, node_id: &str, names: &[String]) -> Result<bool, IdentityError> {
    let wanted = name_set(names);
    let names_file = dir.join("node-names");
    let recorded = match std::fs::read_to_string(&names_file) {
        Ok(text) => Some(name_set(
            &text.lines().map(str::to_string).collect::<Vec<_>>(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(IdentityError::Io {
                path: names_file,
                source,
            });
        }
    };
    let node_cert = dir.join("node.pem");
    let stale = match &recorded {
        Some(r) => *r != wanted,
        None => {
            let pem = std::fs::read(&node_cert).map_err(|source| IdentityError::Io {
                path: node_cert.clone(),
                source,
            })?;
            !CertificateDer::from_pem_slice(&pem).is_ok_and(|der| covers(&der, &wanted))
        }
    };
    if stale {
        let key_pem = |p: PathBuf| {
            std::fs::read_to_string(&p).map_err(|source| IdentityError::Io { path: p, source })
        };
        let ca_key = KeyPair::from_pem(&key_pem(dir.join("ca.key"))?)?;
        let node_key = KeyPair::from_pem(&key_pem(dir.join("node.key"))?)?;
        let pem = issue_node_cert(node_id, &wanted, &ca_key, &node_key)?;
        replace_file(&node_cert, pem.as_bytes())?;
        tracing::info!(
            names = %wanted.join(","),
            was = %recorded.as_ref().map(|r| r.join(",")).unwrap_or_else(|| "unrecorded".into()),
            "node certificate issued again for the node's new names (same CA, same key)"
        );
    }
    if stale || recorded.is_none() {
        replace_file(&names_file, (wanted.join("\n") + "\n").as_bytes())?;
    }
    Ok(stale)
}

/// Whether the certificate is valid for every name (an IP or DNS name).
fn covers(der: &CertificateDer<'_>, names: &[String]) -> bool {
    let Ok(cert) = rustls::server::ParsedCertificate::try_from(der) else {
        return false;
    };
    names.iter().all(|n| {
        rustls::pki_types::ServerName::try_from(n.as_str())
            .is_ok_and(|sn| rustls::client::verify_server_name(&cert, &sn).is_ok())
    })
}

/// The node certificate (PEM) for `node_id` and `names`, signed by the
/// local CA's key.
fn issue_node_cert(
    node_id: &str,
    names: &[String],
    ca_key: &KeyPair,
    node_key: &KeyPair,
) -> Result<String, IdentityError> {
    let issuer = Issuer::new(ca_params(), ca_key);
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
    // A name twice (the bound address is also announced) once.
    let mut seen = Vec::new();
    sans.retain(|s| {
        let fresh = !seen.contains(s);
        if fresh {
            seen.push(s.clone());
        }
        fresh
    });
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(p.signed_by(node_key, &issuer)?.pem())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    std::fs::write(path, bytes).map_err(|source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces a public file whole (written beside it, synced, renamed), so a
/// crash leaves the old one or the new one, never half of either.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    use std::io::Write;
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".new");
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
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
        let b = Identity::load_or_create(dir.path(), "abc", &["10.1.2.3".into()]).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.cert_chain, b.cert_chain);
        assert!(!a.reissued && !b.reissued);
        assert!(a.server_config(&[b"x"]).is_ok());
    }

    fn key_of(dir: &Path) -> Vec<u8> {
        std::fs::read(dir.join("tls/node.key")).unwrap()
    }

    #[test]
    fn new_names_reissue_the_certificate_with_the_same_ca_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path(), "abc", &["10.1.2.3".into()]).unwrap();
        let key = key_of(dir.path());
        let names = ["10.9.8.7".to_string(), "edge-1.example.org".to_string()];
        let b = Identity::load_or_create(dir.path(), "abc", &names).unwrap();
        assert!(b.reissued);
        assert_eq!(a.ca_pem, b.ca_pem, "the CA clients trust stays");
        assert_eq!(key, key_of(dir.path()), "the key stays");
        assert_ne!(a.cert_chain[0], b.cert_chain[0]);
        assert!(covers(&b.cert_chain[0], &names));
        assert!(covers(
            &b.cert_chain[0],
            &["127.0.0.1".into(), "localhost".into(), "abc.wasque".into()]
        ));
        assert!(!covers(&b.cert_chain[0], &["10.1.2.3".into()]));
        // It chains to the CA: a client trusting ca.pem accepts it.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(b.cert_chain[1].clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(
                &b.cert_chain[0],
                &[],
                &rustls::pki_types::ServerName::try_from("10.9.8.7").unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("the new certificate verifies for the new address");
        // The same names in another order: nothing to do.
        let names_swapped = [names[1].clone(), names[0].clone()];
        let c = Identity::load_or_create(dir.path(), "abc", &names_swapped).unwrap();
        assert!(!c.reissued);
        assert_eq!(b.cert_chain, c.cert_chain);
    }

    #[test]
    fn a_data_dir_without_a_names_record_keeps_a_certificate_that_fits() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path(), "abc", &["127.0.0.1".into()]).unwrap();
        // As made before the record existed.
        std::fs::remove_file(dir.path().join("tls/node-names")).unwrap();
        let b = Identity::load_or_create(dir.path(), "abc", &["127.0.0.1".into()]).unwrap();
        assert!(
            !b.reissued,
            "a certificate that covers the names stays (pins)"
        );
        assert_eq!(a.cert_chain, b.cert_chain);
        assert!(dir.path().join("tls/node-names").exists());
        std::fs::remove_file(dir.path().join("tls/node-names")).unwrap();
        let c = Identity::load_or_create(dir.path(), "abc", &["10.0.0.5".into()]).unwrap();
        assert!(c.reissued);
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
