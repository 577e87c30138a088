//! Job id generation: time-ordered UUIDv7 with the node prefix, the
//! at-most-once bit and the TTL inside (layout on [`JobId`]). Randomness
//! comes from a seeded generator so tests are reproducible.

use crate::job::{JobId, UnixMs};

#[derive(Debug)]
pub struct IdGen {
    node_prefix: u32,
    last_ms: UnixMs,
    seq: u16,
    rng: u64,
}

impl IdGen {
    pub fn new(node_prefix: u32, seed: u64) -> IdGen {
        IdGen {
            node_prefix,
            last_ms: 0,
            seq: 0,
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// A new id, strictly greater than every id this generator made before.
    pub fn next(&mut self, now: UnixMs, at_most_once: bool, ttl_secs: u64) -> JobId {
        if now > self.last_ms {
            self.last_ms = now;
            self.seq = 0;
        } else if self.seq >= 0x0FFF {
            // 4096 ids in one ms: borrow the next ms to stay ordered.
            self.last_ms += 1;
            self.seq = 0;
        } else {
            self.seq += 1;
        }
        let random = (self.splitmix() & 0x1F_FFFF) as u32;
        JobId::compose(
            self.last_ms,
            self.seq,
            self.node_prefix,
            at_most_once,
            ttl_secs,
            random,
        )
    }

    /// Takes note of an id made before (read back from the store), so
    /// the ids made from now on are greater even if the clock stepped back.
    pub fn observe(&mut self, id: JobId) {
        let ms = id.created_ms();
        let seq = (id.0.as_u64_pair().0 & 0x0FFF) as u16;
        if ms > self.last_ms || (ms == self.last_ms && seq > self.seq) {
            self.last_ms = ms;
            self.seq = seq;
        }
    }

    fn splitmix(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strictly_increasing_even_in_one_ms() {
        let mut g = IdGen::new(7, 1);
        let mut last = g.next(1000, false, 60);
        for _ in 0..10_000 {
            let id = g.next(1000, false, 60);
            assert!(id > last);
            last = id;
        }
        // Time going backwards (clock step) still gives larger ids.
        assert!(g.next(10, false, 60) > last);
    }
}
