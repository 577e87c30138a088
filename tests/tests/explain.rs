//! EXPLAIN through real nodes: over RESP, the CLI (QUIC) and HTTP, a job
//! queued behind others while every executor slot runs a `spin` job, the
//! running job itself, a delayed job (also after a restart, with the same
//! ready time), a paused queue, a plain job a worker took, and an unknown
//! id (nil, an error, a 404). On three nodes: a holder's copy names the
//! node that added the job, and a Wasm job moved to its group's node is
//! explained by the CLI from both nodes ("lent to B", then "running on
//! this node" from B). Every wait is bounded; the spin jobs are
//! cancelled at the end.

use redis::Value;
use wasque_tests::guests;
use wasque_tests::node::{TestNode, form_cluster};
use wasque_tests::resp::{field, text};
use wasque_tests::wait::eventually;

fn q(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    wasque_tests::resp::cmd(c, args)
}

/// The `kind`s of EXPLAIN's reasons, in order.
fn kinds(c: &mut redis::Connection, id: &str) -> Vec<String> {
    reasons(c, id).into_iter().map(|r| r.0).collect()
}

/// One reason: kind, text, and its fields as name/value text.
type Why = (String, String, Vec<(String, String)>);

/// EXPLAIN's reasons.
fn reasons(c: &mut redis::Connection, id: &str) -> Vec<Why> {
    let Ok(Value::Array(items)) = q(c, &["EXPLAIN", id]) else {
        return vec![];
    };
    let Some(Value::Array(list)) = items
        .chunks(2)
        .find(|kv| text(&kv[0]) == "reasons")
        .map(|kv| kv[1].clone())
    else {
        panic!("no reasons in {items:?}");
    };
    list.into_iter()
        .map(|r| {
            let Value::Array(f) = r else {
                panic!("a reason is an array: {r:?}")
            };
            let pairs: Vec<(String, String)> = f
                .chunks(2)
                .map(|kv| (text(&kv[0]), value(&kv[1])))
                .collect();
            let get = |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (get("kind"), get("text"), pairs[2..].to_vec())
        })
        .collect()
}

fn value(v: &Value) -> String {
    match v {
        Value::Int(n) => n.to_string(),
        other => text(other),
    }
}

fn fields_of<'a>(rs: &'a [Why], kind: &str) -> &'a [(String, String)] {
    &rs.iter()
        .find(|r| r.0 == kind)
        .unwrap_or_else(|| panic!("no {kind} in {rs:?}"))
        .2
}

fn get<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
}

fn put_spin(c: &mut redis::Connection) -> String {
    let mut put = redis::cmd("MODULE");
    put.arg("PUT").arg(guests::wasm("spin"));
    text(&put.query::<Value>(c).unwrap())
}

fn add_spin(c: &mut redis::Connection, queue: &str, hash: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "ADDJOB",
        queue,
        "",
        "5000",
        "MODULE",
        hash,
        "FUEL",
        "90000000000",
        "DEADLINE",
        "60000",
    ];
    args.extend_from_slice(extra);
    text(&q(c, &args).unwrap())
}

#[test]
fn explain_queued_running_delayed_paused_delivered_and_unknown() {
    let node = TestNode::start_http(&["--exec-threads", "1"]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP connection");
    let hash = put_spin(&mut c);
    // One executor thread takes 4 jobs (running or next in line): the
    // fifth and sixth wait for a slot.
    let spins: Vec<String> = (0..6)
        .map(|_| add_spin(&mut c, "spin", &hash, &[]))
        .collect();
    eventually(10, "the first spin job runs", || {
        kinds(&mut c, &spins[0]).first().map(String::as_str) == Some("running")
    });
    let rs = reasons(&mut c, &spins[0]);
    let run = fields_of(&rs, "running");
    assert_eq!(get(run, "node").len(), 40, "{run:?}");
    assert_eq!(get(run, "attempt"), "1");

    assert_eq!(kinds(&mut c, &spins[5]), ["queued", "waiting-for-slot"]);
    let rs = reasons(&mut c, &spins[5]);
    assert_eq!(get(fields_of(&rs, "queued"), "ahead"), "1");
    let slots = fields_of(&rs, "waiting-for-slot");
    assert_eq!((get(slots, "slots"), get(slots, "busy")), ("4", "4"));
    let summary = field(&mut c, "EXPLAIN", &spins[5], "summary").unwrap();
    assert!(
        summary.contains("behind 1 job(s)") && summary.contains("every executor slot"),
        "{summary}"
    );
    // A higher priority goes first: nothing ahead of it.
    let high = add_spin(&mut c, "spin", &hash, &["PRIORITY", "9"]);
    let rs = reasons(&mut c, &high);
    assert_eq!(get(fields_of(&rs, "queued"), "ahead"), "0");
    let rs = reasons(&mut c, &spins[5]);
    let queued = fields_of(&rs, "queued");
    assert_eq!(
        (get(queued, "ahead"), get(queued, "ahead-higher")),
        ("2", "1")
    );

    // The CLI over QUIC: the sentence and one line per reason; JSON too.
    let out = node.wasque(&["explain", &spins[5]]);
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("- waiting-for-slot: slots=4 busy=4"), "{s}");
    assert!(s.contains("behind 2 job(s) (1 of higher priority)"), "{s}");
    let out = node.wasque(&["explain", "--json", &spins[0]]);
    assert!(out.status.success(), "{out:?}");
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(docs[0]["reasons"][0]["kind"], "running", "{docs}");
    assert_eq!(docs[0]["state"], "active");

    // HTTP: the same document, a 404 for an unknown id.
    let r = wasque_tests::http::get(node.http_addr(), &format!("/api/jobs/{}/explain", spins[5]))
        .expect("GET explain");
    assert_eq!(r.status, 200, "{}", r.body);
    let doc: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(doc["reasons"][1]["kind"], "waiting-for-slot", "{doc}");
    assert_eq!(doc["reasons"][0]["fields"]["ahead"], 2, "{doc}");

    // A delayed job, a paused queue, a plain job a worker took.
    let delayed = text(&q(&mut c, &["ADDJOB", "later", "x", "0", "DELAY", "600"]).unwrap());
    let rs = reasons(&mut c, &delayed);
    let in_ms: u64 = get(fields_of(&rs, "delayed"), "in-ms").parse().unwrap();
    assert!((590_000..=600_000).contains(&in_ms), "{in_ms}");
    q(&mut c, &["PAUSE", "held", "out"]).unwrap();
    let held = text(&q(&mut c, &["ADDJOB", "held", "x", "0"]).unwrap());
    assert_eq!(kinds(&mut c, &held), ["queued", "paused"]);
    let plain = text(&q(&mut c, &["ADDJOB", "work", "x", "0", "RETRY", "60"]).unwrap());
    q(&mut c, &["GETJOB", "NOHANG", "FROM", "work"]).unwrap();
    let rs = reasons(&mut c, &plain);
    assert_eq!(get(fields_of(&rs, "delivered"), "attempt"), "1");

    // Unknown: nil, a clear CLI error, 404.
    q(&mut c, &["DELJOB", &held]).unwrap();
    assert_eq!(q(&mut c, &["EXPLAIN", &held]).unwrap(), Value::Nil);
    let out = node.wasque(&["explain", &held]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&held),
        "{out:?}"
    );
    let r = wasque_tests::http::get(node.http_addr(), &format!("/api/jobs/{held}/explain"))
        .expect("GET explain");
    assert_eq!(r.status, 404, "{}", r.body);
    let err = q(&mut c, &["EXPLAIN", "not-an-id"]).unwrap_err();
    assert_eq!(err.code(), Some("BADID"), "{err:?}");

    let mut all = spins.clone();
    all.push(high);
    let mut args = vec!["CANCEL"];
    args.extend(all.iter().map(String::as_str));
    q(&mut c, &args).unwrap();
    node.stop();
}

#[test]
fn a_delay_is_explained_with_the_same_ready_time_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let node = TestNode::start_in(&dir, &[]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP");
    let id = text(&q(&mut c, &["ADDJOB", "later", "x", "0", "DELAY", "600"]).unwrap());
    let rs = reasons(&mut c, &id);
    let ready = get(fields_of(&rs, "delayed"), "ready-at").to_string();
    assert!(node.stop().success());
    let node = TestNode::start_in(&dir, &[]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP");
    let rs = reasons(&mut c, &id);
    assert_eq!(get(fields_of(&rs, "delayed"), "ready-at"), ready);
    node.stop();
}

#[test]
fn on_three_nodes_the_answer_names_the_node_in_hand_and_the_cli_follows_it() {
    let nodes: Vec<TestNode> = (0..3)
        .map(|_| TestNode::start(&["--cluster-node-timeout", "1500", "--exec-threads", "1"]))
        .collect();
    form_cluster(&nodes);
    let mut cs: Vec<_> = nodes
        .iter()
        .map(|n| wasque_tests::resp::connect(n.addr).expect("RESP"))
        .collect();
    // Each node's id, from its HELLO.
    let ids: Vec<String> = cs
        .iter_mut()
        .map(|c| match q(c, &["HELLO"]).unwrap() {
            Value::Array(items) => text(&items[1]),
            other => panic!("HELLO: {other:?}"),
        })
        .collect();

    // Three copies: node 1's is a holder's copy; node 0 added it.
    let id = text(
        &q(
            &mut cs[0],
            &["ADDJOB", "q", "body", "5000", "REPLICATE", "3"],
        )
        .unwrap(),
    );
    let rs = reasons(&mut cs[1], &id);
    let held = fields_of(&rs, "held-elsewhere");
    assert_eq!(get(held, "node"), ids[0]);
    assert_eq!(get(held, "node-up"), "1");
    assert_eq!(kinds(&mut cs[0], &id), ["queued"]);

    // A spin job with a group that lives on another node: lent there,
    // running there once its module arrived.
    let hash = put_spin(&mut cs[0]);
    let mut lent = None;
    for g in 0..40 {
        let group = format!("g{g}");
        let id = add_spin(&mut cs[0], "w", &hash, &["GROUP", &group, "REPLICATE", "1"]);
        if kinds(&mut cs[0], &id).first().map(String::as_str) == Some("lent") {
            lent = Some(id);
            break;
        }
        q(&mut cs[0], &["CANCEL", &id]).ok();
    }
    let id = lent.expect("some group lives on another node");
    let rs = reasons(&mut cs[0], &id);
    let to = get(fields_of(&rs, "lent"), "node").to_string();
    let k = ids
        .iter()
        .position(|n| *n == to)
        .expect("the node it was lent to");
    assert_ne!(k, 0);
    eventually(20, "the lent job runs on its group's node", || {
        kinds(&mut cs[k], &id).first().map(String::as_str) == Some("running")
    });
    let out = nodes[0].wasque(&["--pick", "first", "explain", &id]);
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("lent to node"), "{s}");
    assert!(s.contains("running on this node"), "{s}");
    assert!(s.contains(&format!("on node {}", &to[..8])), "{s}");
    q(&mut cs[0], &["CANCEL", &id]).ok();
    for n in nodes {
        n.stop();
    }
}
