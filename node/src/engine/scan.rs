//! Disque's introspection commands: QPEEK, QSTAT, QSCAN and JSCAN.
//!
//! Cursors: JSCAN's cursor is the last job id returned, as a 128-bit
//! integer (ids are time-ordered, so the scan walks jobs oldest first);
//! QSCAN's is a 64-bit hash of the last queue name returned, queues being
//! walked in hash order. Both are stable while jobs and queues come and go:
//! every element present for the whole scan is returned, as Disque
//! promises. A cursor of 0 starts a scan, and 0 comes back when it is done.
//! Each call looks at every job (or queue) once, O(n log count).

use std::collections::BinaryHeap;

use super::{Engine, RequestId};
use crate::api::{JScan, JobEntry, JobScanItem, QScan, QStat, Reply};
use crate::job::{JobId, UnixMs};
use crate::queue::ReadyKey;

/// COUNT when none is given (Disque's).
const DEFAULT_SCAN_COUNT: u64 = 100;

impl Engine {
    /// QPEEK: up to `count` ready jobs in delivery order (negative: the
    /// newest first), without taking them.
    pub(super) fn qpeek(&mut self, req: RequestId, queue: &str, count: i64) {
        let n = count.unsigned_abs().min(usize::MAX as u64) as usize;
        let mut keys: Vec<ReadyKey> = match self.queues.get(queue) {
            None => Vec::new(),
            Some(q) if count >= 0 => {
                let mut k: Vec<ReadyKey> = q.plain.iter().take(n).copied().collect();
                k.extend(q.wasm.iter().take(n).copied());
                k.sort();
                k.truncate(n);
                k
            }
            Some(q) => {
                let mut k: Vec<ReadyKey> = q.plain.iter().rev().take(n).copied().collect();
                k.extend(q.wasm.iter().rev().take(n).copied());
                k.sort();
                k.reverse();
                k.truncate(n);
                k
            }
        };
        let jobs = keys
            .drain(..)
            .filter_map(|k| self.jobs.get(&k.id))
            .map(|j| JobEntry {
                queue: j.queue.to_string(),
                id: j.id,
                body: bytes::Bytes::copy_from_slice(&j.body),
                counters: None,
            })
            .collect();
        self.reply(req, Reply::Jobs(jobs));
    }

    pub(super) fn qstat(&mut self, now: UnixMs, req: RequestId, name: &str) {
        let reply = match self.queues.get(name) {
            None => Reply::Nil,
            Some(q) => Reply::QStat(Box::new(QStat {
                name: name.to_string(),
                len: q.len() as u64,
                age_secs: now.saturating_sub(q.created_at) / 1000,
                idle_secs: now.saturating_sub(q.touched_at) / 1000,
                blocked: q.blocked.len() as u64,
                jobs_in: q.jobs_in,
                jobs_out: q.jobs_out,
                pause: q.pause.as_str(),
            })),
        };
        self.reply(req, reply);
    }

    pub(super) fn qscan(&mut self, req: RequestId, s: QScan) {
        let now = self.last_now;
        let count = scan_count(s.count, s.busyloop);
        let mut heap: BinaryHeap<(u64, &crate::job::QueueName)> = BinaryHeap::new();
        for (name, q) in self.queues.iter() {
            let len = q.len() as u64;
            if s.minlen.is_some_and(|m| len < m)
                || s.maxlen.is_some_and(|m| len > m)
                || s.importrate.is_some_and(|r| q.imports.per_second(now) < r)
            {
                continue;
            }
            if s.prefix.as_deref().is_some_and(|p| !name.starts_with(p)) {
                continue;
            }
            let h = name_hash(name);
            if h <= s.cursor {
                continue;
            }
            heap.push((h, name));
            if heap.len() > count {
                heap.pop();
            }
        }
        let full = heap.len() == count && !s.busyloop;
        let mut found = heap.into_sorted_vec();
        let cursor = match found.last() {
            Some((h, _)) if full => *h,
            _ => 0,
        };
        let queues = found.drain(..).map(|(_, n)| n.to_string()).collect();
        self.reply(req, Reply::QueueScan { cursor, queues });
    }

    pub(super) fn jscan(&mut self, now: UnixMs, req: RequestId, s: JScan) {
        let count = scan_count(s.count, s.busyloop);
        let mut heap: BinaryHeap<JobId> = BinaryHeap::new();
        for (id, job) in self.jobs.iter() {
            if id.0.as_u128() <= s.cursor
                || s.queue.as_deref().is_some_and(|q| q != &*job.queue)
                || (!s.states.is_empty() && !s.states.contains(&job.state))
                || !job.opens_with(s.key.as_deref())
                || s.prefix
                    .as_deref()
                    .is_some_and(|p| !job.queue.starts_with(p))
            {
                continue;
            }
            heap.push(*id);
            if heap.len() > count {
                heap.pop();
            }
        }
        let full = heap.len() == count && !s.busyloop;
        let ids = heap.into_sorted_vec();
        let cursor = match ids.last() {
            Some(id) if full => id.0.as_u128(),
            _ => 0,
        };
        let node = &self.cfg.node_id;
        let jobs = ids
            .into_iter()
            .filter_map(|id| {
                let job = self.jobs.get(&id)?;
                Some(if s.reply_all {
                    JobScanItem::Full(Box::new(job.status(now, node)))
                } else {
                    JobScanItem::Id(id)
                })
            })
            .collect();
        self.reply(req, Reply::JobScan { cursor, jobs });
    }
}

fn scan_count(count: u64, busyloop: bool) -> usize {
    if busyloop {
        usize::MAX
    } else if count == 0 {
        DEFAULT_SCAN_COUNT as usize
    } else {
        count.min(1 << 20) as usize
    }
}

/// FNV-1a of a queue name, never 0 (0 is the start/end cursor).
fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}
