//! A damaged job store: torn or truncated journals, flipped bytes. The
//! node either starts and holds exactly what the ledger says (every job it
//! still has is byte for byte the one added; what it dropped is reported),
//! or refuses to start with a message naming the store and what to do. It
//! never panics and never starts empty over a store it could not read.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasque_sdk::proto::{AddJob, ErrorCode, JobId};
use wasque_sdk::{Client, ClientError};
use wasque_tests::node::{TestNode, bin, free_port};

/// How a start on a damaged store ended.
enum Start {
    /// Listening: the node (killed when dropped) and its stderr so far.
    Up(Box<Child>),
    /// Exited before listening, with its stderr.
    Refused(String),
}

struct Child {
    child: std::process::Child,
    addr: String,
    data_dir: PathBuf,
    stderr: PathBuf,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn try_start(data_dir: &Path, log: &Path) -> Start {
    let port = free_port();
    let err = std::fs::File::create(log).expect("log file");
    let mut child = Command::new(bin("test-wasque-node"))
        .args([
            "--port",
            &port.to_string(),
            "--http-port",
            "0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .expect("spawn node");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
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
        match rx.recv_timeout(Duration::from_millis(50)) {
            // QUIC and RESP each print a line; QUIC's is enough.
            Ok(line) if line.contains("listening") => {
                return Start::Up(Box::new(Child {
                    child,
                    addr: format!("127.0.0.1:{port}"),
                    data_dir: data_dir.to_path_buf(),
                    stderr: log.to_path_buf(),
                }));
            }
            Ok(_) => {}
            Err(_) => {
                if let Ok(Some(_)) = child.try_wait() {
                    let _ = child.wait();
                    return Start::Refused(std::fs::read_to_string(log).unwrap_or_default());
                }
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("node neither started nor refused within 60 s");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else if e.file_name() != "LOCK" {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Offset just past the last non-zero byte (journals are preallocated).
fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

async fn check_against_ledger(up: &Child, ledger: &[(JobId, Vec<u8>)]) -> (usize, usize) {
    let cfg = wasque_sdk::ClientConfig::local(&up.addr, &up.data_dir).expect("client config");
    let c = Client::connect(cfg).await.expect("connect");
    let (mut present, mut missing) = (0, 0);
    for (id, body) in ledger {
        match c.show(*id).await {
            Ok(s) => {
                assert_eq!(
                    &s.body, body,
                    "{id}: recovered body differs from the ledger"
                );
                present += 1;
            }
            Err(ClientError::Node(w)) if w.code == ErrorCode::NoJob => missing += 1,
            Err(e) => panic!("{id}: {e}"),
        }
    }
    (present, missing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_stores_recover_what_is_intact_or_refuse_clearly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine");
    // A store with jobs in its journal (killed, never closed) and in tables
    // (a first life closed cleanly).
    let mut ledger = vec![];
    for life in 0..2 {
        let node = TestNode::start_in(&pristine, &[]);
        let c = node.client().await;
        for i in 0..150u32 {
            let body: Vec<u8> = (0..100u32)
                .map(|b| ((b * 13 + i + life * 7) % 251) as u8)
                .collect();
            let id = c
                .add_job(AddJob::new("q", body.clone()))
                .await
                .expect("add");
            ledger.push((id, body));
        }
        if life == 0 {
            node.stop();
        } else {
            node.kill9();
        }
    }
    let mut files = vec![];
    files_under(&pristine.join("store"), &mut files);
    files.retain(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0));
    assert!(!files.is_empty());

    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let (mut recovered, mut refused) = (0, 0);
    let mut cases = vec![];
    for f in &files {
        let rel = f.strip_prefix(&pristine).expect("under").to_path_buf();
        cases.push((rel.clone(), "truncate"));
        cases.push((rel.clone(), "flip"));
    }
    for (i, (rel, how)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        copy_dir(&pristine, &dir);
        let target = dir.join(rel);
        let mut bytes = std::fs::read(&target).expect("read");
        let end = data_end(&bytes).max(1);
        match *how {
            "truncate" => bytes.truncate(rnd(end)),
            _ => {
                for _ in 0..4 {
                    let at = rnd(end);
                    bytes[at] ^= 1 << rnd(8);
                }
            }
        }
        std::fs::write(&target, &bytes).expect("write");
        let log = tmp.path().join(format!("case{i}.log"));
        match try_start(&dir, &log) {
            Start::Up(up) => {
                let (present, missing) = check_against_ledger(&up, &ledger).await;
                let log_text = std::fs::read_to_string(&up.stderr).unwrap_or_default();
                assert!(
                    !log_text.contains("panicked"),
                    "{how} {}: {log_text}",
                    rel.display()
                );
                if missing > 0 {
                    assert!(
                        log_text.contains("journal tail") || log_text.contains("skipped"),
                        "{how} {}: {missing} jobs dropped without a report:\n{log_text}",
                        rel.display()
                    );
                }
                eprintln!(
                    "{how} {}: started, {present} jobs intact, {missing} dropped (reported)",
                    rel.display()
                );
                recovered += 1;
            }
            Start::Refused(err) => {
                assert!(
                    !err.contains("panicked at"),
                    "{how} {}: a panic:\n{err}",
                    rel.display()
                );
                assert!(
                    err.contains("cannot be read") && err.contains("move"),
                    "{how} {}: refusal without a clear message:\n{err}",
                    rel.display()
                );
                eprintln!(
                    "{how} {}: refused: {}",
                    rel.display(),
                    err.lines().last().unwrap_or("")
                );
                refused += 1;
            }
        }
    }
    eprintln!(
        "{} damaged stores: {recovered} recovered, {refused} refused",
        cases.len()
    );
}

/// Flipped bytes in the middle of the journal (whole batches after them):
/// not a torn tail, so the node must not cut the journal there (fjall
/// alone would, dropping every accepted job after the damage). It refuses,
/// naming the file, the offset and the command that keeps what is before;
/// the file is left as it was. Carrying out that command, the node starts
/// with exactly the jobs before the damage, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_in_the_middle_of_the_journal_is_refused_not_cut() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine");
    let mut ledger = vec![];
    {
        let node = TestNode::start_in(&pristine, &[]);
        let c = node.client().await;
        for i in 0..200u32 {
            let body: Vec<u8> = (0..100u32).map(|b| ((b * 17 + i) % 253) as u8).collect();
            let id = c
                .add_job(AddJob::new("q", body.clone()))
                .await
                .expect("add");
            ledger.push((id, body));
        }
        node.kill9();
    }
    let mut files = vec![];
    files_under(&pristine.join("store"), &mut files);
    let journal = files
        .iter()
        .filter(|f| f.extension().is_some_and(|x| x == "jnl"))
        .max_by_key(|f| data_end(&std::fs::read(f).expect("read")))
        .expect("a journal")
        .strip_prefix(&pristine)
        .expect("under")
        .to_path_buf();
    let end = data_end(&std::fs::read(pristine.join(&journal)).expect("read"));
    assert!(end > 20_000, "journal of {end} bytes");
    let mut refused_at = None;
    let mut refusals = 0;
    let positions = [20, 30, 40, 50, 60, 70, 80];
    for (i, pct) in positions.iter().enumerate() {
        let dir = tmp.path().join(format!("mid{i}"));
        copy_dir(&pristine, &dir);
        let target = dir.join(&journal);
        let mut bytes = std::fs::read(&target).expect("read");
        bytes[end * pct / 100] ^= 0x04;
        std::fs::write(&target, &bytes).expect("write");
        let log = tmp.path().join(format!("mid{i}.log"));
        match try_start(&dir, &log) {
            Start::Refused(err) => {
                assert!(!err.contains("panicked"), "{pct}%: a panic:\n{err}");
                let name = target.display().to_string();
                assert!(
                    err.contains(&name) && err.contains("truncate -s") && err.contains("move"),
                    "{pct}%: the refusal names neither the journal nor what to do:\n{err}"
                );
                assert_eq!(
                    std::fs::read(&target).expect("read"),
                    bytes,
                    "{pct}%: the journal was changed by a refused start"
                );
                refusals += 1;
                refused_at.get_or_insert((dir, err));
            }
            Start::Up(up) => {
                // Only a flip nobody can see (a batch's sequence number)
                // lets it start: then every job is there, intact.
                let (present, missing) = check_against_ledger(&up, &ledger).await;
                assert_eq!(
                    (present, missing),
                    (ledger.len(), 0),
                    "{pct}%: started over a damaged journal and lost jobs"
                );
            }
        }
    }
    assert!(
        refusals * 2 > positions.len(),
        "only {refusals} of {} mid-journal flips were refused",
        positions.len()
    );
    // The operator's way out, as the message gives it.
    let (dir, err) = refused_at.expect("a refusal");
    let cmdline = err
        .split("truncate -s ")
        .nth(1)
        .and_then(|r| r.split('`').next())
        .expect("a truncate command");
    let (at, file) = cmdline.split_once(' ').expect("offset and file");
    let at: u64 = at.parse().expect("offset");
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|f| f.set_len(at))
        .expect("truncate");
    let Start::Up(up) = try_start(&dir, &tmp.path().join("fixed.log")) else {
        panic!("no start after cutting the journal as told")
    };
    let (present, missing) = check_against_ledger(&up, &ledger).await;
    assert!(
        present > 0 && missing > 0,
        "{present} present, {missing} missing"
    );
    eprintln!(
        "mid-journal flips: {refusals} of {} refused; after `truncate -s {at}`: {present} jobs intact, {missing} cut off",
        positions.len()
    );
}
