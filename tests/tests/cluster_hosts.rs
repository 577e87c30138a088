//! Nodes on several hosts, made of Linux network namespaces: each node in
//! a namespace of its own with one 10.77.0.x address, all on a bridge in
//! a hub namespace (every name starts with `wq` and this test's pid, so
//! parallel runs do not clash; nothing is added to the test's own
//! namespace, and no packet leaves the test's namespaces). One node binds
//! 0.0.0.0 and announces its address, one binds its address, one binds
//! 0.0.0.0 and announces nothing (it finds its address). They form a `ca`
//! mode cluster through what they announce, a job with REPLICATE 3 reaches
//! all three, and with one node's link down the other two mark it failed
//! and keep taking jobs. The CLI runs inside the namespaces too.
//!
//! Needs root (`ip netns add`); where namespaces cannot be made it prints
//! "skipped: ..." on stderr and passes.

use std::io::Read;
use std::net::IpAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use wasque_tests::node::TestNode;

const PASSWORD: &str = "hosts-test-pass";
const PORT: u16 = 7711;

/// The test's namespaces; dropped (deleted, with their links and the
/// bridge) after the nodes, which are declared later.
struct Net {
    prefix: String,
    made: Vec<String>,
}

impl Net {
    fn hub(&self) -> String {
        format!("{}hub", self.prefix)
    }

    fn node_ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    fn ip(i: usize) -> IpAddr {
        IpAddr::from([10, 77, 0, i as u8])
    }

    /// Makes the hub with its bridge and three node namespaces, each with
    /// a veth link to the bridge. `Err` says what could not be made.
    fn make() -> Result<Net, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root: network namespaces need root".into());
        }
        let mut net = Net {
            prefix: format!("wq{}", std::process::id()),
            made: Vec::new(),
        };
        let hub = net.hub();
        ip(&["netns", "add", &hub])?;
        net.made.push(hub.clone());
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 1..=3 {
            let ns = net.node_ns(i);
            ip(&["netns", "add", &ns])?;
            net.made.push(ns.clone());
            let port = format!("p{i}");
            // Both ends made in place: nothing passes through this namespace.
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &port, "up"])?;
            let addr = format!("{}/24", Net::ip(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Sets node `i`'s port on the bridge down or up: its host is cut off.
    fn link(&self, i: usize, up: bool) {
        let port = format!("p{i}");
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.hub(), "link", "set", &port, state]).expect("set the link");
    }

    /// With `tc`, drops (or again lets through) every packet node `i`
    /// sends: a queue of length 0 on its interface. A partition that
    /// leaves the link up, as a firewall or a broken route would.
    fn drop_sent(&self, i: usize, drop: bool) {
        let ns = self.node_ns(i);
        let mut args = vec!["netns", "exec", &ns, "tc", "qdisc"];
        if drop {
            args.extend(["add", "dev", "eth0", "root", "pfifo", "limit", "0"]);
        } else {
            args.extend(["del", "dev", "eth0", "root"]);
        }
        ip(&args).expect("tc qdisc on the node's interface");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cluster_hosts: cannot remove namespace {ns}: {e}");
            }
        }
    }
}

/// Runs `ip ARGS` (bounded: 10 s).
fn ip(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    let out = run_bounded(&mut cmd, Duration::from_secs(10))
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs a command to its end, killing it (by its handle) if it takes
/// longer than `within`.
fn run_bounded(cmd: &mut Command, within: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Pipes read on their own threads, so a full pipe never stalls it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + within;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {within:?}"));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// The CLI against `node`, inside its namespace; its stdout, or why not.
fn cli(node: &TestNode, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["--password", PASSWORD];
    full.extend_from_slice(args);
    let out = run_bounded(&mut node.wasque_cmd(&full), Duration::from_secs(30))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Polls `check` every 300 ms until it holds, for at most `secs`.
fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

/// `cluster info` of a node: CLUSTER INFO, then one CLUSTER NODES line
/// per node (`id addr flags ... jobs=N`).
fn info(node: &TestNode) -> String {
    cli(node, &["cluster", "info"]).unwrap_or_default()
}

fn field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

/// The CLUSTER NODES line of the node at `addr`.
fn node_line<'a>(info: &'a str, addr: &str) -> Option<&'a str> {
    info.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(addr))
}

/// The jobs a node says it holds (its own `myself` line).
fn own_jobs(node: &TestNode) -> Option<u64> {
    let info = info(node);
    let mine = info.lines().find(|l| l.contains("myself"))?;
    mine.split_whitespace()
        .find_map(|w| w.strip_prefix("jobs="))?
        .parse()
        .ok()
}

fn flags(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .nth(2)
        .map(|f| f.split(',').collect())
        .unwrap_or_default()
}

#[test]
fn nodes_in_three_namespaces_cluster_through_their_announced_addresses() {
    let net = match Net::make() {
        Ok(n) => n,
        Err(why) => {
            eprintln!(
                "skipped: nodes_in_three_namespaces_cluster_through_their_announced_addresses: {why}"
            );
            return;
        }
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    // Binding beyond loopback needs a password, set in a config file.
    let conf = tmp.path().join("node.conf");
    std::fs::write(&conf, format!("requirepass {PASSWORD}\n")).expect("config file");
    let conf = conf.to_str().expect("a UTF-8 temp path").to_string();
    let common = [
        "--config",
        &conf,
        "--cluster-node-timeout",
        "1500",
        "--exec-threads",
        "1",
    ];
    let addr = |i: usize| format!("{}:{PORT}", Net::ip(i));

    // Node 1 binds every address and announces its own.
    let mut args1 = vec!["--bind", "0.0.0.0"];
    let a1 = addr(1);
    args1.extend(["--announce-addr", &a1]);
    args1.extend(common);
    let n1 = TestNode::start_in_netns(
        &net.node_ns(1),
        Net::ip(1),
        &tmp.path().join("n1"),
        PORT,
        &args1,
    );
    let token = cli(&n1, &["cluster", "init"]).expect("cluster init");
    let token = token.trim();
    assert!(token.starts_with("wasque1."), "{token}");

    // Node 2 binds its address; node 3 binds every address and finds its
    // own (the namespace has no default route: its one interface).
    let ip2 = Net::ip(2).to_string();
    let join = ["--join", &a1, "--join-token", token];
    let mut args2 = vec!["--bind", &ip2];
    args2.extend(join);
    args2.extend(common);
    let n2 = TestNode::start_in_netns(
        &net.node_ns(2),
        Net::ip(2),
        &tmp.path().join("n2"),
        PORT,
        &args2,
    );
    let mut args3 = vec!["--bind", "0.0.0.0"];
    args3.extend(join);
    args3.extend(common);
    let n3 = TestNode::start_in_netns(
        &net.node_ns(3),
        Net::ip(3),
        &tmp.path().join("n3"),
        PORT,
        &args3,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut announced = None;
    while announced.is_none() && Instant::now() < deadline {
        if let Ok(line) = n3.stdout.recv_timeout(Duration::from_millis(200))
            && line.contains("announces")
        {
            announced = Some(line);
        }
    }
    let announced = announced.expect("node 3 prints the address it announces");
    assert!(announced.contains(&addr(3)), "{announced}");

    let nodes = [&n1, &n2, &n3];
    for n in nodes {
        eventually(40, "every node reaches the other two", || {
            field(&info(n), "cluster_reachable_nodes").as_deref() == Some("2")
        });
    }
    // Each node knows the others by their announced addresses, never 0.0.0.0.
    for n in nodes {
        let text = info(n);
        for i in 1..=3 {
            assert!(node_line(&text, &addr(i)).is_some(), "{i} in:\n{text}");
        }
        assert!(!text.contains("0.0.0.0"), "{text}");
    }

    // Over QUIC from node 1's namespace: the client checks node 1's
    // certificate against the address it dials (the announced one).
    let id = cli(
        &n1,
        &[
            "--pick",
            "first",
            "addjob",
            "hosts",
            "body",
            "10000",
            "replicate",
            "3",
        ],
    )
    .expect("addjob with replicate 3");
    let id = id.trim().to_string();
    assert!(!id.is_empty());
    for n in nodes {
        eventually(20, "every node holds the job", || own_jobs(n) == Some(1));
    }
    cli(&n2, &["--pick", "first", "show", &id]).expect("show on node 2");

    // Node 3's host drops off the network: the other two mark it failed
    // and go on taking jobs between themselves.
    net.link(3, false);
    for n in [&n1, &n2] {
        eventually(30, "node 3 is marked failed", || {
            node_line(&info(n), &addr(3)).is_some_and(|l| flags(l).contains(&"fail"))
        });
    }
    let id2 = cli(
        &n1,
        &[
            "--pick",
            "first",
            "addjob",
            "hosts",
            "more",
            "10000",
            "replicate",
            "2",
        ],
    )
    .expect("addjob with node 3 cut off");
    assert!(!id2.trim().is_empty());
    eventually(20, "node 2 holds the new job", || own_jobs(&n2) == Some(2));

    // The link comes back: node 3 is reachable again from both.
    net.link(3, true);
    for n in nodes {
        eventually(40, "node 3 is back", || {
            field(&info(n), "cluster_reachable_nodes").as_deref() == Some("2")
        });
    }

    // A partition made with tc: node 2 sends nothing while its link stays
    // up. Nodes 1 and 3 mark it failed and go on; once it heals, all three
    // reach each other again.
    net.drop_sent(2, true);
    for n in [&n1, &n3] {
        eventually(30, "node 2 is marked failed", || {
            node_line(&info(n), &addr(2)).is_some_and(|l| flags(l).contains(&"fail"))
        });
    }
    let id3 = cli(
        &n3,
        &[
            "--pick",
            "first",
            "addjob",
            "hosts",
            "third",
            "10000",
            "replicate",
            "2",
        ],
    )
    .expect("addjob with node 2 partitioned");
    assert!(!id3.trim().is_empty());
    net.drop_sent(2, false);
    for n in nodes {
        eventually(40, "the partition heals", || {
            field(&info(n), "cluster_reachable_nodes").as_deref() == Some("2")
        });
    }
    eventually(
        20,
        "node 2 shows the job added while it was cut off",
        || cli(&n2, &["--pick", "first", "show", id3.trim()]).is_ok(),
    );
    // The nodes are dropped (killed) before `net`, declared first.
}
