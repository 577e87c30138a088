//! Which ticks of a schedule this node fires now: a pure function of the
//! record, the time and the live nodes this node sees, so every node
//! reaches the same answer from the same view, and tests drive it with a
//! virtual clock.
//!
//! Leader-free firing: a tick's nodes are ranked by a rendezvous hash of
//! (node, schedule, tick). The first, its *home*, fires it at once; if
//! it has not fired (its job is not in the record this node has) after
//! `grace`, the second fires it, after twice `grace` the third. Each
//! tick's job carries the idempotency key `schedule:KEY:TICK`, so a
//! repeat that reaches a node holding the first job adds nothing.
//!
//! A tick not fired within `window` of its time is *missed*: the
//! schedule's policy skips it, or (run-once) the home of the latest
//! missed tick fires that one alone. `settled` moves past ticks that are
//! fired or given up, so a record keeps only the ticks of the last
//! window.

use wasque_sdk::proto::Missed;

use super::cron::Cron;
use super::record::ScheduleRecord;
use crate::job::{NodeName, UnixMs};

/// Nodes that fire a tick in turn: its home and two second chances.
pub const RANKS: usize = 3;

/// Most on-time ticks looked at in one pass (a seconds expression over a
/// long window).
const MAX_ON_TIME: usize = 1_000;

/// Most fired ticks walked to move `settled` in one pass.
const MAX_WALK: usize = 10_000;

/// The firing's clock, from the node's `cluster-node-timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a tick's next node waits for the one before it. At least
    /// a node timeout: by then a dead home is declared down, and the
    /// registry (sent with adverts, each second) has told the others
    /// about a live home's fire.
    pub grace_ms: u64,
    /// How late a tick may still fire: beyond it the tick is missed.
    pub window_ms: u64,
    /// How long a node waits after its start before it fires anything:
    /// time to meet its peers and take their records, so it does not
    /// fire again what they fired while it was down.
    pub settle_ms: u64,
}

impl Timing {
    /// The timing of a node with this `cluster-node-timeout`.
    pub fn for_node_timeout(node_timeout_ms: u64) -> Timing {
        let grace = node_timeout_ms.max(1_000);
        Timing {
            grace_ms: grace,
            window_ms: grace.saturating_mul(RANKS as u64 + 1),
            // Two node timeouts to meet its peers again, and an advert
            // (each second) to take their records.
            settle_ms: grace.saturating_mul(2).saturating_add(1_000),
        }
    }
}

/// One tick to fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fire {
    pub tick: UnixMs,
    /// The latest missed tick, fired by the run-once policy.
    pub catch_up: bool,
}

/// What to do for one schedule now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub fire: Vec<Fire>,
    /// Every tick at or below this is dealt with.
    pub settle: Option<UnixMs>,
}

/// `me`'s place in a tick's ranking among `live` (which includes `me`):
/// 0 for its home. `None` when `me` is not among them.
pub fn rank(me: NodeName, key: &str, tick: UnixMs, live: &[NodeName]) -> Option<usize> {
    let mine = score(me, key, tick);
    if !live.contains(&me) {
        return None;
    }
    Some(
        live.iter()
            .filter(|n| **n != me)
            .filter(|n| (score(**n, key, tick), **n) > (mine, me))
            .count(),
    )
}

/// FNV-1a (64 bits) over the node, the key and the tick: the rendezvous
/// score every node computes alike.
fn score(node: NodeName, key: &str, tick: UnixMs) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node
        .0
        .iter()
        .chain(&[0])
        .chain(key.as_bytes())
        .chain(&[0])
        .chain(&tick.to_le_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The ticks of `rec` this node fires at `now`, and how far its ticks
/// are settled. `live`: the nodes this node sees up and taking jobs,
/// itself included.
pub fn plan(
    rec: &ScheduleRecord,
    cron: &Cron,
    now: UnixMs,
    me: NodeName,
    live: &[NodeName],
    t: Timing,
) -> Plan {
    let mut out = Plan::default();
    if rec.removed {
        return out;
    }
    let floor = rec.settled;
    let edge = now.saturating_sub(t.window_ms);

    // On time: fired by the home at once, by the next after each grace.
    let mut at = floor.max(edge);
    for _ in 0..MAX_ON_TIME {
        let Some(tick) = cron.next_after(at).filter(|x| *x <= now) else {
            break;
        };
        at = tick;
        if rec.fired.contains_key(&tick) {
            continue;
        }
        if let Some(r) = rank(me, &rec.key, tick, live)
            && r < RANKS
            && now >= tick.saturating_add(t.grace_ms.saturating_mul(r as u64))
        {
            out.fire.push(Fire {
                tick,
                catch_up: false,
            });
        }
    }

    // At or below the edge: settle what was fired; the policy decides
    // the rest.
    if floor >= edge {
        return out;
    }
    let mut s = floor;
    let mut gap = false;
    for _ in 0..MAX_WALK {
        match cron.next_after(s).filter(|x| *x <= edge) {
            None => break,
            Some(tick) if rec.fired.contains_key(&tick) => s = tick,
            Some(_) => {
                gap = true;
                break;
            }
        }
    }
    if !gap {
        if s > floor {
            out.settle = Some(s);
        }
        return out;
    }
    let Some(latest) = cron.latest_in(s, edge) else {
        return out;
    };
    match rec.spec.missed {
        Missed::Skip => out.settle = Some(latest),
        Missed::RunOnce if rec.fired.contains_key(&latest) => out.settle = Some(latest),
        Missed::RunOnce => {
            if rank(me, &rec.key, latest, live) == Some(0) {
                out.fire.push(Fire {
                    tick: latest,
                    catch_up: true,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use wasque_sdk::proto::{JobId, JobTemplate, ScheduleSpec};

    const T: Timing = Timing {
        grace_ms: 1_000,
        window_ms: 4_000,
        settle_ms: 3_000,
    };

    fn node(n: u8) -> NodeName {
        NodeName([n; 20])
    }

    fn rec(cron: &str, missed: Missed, created: UnixMs) -> ScheduleRecord {
        let mut spec = ScheduleSpec::new("s", cron, JobTemplate::new("q", ""));
        spec.missed = missed;
        ScheduleRecord {
            key: "s".into(),
            tenant: None,
            spec,
            created_ms: created,
            version: 1,
            removed: false,
            settled: created,
            fired: BTreeMap::new(),
        }
    }

    fn id(n: u64) -> JobId {
        JobId(uuid::Uuid::from_u128(u128::from(n)))
    }

    /// Every node's plan for one instant, as a simulated cluster: what
    /// each would fire.
    fn fires(r: &ScheduleRecord, now: UnixMs, live: &[NodeName]) -> Vec<(NodeName, Fire)> {
        let cron = Cron::parse(&r.spec.cron).unwrap();
        live.iter()
            .flat_map(|n| {
                plan(r, &cron, now, *n, live, T)
                    .fire
                    .into_iter()
                    .map(move |f| (*n, f))
            })
            .collect()
    }

    #[test]
    fn every_tick_has_one_home_among_the_live_nodes() {
        let live = [node(1), node(2), node(3)];
        let mut homes = [0; 3];
        for tick in (0..300u64).map(|s| s * 1000) {
            let ranks: Vec<usize> = live
                .iter()
                .map(|n| rank(*n, "s", tick, &live).unwrap())
                .collect();
            let mut sorted = ranks.clone();
            sorted.sort();
            assert_eq!(sorted, vec![0, 1, 2], "tick {tick}: {ranks:?}");
            homes[ranks.iter().position(|r| *r == 0).unwrap()] += 1;
        }
        // Spread over the nodes, not all on one.
        assert!(homes.iter().all(|h| *h > 50), "{homes:?}");
        assert_eq!(rank(node(9), "s", 0, &live), None);
    }

    #[test]
    fn exactly_one_node_fires_each_tick_when_views_agree() {
        // Virtual clock over a minute of a once-a-second schedule on
        // three nodes: each tick is fired by one node, at its time, and
        // once fired (the record says so) by nobody again.
        let live = [node(1), node(2), node(3)];
        let mut r = rec("* * * * * *", Missed::Skip, 9_500);
        let mut made = 0;
        for now in (10_000..70_000).step_by(200) {
            let f = fires(&r, now, &live);
            assert!(f.len() <= 1, "at {now}: {f:?}");
            for (_, fire) in f {
                assert!(!fire.catch_up);
                assert!(now - fire.tick < 200, "fired late: {fire:?} at {now}");
                made += 1;
                r.fired.insert(fire.tick, id(fire.tick));
            }
            let cron = Cron::parse(&r.spec.cron).unwrap();
            if let Some(s) = plan(&r, &cron, now, live[0], &live, T).settle {
                r.settled = s;
                r.trim();
            }
        }
        assert_eq!(made, 60);
        assert!(r.settled >= 65_000, "settled {}", r.settled);
    }

    #[test]
    fn a_dead_home_is_covered_by_the_next_node_after_the_grace() {
        let live = [node(1), node(2), node(3)];
        let r = rec("* * * * * *", Missed::Skip, 10_000);
        // A tick whose home is node 1, dead but still seen live.
        let tick = (11..100)
            .map(|s| s * 1000)
            .find(|t| rank(node(1), "s", *t, &live) == Some(0))
            .unwrap();
        let second = *live
            .iter()
            .find(|n| rank(**n, "s", tick, &live) == Some(1))
            .unwrap();
        let cron = Cron::parse("* * * * * *").unwrap();
        let fired_by = |now: UnixMs, who: NodeName| {
            plan(&r, &cron, now, who, &live, T)
                .fire
                .iter()
                .any(|f| f.tick == tick)
        };
        assert!(fired_by(tick, node(1)));
        assert!(!fired_by(tick + 999, second), "the second waits its grace");
        assert!(fired_by(tick + 1_000, second));
        // Once node 1 is declared down, the ranking is among the others.
        let alive = [node(2), node(3)];
        let homes: Vec<usize> = alive
            .iter()
            .filter_map(|n| rank(*n, "s", tick, &alive))
            .collect();
        assert!(homes.contains(&0));
    }

    #[test]
    fn missed_ticks_are_skipped_or_run_once() {
        let live = [node(1)];
        // Every ten seconds; fired up to 20 s, then the cluster was down
        // until 64 s: 30, 40, 50 s and 60 s are past the 4 s window.
        for missed in [Missed::Skip, Missed::RunOnce] {
            let mut r = rec("*/10 * * * * *", missed, 1_000);
            r.fired.insert(10_000, id(1));
            r.fired.insert(20_000, id(2));
            r.settled = 20_000;
            let cron = Cron::parse(&r.spec.cron).unwrap();
            let p = plan(&r, &cron, 64_000, node(1), &live, T);
            match missed {
                Missed::Skip => {
                    assert!(p.fire.is_empty(), "{p:?}");
                    assert_eq!(p.settle, Some(60_000));
                }
                Missed::RunOnce => {
                    assert_eq!(
                        p.fire,
                        vec![Fire {
                            tick: 60_000,
                            catch_up: true
                        }]
                    );
                    assert_eq!(p.settle, None, "settled once the catch-up is fired");
                    r.fired.insert(60_000, id(6));
                    let p = plan(&r, &cron, 64_200, node(1), &live, T);
                    assert!(p.fire.is_empty());
                    assert_eq!(p.settle, Some(60_000));
                }
            }
        }
    }

    #[test]
    fn a_late_tick_within_the_window_still_fires_and_a_new_schedule_waits_for_its_first() {
        let live = [node(1)];
        let r = rec("*/10 * * * * *", Missed::Skip, 1_000);
        let cron = Cron::parse(&r.spec.cron).unwrap();
        // Created at 1 s: nothing before 10 s.
        assert!(plan(&r, &cron, 9_999, node(1), &live, T).fire.is_empty());
        // 10 s fired 3 s late (the node was busy, or just started).
        let p = plan(&r, &cron, 13_000, node(1), &live, T);
        assert_eq!(p.fire.len(), 1);
        assert_eq!(p.fire[0].tick, 10_000);
        // Removed: nothing.
        let mut gone = r.clone();
        gone.removed = true;
        assert_eq!(
            plan(&gone, &cron, 13_000, node(1), &live, T),
            Plan::default()
        );
    }

    #[test]
    fn the_timing_follows_the_node_timeout() {
        let t = Timing::for_node_timeout(15_000);
        assert_eq!(
            (t.grace_ms, t.window_ms, t.settle_ms),
            (15_000, 60_000, 31_000)
        );
        assert_eq!(Timing::for_node_timeout(10).grace_ms, 1_000);
    }
}
