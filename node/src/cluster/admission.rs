//! Who may join a `ca` cluster, and who is shut out of it: the join tokens
//! (kept as sha256 of their secrets, each with an expiry and a revoked
//! mark) and the forgotten nodes (their ids and the certificates they
//! presented). Every member keeps the same set, in
//! `DATA_DIR/tls/admission.json` (see `registry_file.rs`), merged with its peers' (a digest in each
//! advert, the whole set in an `Admission` frame when digests differ), so
//! any member holding the CA key can admit a node, and a node forgotten
//! on one member is refused by all.
//!
//! Both halves only grow: a token is made, then maybe revoked; a node is
//! forgotten for good (it comes back only as a new node, with an empty data
//! dir and a token). A grow-only set merges the same whatever order the
//! frames arrive in, so members agree without a leader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::trust::Fingerprint;
use crate::job::NodeName;
use crate::registry_file::{Document, OpenError, RegistryFile, digest64};

/// The file's name in `DATA_DIR/tls`.
pub const FILE: &str = "admission.json";
/// The version of the file's format (and of the `Admission` frame's body).
pub const FORMAT: u32 = 1;
/// Most tokens kept (revoked and expired included): a bound on what a
/// user, or a peer, can make a member keep and send.
pub const MAX_TOKENS: usize = 1_000;
/// Most forgotten nodes kept.
pub const MAX_REVOKED: usize = 10_000;
/// Most certificates remembered per forgotten node.
const MAX_CERTS_PER_NODE: usize = 16;
/// A token expired this long ago is dropped (it can no longer admit).
const EXPIRED_KEPT_MS: u64 = 7 * 24 * 3600 * 1000;

/// A join token, as members keep it: never the secret itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The first 12 hex digits of the secret's sha256: how a user names it.
    pub id: String,
    /// sha256 of the secret.
    pub hash: [u8; 32],
    pub created_ms: u64,
    /// When it stops admitting (unix ms); 0: never.
    pub expires_ms: u64,
    pub revoked: bool,
}

impl TokenRecord {
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms != 0 && now_ms >= self.expires_ms
    }

    /// `valid`, `expired` or `revoked`.
    pub fn state(&self, now_ms: u64) -> &'static str {
        if self.revoked {
            "revoked"
        } else if self.expired(now_ms) {
            "expired"
        } else {
            "valid"
        }
    }
}

/// A forgotten node: refused by its id and by every certificate it was
/// seen with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedNode {
    pub node: NodeName,
    pub at_ms: u64,
    pub certs: BTreeSet<Fingerprint>,
}

/// The whole set, as the file and the `Admission` frame carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionSet {
    pub tokens: Vec<TokenRecord>,
    pub revoked: Vec<RevokedNode>,
}

#[derive(Clone, Debug, Default)]
struct State {
    tokens: BTreeMap<String, TokenRecord>,
    revoked: BTreeMap<NodeName, RevokedNode>,
}

/// What a merge changed that the cluster layer acts on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Nodes forgotten by a peer, new here: cut them off.
    pub revoked: Vec<NodeName>,
    pub tokens: usize,
}

/// The admission set of this member.
#[derive(Debug, Default)]
pub struct Admission {
    file: RegistryFile<State>,
}

/// Why a change was not made: refused, or not saved.
enum ChangeError {
    Refused(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for ChangeError {
    fn from(e: std::io::Error) -> ChangeError {
        ChangeError::Io(e)
    }
}

/// The sha256 of a token's secret, and the id users name it by.
pub fn token_id(secret: &str) -> ([u8; 32], String) {
    let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let id = hex::encode(&hash[..6]);
    (hash, id)
}

impl Admission {
    /// The set kept in `tls_dir` (empty if there is no file yet). A file
    /// that does not parse stops the start: starting without it would
    /// admit forgotten nodes again.
    pub fn open(tls_dir: &Path) -> Result<Admission, String> {
        let file = RegistryFile::open(tls_dir.join(FILE)).map_err(|e| match e {
            OpenError::Invalid(why) => why,
            OpenError::Io(e) => format!("{}: {e}", tls_dir.join(FILE).display()),
        })?;
        Ok(Admission { file })
    }

    /// A set kept in memory only (tests).
    pub fn in_memory() -> Admission {
        Admission {
            file: RegistryFile::in_memory(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.file.read()
    }

    /// Records a token's secret (hashed), valid until `expires_ms` (0:
    /// never). Recording one already there changes nothing.
    pub fn add_token(
        &self,
        secret: &str,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<TokenRecord, String> {
        let (hash, id) = token_id(secret);
        let mut made = None;
        self.change(|st| {
            if let Some(t) = st.tokens.get(&id) {
                made = Some(t.clone());
                return Ok(());
            }
            prune(st, now_ms);
            if st.tokens.len() >= MAX_TOKENS {
                return Err(format!(
                    "the cluster keeps at most {MAX_TOKENS} join tokens; revoke some first (CLUSTER TOKEN REVOKE ALL)"
                ));
            }
            let t = TokenRecord {
                id: id.clone(),
                hash,
                created_ms: now_ms,
                expires_ms,
                revoked: false,
            };
            st.tokens.insert(id, t.clone());
            made = Some(t);
            Ok(())
        })?;
        made.ok_or_else(|| "token not recorded".to_string())
    }

    /// Makes a new secret and records it; returns the secret (shown once:
    /// members keep only its hash) and its record.
    pub fn create_token(
        &self,
        now_ms: u64,
        ttl_ms: Option<u64>,
    ) -> Result<(String, TokenRecord), String> {
        let secret = hex::encode(rand::random::<[u8; 24]>());
        let expires = ttl_ms.map_or(0, |t| now_ms.saturating_add(t.max(1)));
        let t = self.add_token(&secret, now_ms, expires)?;
        Ok((secret, t))
    }

    /// Whether a joiner's secret admits it now; the error says why not.
    pub fn check_token(&self, secret: &str, now_ms: u64) -> Result<(), String> {
        let (hash, id) = token_id(secret);
        let st = self.read();
        // The id is a prefix of the hash: compare the whole of it too.
        let t = st
            .tokens
            .get(&id)
            .filter(|t| t.hash == hash)
            .ok_or("join refused: the token's secret is wrong")?;
        if t.revoked {
            return Err(format!(
                "join refused: token {id} was revoked; ask for a new one (wasque cluster token create)"
            ));
        }
        if t.expired(now_ms) {
            return Err(format!(
                "join refused: token {id} expired {} s ago; ask for a new one (wasque cluster token create --ttl SECS)",
                (now_ms - t.expires_ms) / 1000
            ));
        }
        Ok(())
    }

    /// Whether the token with this secret is still valid (not revoked, not
    /// expired).
    pub fn token_valid(&self, secret: &str, now_ms: u64) -> bool {
        self.check_token(secret, now_ms).is_ok()
    }

    /// Revokes one token by id (or every token with `all`); returns how
    /// many were newly revoked. An unknown id is an error.
    pub fn revoke_token(&self, id: &str, now_ms: u64) -> Result<usize, String> {
        let mut n = 0;
        self.change(|st| {
            prune(st, now_ms);
            if id.eq_ignore_ascii_case("all") {
                for t in st.tokens.values_mut().filter(|t| !t.revoked) {
                    t.revoked = true;
                    n += 1;
                }
                return Ok(());
            }
            let id = id.to_ascii_lowercase();
            let t = st
                .tokens
                .get_mut(&id)
                .ok_or_else(|| format!("no join token {id} (CLUSTER TOKEN LIST shows them)"))?;
            if !t.revoked {
                t.revoked = true;
                n = 1;
            }
            Ok(())
        })?;
        Ok(n)
    }

    /// Every token, oldest first.
    pub fn tokens(&self) -> Vec<TokenRecord> {
        let mut v: Vec<_> = self.read().tokens.values().cloned().collect();
        v.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        v
    }

    /// Forgets `node` for good, with the certificates it was seen with.
    pub fn revoke_node(
        &self,
        node: NodeName,
        certs: impl IntoIterator<Item = Fingerprint>,
        now_ms: u64,
    ) -> Result<(), String> {
        let certs: Vec<Fingerprint> = certs.into_iter().collect();
        self.change(|st| {
            if !st.revoked.contains_key(&node) && st.revoked.len() >= MAX_REVOKED {
                return Err(format!(
                    "the cluster keeps at most {MAX_REVOKED} forgotten nodes"
                ));
            }
            let r = st.revoked.entry(node).or_insert_with(|| RevokedNode {
                node,
                at_ms: now_ms,
                certs: BTreeSet::new(),
            });
            for c in certs {
                if r.certs.len() < MAX_CERTS_PER_NODE {
                    r.certs.insert(c);
                }
            }
            Ok(())
        })
    }

    pub fn is_revoked_node(&self, node: &NodeName) -> bool {
        self.read().revoked.contains_key(node)
    }

    pub fn is_revoked_cert(&self, fp: &Fingerprint) -> bool {
        self.read().revoked.values().any(|r| r.certs.contains(fp))
    }

    /// Every forgotten node.
    pub fn revoked(&self) -> Vec<RevokedNode> {
        self.read().revoked.values().cloned().collect()
    }

    // ---- replication ---------------------------------------------------

    /// A short fingerprint of the whole set; 0 when it is empty.
    pub fn digest(&self) -> u64 {
        let st = self.read();
        if st.tokens.is_empty() && st.revoked.is_empty() {
            return 0;
        }
        let mut h = Sha256::new();
        for t in st.tokens.values() {
            h.update(t.hash);
            h.update(t.expires_ms.to_le_bytes());
            h.update([t.revoked as u8]);
        }
        h.update([0xff]);
        for r in st.revoked.values() {
            h.update(r.node.0);
            for c in &r.certs {
                h.update(c);
            }
        }
        digest64(h)
    }

    /// The whole set, for a peer.
    pub fn set(&self) -> AdmissionSet {
        let st = self.read();
        AdmissionSet {
            tokens: st.tokens.values().cloned().collect(),
            revoked: st.revoked.values().cloned().collect(),
        }
    }

    /// Takes a peer's set: unknown tokens and nodes are added, a revoked
    /// mark wins, certificates are united. Records this node could not
    /// have made (an id that is not its hash's) are ignored; so are new
    /// ones past the bounds.
    pub fn merge(&self, other: AdmissionSet, now_ms: u64) -> Merged {
        let mut merged = Merged::default();
        let _ = self.change(|st| {
            for t in other.tokens {
                if t.id != hex::encode(&t.hash[..6]) {
                    continue;
                }
                let room = st.tokens.len() < MAX_TOKENS;
                match st.tokens.get_mut(&t.id) {
                    Some(mine) if t.revoked && !mine.revoked => {
                        mine.revoked = true;
                        merged.tokens += 1;
                    }
                    Some(_) => {}
                    None if room
                        && !(t.expired(now_ms) && now_ms - t.expires_ms > EXPIRED_KEPT_MS) =>
                    {
                        st.tokens.insert(t.id.clone(), t);
                        merged.tokens += 1;
                    }
                    None => {}
                }
            }
            for r in other.revoked {
                let room = st.revoked.len() < MAX_REVOKED;
                match st.revoked.get_mut(&r.node) {
                    Some(mine) => {
                        for c in r.certs {
                            if mine.certs.len() < MAX_CERTS_PER_NODE {
                                mine.certs.insert(c);
                            }
                        }
                        mine.at_ms = mine.at_ms.min(r.at_ms);
                    }
                    None if room => {
                        merged.revoked.push(r.node);
                        let mut r = r;
                        while r.certs.len() > MAX_CERTS_PER_NODE {
                            r.certs.pop_last();
                        }
                        st.revoked.insert(r.node, r);
                    }
                    None => {}
                }
            }
            Ok(())
        });
        merged
    }

    /// Applies a change and saves the file (see `registry_file.rs`).
    fn change(&self, f: impl FnOnce(&mut State) -> Result<(), String>) -> Result<(), String> {
        self.file
            .change(|st| f(st).map_err(ChangeError::Refused))
            .map_err(|e| match e {
                ChangeError::Refused(why) => why,
                ChangeError::Io(e) => format!("saving the admission set: {e}"),
            })
    }
}

impl Document for State {
    type File = AdmissionSet;
    const FORMAT: u32 = FORMAT;
    const IF_DAMAGED: &'static str = "restore it from another member's copy";

    fn to_file(&self) -> AdmissionSet {
        AdmissionSet {
            tokens: self.tokens.values().cloned().collect(),
            revoked: self.revoked.values().cloned().collect(),
        }
    }

    fn from_file(set: AdmissionSet) -> Result<State, String> {
        let mut st = State::default();
        for t in set.tokens {
            st.tokens.insert(t.id.clone(), t);
        }
        for r in set.revoked {
            st.revoked.insert(r.node, r);
        }
        Ok(st)
    }

    fn unchanged(&self, before: &State) -> bool {
        self.tokens == before.tokens && self.revoked == before.revoked
    }
}

/// Drops tokens that expired long ago (they admit nobody any more).
fn prune(st: &mut State, now_ms: u64) {
    st.tokens
        .retain(|_, t| !(t.expired(now_ms) && now_ms - t.expires_ms > EXPIRED_KEPT_MS));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8) -> NodeName {
        NodeName([b; 20])
    }

    #[test]
    fn tokens_admit_until_they_expire_or_are_revoked() {
        let a = Admission::in_memory();
        let (forever, _) = a.create_token(1_000, None).unwrap();
        let (short, rec) = a.create_token(1_001, Some(4_999)).unwrap();
        assert_eq!(rec.expires_ms, 6_000);
        a.check_token(&forever, 10_000).unwrap();
        a.check_token(&short, 5_999).unwrap();
        let e = a.check_token(&short, 6_000).unwrap_err();
        assert!(e.contains("expired"), "{e}");
        let e = a.check_token("not-a-token", 1_000).unwrap_err();
        assert!(e.contains("secret is wrong"), "{e}");
        let (_, id) = token_id(&forever);
        assert_eq!(a.revoke_token(&id, 2_000).unwrap(), 1);
        let e = a.check_token(&forever, 2_000).unwrap_err();
        assert!(e.contains("revoked"), "{e}");
        assert!(a.revoke_token("abcdef", 2_000).is_err(), "unknown id");
        assert_eq!(
            a.tokens()
                .iter()
                .map(|t| t.state(7_000))
                .collect::<Vec<_>>(),
            ["revoked", "expired"]
        );
    }

    #[test]
    fn two_members_converge_whatever_the_order() {
        let (a, b) = (Admission::in_memory(), Admission::in_memory());
        let (s1, _) = a.create_token(1, None).unwrap();
        let (s2, _) = b.create_token(2, Some(60_000)).unwrap();
        b.revoke_node(node(7), [[7; 32]], 3).unwrap();
        a.revoke_node(node(7), [[8; 32]], 4).unwrap();
        let (_, id1) = token_id(&s1);
        let from_a = a.set();
        // b learns a's token, then revokes it before a hears back.
        let m = b.merge(from_a.clone(), 5);
        assert_eq!(m.revoked, Vec::<NodeName>::new(), "node 7 was known");
        b.revoke_token(&id1, 6).unwrap();
        let m = a.merge(b.set(), 7);
        assert!(m.tokens >= 2, "{m:?}");
        b.merge(a.set(), 8);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.set(), b.set());
        assert!(a.check_token(&s1, 9).is_err(), "the revoked mark wins");
        a.check_token(&s2, 9).unwrap();
        assert!(a.is_revoked_cert(&[7; 32]) && a.is_revoked_cert(&[8; 32]));
        assert!(b.is_revoked_node(&node(7)));
        // A forged record (id not its hash's) is ignored.
        let c = Admission::in_memory();
        let mut forged = a.set();
        forged.tokens[0].id = "000000000000".into();
        forged.revoked.clear();
        c.merge(forged, 10);
        assert_eq!(c.tokens().len(), 1);
    }

    #[test]
    fn the_set_survives_a_restart_and_a_newly_forgotten_node_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let a = Admission::open(dir.path()).unwrap();
        let (s, _) = a.create_token(1, None).unwrap();
        a.revoke_node(node(3), [], 2).unwrap();
        drop(a);
        let again = Admission::open(dir.path()).unwrap();
        again.check_token(&s, 3).unwrap();
        assert!(again.is_revoked_node(&node(3)));
        let other = Admission::in_memory();
        let m = other.merge(again.set(), 4);
        assert_eq!(m.revoked, vec![node(3)]);
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert!(Admission::open(dir.path()).is_err());
    }
}
