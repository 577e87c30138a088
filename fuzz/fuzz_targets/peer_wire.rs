//! The peer protocol's frames (`cluster::wire`): reading a stream of frames
//! (length, version, postcard body) from arbitrary bytes under a size bound.
//!
//! A crash: a panic, a frame over the bound that is accepted, or a frame
//! that does not survive encode then read unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasque_fuzz::block_on;
use wasque_node::cluster::wire::{self, Frame, WireError};

const MAX: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    // The body alone, as postcard decodes it.
    if let Ok(f) = postcard::from_bytes::<Frame>(data) {
        round_trip(&f);
    }
    // The stream, frame after frame.
    let mut r = data;
    for _ in 0..data.len() + 1 {
        match block_on(wire::read(&mut r, MAX)) {
            Ok(Some(f)) => round_trip(&f),
            Ok(None) => break,
            Err(WireError::TooBig(len, max)) => {
                assert!(len > max);
                break;
            }
            Err(_) => break,
        }
    }
});

fn round_trip(f: &Frame) {
    let mut buf = Vec::new();
    wire::encode(f, &mut buf).expect("a decoded frame encodes");
    let back = block_on(wire::read(&mut &buf[..], usize::MAX))
        .expect("an encoded frame reads")
        .expect("one frame");
    assert_eq!(&back, f);
}
