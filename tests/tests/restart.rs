//! A node restarted on the same data dir keeps its identity and modules:
//! a module uploaded before runs after without being compiled again.

use wasque_sdk::proto::AddJob;
use wasque_tests::guests;
use wasque_tests::node::TestNode;

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
