//! Modules this node announced on upload, kept in its advert until the
//! engine lists them. An upload is announced at once (`Cluster::
//! announce_module`), but the driver refreshes the advert each second
//! from the engine's list, which may not hold the module yet: without
//! this, that refresh would drop the hash again for up to a second, and a
//! peer asked for a job naming it would find no holder.

use std::time::{Duration, Instant};

use crate::job::ModuleHash;

/// How long an announced module stays in the advert without the engine
/// listing it (the engine takes it in within a round; this bounds a
/// module whose upload failed after the announcement).
pub const ANNOUNCED_FOR: Duration = Duration::from_secs(10);

/// The announced modules not yet listed by the engine, with when.
#[derive(Debug, Default)]
pub struct Announced {
    modules: Vec<(ModuleHash, Instant)>,
}

impl Announced {
    pub fn add(&mut self, hash: ModuleHash, now: Instant) {
        self.modules.push((hash, now));
    }

    /// The module is being removed: no longer advertised for this.
    pub fn forget(&mut self, hash: &ModuleHash) {
        self.modules.retain(|(h, _)| h != hash);
    }

    /// Adds to `listed` (the engine's list, going into the advert) the
    /// announced modules it lacks; forgets those it has and those
    /// announced longer than [`ANNOUNCED_FOR`] ago.
    pub fn merge_into(&mut self, listed: &mut Vec<ModuleHash>, now: Instant) {
        self.modules.retain(|(h, at)| {
            !listed.contains(h) && now.saturating_duration_since(*at) < ANNOUNCED_FOR
        });
        listed.extend(self.modules.iter().map(|(h, _)| *h));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_module_stays_until_listed_removed_or_old() {
        let (a, b, c) = (
            ModuleHash([1; 32]),
            ModuleHash([2; 32]),
            ModuleHash([3; 32]),
        );
        let t0 = Instant::now();
        let mut announced = Announced::default();
        announced.add(a, t0);
        announced.add(b, t0);
        announced.add(c, t0);

        // The engine lists none yet: all three stay in the advert.
        let mut listed = vec![];
        announced.merge_into(&mut listed, t0 + Duration::from_secs(1));
        assert_eq!(listed, vec![a, b, c]);

        // The engine lists `a`; `b` is removed: only `c` is added.
        announced.forget(&b);
        let mut listed = vec![a];
        announced.merge_into(&mut listed, t0 + Duration::from_secs(2));
        assert_eq!(listed, vec![a, c]);

        // `a` is not kept once listed: a later list without it drops it.
        let mut listed = vec![];
        announced.merge_into(&mut listed, t0 + Duration::from_secs(3));
        assert_eq!(listed, vec![c]);

        // Past the bound, `c` goes too.
        let mut listed = vec![];
        announced.merge_into(&mut listed, t0 + ANNOUNCED_FOR);
        assert!(listed.is_empty());
    }
}
