//! The node's live tenant registry: the records, kept in
//! `DATA_DIR/tenants.json` (see `registry_file.rs`; mode 0600 matters
//! here: it holds token digests), merged
//! with peers' copies by version, and read by every door on every command
//! so a removed tenant or a revoked token stops working at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::record::{Quotas, TenantRecord, Token, valid_name};
use crate::job::{ModuleHash, UnixMs};
use crate::registry_file::{Document, OpenError, RegistryFile, digest64};

/// What the engine and the doors know of a tenant at one moment: a
/// snapshot, rebuilt when its record changes.
#[derive(Debug, PartialEq, Eq)]
pub struct Tenant {
    pub name: Arc<str>,
    /// `name/`: the tenant's queues are the node's queues with this prefix.
    pub prefix: Arc<str>,
    pub quotas: Quotas,
    /// The modules it owns, with their sizes.
    pub modules: BTreeMap<ModuleHash, u64>,
}

impl Tenant {
    /// The node-wide name of the tenant's queue `queue`.
    pub fn queue(&self, queue: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + queue.len());
        s.push_str(&self.prefix);
        s.push_str(queue);
        s
    }

    /// Whether a node-wide queue name is one of the tenant's.
    pub fn owns_queue(&self, queue: &str) -> bool {
        queue.starts_with(&*self.prefix)
    }
}

/// The tenant a node-wide queue name belongs to (the part before its first
/// `/`), if it has one. Admin queues without `/` belong to no tenant.
pub fn tenant_of_queue(queue: &str) -> Option<&str> {
    queue.split_once('/').map(|(t, _)| t)
}

/// Why a registry change was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("{0}")]
    Invalid(String),
    #[error("tenant {0:?} already exists")]
    Exists(String),
    #[error("no tenant {0:?}")]
    Missing(String),
    #[error("tenant {0:?} has no token {1:?}")]
    NoToken(String, String),
    #[error("saving the tenant registry: {0}")]
    Io(#[from] std::io::Error),
}

/// One tenant as `tenant ls` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub name: String,
    pub tokens: Vec<String>,
    pub quotas: Vec<(String, String)>,
    pub modules: usize,
    pub module_bytes: u64,
}

#[derive(Clone, Debug, Default)]
struct State {
    records: BTreeMap<String, TenantRecord>,
    snapshots: HashMap<String, Arc<Tenant>>,
    /// Modules uploaded by the admin (node-local): a module stays on the
    /// node while the admin or any tenant owns it.
    admin_modules: BTreeSet<ModuleHash>,
}

/// The registry. Cheap to read from every door.
#[derive(Debug, Default)]
pub struct Tenants {
    file: RegistryFile<State>,
    /// Uploads refused by `max-module-bytes` on this node, by tenant (a
    /// metric, not replicated, not kept across restarts).
    uploads_refused: std::sync::Mutex<HashMap<String, u64>>,
}

/// The file's name in the data dir.
pub const FILE: &str = "tenants.json";

impl Tenants {
    /// The registry of a data dir (empty if it has no file yet).
    pub fn open(data_dir: &Path) -> Result<Tenants, TenantError> {
        let file = RegistryFile::open(data_dir.join(FILE)).map_err(|e| match e {
            OpenError::Invalid(why) => TenantError::Invalid(why),
            OpenError::Io(e) => TenantError::Io(e),
        })?;
        Ok(Tenants {
            file,
            uploads_refused: Default::default(),
        })
    }

    /// A registry kept in memory only (tests).
    pub fn in_memory() -> Tenants {
        Tenants::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.file.read()
    }

    /// Applies a change and saves the file (see `registry_file.rs`).
    fn change(
        &self,
        f: impl FnOnce(&mut State) -> Result<(), TenantError>,
    ) -> Result<(), TenantError> {
        self.file.change(f)
    }

    /// Counts an upload refused to `name` by its module-bytes quota.
    pub fn note_upload_refused(&self, name: &str) {
        let mut m = self
            .uploads_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry(name.to_string()).or_default() += 1;
    }

    /// Uploads refused to `name` by its module-bytes quota on this node.
    pub fn uploads_refused(&self, name: &str) -> u64 {
        let m = self
            .uploads_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        m.get(name).copied().unwrap_or(0)
    }

    /// Whether any tenant exists (none: the node behaves as before tenancy).
    pub fn any(&self) -> bool {
        !self.read().snapshots.is_empty()
    }

    /// A tenant's current snapshot; `None` once removed.
    pub fn get(&self, name: &str) -> Option<Arc<Tenant>> {
        self.read().snapshots.get(name).cloned()
    }

    /// Checks a tenant's token, in constant time per token.
    pub fn verify(&self, name: &str, secret: &[u8]) -> Option<Arc<Tenant>> {
        let given: [u8; 32] = Sha256::digest(secret).into();
        let st = self.read();
        let rec = st.records.get(name).filter(|r| !r.removed)?;
        let mut ok = subtle::Choice::from(0);
        for t in &rec.tokens {
            ok |= t.digest.ct_eq(&given);
        }
        if bool::from(ok) {
            st.snapshots.get(name).cloned()
        } else {
            None
        }
    }

    /// Adds a tenant with one token; returns `(token id, secret)`.
    pub fn add(
        &self,
        name: &str,
        quotas: Quotas,
        now: UnixMs,
    ) -> Result<(String, String), TenantError> {
        valid_name(name).map_err(TenantError::Invalid)?;
        let (token, secret) = new_token(now);
        let id = token.id.clone();
        self.change(|st| {
            let version = match st.records.get(name) {
                Some(r) if !r.removed => return Err(TenantError::Exists(name.into())),
                Some(r) => next_version(r.version, now),
                None => now.max(1),
            };
            st.records.insert(
                name.into(),
                TenantRecord {
                    name: name.into(),
                    tokens: vec![token],
                    quotas,
                    modules: BTreeMap::new(),
                    version,
                    removed: false,
                },
            );
            refresh(st, name);
            Ok(())
        })?;
        Ok((id, secret))
    }

    /// Removes a tenant: its tokens stop working at once. Its jobs stay
    /// (the admin sees them, under `name/` queues); its modules are no
    /// longer its own.
    pub fn remove(&self, name: &str, now: UnixMs) -> Result<(), TenantError> {
        self.edit(name, now, |r| {
            r.removed = true;
            r.tokens.clear();
            r.modules.clear();
            Ok(())
        })
    }

    /// A further token for a tenant (to rotate: add, switch, revoke).
    pub fn add_token(&self, name: &str, now: UnixMs) -> Result<(String, String), TenantError> {
        let (token, secret) = new_token(now);
        let id = token.id.clone();
        self.edit(name, now, |r| {
            r.tokens.push(token);
            Ok(())
        })?;
        Ok((id, secret))
    }

    pub fn revoke_token(&self, name: &str, id: &str, now: UnixMs) -> Result<(), TenantError> {
        self.edit(name, now, |r| {
            let before = r.tokens.len();
            r.tokens.retain(|t| t.id != id);
            if r.tokens.len() == before {
                return Err(TenantError::NoToken(name.into(), id.into()));
            }
            Ok(())
        })
    }

    /// Sets one quota by name (see [`Quotas::set`]).
    pub fn set_quota(
        &self,
        name: &str,
        quota: &str,
        value: &str,
        now: UnixMs,
    ) -> Result<(), TenantError> {
        self.edit(name, now, |r| {
            r.quotas.set(quota, value).map_err(TenantError::Invalid)
        })
    }

    /// Each live tenant's fair-share weight.
    pub fn weights(&self) -> Vec<(Arc<str>, u32)> {
        self.read()
            .snapshots
            .values()
            .map(|t| (t.name.clone(), t.quotas.weight))
            .collect()
    }

    /// Live tenants, by name.
    pub fn list(&self) -> Vec<TenantInfo> {
        self.read()
            .records
            .values()
            .filter(|r| !r.removed)
            .map(|r| TenantInfo {
                name: r.name.clone(),
                tokens: r.tokens.iter().map(|t| t.id.clone()).collect(),
                quotas: r
                    .quotas
                    .pairs()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                modules: r.modules.len(),
                module_bytes: r.module_bytes(),
            })
            .collect()
    }

    /// Records a module as owned by `owner` (a tenant, or the admin for
    /// `None`). For a tenant, refused over its module-bytes quota; a
    /// module it owns already costs nothing again.
    pub fn own_module(
        &self,
        owner: Option<&str>,
        hash: ModuleHash,
        size: u64,
        now: UnixMs,
    ) -> Result<(), TenantError> {
        let Some(name) = owner else {
            return self.change(|st| {
                st.admin_modules.insert(hash);
                Ok(())
            });
        };
        if self
            .get(name)
            .is_some_and(|t| t.modules.contains_key(&hash))
        {
            return Ok(());
        }
        self.edit(name, now, |r| {
            if let Some(max) = r.quotas.max_module_bytes
                && r.module_bytes().saturating_add(size) > max
            {
                return Err(TenantError::Invalid(format!(
                    "quota max-module-bytes {max} of tenant {}: it owns {} bytes of modules, this one is {size}",
                    r.name,
                    r.module_bytes()
                )));
            }
            r.modules.insert(hash, size);
            Ok(())
        })
    }

    /// A tenant gives a module up; returns whether anyone (the admin or
    /// another tenant) still owns it on this node, i.e. whether its files
    /// must stay.
    pub fn release_module(
        &self,
        name: &str,
        hash: &ModuleHash,
        now: UnixMs,
    ) -> Result<bool, TenantError> {
        self.edit(name, now, |r| {
            r.modules.remove(hash);
            Ok(())
        })?;
        let st = self.read();
        Ok(st.admin_modules.contains(hash)
            || st
                .records
                .values()
                .any(|r| !r.removed && r.modules.contains_key(hash)))
    }

    /// Whether anyone (the admin or a tenant) owns a module on this node.
    pub fn module_owned(&self, hash: &ModuleHash) -> bool {
        let st = self.read();
        st.admin_modules.contains(hash) || st.records.values().any(|r| r.modules.contains_key(hash))
    }

    /// Marks modules found on disk that nobody owns as the admin's (those
    /// uploaded before tenancy, or fetched for a peer's jobs).
    pub fn adopt_modules(&self, hashes: impl IntoIterator<Item = ModuleHash>) {
        let orphans: Vec<ModuleHash> = hashes
            .into_iter()
            .filter(|h| !self.module_owned(h))
            .collect();
        if !orphans.is_empty() {
            let _ = self.change(|st| {
                st.admin_modules.extend(orphans);
                Ok(())
            });
        }
    }

    /// The admin removed a module from the node: nobody owns it any more
    /// (tenants that held it lose it from their lists and quota).
    pub fn drop_module(&self, hash: &ModuleHash, now: UnixMs) {
        let _ = self.change(|st| {
            st.admin_modules.remove(hash);
            let holders: Vec<String> = st
                .records
                .values()
                .filter(|r| r.modules.contains_key(hash))
                .map(|r| r.name.clone())
                .collect();
            for name in holders {
                if let Some(r) = st.records.get_mut(&name) {
                    r.modules.remove(hash);
                    r.version = next_version(r.version, now);
                }
                refresh(st, &name);
            }
            Ok(())
        });
    }

    // ---- replication ---------------------------------------------------

    /// A short fingerprint of every record's name and version: peers
    /// compare theirs in adverts and send records when they differ.
    pub fn digest(&self) -> u64 {
        let st = self.read();
        if st.records.is_empty() {
            return 0;
        }
        let mut h = Sha256::new();
        for r in st.records.values() {
            h.update(r.name.as_bytes());
            h.update([0]);
            h.update(r.version.to_le_bytes());
            h.update([r.removed as u8]);
        }
        digest64(h)
    }

    /// Every record (tombstones included), for a peer.
    pub fn records(&self) -> Vec<TenantRecord> {
        self.read().records.values().cloned().collect()
    }

    /// Takes a peer's records: each replaces ours where it wins. Returns
    /// the names that changed.
    pub fn merge(&self, records: Vec<TenantRecord>) -> Vec<String> {
        let mut changed = Vec::new();
        let _ = self.change(|st| {
            for r in records {
                if valid_name(&r.name).is_err() {
                    continue;
                }
                let wins = st.records.get(&r.name).is_none_or(|mine| r.wins_over(mine));
                if wins {
                    let name = r.name.clone();
                    st.records.insert(name.clone(), r);
                    refresh(st, &name);
                    changed.push(name);
                }
            }
            Ok(())
        });
        changed
    }

    // ---- internals -----------------------------------------------------

    fn edit(
        &self,
        name: &str,
        now: UnixMs,
        f: impl FnOnce(&mut TenantRecord) -> Result<(), TenantError>,
    ) -> Result<(), TenantError> {
        self.change(|st| {
            let r = st
                .records
                .get_mut(name)
                .filter(|r| !r.removed)
                .ok_or_else(|| TenantError::Missing(name.into()))?;
            let mut next = r.clone();
            f(&mut next)?;
            next.version = next_version(r.version, now);
            *r = next;
            refresh(st, name);
            Ok(())
        })
    }
}

fn next_version(prev: u64, now: UnixMs) -> u64 {
    now.max(prev.saturating_add(1))
}

/// Rebuilds one tenant's snapshot from its record.
fn refresh(st: &mut State, name: &str) {
    match st.records.get(name).filter(|r| !r.removed) {
        Some(r) => {
            st.snapshots.insert(
                name.into(),
                Arc::new(Tenant {
                    name: name.into(),
                    prefix: format!("{name}/").into(),
                    quotas: r.quotas.clone(),
                    modules: r.modules.clone(),
                }),
            );
        }
        None => {
            st.snapshots.remove(name);
        }
    }
}

/// A new token: 32 random bytes as 64 hex digits, prefixed `wqt_` so a
/// leaked one is recognisable; its id is 8 further random hex digits.
fn new_token(now: UnixMs) -> (Token, String) {
    let mut rng = rand::rng();
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let mut id = [0u8; 4];
    rng.fill_bytes(&mut id);
    let secret = format!("wqt_{}", hex::encode(secret));
    (
        Token {
            id: hex::encode(id),
            digest: Sha256::digest(secret.as_bytes()).into(),
            created_ms: now,
        },
        secret,
    )
}

// ---- the file ------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct File {
    tenants: Vec<FileRecord>,
    #[serde(default)]
    admin_modules: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct FileRecord {
    name: String,
    tokens: Vec<FileToken>,
    quotas: Quotas,
    modules: BTreeMap<String, u64>,
    version: u64,
    removed: bool,
}

#[derive(Serialize, Deserialize)]
struct FileToken {
    id: String,
    sha256: String,
    created_ms: UnixMs,
}

impl FileRecord {
    fn from_record(r: &TenantRecord) -> FileRecord {
        FileRecord {
            name: r.name.clone(),
            tokens: r
                .tokens
                .iter()
                .map(|t| FileToken {
                    id: t.id.clone(),
                    sha256: hex::encode(t.digest),
                    created_ms: t.created_ms,
                })
                .collect(),
            quotas: r.quotas.clone(),
            modules: r.modules.iter().map(|(h, s)| (h.to_string(), *s)).collect(),
            version: r.version,
            removed: r.removed,
        }
    }

    fn into_record(self) -> Result<TenantRecord, String> {
        let mut tokens = Vec::new();
        for t in self.tokens {
            let digest: [u8; 32] = hex::decode(&t.sha256)
                .ok()
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| {
                    format!("tenant {}: token {} digest is not 64 hex", self.name, t.id)
                })?;
            tokens.push(Token {
                id: t.id,
                digest,
                created_ms: t.created_ms,
            });
        }
        let mut modules = BTreeMap::new();
        for (h, s) in self.modules {
            let h = h
                .parse()
                .map_err(|_| format!("tenant {}: module {h:?} is not a hash", self.name))?;
            modules.insert(h, s);
        }
        Ok(TenantRecord {
            name: self.name,
            tokens,
            quotas: self.quotas,
            modules,
            version: self.version,
            removed: self.removed,
        })
    }
}

impl Document for State {
    type File = File;
    const FORMAT: u32 = 1;
    const IF_DAMAGED: &'static str = "restore it from a backup or another member's copy; moved aside, every tenant token stops working";

    fn to_file(&self) -> File {
        File {
            tenants: self.records.values().map(FileRecord::from_record).collect(),
            admin_modules: self.admin_modules.iter().map(|h| h.to_string()).collect(),
        }
    }

    fn from_file(file: File) -> Result<State, String> {
        let mut st = State::default();
        for r in file.tenants {
            let r = r.into_record()?;
            st.records.insert(r.name.clone(), r);
        }
        for h in file.admin_modules {
            if let Ok(h) = h.parse() {
                st.admin_modules.insert(h);
            }
        }
        let names: Vec<String> = st.records.keys().cloned().collect();
        for n in names {
            refresh(&mut st, &n);
        }
        Ok(st)
    }

    /// Snapshots are derived from the records: they do not count.
    fn unchanged(&self, before: &State) -> bool {
        self.records == before.records && self.admin_modules == before.admin_modules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_authenticates_its_tenant_only_until_revoked_or_removed() {
        let t = Tenants::in_memory();
        let (id, secret) = t.add("alice", Quotas::default(), 1000).unwrap();
        t.add("bob", Quotas::default(), 1000).unwrap();
        assert_eq!(
            t.verify("alice", secret.as_bytes()).unwrap().name.as_ref(),
            "alice"
        );
        assert!(t.verify("bob", secret.as_bytes()).is_none());
        assert!(matches!(
            t.add("alice", Quotas::default(), 1001),
            Err(TenantError::Exists(_))
        ));
        let (_, second) = t.add_token("alice", 1002).unwrap();
        t.revoke_token("alice", &id, 1003).unwrap();
        assert!(t.verify("alice", secret.as_bytes()).is_none());
        assert!(t.verify("alice", second.as_bytes()).is_some());
        t.remove("alice", 1004).unwrap();
        assert!(t.verify("alice", second.as_bytes()).is_none());
        assert!(t.get("alice").is_none());
        assert_eq!(t.list().len(), 1);
    }

    #[test]
    fn the_file_survives_a_reopen_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tenants::open(dir.path()).unwrap();
        let (_, secret) = t.add("alice", Quotas::default(), 10).unwrap();
        t.set_quota("alice", "max-jobs", "7", 11).unwrap();
        let h = ModuleHash::of(b"m");
        t.own_module(Some("alice"), h, 100, 12).unwrap();
        drop(t);
        let t = Tenants::open(dir.path()).unwrap();
        let a = t.verify("alice", secret.as_bytes()).unwrap();
        assert_eq!(a.quotas.max_jobs, Some(7));
        assert_eq!(a.modules.get(&h), Some(&100));
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(!text.contains(&secret), "the secret itself is never stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn module_quota_counts_each_module_once_and_release_reports_other_owners() {
        let t = Tenants::in_memory();
        t.add("a", Quotas::default(), 1).unwrap();
        t.add("b", Quotas::default(), 1).unwrap();
        t.set_quota("a", "max-module-bytes", "150", 2).unwrap();
        let (m1, m2) = (ModuleHash::of(b"1"), ModuleHash::of(b"2"));
        t.own_module(Some("a"), m1, 100, 3).unwrap();
        t.own_module(Some("a"), m1, 100, 4).unwrap();
        let e = t.own_module(Some("a"), m2, 100, 5).unwrap_err();
        assert!(e.to_string().contains("max-module-bytes 150"), "{e}");
        t.own_module(Some("b"), m1, 100, 6).unwrap();
        assert!(t.release_module("a", &m1, 7).unwrap(), "b still owns it");
        assert!(!t.release_module("b", &m1, 8).unwrap(), "nobody does");
    }

    #[test]
    fn merging_converges_whatever_the_order() {
        let (x, y) = (Tenants::in_memory(), Tenants::in_memory());
        x.add("alice", Quotas::default(), 100).unwrap();
        y.add("bob", Quotas::default(), 100).unwrap();
        y.merge(x.records());
        x.merge(y.records());
        assert_eq!(x.digest(), y.digest());
        x.remove("alice", 200).unwrap();
        y.set_quota("alice", "weight", "5", 150).unwrap();
        x.merge(y.records());
        y.merge(x.records());
        assert_eq!(x.digest(), y.digest());
        assert!(y.get("alice").is_none(), "the later removal wins");
    }
}
