//! Every guest example through the SDK against a node running as a real
//! process: the well-behaved ones give their expected results, the hostile
//! ones end with their own error class while other jobs keep completing.

use std::time::{Duration, Instant};

use wasque_sdk::Client;
use wasque_sdk::proto::{AddJob, ErrorClass, JobStatus, LimitsRequest, ModuleHash};
use wasque_tests::guests;
use wasque_tests::node::TestNode;

async fn put(client: &Client, name: &str) -> ModuleHash {
    client
        .put_module(guests::wasm(name))
        .await
        .expect("upload")
        .hash
}

async fn run(client: &Client, module: ModuleHash, body: &[u8], limits: LimitsRequest) -> JobStatus {
    let mut job = AddJob::new("tests", body.to_vec());
    job.module = Some(module);
    job.limits = limits;
    let s = client.run(job, 60_000).await.expect("run");
    assert!(s.result.is_some(), "job finished within the wait: {s:?}");
    s
}

fn output(s: &JobStatus) -> String {
    let r = s.result.as_ref().unwrap();
    assert_eq!(
        r.error_class,
        None,
        "job failed: {} / stderr {}",
        r.message,
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(r.exit_code, Some(0));
    String::from_utf8(r.output.clone()).unwrap()
}

fn class(s: &JobStatus) -> ErrorClass {
    s.result
        .as_ref()
        .unwrap()
        .error_class
        .expect("job should have failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_behaved_examples_give_their_results() {
    let node = TestNode::start(&[]);
    let c = node.client().await;
    let none = LimitsRequest::default();

    let echo = put(&c, "echo").await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let s = run(&c, echo, &bytes, none).await;
    assert_eq!(
        s.result.as_ref().unwrap().output,
        bytes,
        "echo is byte for byte"
    );

    let wc = put(&c, "wordcount").await;
    assert_eq!(
        output(&run(&c, wc, b"hello wasm  world\n", none).await),
        "3\n"
    );
    assert_eq!(output(&run(&c, wc, b"", none).await), "0\n");

    let sha = put(&c, "sha256").await;
    assert_eq!(
        output(&run(&c, sha, b"abc", none).await),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
    );

    let fib = put(&c, "fib").await;
    let s = run(&c, fib, b"20", none).await;
    assert_eq!(output(&s), "6765\n");
    assert!(
        s.result.as_ref().unwrap().fuel_used > 10_000,
        "fuel is counted"
    );
    let s = run(&c, fib, b"not a number", none).await;
    assert_eq!(class(&s), ErrorClass::Exit(2));

    let json = put(&c, "json").await;
    let out = output(&run(&c, json, br#"{"b":"hi","a":21}"#, none).await);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["a"], 42);
    assert_eq!(v["b"], "HI");
    assert_eq!(v["_fields"], 2);

    let thumb = put(&c, "thumbnail").await;
    let s = run(&c, thumb, &test_png(200, 100), none).await;
    let r = s.result.as_ref().unwrap();
    assert_eq!(
        r.error_class,
        None,
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let (w, h) = png_size(&r.output);
    assert!(w <= 64 && h <= 64 && w == 64, "thumbnail is {w}x{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_examples_end_with_their_class() {
    let node = TestNode::start(&["--exec-threads", "2"]);
    let c = node.client().await;

    let spin = put(&c, "spin").await;
    let s = run(
        &c,
        spin,
        b"",
        LimitsRequest {
            fuel: Some(20_000_000),
            deadline_ms: Some(60_000),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(class(&s), ErrorClass::OutOfFuel);
    let s = run(
        &c,
        spin,
        b"",
        LimitsRequest {
            fuel: Some(50_000_000_000),
            deadline_ms: Some(200),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(class(&s), ErrorClass::Deadline);
    let took = s.result.as_ref().unwrap().duration_us;
    assert!(
        took >= 200_000,
        "stopped by the deadline, not before: {took} µs"
    );

    let hog = put(&c, "hog").await;
    let s = run(
        &c,
        hog,
        b"",
        LimitsRequest {
            memory_bytes: Some(16 << 20),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(class(&s), ErrorClass::MemoryLimit);

    let recurse = put(&c, "recurse").await;
    let s = run(&c, recurse, b"", LimitsRequest::default()).await;
    assert_eq!(class(&s), ErrorClass::Trap);
    assert!(
        s.result.as_ref().unwrap().message.contains("stack"),
        "{}",
        s.result.as_ref().unwrap().message
    );

    let trap = put(&c, "trap").await;
    let s = run(&c, trap, b"", LimitsRequest::default()).await;
    assert_eq!(class(&s), ErrorClass::Trap);
    assert!(s.result.as_ref().unwrap().message.contains("unreachable"));

    let exit3 = put(&c, "exit3").await;
    let s = run(&c, exit3, b"", LimitsRequest::default()).await;
    assert_eq!(class(&s), ErrorClass::Exit(3));
    let r = s.result.as_ref().unwrap();
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.stderr, b"bye\n", "stderr is kept with the result");

    let flood = put(&c, "flood").await;
    let s = run(&c, flood, b"", LimitsRequest::default()).await;
    assert_eq!(class(&s), ErrorClass::OutputLimit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_attempts_all_fail_and_the_canary_stays_unread() {
    let node = TestNode::start(&[]);
    let c = node.client().await;
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary.txt");
    std::fs::write(&canary, "CANARY-7f3a9c secret\n").unwrap();
    std::fs::write("/tmp/wasque-canary", "CANARY-7f3a9c secret\n").ok();

    let escape = put(&c, "escape").await;
    let mut job = AddJob::new("tests", Vec::new());
    job.module = Some(escape);
    job.args = vec![canary.display().to_string()];
    let s = c.run(job, 60_000).await.unwrap();
    let out = output(&s);
    assert!(!out.contains("CANARY"), "the sandbox leaked a file:\n{out}");
    for attempt in [
        "open /etc/passwd",
        "open ../canary.txt",
        "open /tmp/wasque-canary",
        "connect 127.0.0.1:7711",
        "readdir /",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(attempt))
            .unwrap_or_else(|| panic!("no line for {attempt:?} in:\n{out}"));
        assert!(
            line.contains(": error"),
            "{attempt} was not refused: {line}"
        );
    }
    let env_line = out
        .lines()
        .find(|l| l.starts_with("env count"))
        .expect("env line");
    assert!(
        env_line.contains("ok 0") || env_line.contains(": error"),
        "env leaked: {env_line}"
    );
    assert!(out.lines().any(|l| l.starts_with("open arg")), "{out}");
    assert!(
        out.lines()
            .filter(|l| l.starts_with("open"))
            .all(|l| l.contains(": error")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_job_does_not_hold_up_the_others() {
    let node = TestNode::start(&["--exec-threads", "2"]);
    let c = node.client().await;
    let spin = put(&c, "spin").await;
    let echo = put(&c, "echo").await;

    let mut long = AddJob::new("slow", Vec::new());
    long.module = Some(spin);
    long.limits = LimitsRequest {
        fuel: Some(100_000_000_000),
        deadline_ms: Some(4_000),
        ..Default::default()
    };
    let spin_id = c.add_job(long).await.unwrap();

    let t = Instant::now();
    for i in 0..50 {
        let body = format!("job {i}");
        let s = run(&c, echo, body.as_bytes(), LimitsRequest::default()).await;
        assert_eq!(output(&s), body);
    }
    let spent = t.elapsed();
    // Still spinning: the echoes did not wait for it.
    assert!(
        c.wait(spin_id, 0).await.unwrap().is_none(),
        "spin ended early ({spent:?})"
    );
    let s = c
        .wait(spin_id, 30_000)
        .await
        .unwrap()
        .expect("spin ends at its deadline");
    assert_eq!(class(&s), ErrorClass::Deadline);
    assert!(spent < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_memory_never_leaks_between_jobs() {
    let node = TestNode::start(&["--exec-threads", "2"]);
    let c = node.client().await;
    let mem = put(&c, "memtest").await;
    for _ in 0..20 {
        assert_eq!(
            output(&run(&c, mem, b"write", LimitsRequest::default()).await),
            "wrote\n"
        );
        assert_eq!(
            output(&run(&c, mem, b"read", LimitsRequest::default()).await),
            "static=0 heap=0\n"
        );
    }
}

/// A `w`x`h` RGB gradient as PNG bytes.
fn test_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().unwrap();
        let data: Vec<u8> = (0..w * h)
            .flat_map(|i| [(i % w) as u8, (i / w) as u8, 128])
            .collect();
        writer.write_image_data(&data).unwrap();
    }
    out
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let reader = decoder.read_info().expect("output is a PNG");
    let info = reader.info();
    (info.width, info.height)
}
