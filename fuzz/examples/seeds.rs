//! Writes the seed inputs of every target into `fuzz/corpus/<target>/`:
//! valid frames of each protocol, RESP requests, the repository's config
//! file, and a few guests' host-call programs. Run from `fuzz/`:
//! `cargo run --example seeds`. The committed corpus is these seeds merged
//! with what fuzzing found (`-merge=1`, see README.md).
//!
//! It is built like the targets (its crates are instrumented, so it links
//! libFuzzer) and does its work in libFuzzer's init hook, then exits.
#![no_main]
// The init hook exits, so the target closure is never reached.
#![allow(unreachable_code)]

use std::path::Path;

use wasque_node::cluster::wire::{self, Advert, Frame, Hello};
use wasque_node::engine::PeerMsg;
use wasque_node::job::NodeName;
use wasque_sdk::proto::{
    AddJob, ErrorCode, JobId, JobResult, JobState, ModuleHash, ModuleInfo, Request, RequestFrame,
    Response, ResponseFrame, WireError, encode_frame,
};

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("seed written");
}

libfuzzer_sys::fuzz_target!(
    init: {
        write_seeds();
        std::process::exit(0);
    },
    |_data: &[u8]| {}
);

fn write_seeds() {
    let id = JobId::compose(1_732_000_000_000, 1, 1, false, 3600, 0);
    let hash = ModuleHash::of(b"module");

    // RESP: 8 header bytes (max_bulk/4, max_args, max_inline/4, 4 read
    // sizes, max_request/16), then requests.
    let head = [255u8, 32, 255, 1, 3, 17, 200, 255];
    let streams: &[(&str, &[u8])] = &[
        ("ping-inline", b"PING\r\nPING hello\r\n"),
        ("quoted-inline", b"ADDJOB q \"a\\x41\\n\" 0 'it''s'\r\n"),
        (
            "addjob",
            b"*4\r\n$6\r\nADDJOB\r\n$1\r\nq\r\n$4\r\nbody\r\n$1\r\n0\r\n",
        ),
        (
            "pipeline",
            b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nSHOW\r\n$3\r\nabc\r\n*0\r\n",
        ),
        (
            "getjob",
            b"*4\r\n$6\r\nGETJOB\r\n$4\r\nFROM\r\n$1\r\nq\r\n$1\r\nr\r\n",
        ),
        ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for (name, s) in streams {
        put("resp_frame", name, &[&head[..], s].concat());
    }

    // Client frames: a mode byte (0x00-0x7f request, 0x80-0xff response;
    // the rest is the reader's capacity), then frames.
    let mut job = AddJob::new("q", b"hello".to_vec());
    job.module = Some(hash);
    job.ttl_secs = Some(3600);
    job.asynckey = Some("k".into());
    job.args = vec!["a".into()];
    let requests = [
        Request::Hello {
            protocol: 1,
            client: "seed".into(),
            token: Some("t".into()),
        },
        Request::AddJob(Box::new(job)),
        Request::Wait {
            id,
            timeout_ms: 1000,
        },
        Request::ShowByKey {
            key: "k".into(),
            id,
        },
        Request::Ack { ids: vec![id, id] },
        Request::PutModule {
            size: 10,
            opts: Default::default(),
        },
        Request::AddPart {
            parent: id,
            index: 2,
            body: b"part".to_vec(),
        },
        Request::Subscribe {
            queues: vec!["q".into()],
        },
    ];
    let mut all = Vec::new();
    for (i, r) in requests.into_iter().enumerate() {
        let f = encode_frame(
            &RequestFrame {
                id: i as u64,
                request: r,
            },
            1 << 20,
        )
        .expect("encodes");
        put(
            "client_frame",
            &format!("request-{i}"),
            &[&[5u8][..], &f].concat(),
        );
        all.extend_from_slice(&f);
    }
    put("client_frame", "requests", &[&[3u8][..], &all].concat());
    let responses = [
        Response::Ok,
        Response::JobAdded { id },
        Response::Module(ModuleInfo {
            hash,
            size: 6,
            compiled_now: true,
            jobs: 0,
            holders: vec!["a".into()],
            names: vec!["echo@1".into()],
        }),
        Response::Error(WireError {
            code: ErrorCode::BadId,
            message: "no".into(),
        }),
        Response::Count(3),
        Response::Event("e".into()),
    ];
    for (i, r) in responses.into_iter().enumerate() {
        let f = encode_frame(
            &ResponseFrame {
                id: i as u64,
                response: r,
            },
            1 << 20,
        )
        .expect("encodes");
        put(
            "client_frame",
            &format!("response-{i}"),
            &[&[0x85u8][..], &f].concat(),
        );
    }

    // Peer frames.
    let result = JobResult {
        exit_code: Some(0),
        error_class: None,
        message: String::new(),
        output: b"out".to_vec(),
        stderr: Vec::new(),
        fuel_used: 10,
        duration_us: 5,
        node: "n".into(),
    };
    let frames = [
        Frame::Hello(Hello {
            node: NodeName([1; 20]),
            addr: "127.0.0.1:7711".parse().expect("addr"),
            incarnation: 3,
            client_ca_pem: "-----BEGIN CERTIFICATE-----".into(),
        }),
        Frame::Advert(Advert {
            exec_slots: 4,
            queues: vec![("q".into(), 2)],
            module_hashes: vec![hash],
            ..Advert::default()
        }),
        Frame::Engine(PeerMsg::NeedJobs {
            queue: Some("q".into()),
            count: 3,
        }),
        Frame::Engine(PeerMsg::Finished {
            id,
            state: JobState::Done,
            result: Some(result),
        }),
        Frame::Engine(PeerMsg::GotAck(id)),
        Frame::FetchModule(hash),
        Frame::Module(Some(b"\0asm".to_vec())),
        Frame::Refused("no".into()),
        Frame::Join {
            secret: "s".into(),
            node: "n".into(),
        },
    ];
    for (i, f) in frames.iter().enumerate() {
        let mut b = Vec::new();
        wire::encode(f, &mut b).expect("encodes");
        put("peer_wire", &format!("frame-{i}"), &b);
    }

    // Config: the repository's Disque-style config, and one of every kind.
    put(
        "config",
        "disque.conf",
        include_bytes!("../../node/tests/data/disque.conf"),
    );
    put(
        "config",
        "small.conf",
        b"# a node\nport 7711\nbind 127.0.0.1 ::1\nrequirepass \"s3 cr\\x65t\"\nmaxmemory 1gb\nappendonly yes\n",
    );

    // WASI programs: op bytes as in fuzz_targets/wasi_calls.rs (the op is
    // the index in its CALLS table; 46 = store, 47 = grow); i32 arguments
    // are 2 bytes, i64 ones 4, little-endian.
    let i = |v: i16| v.to_le_bytes().to_vec();
    let l = |v: i32| v.to_le_bytes().to_vec();
    let store = |addr: u16, v: u32| {
        [
            vec![46u8],
            addr.to_le_bytes().to_vec(),
            v.to_le_bytes().to_vec(),
        ]
        .concat()
    };
    let call = |op: u8, args: Vec<Vec<u8>>| [vec![op], args.concat()].concat();
    // fd_write(1, iov at 0x200 -> "hi" at 0x300) and to stderr.
    let write = [
        store(0x300, u32::from_le_bytes(*b"hi\n\0")),
        store(0x200, 0x300),
        store(0x204, 3),
        call(26, vec![i(1), i(0x200), i(1), i(0x210)]),
        call(26, vec![i(2), i(0x200), i(1), i(0x210)]),
    ]
    .concat();
    put("wasi_calls", "write", &write);
    // args, environ, clocks, random bytes, fdstat, then exit 0.
    let query = [
        call(1, vec![i(0x200), i(0x204)]),
        call(0, vec![i(0x300), i(0x400)]),
        call(3, vec![i(0x200), i(0x204)]),
        call(5, vec![i(1), l(0), i(0x200)]),
        call(4, vec![i(0), i(0x200)]),
        call(41, vec![i(0x400), i(64)]),
        call(10, vec![i(1), i(0x200)]),
        call(17, vec![i(3), i(0x200)]),
        call(
            31,
            vec![i(3), i(0), i(0x300), i(4), i(0), l(0), l(0), i(0), i(0x200)],
        ),
        call(38, vec![i(0)]),
    ]
    .concat();
    put("wasi_calls", "query", &query);
    // poll_oneoff on a clock of 1 us and on stdin readiness.
    let poll = [
        store(0x208, 0),
        store(0x210, 1),
        store(0x218, 1000),
        store(0x21c, 0),
        call(37, vec![i(0x200), i(0x400), i(1), i(0x500)]),
        store(0x230, 0x0000_0001),
        store(0x238, 0),
        call(37, vec![i(0x230), i(0x400), i(1), i(0x500)]),
    ]
    .concat();
    put("wasi_calls", "poll", &poll);
    // Reads stdin after the program, renumbers and closes descriptors,
    // grows memory past the cap.
    let fds = [
        store(0x200, 0x300),
        store(0x204, 16),
        call(20, vec![i(0), i(0x200), i(1), i(0x210)]),
        call(22, vec![i(2), i(1)]),
        call(8, vec![i(1)]),
        vec![47, 3],
        vec![47, 7],
        call(23, vec![i(0), l(0), i(0), i(0x200)]),
        call(8, vec![i(0)]),
        b"never read".to_vec(),
    ]
    .concat();
    put("wasi_calls", "fds", &fds);
}
