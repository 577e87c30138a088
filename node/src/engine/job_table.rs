//! The jobs a node holds, by id. A hash table of boxed jobs keyed by the
//! id inside each job, so the id is not stored a second time as a key:
//! with a million jobs (and the table's slack) that is about 30 bytes a
//! job less than a map from id to job. Hashed with foldhash (randomly
//! seeded, several times faster than SipHash on 16 bytes): ids are made
//! by this node or its peers, never chosen by clients.
//!
//! It also counts the jobs of each tenant (by the prefix of their queue
//! name, `tenant/queue`), kept right as jobs come and go, for the
//! tenants' job quota and metrics.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::job::{Job, JobId};

#[derive(Debug, Default)]
pub struct JobTable {
    table: HashTable<Box<Job>>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Jobs held per tenant prefix; queues without `/` are not counted.
    per_tenant: hashbrown::HashMap<Box<str>, u64>,
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
        let h = self.hash(&id);
        let hasher = &self.hasher;
        match self
            .table
            .entry(h, |j| j.id == id, |j| hasher.hash_one(j.id))
        {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                let old = std::mem::replace(e.get_mut(), job);
                self.count(&old.queue, false);
                Some(old)
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(job);
                None
            }
        }
    }

    pub fn remove(&mut self, id: &JobId) -> Option<Box<Job>> {
        let h = self.hash(id);
        match self.table.find_entry(h, |j| j.id == *id) {
            Ok(e) => {
                let job = e.remove().0;
                self.count(&job.queue, false);
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
}
