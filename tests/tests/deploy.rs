//! The deployment files in `deploy/` (docs/DEPLOY.md) checked against
//! the node, without a container runtime: every flag they pass is one
//! `wasque-node --help` lists, the example config starts a node, the
//! image runs as a non-root user on the node's default ports, and the
//! manifest's probes answer.

use std::path::PathBuf;

use redis::Value;
use wasque_tests::http;
use wasque_tests::node::TestNode;

fn deploy(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `--flags` of `text`'s words.
fn flags(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '"' | ',' | '[' | ']'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.split('=').next().unwrap_or(w).to_string())
        .collect()
}

fn node_help() -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_test-wasque-node"))
        .arg("--help")
        .output()
        .expect("run wasque-node --help");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_flag_the_deploy_files_pass_is_one_the_node_knows() {
    let help = node_help();
    let unit = deploy("wasque-node.service");
    let exec: String = unit
        .lines()
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    let docker = deploy("Dockerfile");
    let run: String = docker
        .lines()
        .filter(|l| l.starts_with("ENTRYPOINT") || l.starts_with("CMD"))
        .collect();
    let k8s = deploy("kubernetes.yaml");
    // The container's start script: from `args:` to its `ports:`.
    let script = k8s
        .split_once("args:")
        .and_then(|(_, rest)| rest.split_once("ports:"))
        .map(|(s, _)| s)
        .expect("the manifest's args block");
    let mut seen = 0;
    for (file, text) in [
        ("wasque-node.service", exec.as_str()),
        ("Dockerfile", run.as_str()),
        ("kubernetes.yaml", script),
    ] {
        let fs = flags(text);
        assert!(!fs.is_empty(), "{file}: no flags found");
        for f in fs {
            assert!(
                help.contains(&format!("{f} ")) || help.contains(&format!("{f}\n")),
                "{file} passes {f}, which wasque-node --help does not list"
            );
            seen += 1;
        }
    }
    assert!(seen >= 8, "{seen}");
    // The manifest's join uses the DNS name the headless Service gives pod 0.
    assert!(k8s.contains("serviceName: wasque") && k8s.contains("clusterIP: None"));
    assert!(script.contains("wasque-0.wasque:7711"));
}

#[test]
fn the_image_runs_unprivileged_on_the_default_ports() {
    let docker = deploy("Dockerfile");
    let user = docker
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "{user}"
    );
    for port in ["7711/tcp", "7711/udp", "7780/tcp"] {
        assert!(docker.contains(port), "EXPOSE {port}");
    }
    assert!(docker.contains("VOLUME [\"/data\"]"));
    let k8s = deploy("kubernetes.yaml");
    assert!(k8s.contains("runAsNonRoot: true") && k8s.contains("runAsUser: 10001"));
    assert!(k8s.contains("allowPrivilegeEscalation: false"));
}

#[test]
fn the_example_config_starts_a_node_and_the_probes_answer() {
    // deploy/wasque.conf as it is, on loopback (flags win over the file).
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("wasque.conf");
    std::fs::write(&conf, deploy("wasque.conf")).expect("write config");
    let conf = conf.to_str().expect("utf-8 path");
    let node = TestNode::start_http(&["--config", conf, "--bind", "127.0.0.1"]);
    let k8s = deploy("kubernetes.yaml");
    for probe in ["/readyz", "/healthz"] {
        assert!(k8s.contains(&format!("path: {probe}")), "{probe}");
        let r = http::get(node.http_addr(), probe).expect("GET");
        assert_eq!(r.status, 200, "{probe}: {}", r.body);
    }
    // The config's password is in force.
    let mut c = wasque_tests::resp::connect(node.addr).expect("RESP");
    let refused = redis::cmd("QLEN").arg("q").query::<Value>(&mut c);
    assert!(refused.is_err(), "{refused:?}");
    let pw = deploy("wasque.conf")
        .lines()
        .find_map(|l| l.strip_prefix("requirepass "))
        .expect("requirepass")
        .trim()
        .to_string();
    let ok = redis::cmd("AUTH").arg(&pw).query::<Value>(&mut c);
    assert_eq!(ok.unwrap(), Value::Okay);
    assert_eq!(
        redis::cmd("QLEN").arg("q").query::<Value>(&mut c).unwrap(),
        Value::Int(0)
    );
    node.stop();
}
