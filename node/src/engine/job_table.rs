//! The jobs a node holds, by id. A hash table of boxed jobs keyed by the
//! id inside each job, so the id is not stored a second time as a key:
//! with a million jobs (and the table's slack) that is about 30 bytes a
//! job less than a map from id to job. Hashed with foldhash (randomly
//! seeded, several times faster than SipHash on 16 bytes): ids are made
//! by this node or its peers, never chosen by clients.
//!
//! It also counts the jobs of each tenant (by the prefix of their queue
//! name, `tenant/queue`), kept right as jobs come and go, for the
//! tenants' job quota and metrics, and indexes the jobs added with an
//! idempotency key by the key's digest (`engine/idem.rs`), also kept right
//! as jobs come and go, whatever path they take.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::job::{Job, JobId, KeyDigest};

#[derive(Debug, Default)]
pub struct JobTable {
    table: HashTable<Box<Job>>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Jobs held per tenant prefix; queues without `/` are not counted.
    per_tenant: hashbrown::HashMap<Box<str>, u64>,
    /// Jobs held that were added with an idempotency key, by its digest
    /// in their queue. Two jobs with one key (added on two nodes cut off
    /// from each other, then meeting as holders) keep the lower id, which
    /// is the older one: every node that holds both answers the same.
    keys: hashbrown::HashMap<KeyDigest, JobId>,
}

impl JobTable {
    fn hash(&self, id: &JobId) -> u64 {
        self.hasher.hash_one(id)
    }

    pub fn get(&self, id: &JobId) -> Option<&Job> {
        self.table
            .find(self.hash(id), |j| j.id == *id)
            .map(|j| &**j)
    }

    pub fn get_mut(&mut self, id: &JobId) -> Option<&mut Job> {
        let h = self.hash(id);
        self.table.find_mut(h, |j| j.id == *id).map(|j| &mut **j)
    }

    pub fn contains_key(&self, id: &JobId) -> bool {
        self.get(id).is_some()
    }

    /// Keeps `job` under its id, returning the job it replaces.
    pub fn insert(&mut self, job: Box<Job>) -> Option<Box<Job>> {
        self.count(&job.queue, true);
        let id = job.id;
        let digest = job.key_digest();
        let h = self.hash(&id);
        let hasher = &self.hasher;
        match self
            .table
            .entry(h, |j| j.id == id, |j| hasher.hash_one(j.id))
        {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                let old = std::mem::replace(e.get_mut(), job);
                self.count(&old.queue, false);
                let old_digest = old.key_digest();
                if old_digest != digest {
                    self.unindex(old_digest, id);
                }
                self.index(digest, id);
                Some(old)
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(job);
                self.index(digest, id);
                None
            }
        }
    }

    fn index(&mut self, digest: Option<KeyDigest>, id: JobId) {
        if let Some(d) = digest {
            let held = self.keys.entry(d).or_insert(id);
            if id < *held {
                *held = id;
            }
        }
    }

    fn unindex(&mut self, digest: Option<KeyDigest>, id: JobId) {
        if let Some(d) = digest
            && self.keys.get(&d) == Some(&id)
        {
            self.keys.remove(&d);
        }
    }

    /// The job held for an idempotency key's digest, if any.
    pub fn by_key(&self, digest: &KeyDigest) -> Option<JobId> {
        self.keys
            .get(digest)
            .copied()
            .filter(|id| self.contains_key(id))
    }

    /// Jobs held that carry an idempotency key.
    pub fn keyed(&self) -> usize {
        self.keys.len()
    }

    pub fn remove(&mut self, id: &JobId) -> Option<Box<Job>> {
        let h = self.hash(id);
        match self.table.find_entry(h, |j| j.id == *id) {
            Ok(e) => {
                let job = e.remove().0;
                self.count(&job.queue, false);
                self.unindex(job.key_digest(), job.id);
                Some(job)
            }
            Err(_) => None,
        }
    }

    fn count(&mut self, queue: &str, add: bool) {
        let Some(t) = crate::tenant::tenant_of_queue(queue) else {
            return;
        };
        if add {
            match self.per_tenant.get_mut(t) {
                Some(n) => *n += 1,
                None => {
                    self.per_tenant.insert(t.into(), 1);
                }
            }
        } else if let Some(n) = self.per_tenant.get_mut(t) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_tenant.remove(t);
            }
        }
    }

    /// Jobs held whose queue is under `tenant/`.
    pub fn tenant_jobs(&self, tenant: &str) -> u64 {
        self.per_tenant.get(tenant).copied().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn reserve(&mut self, n: usize) {
        let hasher = &self.hasher;
        self.table.reserve(n, |j| hasher.hash_one(j.id));
    }

    /// Every job, unordered.
    pub fn values(&self) -> impl Iterator<Item = &Job> {
        self.table.iter().map(|j| &**j)
    }

    /// Every id, unordered.
    pub fn keys(&self) -> impl Iterator<Item = &JobId> {
        self.table.iter().map(|j| &j.id)
    }

    /// Every (id, job), unordered.
    pub fn iter(&self) -> impl Iterator<Item = (&JobId, &Job)> {
        self.table.iter().map(|j| (&j.id, &**j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::sample_job;

    #[test]
    fn jobs_are_found_replaced_and_removed_by_id() {
        let mut t = JobTable::default();
        for ms in 0..1000 {
            let j = sample_job(1_700_000_000_000 + ms, b"x");
            assert!(t.insert(Box::new(j)).is_none());
        }
        assert_eq!(t.len(), 1000);
        let j = sample_job(1_700_000_000_500, b"new body");
        let old = t.insert(Box::new(j.clone())).expect("replaced");
        assert_eq!(&old.body[..], b"x");
        assert_eq!(&t.get(&j.id).expect("there").body[..], b"new body");
        assert_eq!(t.len(), 1000);
        assert!(t.remove(&j.id).is_some());
        assert!(t.remove(&j.id).is_none());
        assert!(!t.contains_key(&j.id));
        assert_eq!(t.keys().count(), 999);
    }

    #[test]
    fn keyed_jobs_are_indexed_by_key_and_the_lower_id_wins() {
        let mut t = JobTable::default();
        let keyed = |ms: u64, key: &str| {
            let mut j = sample_job(1_700_000_000_000 + ms, b"x");
            j.extra_mut().idempotency_key = Some(key.into());
            j
        };
        let (a, b) = (keyed(2, "k"), keyed(1, "k"));
        let d = a.key_digest().expect("keyed");
        t.insert(Box::new(a.clone()));
        assert_eq!(t.by_key(&d), Some(a.id));
        // An older job with the same key (a copy from a peer) wins.
        t.insert(Box::new(b.clone()));
        assert_eq!(t.by_key(&d), Some(b.id));
        // Removing the loser keeps the winner; removing the winner drops it.
        t.remove(&a.id);
        assert_eq!(t.by_key(&d), Some(b.id));
        t.remove(&b.id);
        assert_eq!(t.by_key(&d), None);
        // The same key in another queue is another digest.
        let mut c = keyed(3, "k");
        c.queue = "other".into();
        assert_ne!(c.key_digest(), Some(d));
        // A replacement without the key (an acked stub) unindexes it.
        t.insert(Box::new(keyed(4, "k2")));
        let e = keyed(4, "k2");
        let d2 = e.key_digest().expect("keyed");
        assert_eq!(t.by_key(&d2), Some(e.id));
        let mut stub = e.clone();
        stub.extra = None;
        t.insert(Box::new(stub));
        assert_eq!(t.by_key(&d2), None);
        assert_eq!(t.keyed(), 0);
    }
}
