//! The RESP request parser (`net::resp::frame::parse_request`) on arbitrary
//! bytes, fed as one buffer and again in reads of fuzzed sizes.
//!
//! A crash: a panic, a request past the bounds (more arguments than
//! `max_args`, an argument longer than `max_bulk`, an inline line longer
//! than `max_inline`), or the two feedings disagreeing (the parser must
//! give the same requests however the bytes arrive).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use wasque_fuzz::chunks;
use wasque_node::net::resp::frame::{Limits, parse_request};

/// What a stream of bytes parses into: its requests, then whether it ended
/// on a protocol error.
fn feed<'a>(parts: impl Iterator<Item = &'a [u8]>, limits: &Limits) -> (Vec<Vec<Bytes>>, bool) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in parts {
        buf.extend_from_slice(part);
        // Each request consumes at least one byte, so this ends.
        for _ in 0..=buf.len() {
            match parse_request(&mut buf, limits) {
                Ok(Some(args)) => {
                    assert!(args.len() <= limits.max_args, "{} args", args.len());
                    for a in &args {
                        assert!(
                            a.len() <= limits.max_bulk.max(limits.max_inline),
                            "arg of {} bytes",
                            a.len()
                        );
                    }
                    out.push(args);
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    // Header: three bound bytes and four chunk sizes, then the stream.
    let Some((head, stream)) = data.split_at_checked(7) else {
        return;
    };
    let limits = Limits {
        max_bulk: usize::from(head[0]) * 4,
        max_args: usize::from(head[1] % 64),
        max_inline: usize::from(head[2]) * 4,
    };
    let whole = feed(std::iter::once(stream), &limits);
    let split = feed(chunks(stream, &head[3..7]), &limits);
    assert_eq!(whole, split, "one read and many reads parse differently");
});
