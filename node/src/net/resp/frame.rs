//! RESP2 framing: requests in (arrays of bulk strings, or inline commands
//! typed into a raw socket), replies out.
//!
//! Requests are parsed by hand rather than with a general RESP codec: a
//! server only ever reads one shape (an array of bulk strings, or a line),
//! and every bound has to be checked on the *headers* before the bytes they
//! announce are buffered (a `$4000000000` must be refused at once, not after
//! the node has tried to collect 4 GB). Parsing is two-pass as in
//! mini-redis: the buffer is scanned, and only a complete request is split
//! off — without copying: its arguments are slices of the read buffer.
//! An incomplete request is normal (`Ok(None)`): read more and try again.

use bytes::{BufMut, Bytes, BytesMut};

/// Bounds on what one request may be.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest bulk string (`proto-max-bulk-len`).
    pub max_bulk: usize,
    /// Most arguments in one request.
    pub max_args: usize,
    /// Longest inline command line.
    pub max_inline: usize,
    /// Largest whole request, headers included (`resp-max-request-bytes`).
    pub max_request: usize,
}

/// Most arguments a client may send before AUTH on a node with a password
/// (redis's fix for CVE-2021-32675: AUTH needs at most three).
pub const UNAUTHENTICATED_MAX_ARGS: usize = 10;
/// Largest argument or inline line before AUTH on a node with a password.
pub const UNAUTHENTICATED_MAX_BULK: usize = 16 << 10;

impl Limits {
    /// The bounds for a client that has not authenticated on a node with
    /// credentials: small, so a stranger cannot make the node buffer
    /// megabytes before it is refused.
    pub fn unauthenticated(&self) -> Limits {
        Limits {
            max_bulk: self.max_bulk.min(UNAUTHENTICATED_MAX_BULK),
            max_args: self.max_args.min(UNAUTHENTICATED_MAX_ARGS),
            max_inline: self.max_inline.min(UNAUTHENTICATED_MAX_BULK),
            max_request: self
                .max_request
                .min(UNAUTHENTICATED_MAX_ARGS * (UNAUTHENTICATED_MAX_BULK + 32) + 32),
        }
    }
}

/// A request the stream cannot be trusted after: answered with `-ERR
/// Protocol error: ...`, then the connection is closed (as Redis does).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn perr(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

/// Takes one complete request off the front of `buf`: `Ok(Some(args))`
/// (possibly empty, for an empty line or `*0`), `Ok(None)` when more bytes
/// are needed. Stateless: a request that is not whole yet is scanned again
/// from its start on the next call; a connection keeps a [`Parser`]
/// instead.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    Parser::default().parse(buf, limits)
}

/// A connection's request parser. It remembers how far it got into a
/// multibulk request that is not whole yet, so each read resumes at the
/// first argument not yet seen: a request of many small arguments that
/// arrives a few bytes at a time costs time in proportion to its size, not
/// to its size times the number of reads.
///
/// The buffer given to [`Parser::parse`] must be the same one, only ever
/// appended to, until the request is taken off it; a buffer that shrank is
/// noticed and scanned from its start.
#[derive(Debug, Default)]
pub struct Parser {
    partial: Option<Partial>,
    /// Where each argument of the request being read lies in the buffer;
    /// kept from request to request (a new vector each was an
    /// allocation per request), unless a large request grew it.
    spans: Vec<(usize, usize)>,
}

/// A multibulk request seen in part: its argument count and where its
/// next argument's header starts (the arguments found so far are the
/// parser's `spans`).
#[derive(Debug)]
struct Partial {
    count: usize,
    pos: usize,
}

/// Arguments reserved for from a request's count header alone; more are
/// added as they arrive.
const SPANS_RESERVED: usize = 64;

/// Spans a parser keeps room for between requests; a request of more
/// arguments gives its vector back when it is done.
const SPANS_KEPT: usize = 1024;

impl Parser {
    /// As [`parse_request`], resuming where the last call stopped.
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        if self
            .partial
            .as_ref()
            .is_some_and(|p| p.pos > buf.len() || buf.first() != Some(&b'*'))
        {
            self.partial = None;
        }
        let parsed = match buf.first() {
            None => Ok(None),
            Some(b'*') => parse_multibulk(buf, limits, &mut self.partial, &mut self.spans),
            Some(_) => parse_inline(buf, limits),
        };
        if !matches!(parsed, Ok(None)) {
            self.partial = None;
            if self.spans.capacity() > SPANS_KEPT {
                self.spans = Vec::new();
            }
        }
        parsed
    }
}

/// Finds `\r\n` from `from`; `Ok(None)` if not there yet, an error if the
/// line is longer than `max` without one.
fn line_end(
    buf: &[u8],
    from: usize,
    max: usize,
    what: &str,
) -> Result<Option<usize>, ProtocolError> {
    let window = &buf[from..buf.len().min(from + max + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(p) => Ok(Some(from + p)),
        None if window.len() >= max + 2 => Err(perr(format!("too big {what} string"))),
        None => Ok(None),
    }
}

fn parse_len(digits: &[u8], what: &str) -> Result<i64, ProtocolError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| perr(format!("invalid {what} length")))
}

fn parse_multibulk(
    buf: &mut BytesMut,
    limits: &Limits,
    partial: &mut Option<Partial>,
    spans: &mut Vec<(usize, usize)>,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    // First pass: check the whole request is here, and within bounds,
    // resuming at the first argument the last call did not see whole.
    let p = match partial {
        Some(p) => p,
        None => {
            let Some(end) = line_end(buf, 1, 20, "mbulk count")? else {
                return Ok(None);
            };
            let count = parse_len(&buf[1..end], "multibulk")?;
            if count > limits.max_args as i64 {
                return Err(perr(format!(
                    "invalid multibulk length (more than {} arguments)",
                    limits.max_args
                )));
            }
            if count <= 0 {
                let _ = buf.split_to(end + 2);
                return Ok(Some(Vec::new()));
            }
            let count = count as usize;
            spans.clear();
            spans.reserve(count.min(SPANS_RESERVED));
            partial.insert(Partial {
                count,
                pos: end + 2,
            })
        }
    };
    while spans.len() < p.count {
        let pos = p.pos;
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(c) => return Err(perr(format!("expected '$', got '{}'", *c as char))),
        }
        let Some(end) = line_end(buf, pos + 1, 20, "bulk count")? else {
            return Ok(None);
        };
        let len = parse_len(&buf[pos + 1..end], "bulk")?;
        if len < 0 || len as u64 > limits.max_bulk as u64 {
            return Err(perr(format!(
                "invalid bulk length {len} (the bound is {} bytes, proto-max-bulk-len)",
                limits.max_bulk
            )));
        }
        let start = end + 2;
        let stop = start + len as usize;
        // The whole request so far, checked on the header: a request of
        // many arguments each under the bound is still refused before its
        // bytes are buffered.
        if stop + 2 > limits.max_request {
            return Err(perr(format!(
                "request too big (more than {} bytes, resp-max-request-bytes)",
                limits.max_request
            )));
        }
        if buf.len() < stop + 2 {
            // Nothing is reserved for the announced length: the buffer grows
            // with what arrives, so a header alone costs nothing.
            return Ok(None);
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return Err(perr("bulk string not terminated by CRLF"));
        }
        spans.push((start, stop));
        p.pos = stop + 2;
    }
    // Second pass: split the request off and slice its arguments.
    let Some(p) = partial.take() else {
        return Ok(None);
    };
    let whole = buf.split_to(p.pos).freeze();
    Ok(Some(
        spans.drain(..).map(|(a, b)| whole.slice(a..b)).collect(),
    ))
}

fn parse_inline(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    // The whole-request bound holds for inline requests too.
    let max_line = limits.max_inline.min(limits.max_request);
    let Some(nl) = buf.iter().take(max_line + 1).position(|b| *b == b'\n') else {
        if buf.len() > max_line {
            return Err(perr("too big inline request"));
        }
        return Ok(None);
    };
    let line = buf.split_to(nl + 1);
    let text = line.strip_suffix(b"\n").unwrap_or(&line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let args: Vec<Bytes> = crate::quoting::split_args(text)
        .map_err(|e| perr(format!("{e} in request")))?
        .into_iter()
        .map(Bytes::from)
        .collect();
    if args.len() > limits.max_args {
        return Err(perr("too many arguments in inline request"));
    }
    Ok(Some(args))
}

/// A reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    Simple(String),
    /// A job id as a simple string (`+` and its 36 characters), written
    /// from the id itself: every ADDJOB replies one, and a `String` each
    /// was an allocation.
    JobId(crate::job::JobId),
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    /// `$-1`
    Null,
    /// `*-1`
    NullArray,
    Array(Vec<Frame>),
}

impl Frame {
    pub fn bulk(s: impl Into<Bytes>) -> Frame {
        Frame::Bulk(s.into())
    }

    pub fn text(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// `-CODE message`; line breaks in the message become spaces so the
    /// reply stays one line.
    pub fn error(code: &str, message: &str) -> Frame {
        let msg: String = message
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        Frame::Error(format!("{code} {msg}"))
    }

    /// Bytes [`Frame::encode`] writes, without writing them.
    pub fn encoded_len(&self) -> usize {
        // No allocation: this runs for every reply (the output bound).
        let line = |n: usize| n + 3;
        let digits = |n: u64| n.checked_ilog10().map_or(1, |d| d as usize + 1);
        let len = |n: usize| digits(n as u64);
        match self {
            Frame::Simple(s) | Frame::Error(s) => line(s.len()),
            Frame::JobId(_) => line(uuid::fmt::Hyphenated::LENGTH),
            Frame::Integer(n) => line(digits(n.unsigned_abs()) + usize::from(*n < 0)),
            Frame::Bulk(b) => line(len(b.len())) + b.len() + 2,
            Frame::Null | Frame::NullArray => 5,
            Frame::Array(items) => {
                line(len(items.len())) + items.iter().map(Frame::encoded_len).sum::<usize>()
            }
        }
    }

    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => line(out, b'+', s.as_bytes()),
            Frame::JobId(id) => {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                line(
                    out,
                    b'+',
                    id.0.hyphenated().encode_lower(&mut text).as_bytes(),
                );
            }
            Frame::Error(s) => line(out, b'-', s.as_bytes()),
            Frame::Integer(n) => number(out, b':', *n),
            Frame::Bulk(b) => {
                number(out, b'$', b.len());
                out.put_slice(b);
                out.put_slice(b"\r\n");
            }
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Array(items) => {
                number(out, b'*', items.len());
                for f in items {
                    f.encode(out);
                }
            }
        }
    }
}

/// A line of one number (an integer, a length), formatted on the stack:
/// every reply has one, and a `to_string` each was an allocation.
fn number(out: &mut BytesMut, kind: u8, n: impl itoa::Integer) {
    line(out, kind, itoa::Buffer::new().format(n).as_bytes());
}

fn line(out: &mut BytesMut, kind: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.put_u8(kind);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_bulk: 16,
        max_args: 4,
        max_inline: 32,
        max_request: 48,
    };

    fn parse(bytes: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        parse_request(&mut BytesMut::from(bytes), &L)
    }

    #[test]
    fn multibulk_whole_and_in_pieces() {
        let req = b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n";
        assert_eq!(
            parse(req).unwrap().unwrap(),
            vec![Bytes::from("PING"), Bytes::from("hi")]
        );
        for cut in 1..req.len() {
            assert_eq!(parse(&req[..cut]).unwrap(), None, "cut at {cut}");
        }
        let mut two = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n"[..]);
        assert_eq!(parse_request(&mut two, &L).unwrap().unwrap()[0], "PING");
        assert_eq!(parse_request(&mut two, &L).unwrap().unwrap()[0], "QUIT");
        assert!(two.is_empty());
    }

    #[test]
    fn bounds_are_checked_on_headers() {
        assert!(parse(b"*5\r\n").is_err(), "too many args");
        assert!(
            parse(b"*1\r\n$17\r\n").is_err(),
            "bulk over the bound before its bytes"
        );
        assert!(parse(b"*1\r\n$-3\r\n").is_err());
        assert!(parse(b"*x\r\n").is_err());
        assert!(parse(b"*1\r\n+PING\r\n").is_err());
        assert!(parse(b"*1\r\n$4\r\nPINGxx").is_err(), "bad terminator");
        assert!(parse(&[b'*'; 40]).is_err(), "endless count line");
        assert!(parse(&[b'a'; 40]).is_err(), "endless inline line");
        assert_eq!(parse(b"*0\r\n").unwrap(), Some(vec![]));
    }

    #[test]
    fn the_whole_request_is_bounded_while_parsing() {
        // Three arguments of 14 bytes, each under max_bulk (16), are 3 *
        // (5 + 14 + 2) + 4 = 67 bytes, over max_request (48): refused at
        // the third header, before its bytes arrive.
        let a = b"$14\r\nabcdefghijklmn\r\n";
        let mut req = b"*3\r\n".to_vec();
        req.extend_from_slice(a);
        assert_eq!(parse(&req).unwrap(), None, "one argument is fine");
        req.extend_from_slice(a);
        assert_eq!(parse(&req).unwrap(), None, "two are 46 bytes");
        req.extend_from_slice(b"$14\r\n");
        let e = parse(&req).unwrap_err();
        assert!(e.0.contains("request too big"), "{e}");
        let exact = b"*2\r\n$14\r\nabcdefghijklmn\r\n$1\r\nx\r\n";
        assert_eq!(parse(exact).unwrap().map(|v| v.len()), Some(2));
    }

    #[test]
    fn a_parser_fed_a_byte_at_a_time_keeps_the_arguments_it_saw_whole() {
        let limits = Limits {
            max_bulk: 64,
            max_args: 1000,
            max_inline: 64,
            max_request: 1 << 20,
        };
        let mut req = b"*300\r\n".to_vec();
        for i in 0..300 {
            let a = format!("a{i}");
            req.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        req.extend_from_slice(b"PING\r\n");
        let mut parser = Parser::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for (n, b) in req.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            while let Some(args) = parser.parse(&mut buf, &limits).unwrap() {
                got.push(args);
            }
            if got.is_empty() && n > 200 {
                // Every argument that arrived whole is remembered, so the
                // next read starts after it, not at the request's start.
                let seen = parser.partial.as_ref().map_or(0, |_| parser.spans.len());
                let whole = parse_request(&mut BytesMut::from(&req[..]), &limits)
                    .unwrap()
                    .unwrap();
                let arrived = whole
                    .iter()
                    .scan(6usize, |at, a| {
                        *at += a.len() + 4 + a.len().to_string().len() + 1;
                        Some(*at)
                    })
                    .take_while(|end| *end <= n + 1)
                    .count();
                assert_eq!(seen, arrived, "after {} bytes", n + 1);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), 300);
        assert_eq!(&got[0][299][..], b"a299");
        assert_eq!(got[1], vec![Bytes::from_static(b"PING")]);
        assert!(parser.partial.is_none());
    }

    #[test]
    fn a_parser_given_a_shorter_buffer_starts_again() {
        let limits = Limits {
            max_bulk: 64,
            max_args: 8,
            max_inline: 64,
            max_request: 1 << 20,
        };
        let mut parser = Parser::default();
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nabc\r\n$2\r"[..]);
        assert_eq!(parser.parse(&mut buf, &limits).unwrap(), None);
        let mut other = BytesMut::from(&b"*1\r\n$1\r\nx\r\n"[..]);
        assert_eq!(
            parser.parse(&mut other, &limits).unwrap(),
            Some(vec![Bytes::from_static(b"x")])
        );
    }

    #[test]
    fn an_inline_request_is_held_to_the_whole_request_bound_too() {
        // Found by the resp_frame fuzz target: a bound below the inline
        // line length let a longer inline request through.
        let small = Limits {
            max_bulk: 64,
            max_args: 8,
            max_inline: 64,
            max_request: 8,
        };
        let mut ok = BytesMut::from(&b"PING x\r\n"[..]);
        assert_eq!(
            parse_request(&mut ok, &small).unwrap().map(|v| v.len()),
            Some(2)
        );
        let mut long = BytesMut::from(&b"PING abcdefgh\r\n"[..]);
        let e = parse_request(&mut long, &small).unwrap_err();
        assert!(e.0.contains("too big inline request"), "{e}");
    }

    #[test]
    fn a_header_reserves_nothing_for_the_bytes_it_announces() {
        let big = Limits {
            max_bulk: 1 << 30,
            max_args: 4,
            max_inline: 32,
            max_request: 1 << 31,
        };
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"*1\r\n$1000000000\r\nab");
        assert_eq!(parse_request(&mut buf, &big).unwrap(), None);
        assert!(buf.capacity() < 4096, "capacity {}", buf.capacity());
    }

    #[test]
    fn unauthenticated_bounds_are_small() {
        let full = Limits {
            max_bulk: 64 << 20,
            max_args: 1 << 20,
            max_inline: 64 << 10,
            max_request: 65 << 20,
        };
        let u = full.unauthenticated();
        let mut eleven = BytesMut::from(&b"*11\r\n"[..]);
        assert!(parse_request(&mut eleven, &u).is_err(), "11 arguments");
        let mut ten = BytesMut::from(&b"*10\r\n"[..]);
        assert_eq!(parse_request(&mut ten, &u).unwrap(), None, "10 are fine");
        let mut big = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$16385\r\n"[..]);
        assert!(
            parse_request(&mut big, &u).is_err(),
            "a 16 KiB + 1 argument"
        );
        let mut ok = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$16384\r\n"[..]);
        assert_eq!(parse_request(&mut ok, &u).unwrap(), None);
        let mut line = BytesMut::from(&[b'a'; (16 << 10) + 2][..]);
        assert!(parse_request(&mut line, &u).is_err(), "a long inline line");
        let mut both = BytesMut::from(&b"*11\r\n"[..]);
        assert_eq!(parse_request(&mut both, &full).unwrap(), None, "after AUTH");
    }

    #[test]
    fn inline_commands_with_quotes() {
        assert_eq!(
            parse(b"ADDJOB q \"a b\\n\" 0\r\n").unwrap().unwrap(),
            vec![
                Bytes::from("ADDJOB"),
                Bytes::from("q"),
                Bytes::from("a b\n"),
                Bytes::from("0")
            ]
        );
        assert_eq!(
            parse(b"PING\n").unwrap().unwrap(),
            vec![Bytes::from("PING")]
        );
        assert_eq!(
            parse(b"'x\\'y'\n").unwrap().unwrap(),
            vec![Bytes::from("x'y")]
        );
        assert_eq!(parse(b"\r\n").unwrap(), Some(vec![]));
        assert!(parse(b"\"open\n").is_err());
        assert_eq!(parse(b"PING").unwrap(), None);
    }

    #[test]
    fn replies_encode() {
        let mut out = BytesMut::new();
        Frame::Array(vec![
            Frame::Integer(-1),
            Frame::text("ab"),
            Frame::Null,
            Frame::NullArray,
            Frame::Simple("OK".into()),
            Frame::error("ERR", "two\nlines"),
        ])
        .encode(&mut out);
        assert_eq!(
            &out[..],
            b"*6\r\n:-1\r\n$2\r\nab\r\n$-1\r\n*-1\r\n+OK\r\n-ERR two lines\r\n"
        );
    }

    #[test]
    fn encoded_len_is_what_encode_writes() {
        let frames = [
            Frame::Integer(i64::MIN),
            Frame::Integer(i64::MAX),
            Frame::Integer(-1),
            Frame::Integer(-10),
            Frame::Integer(9),
            Frame::Integer(10),
            Frame::Integer(0),
            Frame::bulk(vec![7u8; 0]),
            Frame::bulk(vec![7u8; 9]),
            Frame::bulk(vec![7u8; 10]),
            Frame::bulk(vec![7u8; 100_000]),
            Frame::Array((0..12).map(|i| Frame::text(&"x".repeat(i))).collect()),
            Frame::Array(vec![]),
            Frame::Null,
            Frame::NullArray,
            Frame::Simple("OK".into()),
            Frame::JobId(crate::job::JobId(uuid::Uuid::from_u128(u128::MAX / 3))),
            Frame::error("ERR", "no"),
        ];
        for f in frames {
            let mut out = BytesMut::new();
            f.encode(&mut out);
            assert_eq!(f.encoded_len(), out.len(), "{f:?}");
        }
    }

    /// A job id frame is the simple string of the id's text, as Disque
    /// replies one.
    #[test]
    fn a_job_id_is_written_as_its_text() {
        let id = crate::job::JobId(uuid::Uuid::from_u128(
            0x0192_0000_0000_7000_8000_0000_0000_00ab,
        ));
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        Frame::JobId(id).encode(&mut a);
        Frame::Simple(id.to_string()).encode(&mut b);
        assert_eq!(a, b);
        assert_eq!(&a[..], b"+01920000-0000-7000-8000-0000000000ab\r\n");
    }
}
