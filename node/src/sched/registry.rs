//! The node's schedule registry: every record, kept in
//! `DATA_DIR/schedules.json` (see `registry_file.rs`), merged with peers' copies (a digest in each advert, the
//! records in a `Schedules` frame when digests differ), and read by the
//! doors and the ticker (`ticker.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasque_sdk::proto::{JobId, ScheduleSpec};

use super::cron::Cron;
use super::record::ScheduleRecord;
use crate::job::UnixMs;
use crate::registry_file::{Document, OpenError, RegistryFile, digest64};

/// The file's name in the data dir.
pub const FILE: &str = "schedules.json";

/// The version of the file's format (and of a record's layout: peers
/// exchange records under the peer protocol's version).
pub const SCHEDULE_FORMAT: u32 = 1;

/// Most schedules (removed ones included) a registry takes: a bound on
/// what a client, or a peer, can make a node keep and send.
pub const MAX_SCHEDULES: usize = 10_000;

/// Why a registry change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Invalid(String),
    #[error("schedule {0} already exists; remove it first (SCHEDULE DEL {0})")]
    Exists(String),
    #[error("no schedule {0}")]
    Missing(String),
    #[error("saving the schedule registry: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone, Debug, Default)]
struct State {
    records: BTreeMap<String, ScheduleRecord>,
    /// The last add this node's ticker saw refused, per key (node-local:
    /// neither stored nor sent).
    errors: HashMap<String, (UnixMs, String)>,
}

/// The registry. Cheap to read from every door and the ticker.
#[derive(Debug, Default)]
pub struct Schedules {
    file: RegistryFile<State>,
}

impl Schedules {
    /// The registry of a data dir (empty if it has no file yet). A file
    /// that does not parse stops the start rather than lose schedules.
    pub fn open(data_dir: &Path) -> Result<Schedules, ScheduleError> {
        let file = RegistryFile::open(data_dir.join(FILE)).map_err(|e| match e {
            OpenError::Invalid(why) => ScheduleError::Invalid(why),
            OpenError::Io(e) => ScheduleError::Io(e),
        })?;
        Ok(Schedules { file })
    }

    /// A registry kept in memory only (tests).
    pub fn in_memory() -> Schedules {
        Schedules {
            file: RegistryFile::in_memory(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.file.read()
    }

    fn change(
        &self,
        f: impl FnOnce(&mut State) -> Result<(), ScheduleError>,
    ) -> Result<(), ScheduleError> {
        self.file.change(f)
    }

    /// Makes a schedule under `key` (the name, `TENANT/`-prefixed for a
    /// tenant's). The expression must parse; a live schedule of that key
    /// is refused.
    pub fn add(
        &self,
        key: &str,
        tenant: Option<&str>,
        spec: ScheduleSpec,
        now: UnixMs,
    ) -> Result<(), ScheduleError> {
        Cron::parse(&spec.cron).map_err(ScheduleError::Invalid)?;
        self.change(|st| {
            let version = match st.records.get(key) {
                Some(r) if !r.removed => return Err(ScheduleError::Exists(key.into())),
                Some(r) => next_version(r.version, now),
                None if st.records.len() >= MAX_SCHEDULES => {
                    return Err(ScheduleError::Invalid(format!(
                        "the cluster holds {MAX_SCHEDULES} schedules (removed ones count): no more"
                    )));
                }
                None => now.max(1),
            };
            st.records.insert(
                key.into(),
                ScheduleRecord {
                    key: key.into(),
                    tenant: tenant.map(str::to_string),
                    spec,
                    created_ms: now,
                    version,
                    removed: false,
                    settled: now,
                    fired: BTreeMap::new(),
                },
            );
            st.errors.remove(key);
            Ok(())
        })
    }

    /// Removes a schedule: a tombstone with a higher version, which peers
    /// take over their live copy.
    pub fn remove(&self, key: &str, now: UnixMs) -> Result<(), ScheduleError> {
        self.change(|st| {
            let r = st
                .records
                .get_mut(key)
                .filter(|r| !r.removed)
                .ok_or_else(|| ScheduleError::Missing(key.into()))?;
            r.removed = true;
            r.version = next_version(r.version, now);
            r.fired.clear();
            st.errors.remove(key);
            Ok(())
        })
    }

    /// A live schedule's record.
    pub fn get(&self, key: &str) -> Option<ScheduleRecord> {
        self.read().records.get(key).filter(|r| !r.removed).cloned()
    }

    /// Live schedules whose key starts with `prefix` (every one for "").
    pub fn live(&self, prefix: &str) -> Vec<ScheduleRecord> {
        self.read()
            .records
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, r)| !r.removed)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// The last add refused to this node's ticker for a schedule.
    pub fn last_error(&self, key: &str) -> Option<(UnixMs, String)> {
        self.read().errors.get(key).cloned()
    }

    /// Notes an add refused to this node's ticker (not stored, not sent).
    pub fn note_error(&self, key: &str, tick: UnixMs, error: String) {
        self.file
            .write_local()
            .errors
            .insert(key.to_string(), (tick, error));
    }

    /// Notes a tick fired (its job added, or found by its idempotency
    /// key). `created_ms` names the incarnation of the schedule the fire
    /// was for: a schedule removed and made again meanwhile is not
    /// touched.
    pub fn note_fired(
        &self,
        key: &str,
        created_ms: UnixMs,
        tick: UnixMs,
        job: JobId,
    ) -> Result<(), ScheduleError> {
        self.change(|st| {
            if let Some(r) = st
                .records
                .get_mut(key)
                .filter(|r| !r.removed && r.created_ms == created_ms)
            {
                let mut other = r.clone();
                other.fired.insert(tick, job);
                r.merge(&other);
            }
            Ok(())
        })
    }

    /// Every tick of a schedule at or below `to` is dealt with.
    pub fn settle(&self, key: &str, created_ms: UnixMs, to: UnixMs) -> Result<(), ScheduleError> {
        if !self
            .read()
            .records
            .get(key)
            .is_some_and(|r| !r.removed && r.created_ms == created_ms && r.settled < to)
        {
            return Ok(());
        }
        self.change(|st| {
            if let Some(r) = st.records.get_mut(key) {
                r.settled = r.settled.max(to);
                r.trim();
            }
            Ok(())
        })
    }

    // ---- replication ---------------------------------------------------

    /// A short fingerprint of every record (versions, ticks, settled):
    /// peers compare theirs in adverts and send records when they differ.
    pub fn digest(&self) -> u64 {
        let st = self.read();
        if st.records.is_empty() {
            return 0;
        }
        let mut h = Sha256::new();
        for r in st.records.values() {
            h.update(r.key.as_bytes());
            h.update([0, r.removed as u8]);
            h.update(r.version.to_le_bytes());
            h.update(r.settled.to_le_bytes());
            for (t, id) in &r.fired {
                h.update(t.to_le_bytes());
                h.update(id.0.as_bytes());
            }
        }
        digest64(h)
    }

    /// Every record (tombstones included), for a peer.
    pub fn records(&self) -> Vec<ScheduleRecord> {
        self.read().records.values().cloned().collect()
    }

    /// Takes a peer's records (see [`ScheduleRecord::merge`]). Records
    /// that could not have been made here (a bad key or expression) are
    /// ignored, and new keys past [`MAX_SCHEDULES`]. Returns the keys
    /// whose spec changed (made or removed), for the log.
    pub fn merge(&self, records: Vec<ScheduleRecord>) -> Vec<String> {
        let mut changed = Vec::new();
        let _ = self.change(|st| {
            for mut r in records {
                if !valid_record(&r) {
                    continue;
                }
                r.trim();
                let room = st.records.len() < MAX_SCHEDULES;
                match st.records.get_mut(&r.key) {
                    Some(mine) => {
                        let (version, removed) = (mine.version, mine.removed);
                        if mine.merge(&r) && (mine.version != version || mine.removed != removed) {
                            changed.push(r.key.clone());
                        }
                    }
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

fn next_version(prev: u64, now: UnixMs) -> u64 {
    now.max(prev.saturating_add(1))
}

/// Whether a peer's record is one this node could have made: its key is
/// its (tenant-prefixed) name, and a live one's expression parses.
fn valid_record(r: &ScheduleRecord) -> bool {
    let key_ok = match &r.tenant {
        None => r.key == r.spec.name,
        Some(t) => r.key == format!("{t}/{}", r.spec.name) && crate::tenant::valid_name(t).is_ok(),
    };
    key_ok
        && wasque_sdk::proto::check_schedule_name(&r.spec.name).is_ok()
        && (r.removed || Cron::parse(&r.spec.cron).is_ok())
}

// ---- the file ------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct File {
    schedules: Vec<ScheduleRecord>,
}

impl Document for State {
    type File = File;
    const FORMAT: u32 = SCHEDULE_FORMAT;
    const IF_DAMAGED: &'static str = "move it aside to start without schedules";

    fn to_file(&self) -> File {
        File {
            schedules: self.records.values().cloned().collect(),
        }
    }

    fn from_file(file: File) -> Result<State, String> {
        let mut st = State::default();
        for r in file.schedules {
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
    use wasque_sdk::proto::{JobTemplate, Missed};

    fn spec(name: &str) -> ScheduleSpec {
        let mut s = ScheduleSpec::new(name, "*/5 * * * *", JobTemplate::new("q", "body"));
        s.missed = Missed::RunOnce;
        s
    }

    fn id(n: u128) -> JobId {
        JobId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn add_refuses_a_live_name_and_a_bad_expression_and_remove_is_a_tombstone() {
        let s = Schedules::in_memory();
        s.add("a", None, spec("a"), 1000).unwrap();
        assert!(matches!(
            s.add("a", None, spec("a"), 1001),
            Err(ScheduleError::Exists(_))
        ));
        let mut bad = spec("b");
        bad.cron = "* * *".into();
        assert!(matches!(
            s.add("b", None, bad, 1001),
            Err(ScheduleError::Invalid(_))
        ));
        s.remove("a", 1002).unwrap();
        assert!(s.get("a").is_none());
        assert!(matches!(
            s.remove("a", 1003),
            Err(ScheduleError::Missing(_))
        ));
        // Made again: a new incarnation with a higher version.
        s.add("a", None, spec("a"), 1004).unwrap();
        assert!(s.records()[0].version > 1002);
    }

    #[test]
    fn the_file_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Schedules::open(dir.path()).unwrap();
        s.add("alice/n", Some("alice"), spec("n"), 1000).unwrap();
        s.note_fired("alice/n", 1000, 300_000, id(7)).unwrap();
        s.settle("alice/n", 1000, 300_000).unwrap();
        drop(s);
        let s = Schedules::open(dir.path()).unwrap();
        let r = s.get("alice/n").unwrap();
        assert_eq!(r.spec, spec("n"));
        assert_eq!(r.tenant.as_deref(), Some("alice"));
        assert_eq!(r.last(), Some((300_000, id(7))));
        assert_eq!(r.settled, 300_000);
        // A fire for an older incarnation is not noted.
        s.note_fired("alice/n", 999, 600_000, id(8)).unwrap();
        assert_eq!(s.get("alice/n").unwrap().fired.len(), 1);
        std::fs::write(dir.path().join(FILE), b"{").unwrap();
        assert!(Schedules::open(dir.path()).is_err());
    }

    #[test]
    fn merging_converges_whatever_the_order_and_drops_bad_records() {
        let (x, y) = (Schedules::in_memory(), Schedules::in_memory());
        x.add("a", None, spec("a"), 100).unwrap();
        y.add("b", None, spec("b"), 100).unwrap();
        y.merge(x.records());
        x.note_fired("a", 100, 300_000, id(1)).unwrap();
        y.note_fired("a", 100, 600_000, id(2)).unwrap();
        x.merge(y.records());
        y.merge(x.records());
        assert_eq!(x.digest(), y.digest());
        assert_eq!(x.get("a").unwrap().fired.len(), 2);
        x.remove("a", 200).unwrap();
        y.merge(x.records());
        assert!(y.get("a").is_none(), "the removal wins");
        assert_eq!(x.digest(), y.digest());

        let mut forged = x.records()[1].clone();
        forged.key = "other".into();
        let mut bad_cron = spec("c");
        bad_cron.cron = "nope".into();
        let mut r = forged.clone();
        r.key = "c".into();
        r.spec = bad_cron;
        assert!(y.merge(vec![forged, r]).is_empty());
        assert!(y.get("other").is_none() && y.get("c").is_none());
    }
}
