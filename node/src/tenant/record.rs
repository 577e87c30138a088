//! What the cluster knows of one tenant: its name, its tokens (as digests),
//! its quotas and the modules it uploaded. Records are replicated whole
//! and merged by version (`registry.rs`), so every field a node needs to
//! authenticate and limit the tenant is here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job::{ModuleHash, UnixMs};

/// A tenant's name: 1 to 32 of `a-z 0-9 _ -`, starting with a letter or
/// digit. Short and plain because it prefixes the tenant's queue names
/// (`name/queue`) and labels metrics.
pub fn valid_name(name: &str) -> Result<(), String> {
    let ok_len = (1..=32).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    let ok_first = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !(ok_len && ok_chars && ok_first) {
        return Err(format!(
            "tenant name {:?} is not valid: 1 to 32 of a-z, 0-9, '_' and '-', starting with a letter or digit",
            name.chars().take(40).collect::<String>()
        ));
    }
    if ["default", "admin"].contains(&name) {
        return Err(format!(
            "tenant name {name:?} is reserved for the node's password"
        ));
    }
    Ok(())
}

/// One token of a tenant. The secret itself is shown once, when made;
/// the node keeps its SHA-256 digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Names the token for `tenant token NAME revoke ID` (not secret).
    pub id: String,
    pub digest: [u8; 32],
    pub created_ms: UnixMs,
}

/// A tenant's limits on one node. `None` is no limit beyond the node's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    /// Jobs the tenant may hold on a node at once (any state).
    pub max_jobs: Option<u64>,
    /// Bytes of modules the tenant may own (each module it uploaded once).
    pub max_module_bytes: Option<u64>,
    /// Most fuel one job may ask for (also caps the node default).
    pub max_fuel: Option<u64>,
    /// Most memory one job may ask for (also caps the node default).
    pub max_memory_bytes: Option<u64>,
    /// Jobs added per second (a token bucket with one second of burst).
    pub jobs_per_sec: Option<u64>,
    /// Share of executor time against other tenants with work (1..=1000).
    pub weight: u32,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            max_jobs: None,
            max_module_bytes: None,
            max_fuel: None,
            max_memory_bytes: None,
            jobs_per_sec: None,
            weight: 1,
        }
    }
}

/// The quota names as commands and errors spell them.
pub const QUOTA_NAMES: &[&str] = &[
    "max-jobs",
    "max-module-bytes",
    "max-fuel",
    "max-memory",
    "jobs-per-sec",
    "weight",
];

impl Quotas {
    /// Sets one quota by its name; `none` (or 0 for limits) removes it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        let limit = || -> Result<Option<u64>, String> {
            if v.eq_ignore_ascii_case("none") {
                return Ok(None);
            }
            let n = parse_amount(v).ok_or_else(|| {
                format!("quota {name}: {value:?} is not a number (or 'none'); sizes take k, m, g")
            })?;
            Ok((n > 0).then_some(n))
        };
        match name.to_ascii_lowercase().as_str() {
            "max-jobs" => self.max_jobs = limit()?,
            "max-module-bytes" => self.max_module_bytes = limit()?,
            "max-fuel" => self.max_fuel = limit()?,
            "max-memory" => self.max_memory_bytes = limit()?,
            "jobs-per-sec" => self.jobs_per_sec = limit()?,
            "weight" => {
                let w: u32 = v
                    .parse()
                    .ok()
                    .filter(|w| (1..=1000).contains(w))
                    .ok_or_else(|| format!("weight {value:?}: a whole number from 1 to 1000"))?;
                self.weight = w;
            }
            other => {
                return Err(format!(
                    "unknown quota {:?}; quotas: {}",
                    other.chars().take(40).collect::<String>(),
                    QUOTA_NAMES.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// `(name, value)` of each quota, `none` where unset.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let show = |v: Option<u64>| v.map_or("none".to_string(), |n| n.to_string());
        vec![
            ("max-jobs", show(self.max_jobs)),
            ("max-module-bytes", show(self.max_module_bytes)),
            ("max-fuel", show(self.max_fuel)),
            ("max-memory", show(self.max_memory_bytes)),
            ("jobs-per-sec", show(self.jobs_per_sec)),
            ("weight", self.weight.to_string()),
        ]
    }
}

/// `123`, `64k`, `16m`, `2g` (powers of 1024 for the suffixes).
fn parse_amount(s: &str) -> Option<u64> {
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// One tenant as stored and replicated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub name: String,
    pub tokens: Vec<Token>,
    pub quotas: Quotas,
    /// Modules the tenant uploaded, with their sizes (its module quota).
    pub modules: BTreeMap<ModuleHash, u64>,
    /// Grows at every change (at least the unix ms of the change): the
    /// higher version wins when two nodes' records differ.
    pub version: u64,
    /// Removed: kept as a tombstone so the removal wins over older copies.
    pub removed: bool,
}

impl TenantRecord {
    /// Which of two copies of a record wins: the higher version, and for
    /// equal versions (two nodes changed it in the same millisecond) the
    /// larger encoding, so every node picks the same one.
    pub fn wins_over(&self, other: &TenantRecord) -> bool {
        match self.version.cmp(&other.version) {
            std::cmp::Ordering::Equal => {
                postcard::to_allocvec(self).unwrap_or_default()
                    > postcard::to_allocvec(other).unwrap_or_default()
            }
            o => o.is_gt(),
        }
    }

    /// Bytes of modules the tenant owns.
    pub fn module_bytes(&self) -> u64 {
        self.modules.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_and_short() {
        assert!(valid_name("alice").is_ok());
        assert!(valid_name("team-7_b").is_ok());
        for bad in [
            "",
            "Alice",
            "a/b",
            "a:b",
            "-a",
            "admin",
            "default",
            &"x".repeat(33),
        ] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quotas_parse_with_units_and_none() {
        let mut q = Quotas::default();
        q.set("max-memory", "16m").unwrap();
        assert_eq!(q.max_memory_bytes, Some(16 << 20));
        q.set("max-jobs", "100").unwrap();
        q.set("max-jobs", "none").unwrap();
        assert_eq!(q.max_jobs, None);
        q.set("weight", "10").unwrap();
        assert_eq!(q.weight, 10);
        assert!(q.set("weight", "0").is_err());
        assert!(q.set("max-fuel", "lots").is_err());
        assert!(q.set("nope", "1").unwrap_err().contains("max-jobs"));
        assert!(q.set("max-fuel", "99999999999g").is_err());
    }

    #[test]
    fn the_higher_version_wins_and_ties_pick_the_same_side() {
        let a = TenantRecord {
            name: "a".into(),
            tokens: vec![],
            quotas: Quotas::default(),
            modules: BTreeMap::new(),
            version: 5,
            removed: false,
        };
        let mut b = a.clone();
        b.version = 6;
        assert!(b.wins_over(&a) && !a.wins_over(&b));
        let mut c = a.clone();
        c.removed = true;
        assert!(c.wins_over(&a) != a.wins_over(&c));
    }
}
