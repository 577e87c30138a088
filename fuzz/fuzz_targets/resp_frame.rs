//! The RESP request parser (`net::resp::frame::parse_request`) on arbitrary
//! bytes, fed as one buffer (stateless) and again in reads of fuzzed sizes
//! through a connection's resuming [`Parser`].
//!
//! A crash: a panic, a request past the bounds (more arguments than
//! `max_args`, an argument longer than `max_bulk`, an inline line longer
//! than `max_inline`, arguments adding up past `max_request`), the parser
//! growing the buffer beyond what arrived (a header must not make the node
//! reserve what it announces), or the two feedings disagreeing (the parser
//! must give the same requests however the bytes arrive).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use wasque_fuzz::chunks;
use wasque_node::net::resp::frame::{Limits, Parser, parse_request};

/// What a stream of bytes parses into: its requests, then whether it ended
/// on a protocol error.
fn feed<'a>(
    parts: impl Iterator<Item = &'a [u8]>,
    limits: &Limits,
    mut parser: Option<Parser>,
) -> (Vec<Vec<Bytes>>, bool) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in parts {
        buf.extend_from_slice(part);
        // Each request consumes at least one byte, so this ends.
        for _ in 0..=buf.len() {
            let capacity = buf.capacity();
            let parsed = match parser.as_mut() {
                Some(p) => p.parse(&mut buf, limits),
                None => parse_request(&mut buf, limits),
            };
            assert!(
                buf.capacity() <= capacity,
                "the parser grew the buffer from {capacity} to {} bytes",
                buf.capacity()
            );
            match parsed {
                Ok(Some(args)) => {
                    assert!(args.len() <= limits.max_args, "{} args", args.len());
                    let total: usize = args.iter().map(Bytes::len).sum();
                    assert!(total <= limits.max_request, "request of {total} bytes");
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
    // Header: four bound bytes and four chunk sizes, then the stream.
    let Some((head, stream)) = data.split_at_checked(8) else {
        return;
    };
    let limits = Limits {
        max_bulk: usize::from(head[0]) * 4,
        max_args: usize::from(head[1] % 64),
        max_inline: usize::from(head[2]) * 4,
        max_request: usize::from(head[7]) * 16,
    };
    // Whole with the stateless parser, in pieces with a connection's
    // resuming one: they must agree.
    let whole = feed(std::iter::once(stream), &limits, None);
    let split = feed(
        chunks(stream, &head[3..7]),
        &limits,
        Some(Parser::default()),
    );
    assert_eq!(whole, split, "one read and many reads parse differently");
});
