//! A node whose driver task panics exits non-zero, with the panic in its
//! log, instead of hanging with open sockets: `DEBUG PANIC-DRIVER` (only
//! with `--enable-debug-command`) makes a real node's driver panic.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use wasque_tests::node::TestNode;
use wasque_tests::resp;

#[test]
fn a_panicking_driver_ends_the_node_non_zero_with_the_panic_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let conf = dir.path().join("wasque.conf");
    std::fs::write(&conf, format!("logfile \"{}\"\n", log.display())).unwrap();
    let data = dir.path().join("data");
    let mut node = TestNode::start_in(&data, &["--enable-debug-command", conf.to_str().unwrap()]);
    // The node answers before.
    let mut c = resp::connect(node.addr).expect("RESP");
    assert_eq!(
        resp::cmd(&mut c, &["PING"]),
        Ok(resp::Value::SimpleString("PONG".into()))
    );
    // The reply never comes: the driver dies on it.
    let mut raw = TcpStream::connect(node.addr).unwrap();
    raw.write_all(b"DEBUG PANIC-DRIVER\r\n").unwrap();
    let status = node
        .wait_exit(Duration::from_secs(10))
        .expect("the node exits within 10 s of its driver's panic");
    assert!(!status.success(), "exit status {status:?} must be non-zero");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("panicked: DEBUG PANIC-DRIVER") && text.contains("task=\"driver\""),
        "the panic is in the log:\n{text}"
    );
}

#[test]
fn panic_driver_is_refused_without_the_debug_flag() {
    let mut node = TestNode::start(&[]);
    let mut c = resp::connect(node.addr).expect("RESP");
    let r = resp::cmd(&mut c, &["DEBUG", "PANIC-DRIVER"]);
    assert!(r.is_err(), "{r:?}");
    assert_eq!(
        resp::cmd(&mut c, &["PING"]),
        Ok(resp::Value::SimpleString("PONG".into()))
    );
    assert!(node.wait_exit(Duration::from_millis(300)).is_none());
}

/// A node without a store (`appendonly no`) has no writer thread: that is
/// not a dead writer, and the node runs on.
#[test]
fn a_node_without_a_store_is_not_taken_for_one_whose_writer_died() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("wasque.conf");
    std::fs::write(&conf, "appendonly no\n").unwrap();
    let mut node = TestNode::start_in(&dir.path().join("data"), &[conf.to_str().unwrap()]);
    let mut c = resp::connect(node.addr).expect("RESP");
    assert!(resp::cmd(&mut c, &["ADDJOB", "q", "x", "0"]).is_ok());
    assert!(node.wait_exit(Duration::from_millis(500)).is_none());
    assert_eq!(
        resp::cmd(&mut c, &["PING"]),
        Ok(resp::Value::SimpleString("PONG".into()))
    );
}
