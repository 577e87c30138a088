//! `asynckey` on every door of a real node: a job added with `asynckey K`
//! is shown, waited on, acknowledged or deleted only by a request carrying
//! K, over RESP, QUIC (SDK), HTTP and the CLI. A request without K, or
//! with another key, must get exactly what it gets once the job is gone,
//! so an id cannot be probed: each probe is sent while the job exists and
//! again after it was deleted (with the key), and the answers compared.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use wasque_sdk::Client;
use wasque_sdk::proto::{AddJob, JobId};
use wasque_tests::node::TestNode;
use wasque_tests::resp::{self, Value};

const KEY: &str = "k1";

/// `GET path` with extra headers, the status and body (HTTP/1.0: the
/// server closes when done). Bounded by socket timeouts.
fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read http answer");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

/// The CLI's exit code, stdout and stderr.
fn cli(node: &TestNode, args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_test-wasque"))
        .arg("--node")
        .arg(node.addr_str())
        .arg("--data-dir")
        .arg(&node.data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run wasque");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn resp_words(node: &TestNode, words: &[&str]) -> String {
    let mut c = resp::connect(node.addr).expect("RESP connection");
    format!("{:?}", resp::cmd(&mut c, words))
}

/// Every probe a client without the key (or with a wrong one) could send,
/// over every door, with its answer rendered as text.
async fn probes(node: &TestNode, client: &Client, id: JobId) -> Vec<(String, String)> {
    let ids = id.to_string();
    let i = ids.as_str();
    let mut out = Vec::new();
    for key in [None, Some("wrong"), Some("k1x"), Some("K1")] {
        let tail: Vec<&str> = key.map(|k| vec!["ASYNCKEY", k]).unwrap_or_default();
        for cmd in [
            vec!["SHOW", i],
            vec!["RESULT", i],
            vec!["WAITJOB", i, "1"],
            vec!["WORKING", i],
            vec!["NACK", i],
            vec!["ENQUEUE", i],
            vec!["DEQUEUE", i],
            vec!["ACKJOB", i],
            vec!["FASTACK", i],
            vec!["DELJOB", i],
            vec!["JSCAN", "REPLY", "ALL"],
        ] {
            let words: Vec<&str> = cmd.iter().chain(tail.iter()).copied().collect();
            out.push((
                format!("RESP {}", words.join(" ")),
                resp_words(node, &words),
            ));
        }
        let k = key.unwrap_or("");
        let quic = match key {
            None => vec![
                ("show", format!("{:?}", client.show(id).await)),
                ("wait", format!("{:?}", client.wait(id, 10).await)),
                ("ack", format!("{:?}", client.ack(vec![id]).await)),
                ("deljob", format!("{:?}", client.deljob(vec![id]).await)),
            ],
            Some(_) => vec![
                ("show", format!("{:?}", client.show_by_key(k, id).await)),
                ("wait", format!("{:?}", client.wait_by_key(k, id, 10).await)),
                ("ack", format!("{:?}", client.ack_by_key(k, vec![id]).await)),
                (
                    "deljob",
                    format!("{:?}", client.deljob_by_key(k, vec![id]).await),
                ),
            ],
        };
        for (name, answer) in quic {
            out.push((format!("QUIC {name} key {key:?}"), answer));
        }
        let headers: Vec<(&str, &str)> = key
            .map(|k| vec![("X-Wasque-Asynckey", k)])
            .unwrap_or_default();
        for path in [format!("/api/jobs/{id}"), "/api/jobs".to_string()] {
            out.push((
                format!("HTTP {path} key {key:?}"),
                format!("{:?}", http_get(node.http_addr(), &path, &headers)),
            ));
        }
        let flag: Vec<&str> = key.map(|k| vec!["--asynckey", k]).unwrap_or_default();
        for cmd in [
            vec!["show", i],
            vec!["wait", i, "--timeout", "10"],
            vec!["ackjob", i],
            vec!["deljob", i],
        ] {
            let args: Vec<&str> = cmd.iter().chain(flag.iter()).copied().collect();
            out.push((
                format!("CLI {}", args.join(" ")),
                format!("{:?}", cli(node, &args)),
            ));
        }
        if let Some(k) = key {
            out.push((
                format!("CLI client {k:?}"),
                format!("{:?}", cli(node, &["client", k, i])),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_job_is_invisible_without_its_key_on_every_door() {
    let node = TestNode::start_http(&[]);
    let client = node.client().await;
    let mut job = AddJob::new("keyed", b"secret body".to_vec());
    job.asynckey = Some(KEY.into());
    let id = client.add_job(job).await.expect("add keyed job");
    let i = id.to_string();

    let before = probes(&node, &client, id).await;

    // Nothing above touched it: it is still queued, and every door opens
    // it with the key.
    let shown = resp_words(&node, &["SHOW", &i, "ASYNCKEY", KEY]);
    assert!(shown.contains("queued"), "{shown}");
    let scan = resp_words(&node, &["JSCAN", "ASYNCKEY", KEY]);
    assert!(scan.contains(&i), "JSCAN with the key lists it: {scan}");
    let s = client.show_by_key(KEY, id).await.expect("QUIC show by key");
    assert_eq!(s.body, b"secret body");
    assert!(
        client
            .wait_by_key(KEY, id, 10)
            .await
            .expect("wait")
            .is_none()
    );
    let (status, body) = http_get(
        node.http_addr(),
        &format!("/api/jobs/{id}"),
        &[("X-Wasque-Asynckey", KEY)],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("secret body"), "{body}");
    let (code, out, err) = cli(&node, &["show", &i, "--asynckey", KEY]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("state:     queued"), "{out}");
    let (code, out, _) = cli(&node, &["client", KEY, &i]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&i));
    assert_eq!(
        resp::cmd(
            &mut resp::connect(node.addr).unwrap(),
            &["DELJOB", &i, "ASYNCKEY", KEY]
        ),
        Ok(Value::Int(1)),
        "DELJOB with the key deletes it"
    );

    let after = probes(&node, &client, id).await;
    assert_eq!(before.len(), after.len());
    for ((what, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(b, a, "{what}: answered as a missing job");
        assert!(!b.contains("secret body"), "{what} leaked the body: {b}");
    }
}

/// The key also opens the acknowledgement: ACKJOB with the key over RESP
/// and the CLI's `ackjob --asynckey` remove the job, which nothing without
/// the key could do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_acknowledges() {
    let node = TestNode::start(&[]);
    let client = node.client().await;
    let add = |body: &'static [u8]| {
        let mut job = AddJob::new("keyed", body.to_vec());
        job.asynckey = Some(KEY.into());
        job
    };
    let a = client.add_job(add(b"a")).await.unwrap();
    let b = client.add_job(add(b"b")).await.unwrap();
    let mut c = resp::connect(node.addr).unwrap();
    let (sa, sb) = (a.to_string(), b.to_string());
    assert_eq!(resp::cmd(&mut c, &["ACKJOB", &sa]), Ok(Value::Int(0)));
    assert_eq!(
        resp::cmd(&mut c, &["ACKJOB", &sa, "ASYNCKEY", KEY]),
        Ok(Value::Int(1))
    );
    let (code, out, err) = cli(&node, &["ackjob", &sb, "--asynckey", KEY]);
    assert_eq!((code, out.trim()), (Some(0), "1"), "{err}");
    assert_eq!(
        resp::cmd(&mut c, &["JSCAN", "ASYNCKEY", KEY]),
        resp::cmd(&mut c, &["JSCAN"]),
        "both gone"
    );
}
