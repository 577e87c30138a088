//! "Why is my job waiting": a node's account of where one job stands and
//! what it waits for (`EXPLAIN id`, `wasque explain ID`,
//! `GET /api/jobs/{id}/explain`). The node builds it from its own state
//! (`engine/explain.rs`); every door renders the same [`Explain`].
//!
//! An explanation is a list of [`Reason`]s, most important first, each
//! with a machine-readable `kind`, named fields, and one line for people.
//! Kinds (fields in brackets):
//!
//! - `wait-repl`: the add waits for copies on peers [`answered`,
//!   `asked`, `waiting-on`, `deadline-at`]
//! - `waiting-for-parts`: a distributed job waits for its parts [`done`,
//!   `parts`, `failed`]
//! - `waiting-for-jobs`: a job added `AFTER` other jobs waits for them
//! - `queued`: in its queue's ready order [`queue`, `priority`, `ahead`,
//!   `ahead-higher`, `queue-len`]
//! - `paused`: its queue is paused [`queue`, `pause`]
//! - `waiting-for-slot`: every executor slot of the node is taken
//!   [`slots`, `busy`]
//! - `fair-share`: other tenants with ready jobs are owed executor time
//!   first [`tenant`, `weight`, `tenants-ahead`]
//! - `waiting-for-module`: its module is being fetched from a peer (and
//!   compiled) [`module`, `from`, `since-at`]
//! - `delayed`: added with a DELAY [`ready-at`, `in-ms`]
//! - `retry-backoff`: a failed run waits out its backoff [`attempt`,
//!   `max-attempts`, `ready-at`, `in-ms`, `last-error`]
//! - `running`: handed to this node's executor [`node`, `attempt`,
//!   `since-at`, `deadline-at`, and when it reported progress
//!   `progress-done`, `progress-total`, `progress-note`]
//! - `delivered`: a plain job given to an external worker [`attempt`,
//!   `requeue-at`]
//! - `lent`: moved to another node, which queues or runs it [`node`,
//!   `node-up`, `requeue-at`]
//! - `held-elsewhere`: this node keeps a holder's copy; another node has
//!   the job in hand [`node`, `node-up`, `requeue-at`]
//! - `will-queue`: this node asks the other holders before it queues the
//!   job itself [`until-at`]
//! - `finished`: it ran and waits for its acknowledgement [`class`,
//!   `node`]
//! - `dead`: a dead letter [`attempts`, `last-error`]
//! - `acked`: acknowledged; kept until every holder confirmed [`pending`]
//!
//! Times (`*-at`) are unix milliseconds; `in-ms` counts from the answer.

use serde::{Deserialize, Serialize};

use super::types::{JobId, JobState};

/// One job's explanation, as the node that holds it sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explain {
    pub id: JobId,
    /// The node that answered (it holds a copy of the job).
    pub node: String,
    pub queue: String,
    pub state: JobState,
    /// When the node answered, unix ms (the reference for `in-ms`).
    pub at: u64,
    /// Most important first; never empty.
    pub reasons: Vec<Reason>,
}

/// One reason a job is where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Machine-readable: `queued`, `waiting-for-slot`, `lent`, ... (see
    /// the module's list).
    pub kind: String,
    /// Named values, in a fixed order per kind.
    pub fields: Vec<(String, Value)>,
    /// One line for people.
    pub text: String,
}

/// A field's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    Int(u64),
    Text(String),
    Bool(bool),
}

impl Reason {
    /// A reason of `kind` with `text` and no fields yet.
    pub fn new(kind: &str, text: impl Into<String>) -> Reason {
        Reason {
            kind: kind.to_string(),
            fields: Vec::new(),
            text: text.into(),
        }
    }

    /// Adds a number.
    pub fn int(mut self, name: &str, v: u64) -> Reason {
        self.fields.push((name.to_string(), Value::Int(v)));
        self
    }

    /// Adds a text.
    pub fn text(mut self, name: &str, v: impl Into<String>) -> Reason {
        self.fields.push((name.to_string(), Value::Text(v.into())));
        self
    }

    /// Adds a yes/no.
    pub fn flag(mut self, name: &str, v: bool) -> Reason {
        self.fields.push((name.to_string(), Value::Bool(v)));
        self
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl Value {
    pub fn as_int(&self) -> Option<u64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Int(n) => (*n).into(),
            Value::Text(s) => s.clone().into(),
            Value::Bool(b) => (*b).into(),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Text(s) => f.write_str(s),
            Value::Bool(b) => write!(f, "{}", if *b { "yes" } else { "no" }),
        }
    }
}

impl Explain {
    /// The reasons' lines joined: one sentence for people.
    pub fn summary(&self) -> String {
        let mut s = self
            .reasons
            .iter()
            .map(|r| r.text.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if !s.ends_with('.') {
            s.push('.');
        }
        s
    }

    /// The first reason that points at another node (`lent`,
    /// `held-elsewhere`), with that node's id: where to ask next.
    pub fn elsewhere(&self) -> Option<&str> {
        self.reasons
            .iter()
            .filter(|r| r.kind == "lent" || r.kind == "held-elsewhere")
            .find_map(|r| r.field("node").and_then(Value::as_text))
    }

    /// The JSON document (HTTP, `wasque explain --json`).
    pub fn to_json(&self) -> serde_json::Value {
        let reasons: Vec<serde_json::Value> = self
            .reasons
            .iter()
            .map(|r| {
                let fields: serde_json::Map<String, serde_json::Value> = r
                    .fields
                    .iter()
                    .map(|(n, v)| (n.clone(), v.to_json()))
                    .collect();
                serde_json::json!({ "kind": r.kind, "text": r.text, "fields": fields })
            })
            .collect();
        serde_json::json!({
            "id": self.id.to_string(),
            "node": self.node,
            "queue": self.queue,
            "state": self.state.as_str(),
            "at": self.at,
            "summary": self.summary(),
            "reasons": reasons,
        })
    }
}
