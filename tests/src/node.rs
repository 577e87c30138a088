//! A `wasque-node` started as a real process for a test: free loopback
//! port, its own temporary data dir, stdout watched for the listening
//! line, and killed by its own handle when dropped.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running node process.
pub struct TestNode {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// The HTTP address, for nodes started with [`TestNode::start_http`].
    http: Option<SocketAddr>,
    _tmp: Option<tempfile::TempDir>,
    /// Lines the node printed on stdout after starting.
    pub stdout: mpsc::Receiver<String>,
    /// The network namespace the node runs in, if not this one: the CLI
    /// of [`TestNode::wasque_cmd`] runs there too.
    netns: Option<String>,
}

/// Path of a binary of this package, built by cargo for the tests.
pub fn bin(name: &str) -> PathBuf {
    // Integration tests get CARGO_BIN_EXE_<name>; the library itself finds
    // the binaries next to the test executable's folder.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("target dir");
    dir.join(name)
}

/// A loopback port free for both TCP and UDP right now, chosen below the
/// kernel's ephemeral range: a node restarted on its port (the crash
/// tests) must not find it taken meanwhile by some client's ephemeral
/// socket, which the kernel hands out from that range.
pub fn free_port() -> u16 {
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if ephemeral_from > 12_000 {
        let span = u64::from(ephemeral_from - 10_000);
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        for _ in 0..200 {
            // xorshift: good enough to spread parallel tests apart.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let port = 10_000 + (seed % span) as u16;
            if UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && TcpListener::bind(("127.0.0.1", port)).is_ok()
            {
                return port;
            }
        }
    }
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && port < 65535 - 100 {
            return port;
        }
    }
    panic!("no free port found");
}

impl TestNode {
    /// Starts a node with a fresh data dir and `extra` flags.
    pub fn start(extra: &[&str]) -> TestNode {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut n = TestNode::start_in(&dir, extra);
        n._tmp = Some(tmp);
        n
    }

    /// Starts a node with a fresh data dir, `extra` flags and HTTP on a
    /// free loopback port (see [`TestNode::http_addr`]).
    pub fn start_http(extra: &[&str]) -> TestNode {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut n = TestNode::spawn(&dir, extra, true);
        n._tmp = Some(tmp);
        n
    }

    /// Starts a node on `data_dir` with HTTP on a free loopback port.
    pub fn start_in_http(data_dir: &Path, extra: &[&str]) -> TestNode {
        TestNode::spawn(data_dir, extra, true)
    }

    /// Starts a node on `data_dir` (kept by the caller, e.g. for restarts).
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> TestNode {
        TestNode::spawn(data_dir, extra, false)
    }

    /// Starts a node on `data_dir` and a given port (a restart where its
    /// peers expect it).
    pub fn start_at(data_dir: &Path, port: u16, extra: &[&str]) -> TestNode {
        TestNode::spawn_on(data_dir, port, extra, false)
    }

    /// Starts a node on `data_dir` inside the network namespace `netns`
    /// (`ip netns exec`, which execs the node: the child is the node
    /// itself), on `port`, reached at `ip` (an address in that namespace).
    /// HTTP is off.
    pub fn start_in_netns(
        netns: &str,
        ip: IpAddr,
        data_dir: &Path,
        port: u16,
        extra: &[&str],
    ) -> TestNode {
        TestNode::spawn_with(data_dir, port, extra, false, Some((netns, ip)))
    }

    /// On a port [`free_port`] chose: another test may bind the same port
    /// between the choice and the node's bind (the node then exits with
    /// "Address already in use"), so a node that exits before listening
    /// is started again on another port, up to five times.
    fn spawn(data_dir: &Path, extra: &[&str], http: bool) -> TestNode {
        const ATTEMPTS: usize = 5;
        for attempt in 1..ATTEMPTS {
            let port = free_port();
            match TestNode::try_spawn_with(data_dir, port, extra, http, None) {
                Ok(node) => return node,
                Err(why) => eprintln!(
                    "test node on port {port} did not start ({why}); attempt {} on another port",
                    attempt + 1
                ),
            }
        }
        TestNode::spawn_on(data_dir, free_port(), extra, http)
    }

    fn spawn_on(data_dir: &Path, port: u16, extra: &[&str], http: bool) -> TestNode {
        TestNode::spawn_with(data_dir, port, extra, http, None)
    }

    fn spawn_with(
        data_dir: &Path,
        port: u16,
        extra: &[&str],
        http: bool,
        netns: Option<(&str, IpAddr)>,
    ) -> TestNode {
        TestNode::try_spawn_with(data_dir, port, extra, http, netns)
            .unwrap_or_else(|why| panic!("{why}"))
    }

    /// Starts a node; `Err` if it exited before it was listening.
    fn try_spawn_with(
        data_dir: &Path,
        port: u16,
        extra: &[&str],
        http: bool,
        netns: Option<(&str, IpAddr)>,
    ) -> Result<TestNode, String> {
        let http_port = if http {
            let mut p = free_port();
            for _ in 0..100 {
                if p != port {
                    break;
                }
                p = free_port();
            }
            p
        } else {
            0
        };
        let mut cmd = in_netns(netns.map(|(ns, _)| ns), bin("test-wasque-node"));
        cmd.arg("--port")
            .arg(port.to_string())
            .arg("--http-port")
            .arg(http_port.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            // WASQUE_TEST_LOG: a RUST_LOG filter for the nodes, to debug a test.
            .env(
                "RUST_LOG",
                std::env::var("WASQUE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        // With WASQUE_TEST_LOG set, each log line says which node wrote it.
        let tagged = std::env::var_os("WASQUE_TEST_LOG").is_some();
        cmd.stderr(if tagged {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
        let mut child = cmd.spawn().expect("spawn wasque-node");
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[:{port}] {line}");
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = TestNode {
            child,
            addr: SocketAddr::new(
                netns.map_or(IpAddr::from([127, 0, 0, 1]), |(_, ip)| ip),
                port,
            ),
            data_dir: data_dir.to_path_buf(),
            http: None,
            _tmp: None,
            stdout: rx,
            netns: netns.map(|(ns, _)| ns.to_string()),
        };
        node.wait_listening()?;
        if http {
            node.http = Some(node.wait_http_line());
        }
        Ok(node)
    }

    /// Waits for the `listening: http http://ADDR/` line.
    fn wait_http_line(&mut self) -> SocketAddr {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            match self.stdout.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening: http http://").nth(1)
                        && let Ok(addr) = rest.trim_end_matches('/').parse()
                    {
                        return addr;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("wasque-node did not print its HTTP listening line");
    }

    /// The HTTP address of a node started with [`TestNode::start_http`].
    pub fn http_addr(&self) -> SocketAddr {
        self.http.expect("node started with TestNode::start_http")
    }

    /// Waits for the node's listening line; `Err` if it exited first.
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            match self.stdout.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains("listening") => return Ok(()),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        return Err(format!("wasque-node exited before listening: {status}"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait();
                    return Err(format!(
                        "wasque-node closed stdout before listening: {status:?}"
                    ));
                }
            }
        }
        panic!("wasque-node did not start listening within 60 s");
    }

    /// `host:port` for clients.
    /// The `wasque` CLI set up against this node (its address and data
    /// dir, stdin closed), to be started by the caller.
    pub fn wasque_cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = in_netns(self.netns.as_deref(), bin("test-wasque"));
        cmd.arg("--node")
            .arg(self.addr_str())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// Runs the `wasque` CLI against this node and returns what it
    /// printed and its status.
    pub fn wasque(&self, args: &[&str]) -> std::process::Output {
        self.wasque_cmd(args).output().expect("run wasque")
    }

    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }

    /// A client config trusting this node's CA.
    pub fn client_config(&self) -> wasque_sdk::ClientConfig {
        wasque_sdk::ClientConfig::local(&self.addr_str(), &self.data_dir).expect("client config")
    }

    /// Connects a client.
    pub async fn client(&self) -> wasque_sdk::Client {
        wasque_sdk::Client::connect(self.client_config())
            .await
            .expect("connect to test node")
    }

    /// Stops the node with SIGTERM and waits (bounded) for it to exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait after kill");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `within` for the node to exit on its own; its status,
    /// or `None` if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the node at once (SIGKILL), as a crash.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A command for `program`, run inside the network namespace `netns`
/// (`ip netns exec`) when one is given.
fn in_netns(netns: Option<&str>, program: PathBuf) -> Command {
    match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Introduces every other node to the first (`CLUSTER MEET` over RESP),
/// then waits (bounded: 30 s) until each node reaches all of them
/// (`CLUSTER INFO`'s `cluster_reachable_nodes`).
pub fn form_cluster(nodes: &[TestNode]) {
    let Some(first) = nodes.first() else { return };
    let mut c = crate::resp::connect(first.addr).expect("RESP connection to the first node");
    for n in &nodes[1..] {
        let port = n.addr.port().to_string();
        crate::resp::cmd(&mut c, &["CLUSTER", "MEET", "127.0.0.1", &port]).expect("CLUSTER MEET");
    }
    for n in nodes {
        crate::wait::eventually(30, "every node reaches every other", || {
            reachable(n) == Some(nodes.len())
        });
    }
}

/// `cluster_reachable_nodes` of `CLUSTER INFO` (which, as Disque's,
/// counts the other nodes) plus this one.
fn reachable(node: &TestNode) -> Option<usize> {
    let mut c = crate::resp::connect(node.addr)?;
    let info = match crate::resp::cmd(&mut c, &["CLUSTER", "INFO"]).ok()? {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        redis::Value::SimpleString(s) => s,
        _ => return None,
    };
    info.lines()
        .find_map(|l| l.strip_prefix("cluster_reachable_nodes:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(|others| others + 1)
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
