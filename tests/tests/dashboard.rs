//! The dashboard in a real browser: headless Chromium (Debian's
//! `chromium`) driven by `tests/browser/dashboard.mjs` through
//! `playwright-core`, against a node running as a real process. The page
//! must show the node and its queues, then show a job submitted after it
//! loaded without a reload (its job view with its explanation, "Why") (and a failing one among the failures), then
//! show the node as down once it is killed. Screenshots are saved as
//! `target/browser-test/dashboard.png` and `dashboard-down.png`.
//!
//! A second case runs against a node with a password: the page must ask
//! for it, refuse a wrong one, then show the node live, also after a
//! reload (`dashboard-locked.png`).
//!
//! A third runs against a three-node cluster: the page of one node lists
//! all three up; one is killed, and its row must turn red (DOWN) within
//! the cluster's node timeout plus a little, while the others stay up
//! (`dashboard-cluster.png`).
//!
//! Both are `#[ignore]`d (a plain `cargo test` lists them as ignored):
//! `scripts/test.sh` installs Chromium, Node.js and playwright-core and runs
//! them with `--ignored`, where a missing program fails them with its
//! install line.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wasque_sdk::proto::AddJob;
use wasque_tests::guests;
use wasque_tests::node::TestNode;
use wasque_tests::tools;

/// Waits for a child with a deadline; kills it (by its own handle) past it.
fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `npm ci` in `tests/browser` unless playwright-core is already there.
fn install_playwright(dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let mut child = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .spawn()
        .expect("run npm ci in tests/browser");
    let s = wait_bounded(&mut child, Duration::from_secs(300), "npm ci");
    assert!(s.success(), "npm ci in tests/browser failed: {s}");
}

/// A child process that is killed when this goes out of scope.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the screenshots go: `target/browser-test`.
fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("browser-test")
}

/// `dashboard.mjs` running a case: told things on its stdin, its stdout
/// read line by line on a thread of its own.
struct Script {
    child: Killed,
    lines: mpsc::Receiver<String>,
}

impl Script {
    /// `node dashboard.mjs ARGS...` with Chromium at `chromium`.
    fn start(browser_dir: &Path, chromium: &Path, args: &[&str]) -> Script {
        let mut child = Killed(
            Command::new("node")
                .arg(browser_dir.join("dashboard.mjs"))
                .args(args)
                .env("CHROMIUM", chromium)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start node dashboard.mjs"),
        );
        let stdout = child.0.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Script { child, lines }
    }

    /// The next line (trimmed) that `matches`, within 90 s; the lines
    /// before it are echoed.
    fn wait_line(&self, want: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if matches(l.trim()) => return l.trim().to_string(),
                Ok(l) => eprintln!("dashboard.mjs: {l}"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("dashboard.mjs did not print {want} (see its stderr above)");
    }

    /// The next line that is exactly `want`.
    fn expect_line(&self, want: &str) {
        self.wait_line(want, |l| l == want);
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.0.stdin.as_mut().expect("piped");
        writeln!(stdin, "{line}").expect("write to dashboard.mjs");
        stdin.flush().expect("flush");
    }

    /// Waits for the script to end, within 30 s, and asserts it passed.
    fn finish(mut self, case: &str) {
        let status = wait_bounded(&mut self.child.0, Duration::from_secs(30), "dashboard.mjs");
        assert!(status.success(), "dashboard.mjs {case} failed: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and Node.js: scripts/test.sh runs it"]
async fn dashboard_shows_the_node_its_queues_and_new_jobs_live() {
    let chromium = tools::require_chromium();
    tools::require("node", "apt-get install nodejs npm");
    let browser_dir = guests::repo_root().join("tests/browser");
    install_playwright(&browser_dir);

    let node = TestNode::start_http(&["--exec-threads", "1"]);
    let c = node.client().await;
    let wc = c
        .put_module(guests::wasm("wordcount"))
        .await
        .expect("upload")
        .hash;
    let fib = c
        .put_module(guests::wasm("fib"))
        .await
        .expect("upload")
        .hash;
    // A queue that exists before the page loads (a plain job stays queued).
    c.add_job(AddJob::new("waiting", b"for a worker".to_vec()))
        .await
        .expect("add");

    let out = out_dir();
    let _ = std::fs::remove_file(out.join("dashboard.png"));
    let url = format!("http://{}/", node.http_addr());
    let out_arg = out.to_str().expect("utf8 path");
    let mut script = Script::start(&browser_dir, &chromium, &["check", &url, out_arg]);
    script.expect_line("READY");

    // Submitted after the page loaded: it must show up without a reload.
    let mut job = AddJob::new("after-load", b"one two three".to_vec());
    job.module = Some(wc);
    let id = c.add_job(job).await.expect("add");
    let mut bad = AddJob::new("after-load", b"not a number".to_vec());
    bad.module = Some(fib);
    let failed = c.add_job(bad).await.expect("add");
    script.send(&format!("SUBMITTED {id} after-load {failed}"));
    script.expect_line("LIVE-OK");

    // The node goes away: the page must say so.
    drop(c);
    node.kill9();
    script.send("KILLED");
    script.expect_line("OK");
    script.finish("check");
    let png = out.join("dashboard.png");
    assert!(
        std::fs::metadata(&png).is_ok_and(|m| m.len() > 10_000),
        "screenshot at {}",
        png.display()
    );
    eprintln!("dashboard screenshot: {}", png.display());
}

#[test]
#[ignore = "needs Chromium and Node.js: scripts/test.sh runs it"]
fn dashboard_asks_for_the_password_of_a_locked_node() {
    let chromium = tools::require_chromium();
    tools::require("node", "apt-get install nodejs npm");
    let browser_dir = guests::repo_root().join("tests/browser");
    install_playwright(&browser_dir);

    let tmp = tempfile::tempdir().expect("tmp");
    let conf = tmp.path().join("wasque.conf");
    std::fs::write(&conf, "requirepass dash-s3cret\n").expect("write");
    let node = TestNode::start_http(&["--config", conf.to_str().expect("utf8")]);
    // A queue to show: a plain job over RESP, after AUTH.
    let mut c = wasque_tests::resp::connect(node.addr).expect("resp");
    wasque_tests::resp::cmd(&mut c, &["AUTH", "dash-s3cret"]).expect("auth");
    wasque_tests::resp::cmd(&mut c, &["ADDJOB", "locked", "body", "0"]).expect("addjob");

    let out = out_dir();
    let url = format!("http://{}/", node.http_addr());
    let mut child = Killed(
        Command::new("node")
            .arg(browser_dir.join("dashboard.mjs"))
            .args(["locked", &url])
            .arg(&out)
            .arg("dash-s3cret")
            .env("CHROMIUM", &chromium)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node dashboard.mjs"),
    );
    let status = wait_bounded(
        &mut child.0,
        Duration::from_secs(120),
        "dashboard.mjs locked",
    );
    let mut said = String::new();
    if let Some(mut o) = child.0.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut o, &mut said);
    }
    assert!(status.success(), "dashboard.mjs locked failed: {status}");
    assert_eq!(said.trim(), "OK");
}

/// `cluster-node-timeout` of the cluster case.
const NODE_TIMEOUT_MS: u64 = 1500;

#[test]
#[ignore = "needs Chromium and Node.js: scripts/test.sh runs it"]
fn dashboard_draws_a_dead_cluster_member_red() {
    let chromium = tools::require_chromium();
    tools::require("node", "apt-get install nodejs npm");
    let browser_dir = guests::repo_root().join("tests/browser");
    install_playwright(&browser_dir);

    let timeout = NODE_TIMEOUT_MS.to_string();
    let mut nodes: Vec<TestNode> = (0..3)
        .map(|_| TestNode::start_http(&["--cluster-node-timeout", &timeout]))
        .collect();
    wasque_tests::node::form_cluster(&nodes);
    let node_id = |n: &TestNode| -> String {
        let r = wasque_tests::http::get(n.http_addr(), "/api/cluster").expect("GET /api/cluster");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        v["self"].as_str().expect("self id").to_string()
    };
    let dead = node_id(&nodes[2]);

    let out = out_dir();
    let _ = std::fs::remove_file(out.join("dashboard-cluster.png"));
    let url = format!("http://{}/", nodes[0].http_addr());
    let count = nodes.len().to_string();
    let out_arg = out.to_str().expect("utf8 path");
    let mut script = Script::start(&browser_dir, &chromium, &["cluster", &url, out_arg, &count]);
    script.expect_line("READY");

    nodes.remove(2).kill9();
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    script.send(&format!("KILLED {dead} {killed_at}"));
    // The next line starting with DOWN-MS.
    let down = script.wait_line("DOWN-MS", |l| l.starts_with("DOWN-MS"));
    let down_ms: u64 = down
        .strip_prefix("DOWN-MS ")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad line {down}"));
    // The cluster case matched lines by their start.
    script.wait_line("OK", |l| l.starts_with("OK"));
    script.finish("cluster");
    eprintln!(
        "dead member drawn red {down_ms} ms after the kill (node timeout {NODE_TIMEOUT_MS} ms)"
    );
    // SWIM declares a silent member down within the node timeout (probe,
    // suspicion, then half the timeout); the feed sends the change at
    // once. The slack is for a loaded machine.
    assert!(
        down_ms <= NODE_TIMEOUT_MS + 1_000,
        "the dead member turned red only {down_ms} ms after the kill"
    );
    let png = out.join("dashboard-cluster.png");
    assert!(
        std::fs::metadata(&png).is_ok_and(|m| m.len() > 10_000),
        "screenshot at {}",
        png.display()
    );
    drop(nodes);
}
