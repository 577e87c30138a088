//! A minimal HTTP/1.0 client for tests of the node's HTTP front door:
//! `GET` with a bounded wait and optional headers (a bearer token, a
//! foreign `Host`), `POST` with a JSON body or none, and a server-sent
//! event reader. HTTP/1.0 so
//! that the server delimits bodies by closing (no chunked decoding here).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest wait for a whole answer.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// One answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Opens a connection and sends `GET path` with `headers`; `Host` is the
/// node's address unless `headers` names one.
fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<TcpStream> {
    send(addr, "GET", path, headers, None)
}

/// Opens a connection and sends `method path` with `headers` and, if
/// given, a JSON body.
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json: Option<&str>,
) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    match json {
        Some(b) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None if method == "POST" => req.push_str("Content-Length: 0\r\n\r\n"),
        None => req.push_str("\r\n"),
    }
    s.write_all(req.as_bytes())?;
    Ok(s)
}

fn head<R: BufRead>(r: &mut R) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

/// `GET path`, the whole answer.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    get_with(addr, path, &[])
}

/// `GET path` with extra headers, the whole answer.
pub fn get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    whole(connect(addr, path, headers)?)
}

/// `POST path` with a JSON body (or none, `Content-Length: 0`), the whole
/// answer.
pub fn post(addr: SocketAddr, path: &str, json: Option<&str>) -> std::io::Result<Response> {
    whole(send(addr, "POST", path, &[], json)?)
}

fn whole(s: TcpStream) -> std::io::Result<Response> {
    let mut r = BufReader::new(s);
    let (status, headers) = head(&mut r)?;
    let mut body = String::new();
    r.read_to_string(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A server-sent event stream.
pub struct EventStream {
    reader: BufReader<TcpStream>,
    pub status: u16,
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

impl EventStream {
    pub fn open(addr: SocketAddr, path: &str) -> std::io::Result<EventStream> {
        EventStream::open_with(addr, path, &[])
    }

    /// Opens the stream with extra headers (a bearer token).
    pub fn open_with(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<EventStream> {
        let s = connect(addr, path, headers)?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut reader = BufReader::new(s);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match head(&mut reader) {
                Ok((status, _)) => return Ok(EventStream { reader, status }),
                Err(e) if Instant::now() < deadline && is_timeout(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next event, waiting at most until `deadline`.
    pub fn next(&mut self, deadline: Instant) -> Option<SseEvent> {
        let mut ev = SseEvent {
            event: "message".into(),
            data: String::new(),
        };
        // A line cut by a read timeout is kept and completed by the next read.
        let mut line = String::new();
        while Instant::now() < deadline {
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {
                    let l = std::mem::take(&mut line);
                    let l = l.trim_end_matches(['\r', '\n']);
                    if l.is_empty() {
                        if !ev.data.is_empty() || ev.event != "message" {
                            return Some(ev);
                        }
                    } else if let Some(v) = l.strip_prefix("event:") {
                        ev.event = v.trim().to_string();
                    } else if let Some(v) = l.strip_prefix("data:") {
                        if !ev.data.is_empty() {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                Err(e) if is_timeout(&e) => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
