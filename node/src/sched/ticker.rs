//! The task that fires schedules on this node: five times a second it
//! plans every live schedule (`plan.rs`) against the nodes this node sees
//! up and taking jobs, and adds each tick's job through the engine like a
//! client would (a tenant's as the tenant: its queues, its quotas), with
//! the idempotency key `schedule:KEY:TICK`. What was fired, and how far
//! ticks are settled, goes into the registry, which peers take with the
//! next advert.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::cron::Cron;
use super::plan::{Timing, plan};
use super::record::ScheduleRecord;
use super::registry::Schedules;
use crate::api::{Command, Reply};
use crate::auth::Principal;
use crate::job::{NodeName, UnixMs};
use crate::runtime::{Handle, now_ms};

/// How often schedules are planned.
const PASS: Duration = Duration::from_millis(200);

/// The idempotency key of a schedule's tick: every node that fires the
/// tick adds the same key, so a holder of the first job answers it.
pub fn tick_key(key: &str, tick: UnixMs) -> String {
    format!("schedule:{key}:{tick}")
}

/// How a fire ended.
struct Done {
    key: String,
    tick: UnixMs,
    catch_up: bool,
    /// The refusal, when the add was refused.
    error: Option<String>,
}

/// Runs until `stop`. An essential task: it returns only when the node
/// stops.
pub async fn run(
    handle: Handle,
    schedules: Arc<Schedules>,
    timing: Timing,
    mut stop: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut pass = tokio::time::interval(PASS);
    pass.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Adds under way, so a pass does not fire a tick again meanwhile.
    let mut in_flight: HashSet<(String, UnixMs)> = HashSet::new();
    // Schedules with a catch-up under way: it stands for every missed
    // tick, so one at a time.
    let mut catching_up: HashSet<String> = HashSet::new();
    // Ticks whose add was refused: tried again after a grace, while the
    // window lasts (a refusal such as -NOREPL may pass).
    let mut refused: HashMap<(String, UnixMs), Instant> = HashMap::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let mut crons: HashMap<String, (String, Cron)> = HashMap::new();
    let mut logged: HashMap<String, String> = HashMap::new();
    loop {
        tokio::select! {
            _ = pass.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        while let Ok(d) = done_rx.try_recv() {
            in_flight.remove(&(d.key.clone(), d.tick));
            if d.catch_up {
                catching_up.remove(&d.key);
            }
            if let Some(e) = d.error {
                log_once(
                    &mut logged,
                    &d.key,
                    format!("a tick's job was refused: {e}"),
                );
                refused.insert((d.key, d.tick), Instant::now());
            }
        }
        if started.elapsed() < Duration::from_millis(timing.settle_ms) {
            continue;
        }
        let cluster = handle.cluster();
        if cluster.leaving() {
            continue;
        }
        let me = cluster.me();
        let peers: Vec<_> = cluster
            .peers()
            .into_iter()
            .filter(|p| p.up && !p.leaving)
            .collect();
        // A peer met a moment ago has not sent its advert yet, so its
        // schedule records may still be on their way: wait a pass
        // rather than fire what it already fired.
        if peers.iter().any(|p| p.advert.is_none()) {
            continue;
        }
        let mut live: Vec<NodeName> = peers.iter().map(|p| p.node).collect();
        live.push(me);
        let now = now_ms();
        let records = schedules.live("");
        crons.retain(|k, _| records.iter().any(|r| &r.key == k));
        logged.retain(|k, _| records.iter().any(|r| &r.key == k));
        refused.retain(|_, at| at.elapsed() < Duration::from_millis(timing.window_ms));
        for r in records {
            let cron = match crons.get(&r.key) {
                Some((text, c)) if *text == r.spec.cron => c.clone(),
                _ => match Cron::parse(&r.spec.cron) {
                    Ok(c) => {
                        crons.insert(r.key.clone(), (r.spec.cron.clone(), c.clone()));
                        c
                    }
                    Err(_) => continue,
                },
            };
            let p = plan(&r, &cron, now, me, &live, timing);
            if let Some(to) = p.settle
                && let Err(e) = schedules.settle(&r.key, r.created_ms, to)
            {
                log_once(
                    &mut logged,
                    &r.key,
                    format!("cannot save the schedule registry: {e}"),
                );
            }
            for fire in p.fire {
                let k = (r.key.clone(), fire.tick);
                let refused_lately = refused
                    .get(&k)
                    .is_some_and(|at| at.elapsed() < Duration::from_millis(timing.grace_ms));
                if in_flight.contains(&k)
                    || refused_lately
                    || (fire.catch_up && catching_up.contains(&r.key))
                {
                    continue;
                }
                in_flight.insert(k);
                if fire.catch_up {
                    catching_up.insert(r.key.clone());
                    tracing::info!(schedule = %r.key, tick = fire.tick, "firing the latest missed tick (missed run-once)");
                }
                let (handle, schedules, done) =
                    (handle.clone(), schedules.clone(), done_tx.clone());
                let r = r.clone();
                tokio::spawn(async move {
                    let error = fire_tick(&handle, &schedules, &r, fire.tick, timing).await;
                    let _ = done.send(Done {
                        key: r.key,
                        tick: fire.tick,
                        catch_up: fire.catch_up,
                        error,
                    });
                });
            }
        }
    }
}

/// Adds one tick's job and notes it in the registry; the refusal, if the
/// add was refused.
async fn fire_tick(
    handle: &Handle,
    schedules: &Schedules,
    r: &ScheduleRecord,
    tick: UnixMs,
    timing: Timing,
) -> Option<String> {
    let mut add = r.spec.job.to_add();
    add.idempotency_key = Some(tick_key(&r.key, tick));
    // Long enough for a dead peer to be declared down and replaced.
    add.timeout_ms = timing.window_ms;
    let who = match &r.tenant {
        Some(t) => Principal::Tenant(t.as_str().into()),
        None => Principal::Admin,
    };
    let reply = match handle.scoped(&who, Command::AddJob(Box::new(add))) {
        Ok(cmd) => handle.call(cmd).await,
        Err(e) => Reply::Error(e),
    };
    let error = match reply {
        Reply::JobAdded(id) | Reply::Duplicate(id) => {
            tracing::debug!(schedule = %r.key, tick, job = %id, "schedule fired");
            return match schedules.note_fired(&r.key, r.created_ms, tick, id) {
                Ok(()) => None,
                Err(e) => Some(format!("cannot save the schedule registry: {e}")),
            };
        }
        Reply::Error(e) => e.to_string(),
        other => format!("unexpected answer to the add: {other:?}"),
    };
    schedules.note_error(&r.key, tick, error.clone());
    Some(error)
}

fn log_once(logged: &mut HashMap<String, String>, key: &str, msg: String) {
    if logged.get(key) != Some(&msg) {
        tracing::warn!(schedule = %key, "{msg}");
        logged.insert(key.to_string(), msg);
    }
}
