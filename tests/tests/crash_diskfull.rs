//! Disk full: ADDJOB gets an error naming the reason, reads keep working,
//! and writes resume once space comes back; what was answered survives a
//! kill -9 afterwards. The data dir sits on a small tmpfs (the tests run as
//! root); where mounting is not allowed the test says so and passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wasque_sdk::proto::{AddJob, JobId};
use wasque_tests::node::TestNode;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).ok()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "skipped: cannot mount a tmpfs here ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_refuses_adds_keeps_reads_and_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(mount) = Mount::tmpfs(&tmp.path().join("mnt"), "64m") else {
        return;
    };
    let dir = mount.0.join("data");
    let node = TestNode::start_in_http(&dir, &["--exec-threads", "1"]);
    let c = node.client().await;
    // Space to give back later.
    let ballast = mount.0.join("ballast");
    std::fs::write(&ballast, vec![1u8; 40 << 20]).expect("ballast");

    let body = |i: u32| -> Vec<u8> { (0..256 * 1024u32).map(|b| ((b ^ i) % 251) as u8).collect() };
    let mut answered: Vec<(JobId, u32)> = vec![];
    let mut refusal = None;
    for i in 0..400u32 {
        match c.add_job(AddJob::new("big", body(i))).await {
            Ok(id) => answered.push((id, i)),
            Err(e) => {
                refusal = Some(e.to_string());
                break;
            }
        }
    }
    let refusal = refusal.expect("the disk never filled up");
    assert!(
        refusal.contains("disk is full") || refusal.contains("No space"),
        "the error names the reason: {refusal}"
    );
    assert!(!answered.is_empty());

    // Load balancers learn it: /readyz answers 503 with the reason.
    let ready = wasque_tests::http::get(node.http_addr(), "/readyz").expect("GET /readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains("job store cannot write"),
        "{}",
        ready.body
    );

    // Reads keep working.
    let (first, i) = answered[0];
    let s = c.show(first).await.expect("show while the disk is full");
    assert_eq!(s.body, body(i));

    // Space comes back: writes resume (the store is reopened).
    std::fs::remove_file(&ballast).expect("remove ballast");
    let deadline = Instant::now() + Duration::from_secs(20);
    let resumed = loop {
        assert!(Instant::now() < deadline, "writes did not resume");
        match c.add_job(AddJob::new("small", b"after".to_vec())).await {
            Ok(id) => break id,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let ready = wasque_tests::http::get(node.http_addr(), "/readyz").expect("GET /readyz");
    assert_eq!(ready.status, 200, "ready again: {}", ready.body);

    // Everything answered survives a crash.
    drop(c);
    node.kill9();
    let node = TestNode::start_in(&dir, &["--exec-threads", "1"]);
    let c = node.client().await;
    for (id, i) in &answered {
        let s = c
            .show(*id)
            .await
            .expect("answered before the disk filled: kept");
        assert_eq!(s.body, body(*i));
    }
    assert_eq!(
        c.show(resumed).await.expect("resumed add kept").body,
        b"after"
    );
    drop(c);
    drop(node);
    drop(mount);
}
