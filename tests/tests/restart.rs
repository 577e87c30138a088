//! A node restarted on the same data dir keeps its identity and modules:
//! a module uploaded before runs after without being compiled again.

use wasque_sdk::proto::AddJob;
use wasque_tests::guests;
use wasque_tests::node::TestNode;
use wasque_tests::resp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_survive_a_restart_without_recompiling() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    let node = TestNode::start_in(&dir, &[]);
    let c = node.client().await;
    let first = c.put_module(guests::wasm("wordcount")).await.unwrap();
    assert!(first.compiled_now);
    let again = c.put_module(guests::wasm("wordcount")).await.unwrap();
    assert!(!again.compiled_now, "a known module is not compiled twice");
    let info = c.node_info().await.unwrap();
    assert_eq!(info.modules_compiled, 1);
    let node_id = info.node_id.clone();
    drop(c);
    assert!(node.stop().success(), "clean stop on SIGTERM");

    let node = TestNode::start_in(&dir, &[]);
    let c = node.client().await;
    let info = c.node_info().await.unwrap();
    assert_eq!(info.node_id, node_id, "the node id persists");
    assert_eq!(info.modules_loaded, 1, "loaded from its artifact");
    assert_eq!(info.modules_compiled, 0, "not compiled again");
    let mut job = AddJob::new("q", b"one two".to_vec());
    job.module = Some(first.hash);
    let s = c.run(job, 30_000).await.unwrap();
    assert_eq!(s.result.unwrap().output, b"2\n");
    assert_eq!(c.node_info().await.unwrap().modules_compiled, 0);
}

#[test]
fn a_second_node_on_the_same_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let _first = TestNode::start_in(&dir, &[]);
    let out = std::process::Command::new(wasque_tests::node::bin("test-wasque-node"))
        .args([
            "--port",
            &wasque_tests::node::free_port().to_string(),
            "--http-port",
            "0",
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another wasque-node"), "{err}");
}

fn resp(node: &TestNode) -> resp::Connection {
    resp::connect(node.addr).expect("RESP connection")
}

fn text(v: resp::Value) -> String {
    match v {
        resp::Value::SimpleString(s) => s,
        resp::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        other => format!("{other:?}"),
    }
}

/// Disque's PAUSE flags are state a restart must not lose: a queue paused
/// in input still refuses adds, one paused in output still holds its jobs
/// back from GETJOB, after kill -9 as after a clean stop.
#[test]
fn paused_queues_stay_paused_across_restarts() {
    use resp::Value;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let node = TestNode::start_in(&dir, &[]);
    let mut c = resp(&node);
    resp::cmd(&mut c, &["ADDJOB", "qout", "held", "0"]).unwrap();
    assert_eq!(
        text(resp::cmd(&mut c, &["PAUSE", "qin", "in"]).unwrap()),
        "in"
    );
    assert_eq!(
        text(resp::cmd(&mut c, &["PAUSE", "qout", "out"]).unwrap()),
        "out"
    );
    assert_eq!(
        text(resp::cmd(&mut c, &["PAUSE", "qall", "all"]).unwrap()),
        "all"
    );
    assert_eq!(
        text(resp::cmd(&mut c, &["PAUSE", "qgone", "in"]).unwrap()),
        "in"
    );
    assert_eq!(
        text(resp::cmd(&mut c, &["PAUSE", "qgone", "none"]).unwrap()),
        "none"
    );
    let refused = resp::cmd(&mut c, &["ADDJOB", "qin", "x", "0"]).unwrap_err();
    assert_eq!(refused.code(), Some("PAUSED"), "{refused}");
    node.kill9();

    for life in 0..2 {
        let node = TestNode::start_in(&dir, &[]);
        let mut c = resp(&node);
        for (q, want) in [
            ("qin", "in"),
            ("qout", "out"),
            ("qall", "all"),
            ("qgone", "none"),
        ] {
            let state = text(resp::cmd(&mut c, &["PAUSE", q, "state"]).unwrap());
            assert_eq!(state, want, "life {life}: queue {q}");
        }
        let refused = resp::cmd(&mut c, &["ADDJOB", "qin", "x", "0"]).unwrap_err();
        assert_eq!(refused.code(), Some("PAUSED"), "life {life}: {refused}");
        let refused = resp::cmd(&mut c, &["ADDJOB", "qall", "x", "0"]).unwrap_err();
        assert_eq!(refused.code(), Some("PAUSED"), "life {life}: {refused}");
        resp::cmd(&mut c, &["ADDJOB", "qgone", "x", "0"]).expect("qgone was resumed");
        assert_eq!(
            resp::cmd(&mut c, &["GETJOB", "NOHANG", "FROM", "qout"]).unwrap(),
            Value::Nil,
            "life {life}: qout is paused in output"
        );
        assert_eq!(resp::cmd(&mut c, &["QLEN", "qout"]).unwrap(), Value::Int(1));
        drop(c);
        assert!(node.stop().success(), "clean stop");
    }

    // Resumed, the queue serves its job, and stays resumed.
    let node = TestNode::start_in(&dir, &[]);
    let mut c = resp(&node);
    assert_eq!(
        text(resp::cmd(&mut c, &["PAUSE", "qout", "none"]).unwrap()),
        "none"
    );
    let Value::Array(got) = resp::cmd(&mut c, &["GETJOB", "NOHANG", "FROM", "qout"]).unwrap()
    else {
        panic!("qout serves its job once resumed")
    };
    assert_eq!(got.len(), 1);
    drop(c);
    node.kill9();
    let node = TestNode::start_in(&dir, &[]);
    let mut c = resp(&node);
    assert_eq!(
        text(resp::cmd(&mut c, &["PAUSE", "qout", "state"]).unwrap()),
        "none"
    );
    assert_eq!(
        text(resp::cmd(&mut c, &["PAUSE", "qin", "state"]).unwrap()),
        "in"
    );
}
