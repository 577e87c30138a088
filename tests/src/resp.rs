//! A RESP client for tests that speak Disque's protocol to a node: the
//! `redis` crate's blocking connection, with timeouts so a dead node
//! fails a call instead of hanging it.

use std::net::SocketAddr;
use std::time::Duration;

pub use redis::{Connection, RedisResult, Value};

/// Connects within 2 s; each read and write waits at most 5 s. `None`
/// if the node is not there.
pub fn connect(addr: SocketAddr) -> Option<Connection> {
    let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
    let c = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    c.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(c)
}

/// Sends one command, its words as given.
pub fn cmd(c: &mut Connection, args: &[&str]) -> RedisResult<Value> {
    let mut k = redis::cmd(args[0]);
    for a in &args[1..] {
        k.arg(*a);
    }
    k.query(c)
}

/// A reply as text: status, bulk string or integer; anything else in its
/// debug form (so a failing assertion shows what came back).
pub fn text(v: &Value) -> String {
    match v {
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// A field of the field/value array `cmd id` answers (SHOW, RESULT),
/// `None` when the call fails or the field is missing.
pub fn field(c: &mut Connection, cmd_name: &str, id: &str, name: &str) -> Option<String> {
    let Value::Array(items) = cmd(c, &[cmd_name, id]).ok()? else {
        return None;
    };
    items
        .chunks(2)
        .find(|kv| text(&kv[0]) == name)
        .map(|kv| text(&kv[1]))
}
