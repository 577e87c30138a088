//! Who may use this node: the one authorization model every front door
//! (RESP, QUIC, HTTP) asks, so a lock cannot be on one door and missing on
//! another.
//!
//! A node has credentials once `requirepass` is set (file, flag or
//! `CONFIG SET`, read live here so a change applies to every door at
//! once). Without credentials every client is [`Principal::Admin`], as in
//! Disque; with them, a client is anonymous until it presents a secret:
//! RESP `AUTH [user] password`, QUIC `Hello { token }`, HTTP
//! `Authorization: Bearer password`. Secrets are compared as SHA-256
//! digests in constant time, so neither the password's bytes nor its
//! length leak through timing.
//!
//! What each principal may do is listed in `docs/SECURITY.md`; the doors
//! keep anonymous clients to what [`Auth::open_to_anonymous`] allows.
//! Job-level keys (`asynckey`) are a second lock, checked by the engine.

use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::tenant::Tenants;

/// Who a client is, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Holds the node's password (or the node has none): every command.
    Admin,
    /// Holds one of a tenant's tokens: that tenant's jobs, queues and
    /// modules only (`tenant/mod.rs`). The doors look the tenant up again
    /// for every command, so a removal applies at once.
    Tenant(Arc<str>),
}

/// Why a secret was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The node has no credentials; AUTH makes no sense (Redis's wording).
    #[error("Client sent AUTH, but no password is set")]
    NotConfigured,
    /// Wrong secret, or a user name the node does not know.
    #[error("invalid username-password pair or user is disabled")]
    Invalid,
}

/// User names that mean the node's password (Redis 6's `AUTH default pw`,
/// and `admin` for readers of our docs).
const ADMIN_USERS: &[&str] = &["default", "admin"];

/// The node's live credentials. Shared by every door through the runtime
/// `Handle`; cheap to read.
#[derive(Debug, Default)]
pub struct Auth {
    password: RwLock<Option<Secret>>,
    tenants: Arc<Tenants>,
}

#[derive(Debug)]
struct Secret {
    /// Kept for `CONFIG GET` / `CONFIG REWRITE`, as Redis does.
    plain: Arc<str>,
    digest: [u8; 32],
}

impl Auth {
    /// Credentials from the resolved configuration (`requirepass`).
    pub fn new(password: Option<String>) -> Auth {
        Auth::with_tenants(password, Arc::new(Tenants::in_memory()))
    }

    /// Credentials with a tenant registry (the node's, from its data dir).
    pub fn with_tenants(password: Option<String>, tenants: Arc<Tenants>) -> Auth {
        let auth = Auth {
            password: RwLock::default(),
            tenants,
        };
        auth.set_password(password);
        auth
    }

    /// The tenant registry.
    pub fn tenants(&self) -> &Arc<Tenants> {
        &self.tenants
    }

    /// True once any credential is configured: anonymous clients are then
    /// refused everything but [`Auth::open_to_anonymous`].
    pub fn is_required(&self) -> bool {
        self.password.read().map(|p| p.is_some()).unwrap_or(true)
    }

    /// `CONFIG SET requirepass`: an empty or absent value removes it.
    pub fn set_password(&self, password: Option<String>) {
        let secret = password.filter(|p| !p.is_empty()).map(|p| Secret {
            digest: digest(p.as_bytes()),
            plain: p.into(),
        });
        if let Ok(mut w) = self.password.write() {
            *w = secret;
        }
    }

    /// The password as configured (for `CONFIG GET` and `REWRITE`).
    pub fn password(&self) -> Option<Arc<str>> {
        self.password
            .read()
            .ok()
            .and_then(|p| p.as_ref().map(|s| s.plain.clone()))
    }

    /// The principal of a client that has not authenticated: admin when
    /// the node has no credentials, nobody otherwise.
    pub fn anonymous(&self) -> Option<Principal> {
        (!self.is_required()).then_some(Principal::Admin)
    }

    /// Checks a presented secret. `user` is Redis 6's optional user name:
    /// `default`/`admin` (or none) for the node's password, a tenant's
    /// name for one of its tokens.
    pub fn verify(&self, user: Option<&str>, secret: &[u8]) -> Result<Principal, AuthError> {
        if let Some(u) = user
            && !ADMIN_USERS.contains(&u)
        {
            return match self.tenants.verify(u, secret) {
                Some(t) => Ok(Principal::Tenant(t.name.clone())),
                None => Err(AuthError::Invalid),
            };
        }
        let given = digest(secret);
        let guard = self.password.read().map_err(|_| AuthError::Invalid)?;
        let Some(want) = guard.as_ref() else {
            return Err(AuthError::NotConfigured);
        };
        if bool::from(want.digest.ct_eq(&given)) {
            Ok(Principal::Admin)
        } else {
            Err(AuthError::Invalid)
        }
    }

    /// A bearer token as HTTP presents it (`Authorization: Bearer T`).
    /// The token is the password, `admin:password`, or `tenant:token`.
    pub fn verify_bearer(&self, token: &str) -> Result<Principal, AuthError> {
        match token.split_once(':') {
            Some((user, secret))
                if ADMIN_USERS.contains(&user) || self.tenants.get(user).is_some() =>
            {
                self.verify(Some(user), secret.as_bytes())
            }
            _ => self.verify(None, token.as_bytes()),
        }
    }

    /// Commands a client may send before it authenticates when the node
    /// has credentials: the handshake itself and nothing that reads or
    /// changes state (Redis allows AUTH, HELLO and QUIT).
    pub fn open_to_anonymous(command: &str) -> bool {
        ["AUTH", "QUIT"]
            .iter()
            .any(|c| c.eq_ignore_ascii_case(command))
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Whether two secrets are the same, compared as SHA-256 digests in
/// constant time (neither bytes nor length leak through timing). The
/// engine's `asynckey` check uses it, so every secret of the node is
/// compared one way.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    bool::from(digest(a).ct_eq(&digest(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_password_makes_every_client_admin_and_refuses_auth() {
        let a = Auth::new(None);
        assert!(!a.is_required());
        assert_eq!(a.anonymous(), Some(Principal::Admin));
        assert_eq!(a.verify(None, b"x"), Err(AuthError::NotConfigured));
    }

    #[test]
    fn the_password_and_only_it_authenticates() {
        let a = Auth::new(Some("s3cret".into()));
        assert!(a.is_required());
        assert_eq!(a.anonymous(), None);
        assert_eq!(a.verify(None, b"s3cret"), Ok(Principal::Admin));
        assert_eq!(a.verify(Some("default"), b"s3cret"), Ok(Principal::Admin));
        assert_eq!(a.verify(None, b"s3cre"), Err(AuthError::Invalid));
        assert_eq!(a.verify(None, b"s3cret\0"), Err(AuthError::Invalid));
        assert_eq!(a.verify(Some("bob"), b"s3cret"), Err(AuthError::Invalid));
        assert_eq!(a.verify_bearer("s3cret"), Ok(Principal::Admin));
        assert_eq!(a.verify_bearer("admin:s3cret"), Ok(Principal::Admin));
        assert_eq!(a.verify_bearer("admin:nope"), Err(AuthError::Invalid));
    }

    #[test]
    fn a_tenant_token_names_its_tenant_and_nothing_else() {
        let a = Auth::new(Some("pw".into()));
        let (_, tok) = a
            .tenants()
            .add("alice", crate::tenant::Quotas::default(), 1)
            .unwrap();
        let alice = Principal::Tenant("alice".into());
        assert_eq!(a.verify(Some("alice"), tok.as_bytes()), Ok(alice.clone()));
        assert_eq!(a.verify_bearer(&format!("alice:{tok}")), Ok(alice));
        assert_eq!(a.verify(None, tok.as_bytes()), Err(AuthError::Invalid));
        assert_eq!(a.verify(Some("alice"), b"pw"), Err(AuthError::Invalid));
        assert_eq!(
            a.verify(Some("bob"), tok.as_bytes()),
            Err(AuthError::Invalid)
        );
        assert_eq!(a.verify_bearer("alice:pw"), Err(AuthError::Invalid));
    }

    #[test]
    fn same_secret_is_exact() {
        assert!(same_secret(b"k1", b"k1"));
        assert!(!same_secret(b"k1", b"k2"));
        assert!(!same_secret(b"k1", b"k1\0"));
        assert!(!same_secret(b"", b"k"));
    }

    #[test]
    fn a_live_change_applies_at_once_and_empty_removes_it() {
        let a = Auth::new(Some("one".into()));
        a.set_password(Some("two".into()));
        assert_eq!(a.verify(None, b"one"), Err(AuthError::Invalid));
        assert_eq!(a.verify(None, b"two"), Ok(Principal::Admin));
        assert_eq!(a.password().as_deref(), Some("two"));
        a.set_password(Some(String::new()));
        assert!(!a.is_required());
        assert_eq!(a.password(), None);
    }
}
