//! Schedules through real node processes: a schedule ticking every
//! second adds one job per tick (counted by scanning the queue, each job
//! matched to its tick), over RESP, QUIC (SDK and CLI) and HTTP, with
//! clear errors; removal stops it; missed ticks across a restart are
//! skipped or run once by policy; on a three-node cluster every tick has
//! exactly one job across the nodes while a node that is a tick's home is
//! killed and restarted; tenants see and remove only their own. Every
//! wait is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;
use wasque_sdk::proto::{JobTemplate, ScheduleSpec};
use wasque_tests::node::{TestNode, form_cluster};
use wasque_tests::resp::{self, Connection, text};
use wasque_tests::wait::eventually;
use wasque_tests::{guests, http};

/// Node timeout for these tests: a tick's second chance waits 1 s, a tick
/// is missed 4 s after its time, a node fires nothing in its first 2 s.
const TIMEOUT: &[&str] = &["--cluster-node-timeout", "1000"];

fn q(c: &mut Connection, args: &[&str]) -> redis::RedisResult<Value> {
    resp::cmd(c, args)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn err_text(r: redis::RedisResult<Value>) -> String {
    match r {
        Err(e) => e.to_string(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// `SCHEDULE SHOW name` as field/value pairs, `None` if it fails.
fn show(c: &mut Connection, name: &str) -> Option<Vec<(String, Value)>> {
    let Value::Array(items) = q(c, &["SCHEDULE", "SHOW", name]).ok()? else {
        return None;
    };
    Some(
        items
            .chunks(2)
            .map(|kv| (text(&kv[0]), kv[1].clone()))
            .collect(),
    )
}

/// One field of a `SCHEDULE SHOW` answer, as text.
fn field_of(fields: &[(String, Value)], name: &str) -> Option<String> {
    fields.iter().find(|(f, _)| f == name).map(|(_, v)| text(v))
}

/// A schedule's ticks and their jobs, as a node's `SCHEDULE SHOW` has them.
fn ticks(c: &mut Connection, name: &str) -> BTreeMap<u64, String> {
    let Some(fields) = show(c, name) else {
        return BTreeMap::new();
    };
    let Some((_, Value::Array(recent))) = fields.into_iter().find(|(k, _)| k == "recent") else {
        return BTreeMap::new();
    };
    recent
        .iter()
        .filter_map(|pair| match pair {
            Value::Array(p) if p.len() == 2 => Some((text(&p[0]).parse().ok()?, text(&p[1]))),
            _ => None,
        })
        .collect()
}

/// Every job id of `queue` on one node (JSCAN, bounded pages).
fn queue_ids(addr: std::net::SocketAddr, queue: &str) -> BTreeSet<String> {
    match resp::connect(addr) {
        Some(mut c) => queue_ids_on(&mut c, queue),
        None => BTreeSet::new(),
    }
}

/// Every job id of `queue` as the connection `c` may see it.
fn queue_ids_on(c: &mut Connection, queue: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor = "0".to_string();
    for _ in 0..100 {
        let Ok(Value::Array(r)) = q(c, &["JSCAN", &cursor, "COUNT", "1000", "QUEUE", queue]) else {
            break;
        };
        cursor = text(&r[0]);
        if let Value::Array(ids) = &r[1] {
            out.extend(ids.iter().map(text));
        }
        if cursor == "0" {
            break;
        }
    }
    out
}

/// Checks that the schedule's jobs are exactly one per tick: every job
/// of `jobs` is the job of one tick, no two ticks share a job, and every
/// second from the first tick to `upto` has its tick.
fn one_job_per_tick(ticks: &BTreeMap<u64, String>, jobs: &BTreeSet<String>, upto: u64) {
    let first = *ticks.keys().next().expect("at least one tick");
    let per_tick: BTreeSet<&String> = ticks.values().collect();
    assert_eq!(
        per_tick.len(),
        ticks.len(),
        "two ticks share a job: {ticks:?}"
    );
    for id in jobs {
        assert!(
            per_tick.contains(id),
            "job {id} is no tick's job (a tick fired twice?): ticks {ticks:?}"
        );
    }
    let mut t = first;
    while t <= upto {
        assert!(ticks.contains_key(&t), "tick {t} has no job: {ticks:?}");
        t += 1000;
    }
}

#[test]
fn a_schedule_adds_one_job_per_tick_and_every_door_sees_it() {
    let node = TestNode::start_http(TIMEOUT);
    let mut c = resp::connect(node.addr).expect("RESP connection");

    // Mistakes get clear errors and make nothing.
    let e = err_text(q(
        &mut c,
        &[
            "SCHEDULE", "ADD", "every", "CRON", "* * * *", "QUEUE", "ticks",
        ],
    ));
    assert!(e.contains("4 fields"), "{e}");
    let e = err_text(q(
        &mut c,
        &[
            "SCHEDULE",
            "ADD",
            "every",
            "CRON",
            "61 * * * *",
            "QUEUE",
            "ticks",
        ],
    ));
    assert!(e.contains("minute field"), "{e}");
    let e = err_text(q(&mut c, &["SCHEDULE", "ADD", "every", "QUEUE", "ticks"]));
    assert!(e.contains("CRON"), "{e}");
    let e = err_text(q(
        &mut c,
        &[
            "SCHEDULE",
            "ADD",
            "every",
            "CRON",
            "* * * * *",
            "QUEUE",
            "t",
            "MODULE",
            &"ab".repeat(32),
        ],
    ));
    assert!(e.contains("NOMODULE"), "{e}");
    assert_eq!(
        q(&mut c, &["SCHEDULE", "LS"]).unwrap(),
        Value::Array(vec![])
    );

    let add = [
        "SCHEDULE",
        "ADD",
        "every",
        "CRON",
        "* * * * * *",
        "QUEUE",
        "ticks",
        "BODY",
        "hello",
        "TTL",
        "600",
    ];
    assert_eq!(q(&mut c, &add).unwrap(), Value::Okay);
    let e = err_text(q(&mut c, &add));
    assert!(e.contains("already exists"), "{e}");
    let e = err_text(q(&mut c, &["SCHEDULE", "SHOW", "nope"]));
    assert!(e.contains("no schedule nope"), "{e}");

    // A tick a second, once the node's first 2 s are over.
    eventually(20, "five ticks fired", || ticks(&mut c, "every").len() >= 5);
    // Jobs first: a tick fired in between is in the ticks, not missing.
    let jobs = queue_ids(node.addr, "ticks");
    let t = ticks(&mut c, "every");
    let last = *t.keys().next_back().unwrap();
    one_job_per_tick(&t, &jobs, last);
    let (_, id) = t.iter().next().unwrap();
    assert_eq!(
        resp::field(&mut c, "SHOW", id, "body").as_deref(),
        Some("hello")
    );
    let fields = show(&mut c, "every").unwrap();
    let get = |k: &str| field_of(&fields, k);
    assert_eq!(get("cron").as_deref(), Some("* * * * * *"));
    assert_eq!(get("missed").as_deref(), Some("skip"));
    assert_eq!(get("queue").as_deref(), Some("ticks"));
    let next: u64 = get("next-tick-ms").unwrap().parse().unwrap();
    assert!(
        next > last && next <= now_ms() + 2_000,
        "next {next}, last {last}"
    );

    // The CLI (QUIC).
    let out = node.wasque(&["schedule", "ls"]);
    assert!(out.status.success(), "{out:?}");
    let ls = String::from_utf8_lossy(&out.stdout);
    assert!(
        ls.starts_with("every cron=\"* * * * * *\" missed=skip queue=ticks"),
        "{ls}"
    );
    let out = node.wasque(&["schedule", "show", "every", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["name"], "every");
    assert_eq!(doc["job"]["body"], "hello");
    assert!(
        doc["recent"].as_array().is_some_and(|r| r.len() >= 5),
        "{doc}"
    );
    let out = node.wasque(&["schedule", "show", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no schedule nope"));
    let out = node.wasque(&["schedule", "add", "bad/name", "--cron", "* * * * *"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // A Wasm schedule from the CLI: the module file is uploaded, the
    // jobs run and print their payload.
    let echo = guests::wasm_path("echo");
    let out = node.wasque(&[
        "schedule",
        "add",
        "wasm",
        "--cron",
        "* * * * * *",
        "--queue",
        "w",
        "--module",
        echo.to_str().unwrap(),
        "--payload",
        "tick!",
        "--missed",
        "run-once",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("missed=run-once"));
    eventually(20, "a scheduled Wasm job ran", || {
        ticks(&mut c, "wasm")
            .values()
            .any(|id| resp::field(&mut c, "RESULT", id, "output").as_deref() == Some("tick!"))
    });

    // Over RESP, a module by name is resolved once, when the schedule is
    // made; an unknown name makes nothing.
    let mut put = redis::cmd("MODULE");
    put.arg("PUT")
        .arg(guests::wasm("echo"))
        .arg("NAME")
        .arg("echo")
        .arg("VERSION")
        .arg("1.0");
    let hash = text(&put.query::<Value>(&mut c).expect("MODULE PUT"));
    let add_by = |c: &mut Connection, m: &str| {
        q(
            c,
            &[
                "SCHEDULE", "ADD", "named", "CRON", "@yearly", "QUEUE", "n", "MODULE", m,
            ],
        )
    };
    let e = err_text(add_by(&mut c, "echo@9"));
    assert!(e.contains("NOMODULE") && e.contains("1.0"), "{e}");
    assert!(show(&mut c, "named").is_none());
    assert_eq!(add_by(&mut c, "echo").unwrap(), Value::Okay);
    let fields = show(&mut c, "named").expect("the schedule");
    assert_eq!(field_of(&fields, "module"), Some(hash));
    assert_eq!(
        q(&mut c, &["SCHEDULE", "DEL", "named"]).unwrap(),
        Value::Int(1)
    );

    // The SDK (QUIC) and HTTP.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = node.client().await;
        let spec = ScheduleSpec::new("yearly", "@yearly", JobTemplate::new("y", "x"));
        client
            .schedule_add(spec.clone())
            .await
            .expect("schedule_add");
        let e = client.schedule_add(spec).await.unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        let list = client.schedules().await.expect("schedules");
        let names: Vec<&str> = list.iter().map(|s| s.spec.name.as_str()).collect();
        assert_eq!(names, ["every", "wasm", "yearly"]);
        let y = client.schedule("yearly").await.expect("schedule");
        let next = y.next_tick_ms.expect("a next tick");
        assert!(next > now_ms() && next < now_ms() + 367 * 86_400_000);
        assert!(y.last_tick_ms.is_none());
    });
    let r = http::get(node.http_addr(), "/api/schedules").expect("GET");
    assert_eq!(r.status, 200, "{}", r.body);
    let doc: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(doc["schedules"].as_array().map(Vec::len), Some(3), "{doc}");
    let r = http::get(node.http_addr(), "/api/schedules/every").expect("GET");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"recent\""));
    let r = http::get(node.http_addr(), "/api/schedules/nope").expect("GET");
    assert_eq!(r.status, 404, "{}", r.body);
    let http::Response { status, body, .. } =
        http::post(node.http_addr(), "/api/schedules/yearly/remove", Some("{}")).unwrap();
    assert_eq!((status, body.as_str()), (200, "{\"removed\":1}"));
    let r = http::get(node.http_addr(), "/api/schedules/yearly").expect("GET");
    assert_eq!(r.status, 404);

    // Removed: no tick fires after the removal.
    assert_eq!(
        q(&mut c, &["SCHEDULE", "DEL", "every"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        q(&mut c, &["SCHEDULE", "DEL", "wasm"]).unwrap(),
        Value::Int(1)
    );
    // An add under way at the removal may still land.
    std::thread::sleep(Duration::from_millis(300));
    let before = queue_ids(node.addr, "ticks").len();
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(queue_ids(node.addr, "ticks").len(), before);
    let e = err_text(q(&mut c, &["SCHEDULE", "DEL", "every"]));
    assert!(e.contains("no schedule every"), "{e}");
    // The name is free again.
    assert_eq!(q(&mut c, &add).unwrap(), Value::Okay);
    node.stop();
}

#[test]
fn missed_ticks_are_skipped_or_run_once_after_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let node = TestNode::start_in(&dir, TIMEOUT);
    let mut c = resp::connect(node.addr).expect("RESP connection");
    for (name, policy) in [("skipper", "skip"), ("catcher", "run-once")] {
        let add = [
            "SCHEDULE",
            "ADD",
            name,
            "CRON",
            "*/10 * * * * *",
            "MISSED",
            policy,
            "QUEUE",
            name,
        ];
        assert_eq!(q(&mut c, &add).unwrap(), Value::Okay);
    }
    // Both fire a tick T0; stop the node right after.
    let mut t0 = 0;
    eventually(40, "both schedules fired the same tick", || {
        let (a, b) = (ticks(&mut c, "skipper"), ticks(&mut c, "catcher"));
        match (a.keys().next_back(), b.keys().next_back()) {
            (Some(x), Some(y)) if x == y => {
                t0 = *x;
                true
            }
            _ => false,
        }
    });
    assert!(now_ms() < t0 + 5_000, "stopped too late after the tick");
    drop(c);
    node.stop();
    // Down through T0+10 and T0+20; back at T0+24, so both are past the
    // 4 s window by the time the node fires (2 s after its start).
    std::thread::sleep(Duration::from_millis(
        (t0 + 24_000).saturating_sub(now_ms()),
    ));
    let node = TestNode::start_in(&dir, TIMEOUT);
    let mut c = resp::connect(node.addr).expect("RESP connection");
    eventually(30, "both fire T0+30", || {
        ticks(&mut c, "skipper").contains_key(&(t0 + 30_000))
            && ticks(&mut c, "catcher").contains_key(&(t0 + 30_000))
    });
    let after = |name: &str, c: &mut Connection| -> Vec<u64> {
        ticks(c, name)
            .keys()
            .filter(|t| **t > t0 && **t <= t0 + 30_000)
            .map(|t| t - t0)
            .collect()
    };
    assert_eq!(
        after("skipper", &mut c),
        vec![30_000],
        "skip: nothing for the missed ticks"
    );
    assert_eq!(
        after("catcher", &mut c),
        vec![20_000, 30_000],
        "run-once: one job, for the latest missed tick"
    );
    // Each tick's job is in its queue.
    for name in ["skipper", "catcher"] {
        let t = ticks(&mut c, name);
        let jobs = queue_ids(node.addr, name);
        let ids: BTreeSet<String> = t.values().cloned().collect();
        assert_eq!(jobs, ids, "{name}");
    }
    node.stop();
}

/// The rendezvous score of a node for a tick (`sched/plan.rs`): FNV-1a
/// over the node id, the schedule key and the tick.
fn score(node: &[u8], key: &str, tick: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node
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

fn node_id(dir: &Path) -> Vec<u8> {
    let hex = std::fs::read_to_string(dir.join("node-id")).expect("node-id");
    hex::decode(hex.trim()).expect("hex node id")
}

#[test]
fn three_nodes_add_one_job_per_tick_while_a_tick_home_is_killed_and_restarted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<_> = (0..3).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let mut nodes: Vec<TestNode> = dirs
        .iter()
        .map(|d| TestNode::start_in(d, TIMEOUT))
        .collect();
    form_cluster(&nodes);
    let mut c = resp::connect(nodes[0].addr).expect("RESP connection");
    let add = [
        "SCHEDULE",
        "ADD",
        "beat",
        "CRON",
        "* * * * * *",
        "QUEUE",
        "beat",
    ];
    assert_eq!(q(&mut c, &add).unwrap(), Value::Okay);
    // Known on every node within an advert or two.
    for n in &nodes {
        let mut nc = resp::connect(n.addr).expect("RESP");
        eventually(10, "the schedule reaches every node", || {
            show(&mut nc, "beat").is_some()
        });
    }
    eventually(20, "ticks fire", || ticks(&mut c, "beat").len() >= 4);

    // Kill node 2 just before a tick it is the home of (all three live).
    let ids: Vec<Vec<u8>> = dirs.iter().map(|d| node_id(d)).collect();
    let home = |tick: u64| {
        (0..3)
            .max_by_key(|i| (score(&ids[*i], "beat", tick), ids[*i].clone()))
            .unwrap()
    };
    let soon = now_ms() / 1000 * 1000 + 2_000;
    let tick = (0..30)
        .map(|k| soon + k * 1000)
        .find(|t| home(*t) == 2)
        .expect("node 2 is the home of some tick within 30 s");
    std::thread::sleep(Duration::from_millis((tick - 300).saturating_sub(now_ms())));
    let port = nodes[2].addr.port();
    nodes.pop().expect("node 2").kill9();
    // Its tick, and the ticks until it is declared down, are fired by
    // the others.
    let mut c1 = resp::connect(nodes[1].addr).expect("RESP");
    eventually(15, "the dead home's tick is fired by another node", || {
        ticks(&mut c, "beat").contains_key(&tick)
    });
    std::thread::sleep(Duration::from_secs(4));
    // Back on its data dir and port: it takes the registry from its peers
    // and fires again without repeating a tick.
    nodes.push(TestNode::start_at(&dirs[2], port, TIMEOUT));
    let mut c2 = resp::connect(nodes[2].addr).expect("RESP");
    let restarted = now_ms();
    eventually(
        20,
        "the restarted node knows ticks fired while it was down",
        || ticks(&mut c2, "beat").contains_key(&tick),
    );
    // A tick whose home is the restarted node fires after its start.
    eventually(30, "a tick homed at the restarted node fires", || {
        ticks(&mut c2, "beat")
            .keys()
            .any(|k| *k > restarted + 4_000 && home(*k) == 2)
    });
    std::thread::sleep(Duration::from_secs(2));

    // Settled: every node has the same ticks up to a few seconds ago.
    let upto = now_ms() - 5_000;
    let mut views = Vec::new();
    eventually(10, "the nodes agree on the ticks", || {
        let old = |m: BTreeMap<u64, String>| -> BTreeMap<u64, String> {
            m.into_iter().filter(|(t, _)| *t <= upto).collect()
        };
        views = vec![
            old(ticks(&mut c, "beat")),
            old(ticks(&mut c1, "beat")),
            old(ticks(&mut c2, "beat")),
        ];
        views[0] == views[1] && views[1] == views[2]
    });
    let t = views.remove(0);
    // Every job on any node; those of ticks after `upto` are set aside
    // once the ticks (taken after the jobs) name them.
    let jobs: BTreeSet<String> = nodes
        .iter()
        .flat_map(|n| queue_ids(n.addr, "beat"))
        .collect();
    let mut jobs_upto = BTreeSet::new();
    eventually(
        10,
        "every job newer than the agreed ticks is a later tick's",
        || {
            let later: BTreeSet<String> = ticks(&mut c, "beat")
                .into_iter()
                .filter(|(k, _)| *k > upto)
                .map(|(_, v)| v)
                .collect();
            jobs_upto = jobs.difference(&later).cloned().collect();
            let known: BTreeSet<&String> = t.values().collect();
            jobs_upto.iter().all(|id| known.contains(id))
        },
    );
    one_job_per_tick(&t, &jobs_upto, upto);

    // Removed on one node: no node fires it any more.
    assert_eq!(
        q(&mut c1, &["SCHEDULE", "DEL", "beat"]).unwrap(),
        Value::Int(1)
    );
    eventually(10, "the removal reaches every node", || {
        show(&mut c, "beat").is_none() && show(&mut c2, "beat").is_none()
    });
    let count = |nodes: &[TestNode]| {
        nodes
            .iter()
            .flat_map(|n| queue_ids(n.addr, "beat"))
            .collect::<BTreeSet<_>>()
            .len()
    };
    let before = count(&nodes);
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(count(&nodes), before, "no job after the removal");
    for n in nodes {
        n.stop();
    }
}

const ADMIN_PW: &str = "admin-s3cret";

fn auth(addr: std::net::SocketAddr, words: &[&str]) -> Connection {
    let mut c = resp::connect(addr).expect("RESP connection");
    let mut w = vec!["AUTH"];
    w.extend_from_slice(words);
    assert_eq!(q(&mut c, &w).unwrap(), Value::Okay, "AUTH {words:?}");
    c
}

#[test]
fn tenants_see_and_remove_only_their_own_schedules() {
    let node = TestNode::start_http(TIMEOUT);
    let mut c = resp::connect(node.addr).expect("RESP");
    assert_eq!(
        q(&mut c, &["CONFIG", "SET", "requirepass", ADMIN_PW]).unwrap(),
        Value::Okay
    );
    let mut admin = auth(node.addr, &[ADMIN_PW]);
    let token = |admin: &mut Connection, name: &str| match q(admin, &["TENANT", "ADD", name]) {
        Ok(Value::Array(v)) => text(&v[2]),
        other => panic!("TENANT ADD answered {other:?}"),
    };
    let (alice_t, bob_t) = (token(&mut admin, "alice"), token(&mut admin, "bob"));
    let mut alice = auth(node.addr, &["alice", &alice_t]);
    let mut bob = auth(node.addr, &["bob", &bob_t]);

    // A module the admin uploaded is not alice's to schedule.
    let mut put = redis::cmd("MODULE");
    put.arg("PUT").arg(guests::wasm("echo"));
    let hash = text(&put.query::<Value>(&mut admin).expect("MODULE PUT"));
    let e = err_text(q(
        &mut alice,
        &[
            "SCHEDULE",
            "ADD",
            "w",
            "CRON",
            "* * * * *",
            "QUEUE",
            "q",
            "MODULE",
            &hash,
        ],
    ));
    assert!(e.contains("NOMODULE"), "{e}");

    // One name, two tenants: two schedules.
    let add = [
        "SCHEDULE",
        "ADD",
        "tick",
        "CRON",
        "* * * * * *",
        "QUEUE",
        "q",
    ];
    assert_eq!(q(&mut alice, &add).unwrap(), Value::Okay);
    assert_eq!(
        q(
            &mut bob,
            &["SCHEDULE", "ADD", "tick", "CRON", "@yearly", "QUEUE", "q"]
        )
        .unwrap(),
        Value::Okay
    );
    let names = |c: &mut Connection| -> Vec<String> {
        match q(c, &["SCHEDULE", "LS"]).unwrap() {
            Value::Array(list) => list
                .iter()
                .map(|s| match s {
                    Value::Array(f) => text(&f[1]),
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(names(&mut bob), ["tick"]);
    assert_eq!(names(&mut admin), ["alice/tick", "bob/tick"]);
    let bob_show = show(&mut bob, "tick").unwrap();
    assert!(
        bob_show
            .iter()
            .any(|(k, v)| k == "cron" && text(v) == "@yearly")
    );
    // Alice's is unknown to bob, however he names it.
    for name in ["alice/tick", "nope"] {
        let e = err_text(q(&mut bob, &["SCHEDULE", "SHOW", name]));
        assert!(e.contains("schedule"), "{e}");
        let e = err_text(q(&mut bob, &["SCHEDULE", "DEL", name]));
        assert!(e.contains("schedule"), "{e}");
    }
    // HTTP with bob's token lists bob's only.
    let bearer = format!("Bearer bob:{bob_t}");
    let r = http::get_with(
        node.http_addr(),
        "/api/schedules",
        &[("Authorization", &bearer)],
    )
    .expect("GET");
    assert_eq!(r.status, 200, "{}", r.body);
    let doc: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(doc["schedules"].as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(doc["schedules"][0]["tenant"], "bob");

    // Alice's ticks make jobs in her queue, as hers.
    eventually(20, "alice's schedule fires", || {
        ticks(&mut alice, "tick").len() >= 2
    });
    let jobs = queue_ids_on(&mut admin, "alice/q");
    assert!(!jobs.is_empty());
    assert!(matches!(q(&mut alice, &["QLEN", "q"]).unwrap(), Value::Int(n) if n >= 2));
    assert_eq!(q(&mut bob, &["QLEN", "q"]).unwrap(), Value::Int(0));

    // Bob removes his; alice's stays. The admin may remove alice's.
    assert_eq!(
        q(&mut bob, &["SCHEDULE", "DEL", "tick"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(names(&mut admin), ["alice/tick"]);
    assert_eq!(
        q(&mut admin, &["SCHEDULE", "DEL", "alice/tick"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(names(&mut alice), Vec::<String>::new());
    node.stop();
}
