//! The module catalogue's name table: `NAME@VERSION` → module hash, the
//! same on every node. Kept in `DATA_DIR/module-names.json` (see
//! `registry_file.rs`) and replicated as the tenant and
//! schedule registries are: adverts carry [`ModuleNames::digest`], and a
//! peer whose digest differs is sent every record (`Frame::ModuleNames`),
//! which it merges (a record's higher `rev` wins; a removal is a
//! tombstone with a higher `rev`). Which node holds a module's bytes is
//! not kept here: the catalogue asks the members (`runtime.rs`,
//! `Handle::list_modules`).
//!
//! A tenant's names are its own: its records are keyed `TENANT/NAME@VERSION`
//! and it resolves and lists only those; the admin's are unprefixed.
//! "Latest" is the greatest version by
//! [`wasque_sdk::proto::compare_versions`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasque_sdk::proto::{check_module_name, check_module_version, compare_versions};

use crate::job::{ModuleHash, UnixMs};
use crate::registry_file::{Document, OpenError, RegistryFile, digest64};

/// The file's name in the data dir.
pub const FILE: &str = "module-names.json";

/// The version of the file's format (and of a record's layout: peers
/// exchange records under the peer protocol's version).
pub const NAMES_FORMAT: u32 = 1;

/// Most names (removed ones included) a table takes: a bound on what a
/// client, or a peer, can make a node keep and send.
pub const MAX_NAMES: usize = 10_000;

/// One name of a module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    /// `NAME@VERSION`, `TENANT/`-prefixed for a tenant's.
    pub key: String,
    pub tenant: Option<String>,
    pub name: String,
    pub version: String,
    pub hash: ModuleHash,
    pub created_ms: UnixMs,
    /// Bumped by each change; the higher wins a merge.
    pub rev: u64,
    /// A tombstone: the name was removed (with its module).
    pub removed: bool,
}

impl NameRecord {
    /// Whether `self` wins over `other` (same key) in a merge: the higher
    /// `rev`; at equal `rev` a tombstone, then the older naming, then the
    /// lower hash, so every node picks the same record.
    fn beats(&self, other: &NameRecord) -> bool {
        (
            self.rev,
            self.removed,
            std::cmp::Reverse((self.created_ms, self.hash)),
        ) > (
            other.rev,
            other.removed,
            std::cmp::Reverse((other.created_ms, other.hash)),
        )
    }

    /// `NAME@VERSION` as its tenant sees it.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Why a name could not be made or resolved.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Duplicate(String),
    #[error("{0}")]
    Unknown(String),
    #[error("saving the module name table: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone, Debug, Default)]
struct State {
    records: BTreeMap<String, NameRecord>,
}

/// The table. Cheap to read from every door.
#[derive(Debug, Default)]
pub struct ModuleNames {
    file: RegistryFile<State>,
}

fn key_of(tenant: Option<&str>, name: &str, version: &str) -> String {
    match tenant {
        Some(t) => format!("{t}/{name}@{version}"),
        None => format!("{name}@{version}"),
    }
}

impl ModuleNames {
    /// The table of a data dir (empty if it has no file yet). A file that
    /// does not parse stops the start rather than lose names.
    pub fn open(data_dir: &Path) -> Result<ModuleNames, NameError> {
        let file = RegistryFile::open(data_dir.join(FILE)).map_err(|e| match e {
            OpenError::Invalid(why) => NameError::Invalid(why),
            OpenError::Io(e) => NameError::Io(e),
        })?;
        Ok(ModuleNames { file })
    }

    /// A table kept in memory only (tests).
    pub fn in_memory() -> ModuleNames {
        ModuleNames {
            file: RegistryFile::in_memory(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.file.read()
    }

    fn change(&self, f: impl FnOnce(&mut State) -> Result<(), NameError>) -> Result<(), NameError> {
        self.file.change(f)
    }

    /// Refuses a name that already names other bytes (checked before an
    /// upload compiles; [`ModuleNames::name`] checks again).
    pub fn check(
        &self,
        tenant: Option<&str>,
        name: &str,
        version: &str,
        hash: &ModuleHash,
    ) -> Result<(), NameError> {
        check_module_name(name).map_err(NameError::Invalid)?;
        check_module_version(version).map_err(NameError::Invalid)?;
        let key = key_of(tenant, name, version);
        match self.read().records.get(&key) {
            Some(r) if !r.removed && r.hash != *hash => Err(NameError::Duplicate(format!(
                "module {name}@{version} is module {} already; a version names one module (upload these bytes as another version)",
                r.hash
            ))),
            _ => Ok(()),
        }
    }

    /// Names module `hash` `name@version` for `tenant` (the admin for
    /// `None`). The same name for the same bytes again is fine; for other
    /// bytes it is refused.
    pub fn name(
        &self,
        tenant: Option<&str>,
        name: &str,
        version: &str,
        hash: ModuleHash,
        now: UnixMs,
    ) -> Result<(), NameError> {
        self.check(tenant, name, version, &hash)?;
        let key = key_of(tenant, name, version);
        self.change(|st| {
            let rev = match st.records.get(&key) {
                Some(r) if !r.removed => return Ok(()),
                Some(r) => now.max(r.rev.saturating_add(1)),
                None if st.records.len() >= MAX_NAMES => {
                    return Err(NameError::Invalid(format!(
                        "the cluster holds {MAX_NAMES} module names (removed ones count): no more"
                    )));
                }
                None => now.max(1),
            };
            st.records.insert(
                key.clone(),
                NameRecord {
                    key: key.clone(),
                    tenant: tenant.map(str::to_string),
                    name: name.to_string(),
                    version: version.to_string(),
                    hash,
                    created_ms: now,
                    rev,
                    removed: false,
                },
            );
            Ok(())
        })
    }

    /// The module `spec` names for `tenant`: `NAME@VERSION`, or `NAME` for
    /// its latest version.
    pub fn resolve(&self, tenant: Option<&str>, spec: &str) -> Result<ModuleHash, NameError> {
        let (name, version) = match spec.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (spec, None),
        };
        check_module_name(name).map_err(NameError::Invalid)?;
        if let Some(v) = version {
            check_module_version(v).map_err(NameError::Invalid)?;
        }
        let st = self.read();
        let prefix = key_of(tenant, name, "");
        let versions: Vec<&NameRecord> = st
            .records
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, r)| r)
            .filter(|r| !r.removed && r.name == name && r.tenant.as_deref() == tenant)
            .collect();
        let found = match version {
            Some(v) => versions.iter().find(|r| r.version == v).copied(),
            None => versions
                .iter()
                .copied()
                .max_by(|a, b| compare_versions(&a.version, &b.version)),
        };
        if let Some(r) = found {
            return Ok(r.hash);
        }
        let mut known: Vec<&str> = versions.iter().map(|r| r.version.as_str()).collect();
        known.sort_by(|a, b| compare_versions(a, b));
        Err(NameError::Unknown(if known.is_empty() {
            format!("no module named {name} (name one: MODULE PUT bytes NAME {name} VERSION v)")
        } else {
            format!(
                "no version {} of module {name}; it has {}",
                version.unwrap_or(""),
                known.join(", ")
            )
        }))
    }

    /// The names of every module as `scope` sees them: a tenant its own
    /// (`NAME@VERSION`), the admin every one (a tenant's as
    /// `TENANT/NAME@VERSION`); each module's in version order.
    pub fn names_by_hash(&self, scope: Option<&str>) -> HashMap<ModuleHash, Vec<String>> {
        let st = self.read();
        let mut by: HashMap<ModuleHash, Vec<&NameRecord>> = HashMap::new();
        for r in st.records.values().filter(|r| !r.removed) {
            if scope.is_some() && r.tenant.as_deref() != scope {
                continue;
            }
            by.entry(r.hash).or_default().push(r);
        }
        by.into_iter()
            .map(|(h, mut rs)| {
                rs.sort_by(|a, b| {
                    (a.tenant.as_deref(), &a.name)
                        .cmp(&(b.tenant.as_deref(), &b.name))
                        .then_with(|| compare_versions(&a.version, &b.version))
                });
                let labels = rs
                    .into_iter()
                    .map(|r| match (&r.tenant, scope) {
                        (Some(t), None) => format!("{t}/{}", r.label()),
                        _ => r.label(),
                    })
                    .collect();
                (h, labels)
            })
            .collect()
    }

    /// A module was removed: its names go (a tenant's removal takes its
    /// own names only, the admin's every name of the module).
    pub fn drop_module(&self, hash: &ModuleHash, tenant: Option<&str>, now: UnixMs) {
        let _ = self.change(|st| {
            for r in st.records.values_mut() {
                if r.hash == *hash
                    && !r.removed
                    && (tenant.is_none() || r.tenant.as_deref() == tenant)
                {
                    r.removed = true;
                    r.rev = now.max(r.rev.saturating_add(1));
                }
            }
            Ok(())
        });
    }

    // ---- replication ---------------------------------------------------

    /// A short fingerprint of every record: peers compare theirs in
    /// adverts and send records when they differ.
    pub fn digest(&self) -> u64 {
        let st = self.read();
        if st.records.is_empty() {
            return 0;
        }
        let mut h = Sha256::new();
        for r in st.records.values() {
            h.update(r.key.as_bytes());
            h.update([0, r.removed as u8]);
            h.update(r.rev.to_le_bytes());
            h.update(r.hash.0);
        }
        digest64(h)
    }

    /// Every record (tombstones included), for a peer.
    pub fn records(&self) -> Vec<NameRecord> {
        self.read().records.values().cloned().collect()
    }

    /// Takes a peer's records (see [`NameRecord::beats`]). Records this
    /// node could not have made (a key that is not the tenant-prefixed
    /// name and version, a bad name) are ignored, and new keys past
    /// [`MAX_NAMES`]. Returns the keys that changed, for the log.
    pub fn merge(&self, records: Vec<NameRecord>) -> Vec<String> {
        let mut changed = Vec::new();
        let _ = self.change(|st| {
            for r in records {
                if !valid_record(&r) {
                    continue;
                }
                let room = st.records.len() < MAX_NAMES;
                match st.records.get_mut(&r.key) {
                    Some(mine) if r.beats(mine) => {
                        changed.push(r.key.clone());
                        *mine = r;
                    }
                    Some(_) => {}
                    None if room => {
                        changed.push(r.key.clone());
                        st.records.insert(r.key.clone(), r);
                    }
                    None => {}
                }
            }
            Ok(())
        });
        changed
    }
}

fn valid_record(r: &NameRecord) -> bool {
    check_module_name(&r.name).is_ok()
        && check_module_version(&r.version).is_ok()
        && r.tenant
            .as_deref()
            .is_none_or(|t| crate::tenant::valid_name(t).is_ok())
        && r.key == key_of(r.tenant.as_deref(), &r.name, &r.version)
}

// ---- the file ------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct File {
    names: Vec<NameRecord>,
}

impl Document for State {
    type File = File;
    const FORMAT: u32 = NAMES_FORMAT;
    const IF_DAMAGED: &'static str = "move it aside to start without module names";

    fn to_file(&self) -> File {
        File {
            names: self.records.values().cloned().collect(),
        }
    }

    fn from_file(file: File) -> Result<State, String> {
        let mut st = State::default();
        for r in file.names {
            st.records.insert(r.key.clone(), r);
        }
        Ok(st)
    }

    fn unchanged(&self, before: &State) -> bool {
        self.records == before.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> ModuleHash {
        ModuleHash::of(s.as_bytes())
    }

    #[test]
    fn names_resolve_by_version_and_latest_and_refuse_other_bytes() {
        let n = ModuleNames::in_memory();
        n.name(None, "resize", "1.2", h("a"), 10).unwrap();
        n.name(None, "resize", "1.10", h("b"), 11).unwrap();
        n.name(None, "resize", "1.9", h("c"), 12).unwrap();
        // Same bytes again: fine; other bytes: refused, naming the first.
        n.name(None, "resize", "1.2", h("a"), 13).unwrap();
        let e = n.name(None, "resize", "1.2", h("z"), 14).unwrap_err();
        assert!(matches!(e, NameError::Duplicate(ref m) if m.contains(&h("a").to_string())));
        assert_eq!(n.resolve(None, "resize@1.2").unwrap(), h("a"));
        // Latest: 1.10 is after 1.9 (numbers compare as numbers).
        assert_eq!(n.resolve(None, "resize").unwrap(), h("b"));
        let e = n.resolve(None, "resize@2.0").unwrap_err().to_string();
        assert!(e.contains("1.2, 1.9, 1.10"), "{e}");
        let e = n.resolve(None, "crop").unwrap_err().to_string();
        assert!(e.contains("no module named crop"), "{e}");
        assert!(matches!(
            n.resolve(None, "bad name"),
            Err(NameError::Invalid(_))
        ));
        // A tenant's names are its own.
        n.name(Some("alice"), "resize", "9", h("t"), 15).unwrap();
        assert_eq!(n.resolve(Some("alice"), "resize").unwrap(), h("t"));
        assert_eq!(n.resolve(None, "resize").unwrap(), h("b"));
        assert!(n.resolve(Some("bob"), "resize").is_err());
        assert_eq!(n.names_by_hash(Some("alice"))[&h("t")], vec!["resize@9"]);
        assert_eq!(n.names_by_hash(None)[&h("t")], vec!["alice/resize@9"]);
        assert!(!n.names_by_hash(Some("alice")).contains_key(&h("a")));
        // Removing a module removes its names, and the latest moves back.
        n.drop_module(&h("b"), None, 20);
        assert_eq!(n.resolve(None, "resize").unwrap(), h("c"));
        // The name may then name other bytes.
        n.name(None, "resize", "1.10", h("d"), 21).unwrap();
        assert_eq!(n.resolve(None, "resize@1.10").unwrap(), h("d"));
    }

    #[test]
    fn merge_takes_the_higher_rev_and_settles_a_clash_alike_everywhere() {
        let a = ModuleNames::in_memory();
        let b = ModuleNames::in_memory();
        a.name(None, "x", "1", h("a"), 100).unwrap();
        // The same name made on two nodes that had not met, for other bytes.
        b.name(None, "x", "1", h("b"), 100).unwrap();
        b.name(None, "y", "1", h("y"), 100).unwrap();
        a.merge(b.records());
        b.merge(a.records());
        assert_eq!(a.digest(), b.digest());
        assert_eq!(
            a.resolve(None, "x@1").unwrap(),
            b.resolve(None, "x@1").unwrap()
        );
        assert_eq!(a.resolve(None, "y").unwrap(), h("y"));
        // A removal travels as a tombstone.
        a.drop_module(&h("y"), None, 200);
        b.merge(a.records());
        assert!(b.resolve(None, "y").is_err());
        assert_eq!(a.digest(), b.digest());
        // A record a node could not have made is ignored.
        let mut forged = a.records()[0].clone();
        forged.key = "other@1".into();
        assert!(b.merge(vec![forged]).is_empty());
    }

    #[test]
    fn the_table_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let n = ModuleNames::open(dir.path()).unwrap();
        n.name(Some("alice"), "resize", "1.2", h("a"), 10).unwrap();
        let again = ModuleNames::open(dir.path()).unwrap();
        assert_eq!(again.resolve(Some("alice"), "resize@1.2").unwrap(), h("a"));
        std::fs::write(dir.path().join(FILE), b"{").unwrap();
        assert!(ModuleNames::open(dir.path()).is_err());
    }
}
