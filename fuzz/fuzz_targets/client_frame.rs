//! The client protocol's frames (`wasque_sdk::proto`): `RequestFrame` (what
//! a node reads from clients) and `ResponseFrame` (what a client reads from
//! a node) decoded from arbitrary bytes, directly and through the buffered
//! frame reader the node's QUIC door uses, over reads of fuzzed sizes.
//!
//! A crash: a panic, a frame over the bound that is accepted, a decoded
//! value that does not survive encode then decode, or the buffered reader
//! disagreeing with the plain one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::BufReader;
use wasque_fuzz::block_on;
use wasque_sdk::proto::{
    FrameError, RequestFrame, ResponseFrame, encode_frame, read_frame, read_frame_buffered,
};

const MAX: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Reader capacity 1..=128 bytes: frames split across buffer refills.
    let cap = usize::from(mode & 0x7f) + 1;
    if mode & 0x80 == 0 {
        check::<RequestFrame>(rest, cap);
    } else {
        check::<ResponseFrame>(rest, cap);
    }
});

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8], cap: usize) {
    if let Ok(v) = postcard::from_bytes::<T>(data) {
        round_trip(&v);
    }
    let mut plain = data;
    let mut buffered = BufReader::with_capacity(cap, data);
    for _ in 0..data.len() + 1 {
        let a = block_on(read_frame::<_, T>(&mut plain, MAX));
        let b = block_on(read_frame_buffered::<_, T>(&mut buffered, MAX));
        match (a, b) {
            (Ok(Some(a)), Ok(Some(b))) => {
                assert_eq!(a, b);
                round_trip(&a);
            }
            (Ok(None), Ok(None)) => break,
            (Err(FrameError::TooLarge { size, max }), Err(FrameError::TooLarge { .. })) => {
                assert!(size > max);
                break;
            }
            (Err(_), Err(_)) => break,
            (a, b) => panic!("plain reader {a:?}, buffered reader {b:?}"),
        }
    }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let bytes = encode_frame(v, usize::MAX).expect("a decoded frame encodes");
    let back: T = block_on(read_frame(&mut &bytes[..], usize::MAX))
        .expect("an encoded frame reads")
        .expect("one frame");
    assert_eq!(&back, v);
}
