//! The module catalogue on real three-node clusters, over RESP (and the
//! CLI once): `MODULE LIST` on any node is the union of every member's
//! modules with their holders, and names a member that does not answer;
//! `MODULE DEL` removes a module from every holder, and is refused while a
//! job anywhere needs it (naming the job) or a member is silent;
//! `MODULE PUT ... REPLICATE n` puts the bytes on n nodes before the
//! reply; a tenant sees and removes only its own modules. Every wait is
//! bounded, every node is killed by its own handle when the test ends.

use std::collections::BTreeMap;

use wasque_tests::guests::wasm;
use wasque_tests::node::{TestNode, form_cluster};
use wasque_tests::resp::{self, Connection, Value};
use wasque_tests::wait::eventually;

const NODE_TIMEOUT: &[&str] = &["--cluster-node-timeout", "1500"];

fn start(n: usize, extra: &[&str]) -> Vec<TestNode> {
    let mut args = NODE_TIMEOUT.to_vec();
    args.extend_from_slice(extra);
    let nodes: Vec<TestNode> = (0..n).map(|_| TestNode::start(&args)).collect();
    form_cluster(&nodes);
    nodes
}

fn conn(node: &TestNode) -> Connection {
    let c = resp::connect(node.addr).expect("RESP connection");
    c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    c
}

fn text(v: &Value) -> String {
    resp::text(v)
}

/// The node's id (HELLO's second element).
fn node_id(node: &TestNode) -> String {
    match resp::cmd(&mut conn(node), &["HELLO"]).expect("HELLO") {
        Value::Array(v) => text(&v[1]),
        other => panic!("HELLO answered {other:?}"),
    }
}

/// `MODULE PUT bytes words...` → the hash, or the error's text.
fn put(c: &mut Connection, bytes: &[u8], words: &[&str]) -> Result<String, String> {
    let mut cmd = redis::cmd("MODULE");
    cmd.arg("PUT").arg(bytes);
    for w in words {
        cmd.arg(*w);
    }
    match cmd.query::<Value>(c) {
        Ok(v) => Ok(text(&v)),
        Err(e) => Err(e.to_string()),
    }
}

/// One module as `MODULE LIST` shows it.
#[derive(Debug, Clone, PartialEq)]
struct Listed {
    size: String,
    jobs: String,
    holders: Vec<String>,
    names: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(text).collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// `MODULE LIST`: the modules by hash, and the members that did not answer.
fn list(c: &mut Connection) -> (BTreeMap<String, Listed>, Vec<String>) {
    let Value::Array(entries) = resp::cmd(c, &["MODULE", "LIST"]).expect("MODULE LIST") else {
        panic!("MODULE LIST is not an array")
    };
    let mut out = BTreeMap::new();
    let mut unanswered = Vec::new();
    for e in entries {
        let Value::Array(kv) = e else {
            panic!("entry is not an array: {e:?}")
        };
        if text(&kv[0]) == "unanswered" {
            unanswered = strings(&kv[1]);
            continue;
        }
        let mut fields = BTreeMap::new();
        for pair in kv.chunks(2) {
            fields.insert(text(&pair[0]), pair[1].clone());
        }
        let mut holders = strings(&fields["holders"]);
        holders.sort();
        out.insert(
            text(&fields["sha256"]),
            Listed {
                size: text(&fields["size"]),
                jobs: text(&fields["jobs"]),
                holders,
                names: strings(&fields["names"]),
            },
        );
    }
    (out, unanswered)
}

fn del(c: &mut Connection, hash: &str) -> Result<String, String> {
    resp::cmd(c, &["MODULE", "DEL", hash])
        .map(|v| text(&v))
        .map_err(|e| e.to_string())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn list_is_the_union_with_holders_and_del_removes_everywhere_unless_a_job_needs_it() {
    let nodes = start(3, &["--enable-debug-command"]);
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let echo = put(&mut conn(&nodes[0]), &wasm("echo"), &[]).expect("echo on node 0");
    let wc = put(&mut conn(&nodes[1]), &wasm("wordcount"), &[]).expect("wordcount on node 1");

    // Any node lists both, each with the node that holds it.
    for n in &nodes {
        let (mods, unanswered) = list(&mut conn(n));
        assert!(unanswered.is_empty(), "{unanswered:?}");
        assert_eq!(mods.len(), 2, "{mods:?}");
        assert_eq!(mods[&echo].holders, vec![ids[0].clone()]);
        assert_eq!(mods[&wc].holders, vec![ids[1].clone()]);
        assert_eq!(mods[&echo].size, wasm("echo").len().to_string());
    }
    // The CLI shows the same, holders by their short ids.
    let out = nodes[2].wasque(&["module", "ls"]);
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with(&echo) && l.contains(&ids[0][..8])),
        "{shown}"
    );

    // A job added on node 2, which does not hold echo, needs it for a
    // minute there and on its other holders.
    let mut c2 = conn(&nodes[2]);
    let job = eventually_add(&mut c2, &echo);
    let refused = del(&mut conn(&nodes[1]), &echo).expect_err("a job needs echo");
    assert!(refused.contains(&job), "names the job: {refused}");
    assert!(refused.contains("needed by"), "{refused}");
    // Nothing was removed.
    assert_eq!(
        list(&mut conn(&nodes[1])).0[&echo].holders,
        vec![ids[0].clone()]
    );

    // Once the job is acked (on every holder), a node that does not
    // hold the module removes it from the node that does.
    assert_eq!(
        text(&resp::cmd(&mut c2, &["ACKJOB", &job]).expect("ACKJOB")),
        "1"
    );
    let mut removed = Err(String::new());
    eventually(20, "echo removed once no job needs it", || {
        removed = del(&mut conn(&nodes[1]), &echo);
        removed.is_ok()
    });
    assert_eq!(removed, Ok("OK".into()));
    for n in &nodes {
        let (mods, _) = list(&mut conn(n));
        assert!(!mods.contains_key(&echo), "{mods:?}");
        assert!(mods.contains_key(&wc));
    }
    // Gone from node 0's disk too: an add naming it there is refused once
    // node 0 no longer advertises it.
    let e = del(&mut conn(&nodes[0]), &echo).expect_err("no such module any more");
    assert!(e.contains("NOMODULE"), "{e}");

    // A member that does not answer is named, and blocks a removal.
    let mut c0 = conn(&nodes[0]);
    assert_eq!(
        text(&resp::cmd(&mut c0, &["DEBUG", "PARTITION", &ids[1]]).expect("PARTITION")),
        "OK"
    );
    let (mods, unanswered) = list(&mut c0);
    assert_eq!(unanswered, vec![ids[1].clone()]);
    assert!(!mods.contains_key(&wc), "node 1's module is not claimed");
    let refused = del(&mut c0, &wc).expect_err("node 1 is silent");
    assert!(
        refused.contains(&ids[1][..8]) && refused.contains("did not answer"),
        "{refused}"
    );
    resp::cmd(&mut c0, &["DEBUG", "HEAL"]).expect("HEAL");
    eventually(20, "node 1 answers again", || {
        list(&mut conn(&nodes[0])).1.is_empty()
    });
    assert_eq!(del(&mut c0, &wc), Ok("OK".into()));
    assert!(list(&mut conn(&nodes[2])).0.is_empty());
}

/// Adds a delayed job on `c` naming `module` (bounded retries: the node
/// learns of a peer's module from its adverts); its id.
fn eventually_add(c: &mut Connection, module: &str) -> String {
    let mut id = String::new();
    eventually(10, "the add is taken", || {
        match resp::cmd(
            c,
            &["ADDJOB", "q", "x", "5000", "MODULE", module, "DELAY", "60"],
        ) {
            Ok(v) => {
                id = text(&v);
                true
            }
            Err(_) => false,
        }
    });
    id
}

#[test]
fn put_with_replicate_reaches_peers_before_the_reply() {
    let nodes = start(3, &[]);
    let ids = sorted(nodes.iter().map(node_id).collect());
    let mut c0 = conn(&nodes[0]);
    let echo = put(&mut c0, &wasm("echo"), &["REPLICATE", "3"]).expect("put on 3 nodes");
    // Straight after the reply every node holds it (the list asks each
    // node's engine, not the adverts).
    let (mods, _) = list(&mut conn(&nodes[2]));
    assert_eq!(mods[&echo].holders, ids);
    // More copies than nodes: refused, saying how far it got.
    let e = put(&mut c0, &wasm("wordcount"), &["REPLICATE", "4"]).expect_err("too few nodes");
    assert!(e.contains("NOREPL") && e.contains("3 of the 4"), "{e}");
    // The uploading node goes away; a job added on another runs there.
    let mut nodes = nodes;
    nodes.remove(0).kill9();
    let mut c1 = conn(&nodes[0]);
    let id = text(
        &resp::cmd(
            &mut c1,
            &[
                "ADDJOB",
                "q",
                "hello",
                "5000",
                "MODULE",
                &echo,
                "REPLICATE",
                "1",
            ],
        )
        .expect("add"),
    );
    let out = resp::cmd(&mut c1, &["WAITJOB", &id, "20000"]).expect("WAITJOB");
    assert!(format!("{out:?}").contains("hello"), "{out:?}");
}

#[test]
fn a_tenant_lists_and_removes_only_its_own_modules_cluster_wide() {
    let nodes = start(3, &[]);
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let pw = "admin-pw";
    for n in &nodes {
        let mut c = conn(n);
        assert_eq!(
            resp::cmd(&mut c, &["CONFIG", "SET", "requirepass", pw]),
            Ok(Value::Okay)
        );
    }
    let mut admin = conn(&nodes[0]);
    resp::cmd(&mut admin, &["AUTH", pw]).expect("AUTH");
    let mut token =
        |name: &str| match resp::cmd(&mut admin, &["TENANT", "ADD", name]).expect("TENANT ADD") {
            Value::Array(v) => text(&v[2]),
            other => panic!("{other:?}"),
        };
    let (alice, bob) = (token("alice"), token("bob"));
    let as_tenant = |node: &TestNode, name: &str, tok: &str| {
        let mut c = conn(node);
        let mut ok = false;
        eventually(20, "the tenant authenticates on this node", || {
            ok = resp::cmd(&mut c, &["AUTH", name, tok]) == Ok(Value::Okay);
            ok
        });
        c
    };
    let mut alice0 = as_tenant(&nodes[0], "alice", &alice);
    let echo = put(
        &mut alice0,
        &wasm("echo"),
        &["NAME", "mine", "VERSION", "1"],
    )
    .expect("alice uploads on node 0");
    let mut alice2 = as_tenant(&nodes[2], "alice", &alice);
    let mut bob1 = as_tenant(&nodes[1], "bob", &bob);
    let wc = put(&mut bob1, &wasm("wordcount"), &[]).expect("bob uploads on node 1");

    // Each sees its own, wherever it asks, with the holder.
    eventually(20, "alice's ownership reached node 2", || {
        list(&mut alice2).0.contains_key(&echo)
    });
    let (mine, _) = list(&mut alice2);
    assert_eq!(mine.keys().collect::<Vec<_>>(), vec![&echo]);
    assert_eq!(mine[&echo].holders, vec![ids[0].clone()]);
    let (bobs, _) = list(&mut bob1);
    assert_eq!(bobs.keys().collect::<Vec<_>>(), vec![&wc]);

    // Alice's name is hers: she runs it on node 2, bob cannot name it,
    // the admin sees it under her prefix.
    let mut ran = Err(String::new());
    eventually(20, "alice's name reached node 2", || {
        ran = run_named(&mut alice2, "mine", "hi");
        ran.is_ok()
    });
    assert_eq!(ran, Ok("hi".into()));
    assert_eq!(mine_names(&mut alice2, &echo), vec!["mine@1".to_string()]);
    let e = run_named(&mut bob1, "mine", "x").expect_err("not bob's name");
    assert!(e.contains("NOMODULE"), "{e}");

    // Bob cannot remove alice's module, which stays.
    let e = del(&mut bob1, &echo).expect_err("not bob's");
    assert!(e.contains("NOMODULE"), "{e}");
    let mut admin1 = conn(&nodes[1]);
    resp::cmd(&mut admin1, &["AUTH", pw]).expect("AUTH");
    assert!(list(&mut admin1).0.contains_key(&echo));
    assert_eq!(
        mine_names(&mut admin1, &echo),
        vec!["alice/mine@1".to_string()]
    );

    // Alice removes hers from node 2: gone from node 0.
    assert_eq!(del(&mut alice2, &echo), Ok("OK".into()));
    let (all, _) = list(&mut admin1);
    assert!(!all.contains_key(&echo), "{all:?}");
    assert!(all.contains_key(&wc));
    let e = run_named(&mut alice2, "mine", "x").expect_err("the name went with it");
    assert!(e.contains("NOMODULE"), "{e}");
}

fn mine_names(c: &mut Connection, hash: &str) -> Vec<String> {
    list(c).0[hash].names.clone()
}

/// Adds a job naming `module` on `c` (bounded retries while the name
/// table reaches that node) and waits for its output, or the add's error.
fn run_named(c: &mut Connection, module: &str, body: &str) -> Result<String, String> {
    let id = match resp::cmd(
        c,
        &[
            "ADDJOB",
            "q",
            body,
            "5000",
            "MODULE",
            module,
            "REPLICATE",
            "1",
        ],
    ) {
        Ok(v) => text(&v),
        Err(e) => return Err(e.to_string()),
    };
    let Value::Array(r) = resp::cmd(c, &["WAITJOB", &id, "20000"]).expect("WAITJOB") else {
        panic!("WAITJOB")
    };
    let output = r
        .chunks(2)
        .find(|kv| text(&kv[0]) == "output")
        .map(|kv| text(&kv[1]))
        .expect("output");
    Ok(output)
}

#[test]
fn names_and_versions_resolve_on_every_node_latest_by_version_order() {
    let nodes = start(3, &[]);
    let echo = put(
        &mut conn(&nodes[0]),
        &wasm("echo"),
        &["NAME", "tool", "VERSION", "1.9"],
    )
    .expect("echo as tool@1.9");
    let wc = put(
        &mut conn(&nodes[1]),
        &wasm("wordcount"),
        &["NAME", "tool", "VERSION", "1.10"],
    )
    .expect("wordcount as tool@1.10");
    // A name and version always go together.
    let e = put(&mut conn(&nodes[0]), &wasm("echo"), &["NAME", "x"]).expect_err("no version");
    assert!(e.contains("VERSION"), "{e}");

    // On node 2, which holds neither: the version named, and the latest
    // (1.10 comes after 1.9).
    let mut c2 = conn(&nodes[2]);
    let mut latest = Err(String::new());
    eventually(20, "both names reached node 2", || {
        latest = run_named(&mut c2, "tool", "a b c");
        latest == Ok("3\n".into())
    });
    assert_eq!(run_named(&mut c2, "tool@1.9", "a b c"), Ok("a b c".into()));
    let e = run_named(&mut c2, "tool@2", "x").expect_err("no such version");
    assert!(e.contains("NOMODULE") && e.contains("1.9, 1.10"), "{e}");
    let e = run_named(&mut c2, "other", "x").expect_err("no such name");
    assert!(
        e.contains("NOMODULE") && e.contains("no module named other"),
        "{e}"
    );

    // The same name and version for other bytes is refused on any node.
    let e =
        put(&mut c2, &wasm("fib"), &["NAME", "tool", "VERSION", "1.9"]).expect_err("taken by echo");
    assert!(e.contains(&echo) && e.contains("already"), "{e}");
    // The same bytes again are fine.
    assert_eq!(
        put(&mut c2, &wasm("echo"), &["NAME", "tool", "VERSION", "1.9"]),
        Ok(echo.clone())
    );

    // The catalogue shows the names; the CLI resolves them too.
    let (mods, _) = list(&mut conn(&nodes[0]));
    assert_eq!(mods[&echo].names, vec!["tool@1.9".to_string()]);
    assert_eq!(mods[&wc].names, vec!["tool@1.10".to_string()]);
    let o = nodes[1].wasque(&[
        "addjob",
        "q",
        "hello there",
        "5000",
        "--module",
        "tool@1.9",
        "--wait",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello there", "{o:?}");
    let o = nodes[1].wasque(&[
        "addjob",
        "q",
        "hello there",
        "5000",
        "--module",
        "tool",
        "--wait",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "2\n", "{o:?}");

    // Removing a module removes its names everywhere: the latest moves
    // back to 1.9.
    assert_eq!(del(&mut conn(&nodes[0]), &wc), Ok("OK".into()));
    eventually(20, "the removal reached node 2", || {
        run_named(&mut c2, "tool", "p q") == Ok("p q".into())
    });
}
