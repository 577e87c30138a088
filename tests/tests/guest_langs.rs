//! Guests written in other languages than Rust, built from source by the
//! test and run as jobs on a node running as a real process: the C guests
//! (clang's `wasm32-wasi` target, wasi-libc) and the AssemblyScript guests
//! (the `assemblyscript` compiler and `@assemblyscript/wasi-shim` from
//! npm) must print byte for byte what the Rust examples print for the same
//! payloads: text with ASCII and Unicode spaces, invalid UTF-8, nothing, a
//! binary payload of every byte value, 1 MiB of words; and past the
//! memory cap they end `memory-limit`.
//!
//! Both are `#[ignore]`d (a plain `cargo test` lists them as ignored):
//! `scripts/test.sh` installs the toolchains and runs them with
//! `--ignored`, where a missing toolchain fails them with its install
//! line.

use wasque_sdk::Client;
use wasque_sdk::proto::{AddJob, ErrorClass, JobResult, LimitsRequest, ModuleHash};
use wasque_tests::guests;
use wasque_tests::node::TestNode;
use wasque_tests::tools;

async fn put(client: &Client, wasm: Vec<u8>) -> ModuleHash {
    client.put_module(wasm).await.expect("upload").hash
}

/// The result of one job of `module` on `body`, which must have succeeded.
async fn run(client: &Client, module: ModuleHash, body: &[u8]) -> JobResult {
    let mut job = AddJob::new("langs", body.to_vec());
    job.module = Some(module);
    job.limits = LimitsRequest::default();
    let s = client.run(job, 60_000).await.expect("run");
    let r = s.result.expect("job finished within the wait");
    assert_eq!(
        (r.error_class, r.exit_code),
        (None, Some(0)),
        "job failed: {} / stderr {}",
        r.message,
        String::from_utf8_lossy(&r.stderr)
    );
    r
}

/// Payloads on which every wordcount and sha256 must agree.
fn payloads() -> Vec<Vec<u8>> {
    let mut words = Vec::new();
    while words.len() < 1 << 20 {
        words.extend_from_slice(b"lorem ipsum\tdolor\nsit\r\namet, ");
    }
    vec![
        b"hello wasm  world\n".to_vec(),
        Vec::new(),
        b"   ".to_vec(),
        // Each Unicode space between two word characters.
        "a\u{a0}b\u{3000}c\u{2028}d\u{85}e\u{1680}f\u{205f}g\u{2000}h\u{200a}i\u{2029}j\u{202f}k"
            .as_bytes()
            .to_vec(),
        // Near misses: characters next to those spaces that are not spaces.
        "a\u{84}b\u{a1}c\u{200b}d\u{2030}e\u{205e}f\u{3001}g\u{1681}h"
            .as_bytes()
            .to_vec(),
        // Invalid UTF-8 and cut-off multi-byte spaces are word bytes.
        b"bad \xff\xfe bytes \xe2\x80 \xc2".to_vec(),
        (0..=255u8).cycle().take(100_000).collect(),
        words,
    ]
}

/// Runs `wordcount` and `sha256` in `lang` beside the Rust ones on every
/// payload; the outputs must be equal byte for byte.
async fn same_as_rust(lang: &str, wordcount: Vec<u8>, sha256: Vec<u8>) {
    let node = TestNode::start(&[]);
    let c = node.client().await;
    let pairs = [
        (
            "wordcount",
            put(&c, guests::wasm("wordcount")).await,
            put(&c, wordcount).await,
        ),
        (
            "sha256",
            put(&c, guests::wasm("sha256")).await,
            put(&c, sha256).await,
        ),
    ];
    for (name, rust, other) in pairs {
        for body in payloads() {
            let want = run(&c, rust, &body).await;
            let got = run(&c, other, &body).await;
            assert_eq!(
                String::from_utf8_lossy(&got.output),
                String::from_utf8_lossy(&want.output),
                "{lang} {name} on a {}-byte payload starting {:?}",
                body.len(),
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
            assert!(got.fuel_used > 0, "{lang} {name}: fuel is counted");
        }
    }
    // The answers are the right ones, not only the same ones.
    let want_abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n";
    assert_eq!(
        run(&c, pairs[1].2, b"abc").await.output,
        want_abc.as_bytes()
    );
    assert_eq!(run(&c, pairs[0].2, b"one two  three").await.output, b"3\n");

    // Past the memory cap the guest's allocation fails, it exits non-zero,
    // and the job is classed by the refused growth.
    let mut job = AddJob::new("langs", vec![b'w'; 7 << 20]);
    job.module = Some(pairs[0].2);
    job.limits.memory_bytes = Some(4 << 20);
    let s = c.run(job, 60_000).await.expect("run");
    let r = s.result.expect("job finished within the wait");
    assert_eq!(
        r.error_class,
        Some(ErrorClass::MemoryLimit),
        "{lang} wordcount of 7 MiB under a 4 MiB cap: {} / stderr {}",
        r.message,
        String::from_utf8_lossy(&r.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs clang, lld and wasi-libc: scripts/test.sh runs it"]
async fn c_guests_match_the_rust_ones() {
    tools::require(
        "clang",
        "apt-get install clang lld wasi-libc libclang-rt-dev-wasm32",
    );
    same_as_rust("C", guests::c_wasm("wordcount"), guests::c_wasm("sha256")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and npm: scripts/test.sh runs it"]
async fn assemblyscript_guests_match_the_rust_ones() {
    tools::require("npm", "apt-get install nodejs npm");
    same_as_rust(
        "AssemblyScript",
        guests::assemblyscript_wasm("wordcount"),
        guests::assemblyscript_wasm("sha256"),
    )
    .await;
}
