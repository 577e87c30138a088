//! Tenants on real nodes: two tenants on one node, each path that reads or
//! changes state tried across the boundary over every door (RESP, QUIC,
//! HTTP, CLI), quotas, the registry surviving a restart, and a tenant
//! added on one node authenticating on its peer.
//!
//! The isolation check is the asynckey test's: every probe bob can send
//! at alice's job is answered while the job exists and again after alice
//! deleted it, and the answers must be equal (so an id cannot be probed),
//! and none of bob's probes may have touched alice's job.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use wasque_sdk::proto::{AddJob, ErrorCode, JobId};
use wasque_sdk::{Client, ClientConfig, ClientError};
use wasque_tests::guests::wasm;
use wasque_tests::http;
use wasque_tests::node::TestNode;
use wasque_tests::resp::{self, Connection, Value};
use wasque_tests::wait::eventually;

const ADMIN_PW: &str = "admin-s3cret";

fn text(v: &Value) -> String {
    match v {
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

/// A RESP connection authenticated with `auth` (its AUTH words).
fn conn(addr: SocketAddr, auth: &[&str]) -> Connection {
    let mut c = resp::connect(addr).expect("RESP connection");
    let mut words = vec!["AUTH"];
    words.extend_from_slice(auth);
    assert_eq!(resp::cmd(&mut c, &words), Ok(Value::Okay), "AUTH {auth:?}");
    c
}

fn words(c: &mut Connection, w: &[&str]) -> String {
    match resp::cmd(c, w) {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error {e}"),
    }
}

/// Sets the node's password (unless it has one) and adds tenants;
/// returns each one's token.
fn setup(node: &TestNode, tenants: &[(&str, &[&str])]) -> Vec<String> {
    let mut c = resp::connect(node.addr).expect("RESP");
    let set = resp::cmd(&mut c, &["CONFIG", "SET", "requirepass", ADMIN_PW]);
    assert!(
        set == Ok(Value::Okay) || format!("{set:?}").contains("NOAUTH"),
        "{set:?}"
    );
    let mut a = conn(node.addr, &[ADMIN_PW]);
    tenants
        .iter()
        .map(|(name, quotas)| {
            let mut w = vec!["TENANT", "ADD", name];
            w.extend_from_slice(quotas);
            match resp::cmd(&mut a, &w).expect("TENANT ADD") {
                Value::Array(v) => text(&v[2]),
                other => panic!("TENANT ADD answered {other:?}"),
            }
        })
        .collect()
}

async fn client_as(node: &TestNode, name: &str, token: &str) -> Client {
    let mut cfg: ClientConfig = node.client_config();
    cfg.token = Some(format!("{name}:{token}"));
    Client::connect(cfg).await.expect("tenant client")
}

fn cli(node: &TestNode, token: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_test-wasque"))
        .arg("--node")
        .arg(node.addr_str())
        .arg("--data-dir")
        .arg(&node.data_dir)
        .arg("--token")
        .arg(token)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run wasque");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn http_get(node: &TestNode, path: &str, bearer: &str) -> (u16, String) {
    let auth = format!("Bearer {bearer}");
    let r = http::get_with(node.http_addr(), path, &[("Authorization", &auth)]).expect("http");
    (r.status, r.body)
}

/// Every probe bob can make at job `id` (of alice's, queue `q`), over
/// every door, each answer as text. The ids of the answer are masked
/// where the probe is a list (bob's own jobs appear there, alike both
/// times).
async fn probes(
    node: &TestNode,
    bob: &Client,
    bob_token: &str,
    id: JobId,
) -> Vec<(String, String)> {
    let i = id.to_string();
    let i = i.as_str();
    let mut out = Vec::new();
    let mut c = conn(node.addr, &["bob", bob_token]);
    for w in [
        vec!["SHOW", i],
        vec!["RESULT", i],
        vec!["WAITJOB", i, "1"],
        vec!["WORKING", i],
        vec!["NACK", i],
        vec!["ENQUEUE", i],
        vec!["DEQUEUE", i],
        vec!["ACKJOB", i],
        vec!["FASTACK", i],
        vec!["DELJOB", i],
        vec!["FINISH", i, "out"],
        vec!["JSCAN", "REPLY", "ALL"],
        vec!["QLEN", "q"],
        vec!["QPEEK", "q", "10"],
        vec!["QSCAN"],
        vec!["QSTAT", "q"],
        vec!["MODULE", "LIST"],
    ] {
        out.push((format!("RESP {}", w.join(" ")), words(&mut c, &w)));
    }
    for (name, answer) in [
        ("show", format!("{:?}", bob.show(id).await)),
        ("wait", format!("{:?}", bob.wait(id, 10).await)),
        ("ack", format!("{:?}", bob.ack(vec![id]).await)),
        ("deljob", format!("{:?}", bob.deljob(vec![id]).await)),
    ] {
        out.push((format!("QUIC {name}"), answer));
    }
    let bearer = format!("bob:{bob_token}");
    for path in [
        format!("/api/jobs/{id}"),
        "/api/jobs".to_string(),
        "/api/jobs?queue=q".to_string(),
        "/api/queues".to_string(),
        "/api/queues/q".to_string(),
    ] {
        let (status, body) = http_get(node, &path, &bearer);
        out.push((
            format!("HTTP {path}"),
            format!("{status} {}", untimed(&body)),
        ));
    }
    let token = format!("bob:{bob_token}");
    for args in [vec!["show", i], vec!["ackjob", i], vec!["deljob", i]] {
        let (code, o, e) = cli(node, &token, &args);
        out.push((
            format!("CLI {}", args.join(" ")),
            format!("{code:?} {o} {e}"),
        ));
    }
    out
}

/// A JSON answer without its clock readings (idle and waiting times),
/// which differ between two otherwise equal answers.
fn untimed(body: &str) -> String {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|k, _| !k.ends_with("_ms"));
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(mut v) => {
            strip(&mut v);
            v.to_string()
        }
        Err(_) => body.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_see_only_their_own_on_every_door() {
    // DEBUG on, so FLUSHALL below is refused as the admin's, not as off.
    let node = TestNode::start_http(&["--enable-debug-command"]);
    let tokens = setup(&node, &[("alice", &[]), ("bob", &[])]);
    let (alice_tok, bob_tok) = (&tokens[0], &tokens[1]);
    let alice = client_as(&node, "alice", alice_tok).await;
    let bob = client_as(&node, "bob", bob_tok).await;

    // The same bytes uploaded by both: one compiled artifact, two owners.
    let m = alice.put_module(wasm("echo")).await.expect("alice uploads");
    assert!(m.compiled_now);
    let again = bob.put_module(wasm("echo")).await.expect("bob uploads");
    assert_eq!(again.hash, m.hash);
    assert!(!again.compiled_now, "bob's upload reuses alice's artifact");
    // Alice's own module, that bob does not have.
    let only = alice.put_module(wasm("wordcount")).await.expect("upload");
    let mut b = conn(node.addr, &["bob", bob_tok]);
    let mods = words(&mut b, &["MODULE", "LIST"]);
    assert!(mods.contains(&m.hash.to_string()), "{mods}");
    assert!(!mods.contains(&only.hash.to_string()), "{mods}");
    let mut job = AddJob::new("q", b"x".to_vec());
    job.module = Some(only.hash);
    match bob.add_job(job).await {
        Err(ClientError::Node(e)) => assert_eq!(e.code, ErrorCode::NoModule, "{e}"),
        other => panic!("bob ran alice's module: {other:?}"),
    }

    // Both use a queue named q; each sees its own.
    let mut a = conn(node.addr, &["alice", alice_tok]);
    let alice_job = text(&resp::cmd(&mut a, &["ADDJOB", "q", "alice's secret", "0"]).unwrap());
    let bob_job = text(&resp::cmd(&mut b, &["ADDJOB", "q", "bob's", "0"]).unwrap());
    let id: JobId = alice_job.parse().expect("job id");

    let before = probes(&node, &bob, bob_tok, id).await;

    // Nothing bob sent touched alice's job, and alice sees it under "q".
    let shown = words(&mut a, &["SHOW", &alice_job]);
    assert!(shown.contains("queued"), "{shown}");
    assert!(
        shown.contains("\"q\""),
        "alice sees her queue's own name: {shown}"
    );
    assert_eq!(words(&mut a, &["QLEN", "q"]), "int(1)");
    // The admin sees both, under their tenants' names.
    let mut adm = conn(node.addr, &[ADMIN_PW]);
    assert_eq!(words(&mut adm, &["QLEN", "alice/q"]), "int(1)");
    assert_eq!(words(&mut adm, &["QLEN", "bob/q"]), "int(1)");
    let all = words(&mut adm, &["JSCAN"]);
    assert!(all.contains(&alice_job) && all.contains(&bob_job), "{all}");

    assert_eq!(words(&mut a, &["DELJOB", &alice_job]), "int(1)");
    let after = probes(&node, &bob, bob_tok, id).await;
    assert_eq!(before.len(), after.len());
    for ((what, b4), (_, af)) in before.iter().zip(&after) {
        assert_eq!(
            without_ttl(b4),
            without_ttl(af),
            "{what}: answered as for a job that does not exist"
        );
        assert!(!b4.contains("alice"), "{what} leaked alice's: {b4}");
    }
    // Bob's own job is in his lists, seen as queue q.
    let (_, jobs) = http_get(&node, "/api/jobs", &format!("bob:{bob_tok}"));
    assert!(jobs.contains(&bob_job), "{jobs}");
    assert!(!jobs.contains("bob/"), "no prefix shown to bob: {jobs}");

    // The node's own settings and figures are the admin's.
    for w in [
        vec!["INFO"],
        vec!["CONFIG", "GET", "requirepass"],
        vec!["TENANT", "LS"],
        vec!["CLUSTER", "NODES"],
        vec!["SUBSCRIBE", "jobs"],
        vec!["DEBUG", "FLUSHALL"],
    ] {
        let answer = words(&mut b, &w);
        assert!(
            answer.contains("NOPERM") || answer.contains("admin"),
            "{w:?} answered a tenant: {answer}"
        );
    }
    for path in ["/metrics", "/api/cluster", "/api/activity", "/api/events"] {
        let (status, body) = http_get(&node, path, &format!("bob:{bob_tok}"));
        assert_eq!(status, 403, "{path}: {body}");
    }
    match bob.node_info().await {
        Err(ClientError::Node(e)) => assert_eq!(e.code, ErrorCode::NoAuth),
        other => panic!("node info to a tenant: {other:?}"),
    }
    // A wrong token, or alice's token under bob's name, opens nothing.
    let mut c = resp::connect(node.addr).unwrap();
    let w = words(&mut c, &["AUTH", "bob", alice_tok]);
    assert!(w.contains("WRONGPASS"), "{w}");

    // Module removal: bob gives up his claim; alice keeps the module.
    bob.delete_module(m.hash).await.expect("bob drops echo");
    let mods = words(&mut b, &["MODULE", "LIST"]);
    assert!(!mods.contains(&m.hash.to_string()), "{mods}");
    let listed = alice.list_modules().await.expect("alice lists");
    assert!(
        listed.modules.iter().any(|x| x.hash == m.hash),
        "alice keeps echo"
    );
    let mut job = AddJob::new("q", b"still mine".to_vec());
    job.module = Some(m.hash);
    let done = alice.run(job, 10_000).await.expect("alice runs echo");
    assert_eq!(done.result.expect("result").output, b"still mine");

    // Removing a tenant stops its open connections at once.
    assert_eq!(words(&mut adm, &["TENANT", "RM", "bob"]), "ok");
    let w = words(&mut b, &["QLEN", "q"]);
    assert!(w.contains("no longer exists"), "{w}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_with_their_name_and_value_and_drop_nothing() {
    let node = TestNode::start_http(&[]);
    let tok = setup(
        &node,
        &[(
            "carol",
            &[
                "max-jobs",
                "2",
                "max-fuel",
                "50000000",
                "max-memory",
                "32m",
                "max-module-bytes",
                "64k",
            ],
        )],
    )
    .remove(0);
    let mut c = conn(node.addr, &["carol", &tok]);
    let a1 = text(&resp::cmd(&mut c, &["ADDJOB", "q", "1", "0"]).unwrap());
    let _a2 = text(&resp::cmd(&mut c, &["ADDJOB", "q", "2", "0"]).unwrap());
    let third = words(&mut c, &["ADDJOB", "q", "3", "0"]);
    assert!(
        third.contains("QUOTA") && third.contains("max-jobs") && third.contains('2'),
        "{third}"
    );
    assert_eq!(words(&mut c, &["QLEN", "q"]), "int(2)", "nothing dropped");
    assert_eq!(words(&mut c, &["ACKJOB", &a1]), "int(1)");
    let again = words(&mut c, &["ADDJOB", "q", "3", "0"]);
    assert!(!again.contains("QUOTA"), "room again after an ack: {again}");

    let carol = client_as(&node, "carol", &tok).await;
    // A module over max-module-bytes is refused before it is compiled.
    match carol.put_module(wasm("thumbnail")).await {
        Err(ClientError::Node(e)) => {
            assert_eq!(e.code, ErrorCode::Quota, "{e}");
            assert!(e.message.contains("max-module-bytes"), "{e}");
        }
        other => panic!("a module over the quota: {other:?}"),
    }
    let m = carol.put_module(wasm("echo")).await.expect("small module");
    // Fuel over the quota is refused; a job asking none gets the quota.
    let mut job = AddJob::new("w", b"x".to_vec());
    job.module = Some(m.hash);
    job.limits.fuel = Some(60_000_000);
    match carol.add_job(job).await {
        Err(ClientError::Node(e)) => {
            assert_eq!(e.code, ErrorCode::Quota);
            assert!(
                e.message.contains("max-fuel") && e.message.contains("50000000"),
                "{e}"
            );
        }
        other => panic!("fuel over the quota: {other:?}"),
    }
    assert_eq!(words(&mut c, &["DELJOB", &_a2]), "int(1)");
    let mut job = AddJob::new("w", b"x".to_vec());
    job.module = Some(m.hash);
    let id = carol.add_job(job).await.expect("job within quotas");
    let s = carol.show(id).await.expect("show");
    let limits = s.limits.expect("limits");
    assert_eq!(limits.fuel, 50_000_000, "the quota caps the node default");
    assert_eq!(limits.memory_bytes, 32 << 20);

    // jobs-per-sec: a burst past the rate is refused, with the quota named.
    let mut adm = conn(node.addr, &[ADMIN_PW]);
    assert_eq!(
        words(
            &mut adm,
            &[
                "TENANT",
                "SET",
                "carol",
                "jobs-per-sec",
                "3",
                "max-jobs",
                "none"
            ]
        ),
        "ok"
    );
    let answers: Vec<String> = (0..10)
        .map(|i| words(&mut c, &["ADDJOB", "r", &i.to_string(), "0"]))
        .collect();
    let refused = answers
        .iter()
        .filter(|a| a.contains("jobs-per-sec"))
        .count();
    assert!(refused >= 5, "a burst of 10 at 3/s: {answers:?}");

    // The per-tenant series: carol's run, fuel and memory, each refusal
    // by its quota; the admin reads them, carol may not.
    let done = carol.wait(id, 10_000).await.expect("wait").expect("done");
    let fuel = done.result.expect("result").fuel_used;
    assert!(fuel > 0);
    let (status, body) = http_get(&node, "/metrics", ADMIN_PW);
    assert_eq!(status, 200, "{body}");
    let series = |name: &str| -> Option<f64> {
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(
        series(r#"wasque_tenant_runs_total{tenant="carol"}"#),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        series(r#"wasque_tenant_fuel_consumed_total{tenant="carol"}"#),
        Some(fuel as f64),
        "{body}"
    );
    let mem = series(r#"wasque_tenant_memory_byte_seconds_total{tenant="carol"}"#);
    assert!(mem.is_some_and(|m| m > 0.0), "{body}");
    for (quota, n) in [
        ("max-jobs", 1.0),
        ("max-fuel", 1.0),
        ("max-module-bytes", 1.0),
    ] {
        let name = format!(r#"wasque_tenant_rejected_total{{tenant="carol",quota="{quota}"}}"#);
        assert_eq!(series(&name), Some(n), "{name} in {body}");
    }
    let rate = series(r#"wasque_tenant_rejected_total{tenant="carol",quota="jobs-per-sec"}"#);
    assert_eq!(rate, Some(refused as f64), "{body}");
    // Jobs held: the echo job (done, not acked), its fellows and the burst.
    let held = series(r#"wasque_tenant_jobs{tenant="carol"}"#).expect("tenant_jobs");
    let depth = series(r#"wasque_tenant_queue_depth{tenant="carol"}"#).expect("depth");
    assert_eq!(
        depth,
        (10 - refused) as f64 + 1.0,
        "q holds the 2nd add, r the burst"
    );
    assert!(held >= depth + 1.0, "held {held}, ready {depth}");
    assert!(series(r#"wasque_tenant_module_bytes{tenant="carol"}"#).is_some_and(|b| b > 0.0));
    let (status, _) = http_get(&node, "/metrics", &format!("carol:{tok}"));
    assert_eq!(status, 403);
}

#[test]
fn tenants_survive_a_restart_and_reach_the_other_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let conf = tmp.path().join("a.conf");
    std::fs::write(&conf, format!("requirepass {ADMIN_PW}\n")).unwrap();
    let conf = conf.to_str().unwrap();
    let a = TestNode::start_in(&dir, &["--config", conf]);
    let b = TestNode::start(&[]);
    let tok = setup(&a, &[("dave", &[])]).remove(0);
    // The peer needs a password too (tenants need one on every node).
    let mut c = resp::connect(b.addr).unwrap();
    assert_eq!(
        resp::cmd(&mut c, &["CONFIG", "SET", "requirepass", ADMIN_PW]),
        Ok(Value::Okay)
    );
    let mut adm = conn(a.addr, &[ADMIN_PW]);
    let port = b.addr.port().to_string();
    assert_eq!(
        words(&mut adm, &["CLUSTER", "MEET", "127.0.0.1", &port]),
        "ok"
    );
    eventually(20, "the tenant reaches the peer", || {
        let mut c = resp::connect(b.addr).unwrap();
        resp::cmd(&mut c, &["AUTH", "dave", &tok]) == Ok(Value::Okay)
    });
    // Removed on the peer: refused on the first node too.
    let mut adm_b = conn(b.addr, &[ADMIN_PW]);
    assert_eq!(words(&mut adm_b, &["TENANT", "RM", "dave"]), "ok");
    eventually(20, "the removal reaches the first node", || {
        let mut c = resp::connect(a.addr).unwrap();
        resp::cmd(&mut c, &["AUTH", "dave", &tok]).is_err()
    });
    // Added again with a new token, then the first node restarts: the
    // registry file brings it back.
    let mut w = resp::cmd(&mut adm, &["TENANT", "ADD", "erin", "weight", "4"]).unwrap();
    let erin = match &mut w {
        Value::Array(v) => text(&v[2]),
        other => panic!("{other:?}"),
    };
    a.stop();
    std::thread::sleep(Duration::from_millis(100));
    let a = TestNode::start_in(&dir, &["--config", conf]);
    let mut c = resp::connect(a.addr).unwrap();
    assert_eq!(resp::cmd(&mut c, &["AUTH", "erin", &erin]), Ok(Value::Okay));
    let ls = words(&mut conn(a.addr, &[ADMIN_PW]), &["TENANT", "LS"]);
    assert!(ls.contains("erin") && ls.contains("\"4\""), "{ls}");
    assert!(!ls.contains("dave"), "{ls}");
    let file = std::fs::read_to_string(dir.join("tenants.json")).unwrap();
    assert!(!file.contains(&erin), "tokens are kept hashed");
}

/// An answer with the TTL seconds left blanked: they tick down between
/// two probes of the same job.
fn without_ttl(answer: &str) -> String {
    let mut out = String::new();
    let mut rest = answer;
    while let Some(i) = rest.find("ttl") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // Skip to the number after it and drop its digits.
        let j = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let gap = &tail[..j];
        if gap.len() > 16 {
            rest = tail;
            continue;
        }
        out.push_str(gap);
        out.push('N');
        rest = tail[j..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}
