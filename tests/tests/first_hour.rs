//! What a new user meets in the first hour, against the real binaries:
//! plain logs when stderr is a pipe, JSON logs for log shippers,
//! `--version` with the git commit, shell completions and man pages.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wasque_tests::node::{bin, free_port};

/// Starts a node whose stdout and stderr are pipes, waits for its
/// listening line, kills it and returns everything it wrote on stderr.
fn node_stderr(extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("test-wasque-node"))
        .arg("--port")
        .arg(free_port().to_string())
        .args(["--http-port", "0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wasque-node");
    let mut err = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    wait_listening(&mut child);
    // SIGTERM: the node logs its stop too, then exits and closes stderr.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    err_reader.join().unwrap()
}

fn wait_listening(child: &mut Child) {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains("listening") => return,
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    panic!("wasque-node did not print its listening line");
}

#[test]
fn node_logs_to_a_pipe_carry_no_colour_codes() {
    let err = node_stderr(&[]);
    assert!(err.contains("node ready"), "no log lines: {err}");
    assert!(!err.contains("\x1b["), "ANSI codes in piped logs: {err:?}");
}

#[test]
fn node_json_logs_are_one_object_a_line_with_level_and_message() {
    let err = node_stderr(&["--log-format", "json"]);
    let mut n = 0;
    for line in err.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        assert!(v["level"].is_string(), "no level: {line}");
        assert!(v["message"].is_string(), "no message: {line}");
        n += 1;
    }
    assert!(err.contains("node ready") && n >= 2, "too few lines: {err}");
    assert!(!err.contains("\x1b["), "ANSI codes in JSON logs: {err:?}");
}

#[test]
fn an_unknown_log_format_is_refused_with_the_choices() {
    let out = Command::new(bin("test-wasque-node"))
        .args(["--log-format", "xml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("text or json"), "{err}");
}

fn run_ok(name: &str, args: &[&str]) -> String {
    let out = Command::new(bin(name)).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn both_binaries_print_version_and_git_commit() {
    // The commit the build script saw; "unknown" where git is missing.
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    for (bin_name, shown) in [
        ("test-wasque", "wasque"),
        ("test-wasque-node", "wasque-node"),
    ] {
        let v = run_ok(bin_name, &["--version"]);
        let want_prefix = format!("{shown} {} (", env!("CARGO_PKG_VERSION"));
        assert!(v.starts_with(&want_prefix), "{v}");
        let commit = v
            .trim()
            .trim_start_matches(&want_prefix)
            .trim_end_matches(')');
        match &head {
            Some(h) => assert_eq!(commit, h, "{v}"),
            None => assert!(!commit.is_empty(), "{v}"),
        }
    }
}

#[test]
fn completions_for_each_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let s = run_ok("test-wasque", &["completions", shell]);
        assert!(s.contains("addjob") && s.contains("getjob"), "{shell}: {s}");
    }
    let out = Command::new(bin("test-wasque"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_are_roff_naming_the_commands() {
    let m = run_ok("test-wasque", &["manpage"]);
    assert!(m.contains(".TH wasque"), "{m}");
    assert!(m.contains("addjob") && m.contains("completions"), "{m}");
    let m = run_ok("test-wasque-node", &["--manpage"]);
    assert!(m.contains(".TH wasque-node"), "{m}");
    // roff escapes the dashes of an option: \-\-data\-dir.
    assert!(m.contains("data\\-dir"), "{m}");
}

#[test]
fn a_refused_module_is_reported_once_with_its_reason() {
    let node = wasque_tests::node::TestNode::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.wasm");
    std::fs::write(&bad, b"not wasm").unwrap();
    let out = Command::new(bin("test-wasque"))
        .arg("--node")
        .arg(node.addr.to_string())
        .arg("--data-dir")
        .arg(&node.data_dir)
        .args(["module", "put"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // README's Troubleshooting quotes this line.
    assert!(err.contains("BADMODULE: invalid-module"), "{err}");
    assert_eq!(err.matches("not a WebAssembly binary").count(), 1, "{err}");
}
