//! Progress and streamed stdout through a real node: the `progress` guest
//! writes a line and reports progress each step; `wasque logs -f` (a
//! child process, QUIC) prints the first lines while the job still runs
//! and ends when it finishes; `wasque show` and SHOW show its progress
//! meanwhile, and EXPLAIN's `running` reason carries it; `wasque logs`
//! prints the whole output afterwards. A guest writing 300 lines at once
//! gets 100 streamed and the rest counted as dropped, while its result
//! keeps all 300. Every wait is bounded; every child is killed by its
//! own handle.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redis::Value;
use wasque_tests::guests;
use wasque_tests::node::TestNode;
use wasque_tests::resp::{field, text};
use wasque_tests::wait::eventually;

fn q(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    wasque_tests::resp::cmd(c, args)
}

/// A child killed (by its own handle) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `wasque logs -f ID`: its stdout lines and stderr come over
/// channels.
fn follow(node: &TestNode, id: &str) -> (Killed, mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let mut child = node
        .wasque_cmd(&["logs", "-f", id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wasque logs -f");
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let (etx, erx) = mpsc::channel();
    let err = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if etx.send(line).is_err() {
                return;
            }
        }
    });
    (Killed(child), rx, erx)
}

fn wait_exit(child: &mut Killed, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(s)) = child.0.try_wait() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "wasque logs -f did not end within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn add_progress(c: &mut redis::Connection, hash: &str, body: &str) -> String {
    // DELAY 1: the follower is there before the first line.
    text(
        &q(
            c,
            &[
                "ADDJOB", "steps", body, "0", "MODULE", hash, "DELAY", "1", "DEADLINE", "60000",
            ],
        )
        .unwrap(),
    )
}

#[test]
fn logs_follow_shows_lines_before_the_end_and_show_has_progress() {
    let node = TestNode::start(&["--exec-threads", "1"]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP");
    let mut put = redis::cmd("MODULE");
    put.arg("PUT").arg(guests::wasm("progress"));
    let hash = text(&put.query::<Value>(&mut c).unwrap());
    let id = add_progress(&mut c, &hash, "6 400");
    let (mut child, lines, _err) = follow(&node, &id);

    let first = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("a first line within 20 s");
    assert_eq!(first, "step 1 of 6");
    // The job still runs: the line came before its end.
    assert_eq!(
        field(&mut c, "SHOW", &id, "state").as_deref(),
        Some("active")
    );
    // Its progress, through the CLI and RESP, while it runs.
    let mut seen = String::new();
    eventually(10, "wasque show prints its progress", || {
        let out = node.wasque(&["show", &id]);
        seen = String::from_utf8_lossy(&out.stdout).into_owned();
        seen.contains("progress:  ") && seen.contains(" of 6 (")
    });
    assert!(seen.contains("· step "), "{seen}");
    let out = node.wasque(&["show", "--json", &id]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    if doc["state"] == "active" {
        assert_eq!(doc["progress"]["total"], 6, "{doc}");
    }
    let out = node.wasque(&["explain", "--json", &id]);
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    if docs[0]["state"] == "active" {
        assert_eq!(
            docs[0]["reasons"][0]["fields"]["progress-total"], 6,
            "{docs}"
        );
    }

    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let mut all = vec![first];
    all.extend(lines.try_iter());
    let want: Vec<String> = (1..=6).map(|i| format!("step {i} of 6")).collect();
    assert_eq!(all, want);
    assert_eq!(field(&mut c, "SHOW", &id, "state").as_deref(), Some("done"));
    // Finished: no progress any more; `logs` prints the whole output.
    let out = node.wasque(&["show", &id]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("progress:"),
        "{out:?}"
    );
    let out = node.wasque(&["logs", &id]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), want.join("\n") + "\n");
    // Following a finished job ends at once.
    let (mut again, rest, _) = follow(&node, &id);
    assert!(wait_exit(&mut again, Duration::from_secs(10)).success());
    assert_eq!(rest.try_iter().count(), 0);
    // An unknown job: a clear error.
    let out = node.wasque(&["logs", "-f", "0193a000-0000-7000-8000-000000000000"]);
    assert!(!out.status.success(), "{out:?}");
    node.stop();
}

#[test]
fn lines_over_the_rate_are_dropped_and_said_so_while_the_result_keeps_them() {
    let node = TestNode::start(&["--exec-threads", "1"]);
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP");
    let mut put = redis::cmd("MODULE");
    put.arg("PUT").arg(guests::wasm("progress"));
    let hash = text(&put.query::<Value>(&mut c).unwrap());
    let id = add_progress(&mut c, &hash, "300 0");
    let (mut child, lines, err) = follow(&node, &id);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let shown: Vec<String> = lines.try_iter().collect();
    let said: String = err.try_iter().collect::<Vec<_>>().join("\n");
    // 100 a second, and a bucket of one second: about 100 (a few more
    // if the guest took some ms), the rest counted.
    assert!((100..=110).contains(&shown.len()), "{} {said}", shown.len());
    assert_eq!(shown[0], "step 1 of 300");
    let dropped: usize = said
        .lines()
        .find_map(|l| l.strip_prefix("wasque: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drop count in {said:?}"));
    assert!(said.contains("line(s) in all were not streamed"), "{said}");
    let total: usize = said
        .lines()
        .filter(|l| l.contains("in all were not streamed"))
        .find_map(|l| l.strip_prefix("wasque: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(dropped > 0);
    assert_eq!(shown.len() + total, 300, "{said}");
    eventually(10, "the job is done", || {
        field(&mut c, "SHOW", &id, "state").as_deref() == Some("done")
    });
    let output = field(&mut c, "RESULT", &id, "output").unwrap_or_default();
    assert_eq!(output.lines().count(), 300);
    node.stop();
}
