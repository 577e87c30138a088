//! Disque's commands (and wasque's extensions) as RESP requests: name
//! dispatch, arity, argument parsing into an [`Action`], and rendering of
//! the engine's [`Reply`] for each command ([`Render`]). One file per
//! command group; `apply`-style work is left to the engine: nothing here
//! touches job state.

mod addjob;
pub(super) mod cluster;
mod getjob;
mod jobs;
mod life;
mod policy;
mod queues;
mod render;
pub(super) mod schedule;
pub(super) mod server;
pub(super) mod tenant;
mod wasm;

use bytes::Bytes;

pub use render::{Render, render};

use super::frame::Frame;
use crate::api::Command;
use crate::job::JobId;

/// What a request asks the connection to do.
#[derive(Debug)]
pub enum Action {
    /// Hand a command to the engine; render its reply so.
    Engine(Command, Render),
    /// Answer at once.
    Reply(Frame),
    /// INFO [section]: needs the node's figures.
    Info(Option<String>),
    /// MODULE PUT bytes: validate, compile, store.
    PutModule(Bytes, wasque_sdk::proto::PutOptions),
    /// Commands about the connection or the server's settings, answered by
    /// the connection itself (AUTH, CONFIG, HELLO, QUIT, DEBUG, ...).
    Server(server::ServerCmd),
    /// CLUSTER subcommands, answered from the cluster layer.
    Cluster(cluster::ClusterCmd),
    /// TENANT subcommands (the admin's), answered from the registry.
    Tenant(tenant::TenantCmd),
    /// SCHEDULE subcommands, answered from the schedule registry; with
    /// the module name of a SCHEDULE ADD (`MODULE n@v`), which the
    /// connection resolves to its hash, as the client sees names, once.
    Schedule(crate::sched::ScheduleCmd, Option<String>),
}

/// Arity as Redis states it: `n` exactly n words (with the name), `-n` at
/// least n.
fn arity_ok(arity: i32, argc: usize) -> bool {
    if arity >= 0 {
        argc == arity as usize
    } else {
        argc >= (-arity) as usize
    }
}

/// `(name, arity)` of every command.
const TABLE: &[(&str, i32)] = &[
    ("auth", -2),
    ("ping", -1),
    ("echo", 2),
    ("info", -1),
    ("hello", -1),
    ("config", -2),
    ("debug", -2),
    ("cluster", -1),
    ("command", -1),
    ("client", -2),
    ("quit", -1),
    ("addjob", -4),
    ("getjob", -2),
    ("ackjob", -1),
    ("fastack", -1),
    ("deljob", -1),
    ("cancel", -2),
    ("show", 2),
    ("explain", 2),
    ("qlen", 2),
    ("qpeek", 3),
    ("qstat", 2),
    ("qscan", -1),
    ("jscan", -1),
    ("enqueue", -1),
    ("nack", -1),
    ("dequeue", -1),
    ("working", 2),
    ("pause", -3),
    ("qpolicy", -2),
    ("module", -2),
    ("result", 2),
    ("waitjob", 3),
    ("finish", -3),
    ("tenant", -2),
    ("dlq", -3),
    ("qretry", -2),
    ("schedule", -2),
];

/// Turns a request's words into an action, or the error reply it deserves.
pub fn parse(args: Vec<Bytes>) -> Action {
    let Some(first) = args.first() else {
        return Action::Reply(Frame::error("ERR", "empty command"));
    };
    // The table's own lowercase name: no copy of the request's.
    let Some(&(name, arity)) = TABLE
        .iter()
        .find(|(n, _)| first.eq_ignore_ascii_case(n.as_bytes()))
    else {
        let shown: String = String::from_utf8_lossy(first).chars().take(64).collect();
        return Action::Reply(Frame::error("ERR", &format!("unknown command '{shown}'")));
    };
    let (args, key) = match take_asynckey(name, args) {
        Ok(split) => split,
        Err(reply) => return Action::Reply(reply),
    };
    if !arity_ok(arity, args.len()) {
        return Action::Reply(wrong_arity(name));
    }
    let a = Args { name, words: args };
    let out = match a.name {
        "addjob" => addjob::parse(&a),
        "getjob" => getjob::parse(&a),
        "ackjob" | "fastack" | "deljob" | "cancel" | "enqueue" | "nack" | "dequeue" | "working"
        | "show" | "explain" => jobs::parse(&a),
        "qlen" | "qpeek" | "qstat" | "qscan" | "jscan" | "pause" => queues::parse(&a),
        "module" | "result" | "waitjob" | "finish" => wasm::parse(&a),
        "qpolicy" => policy::parse(&a),
        "tenant" => tenant::parse(&a),
        "schedule" => schedule::parse(&a),
        "dlq" => life::dlq(&a),
        "qretry" => life::qretry(&a),
        _ => server::parse(&a),
    };
    match (out, key) {
        (Ok(Action::Engine(cmd, render)), Some(key)) => Action::Engine(
            Command::WithKey {
                key,
                cmd: Box::new(cmd),
            },
            render,
        ),
        (out, _) => out.unwrap_or_else(Action::Reply),
    }
}

/// Commands on jobs that take a trailing `ASYNCKEY k`: the key that opens
/// jobs added with `ASYNCKEY k` (engine/asynckey.rs).
const KEYED: &[&str] = &[
    "show", "explain", "result", "waitjob", "ackjob", "fastack", "deljob", "cancel", "nack",
    "working", "enqueue", "dequeue", "jscan", "dlq",
];

/// Splits a trailing `ASYNCKEY k` off a keyed command's words. Job ids
/// never read `ASYNCKEY`, so the pair cannot be mistaken for ids.
fn take_asynckey(name: &str, mut args: Vec<Bytes>) -> Result<(Vec<Bytes>, Option<String>), Frame> {
    let n = args.len();
    if !KEYED.contains(&name) || n < 3 || !args[n - 2].eq_ignore_ascii_case(b"asynckey") {
        return Ok((args, None));
    }
    let key = args.pop().unwrap_or_default();
    args.pop();
    let key = String::from_utf8(key.to_vec())
        .map_err(|_| Frame::error("ERR", "ASYNCKEY must be UTF-8 text"))?;
    Ok((args, Some(key)))
}

pub(super) fn wrong_arity(name: &str) -> Frame {
    Frame::error(
        "ERR",
        &format!("wrong number of arguments for '{name}' command"),
    )
}

/// A request's words, the name lowercased.
pub(super) struct Args {
    pub name: &'static str,
    pub words: Vec<Bytes>,
}

impl Args {
    pub fn get(&self, i: usize) -> &[u8] {
        self.words.get(i).map_or(&[][..], |b| &b[..])
    }

    pub fn bytes(&self, i: usize) -> Bytes {
        self.words.get(i).cloned().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// The word as text (queue names, options): must be UTF-8.
    pub fn text(&self, i: usize) -> Result<String, Frame> {
        std::str::from_utf8(self.get(i))
            .map(str::to_string)
            .map_err(|_| Frame::error("ERR", "names must be UTF-8 text"))
    }

    /// Whether word `i` is `opt`, ignoring case.
    pub fn is(&self, i: usize, opt: &str) -> bool {
        self.get(i).eq_ignore_ascii_case(opt.as_bytes())
    }

    pub fn int(&self, i: usize) -> Result<i64, Frame> {
        std::str::from_utf8(self.get(i))
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(not_integer)
    }

    /// A non-negative integer.
    pub fn uint(&self, i: usize) -> Result<u64, Frame> {
        let n = self.int(i)?;
        u64::try_from(n).map_err(|_| not_integer())
    }

    pub fn id(&self, i: usize) -> Result<JobId, Frame> {
        std::str::from_utf8(self.get(i))
            .ok()
            .and_then(|s| s.parse::<JobId>().ok())
            .ok_or_else(bad_id)
    }

    /// Every word from `from` on as a job id; one malformed id refuses
    /// the whole command (as Disque validates them all first).
    pub fn ids(&self, from: usize) -> Result<Vec<JobId>, Frame> {
        self.ids_in(from, self.len())
    }

    /// Words `from..to` as job ids.
    pub fn ids_in(&self, from: usize, to: usize) -> Result<Vec<JobId>, Frame> {
        (from..to).map(|i| self.id(i)).collect()
    }
}

pub(super) fn not_integer() -> Frame {
    Frame::error("ERR", "value is not an integer or out of range")
}

pub(super) fn syntax() -> Frame {
    Frame::error("ERR", "syntax error")
}

pub(super) fn bad_id() -> Frame {
    Frame::error("BADID", "Invalid Job ID format.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn reply_of(s: &str) -> Frame {
        match parse(words(s)) {
            Action::Reply(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_arity_and_ids() {
        assert_eq!(
            reply_of("FOO"),
            Frame::Error("ERR unknown command 'FOO'".into())
        );
        assert_eq!(
            reply_of("SHOW"),
            Frame::Error("ERR wrong number of arguments for 'show' command".into())
        );
        assert_eq!(reply_of("ADDJOB q x"), wrong_arity("addjob"));
        assert_eq!(reply_of("ACKJOB nope"), bad_id());
        assert_eq!(
            reply_of("ADDJOB q x 0 TTL -1"),
            Frame::error("ERR", "TTL must be a number > 0")
        );
        assert_eq!(reply_of("ADDJOB q x 0 BOGUS"), syntax());
        assert_eq!(
            reply_of("GETJOB COUNT 0 FROM q"),
            Frame::error("ERR", "COUNT must be a number greater than zero")
        );
        assert_eq!(reply_of("GETJOB NOHANG"), syntax());
        assert_eq!(
            reply_of("ADDJOB q x 99999999999999999999"),
            Frame::error("ERR", "timeout is not an integer or out of range")
        );
    }

    #[test]
    fn a_trailing_asynckey_wraps_the_command() {
        let id = "01a241f9-5a4b-7000-acb2-fc00b40effae";
        let keyed = |s: &str| match parse(words(s)) {
            Action::Engine(Command::WithKey { key, cmd }, _) => Some((key, *cmd)),
            Action::Engine(_, _) => None,
            other => panic!("{s}: {other:?}"),
        };
        for cmd in [
            "SHOW", "RESULT", "WORKING", "ACKJOB", "fastack", "DELJOB", "NACK",
        ] {
            let (key, _) = keyed(&format!("{cmd} {id} asynckey k1")).expect(cmd);
            assert_eq!(key, "k1");
            assert!(keyed(&format!("{cmd} {id}")).is_none());
        }
        let (_, cmd) = keyed(&format!("ACKJOB {id} {id} ASYNCKEY k")).unwrap();
        assert!(matches!(cmd, Command::Ack { ids, .. } if ids.len() == 2));
        let (_, cmd) = keyed(&format!("WAITJOB {id} 10 ASYNCKEY k")).unwrap();
        assert!(matches!(cmd, Command::Wait { timeout_ms: 10, .. }));
        assert!(keyed("JSCAN COUNT 5 ASYNCKEY k").is_some());
        // Not a keyed command: the words stay as they are.
        assert_eq!(reply_of("QLEN q ASYNCKEY k"), wrong_arity("qlen"));
        // The key is the last word; a dangling ASYNCKEY is an id.
        assert_eq!(
            reply_of(&format!("SHOW {id} ASYNCKEY")),
            wrong_arity("show")
        );
    }

    #[test]
    fn commands_parse() {
        assert!(
            matches!(parse(words("addjob q body 0 RETRY 0 TTL 10 DELAY 1 MAXLEN 5 ASYNC")), Action::Engine(Command::AddJob(a), Render::AddJob) if a.retry_secs == Some(0) && a.maxlen == Some(5))
        );
        assert!(
            matches!(parse(words("GETJOB NOHANG TIMEOUT 10 COUNT 3 WITHCOUNTERS FROM a b")), Action::Engine(Command::GetJob(g), Render::GetJob) if g.queues.len() == 2 && g.count == 3 && g.nohang && g.withcounters)
        );
        assert!(
            matches!(parse(words("PAUSE q in out")), Action::Engine(Command::Pause { set: Some(p), .. }, _) if p.input && p.output)
        );
        assert!(matches!(
            parse(words("PAUSE q state")),
            Action::Engine(Command::Pause { set: None, .. }, _)
        ));
    }
}
