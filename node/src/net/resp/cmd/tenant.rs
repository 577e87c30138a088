//! TENANT: the admin's commands for the tenant registry (`tenant/`).
//!
//! ```text
//! TENANT ADD name [quota value ...]   -> name, token id, token (shown once)
//! TENANT LS                           -> one array per tenant
//! TENANT RM name
//! TENANT TOKEN name                   -> a further token: id, token
//! TENANT REVOKE name token-id
//! TENANT SET name quota value [quota value ...]
//! ```
//!
//! Quotas: max-jobs, max-module-bytes, max-fuel, max-memory, jobs-per-sec,
//! weight. A change reaches the cluster's other nodes with their next
//! advert (about a second).

use super::{Action, Args, wrong_arity};
use crate::net::resp::frame::Frame;
use crate::tenant::{Quotas, TenantError, Tenants};

#[derive(Debug)]
pub enum TenantCmd {
    Add {
        name: String,
        quotas: Vec<(String, String)>,
    },
    Ls,
    Rm(String),
    Token(String),
    Revoke(String, String),
    Set {
        name: String,
        quotas: Vec<(String, String)>,
    },
}

pub fn parse(a: &Args) -> Result<Action, Frame> {
    let sub = String::from_utf8_lossy(a.get(1)).to_ascii_lowercase();
    let pairs = |from: usize| -> Result<Vec<(String, String)>, Frame> {
        if !(a.len() - from).is_multiple_of(2) {
            return Err(Frame::error(
                "ERR",
                "quotas come in pairs: TENANT ADD|SET name quota value [quota value ...]",
            ));
        }
        (from..a.len())
            .step_by(2)
            .map(|i| Ok((a.text(i)?, a.text(i + 1)?)))
            .collect()
    };
    let c = match (sub.as_str(), a.len()) {
        ("add", n) if n >= 3 => TenantCmd::Add {
            name: a.text(2)?,
            quotas: pairs(3)?,
        },
        ("ls" | "list", 2) => TenantCmd::Ls,
        ("rm" | "del", 3) => TenantCmd::Rm(a.text(2)?),
        ("token", 3) => TenantCmd::Token(a.text(2)?),
        ("revoke", 4) => TenantCmd::Revoke(a.text(2)?, a.text(3)?),
        ("set", n) if n >= 5 => TenantCmd::Set {
            name: a.text(2)?,
            quotas: pairs(3)?,
        },
        ("add" | "ls" | "list" | "rm" | "del" | "token" | "revoke" | "set", _) => {
            return Err(wrong_arity("tenant"));
        }
        _ => {
            return Err(Frame::error(
                "ERR",
                "unknown TENANT subcommand; use ADD, LS, RM, TOKEN, REVOKE or SET",
            ));
        }
    };
    Ok(Action::Tenant(c))
}

/// Carries out a TENANT command. `password_set`: tenants are only made on
/// a node with a password, since without one every client is the admin.
pub fn run(t: &Tenants, c: TenantCmd, password_set: bool, now: u64) -> Frame {
    let err = |e: TenantError| {
        let code = match e {
            TenantError::Missing(_) | TenantError::NoToken(..) => "NOTENANT",
            _ => "ERR",
        };
        Frame::error(code, &e.to_string())
    };
    match c {
        TenantCmd::Add { name, quotas } => {
            if !password_set {
                return Frame::error(
                    "ERR",
                    "set requirepass first (config or CONFIG SET requirepass): without a password every client is the admin, so tenants would be no boundary",
                );
            }
            let mut q = Quotas::default();
            for (k, v) in &quotas {
                if let Err(e) = q.set(k, v) {
                    return Frame::error("ERR", &e);
                }
            }
            match t.add(&name, q, now) {
                Ok((id, token)) => Frame::Array(vec![
                    Frame::text(&name),
                    Frame::text(&id),
                    Frame::text(&token),
                ]),
                Err(e) => err(e),
            }
        }
        TenantCmd::Ls => Frame::Array(
            t.list()
                .into_iter()
                .map(|i| {
                    Frame::Array(vec![
                        Frame::text("name"),
                        Frame::text(&i.name),
                        Frame::text("tokens"),
                        Frame::Array(i.tokens.iter().map(|s| Frame::text(s)).collect()),
                        Frame::text("quotas"),
                        Frame::Array(
                            i.quotas
                                .iter()
                                .flat_map(|(k, v)| [Frame::text(k), Frame::text(v)])
                                .collect(),
                        ),
                        Frame::text("modules"),
                        Frame::Integer(i.modules as i64),
                        Frame::text("module-bytes"),
                        Frame::Integer(i.module_bytes.min(i64::MAX as u64) as i64),
                    ])
                })
                .collect(),
        ),
        TenantCmd::Rm(name) => match t.remove(&name, now) {
            Ok(()) => Frame::Simple("OK".into()),
            Err(e) => err(e),
        },
        TenantCmd::Token(name) => match t.add_token(&name, now) {
            Ok((id, token)) => Frame::Array(vec![Frame::text(&id), Frame::text(&token)]),
            Err(e) => err(e),
        },
        TenantCmd::Revoke(name, id) => match t.revoke_token(&name, &id, now) {
            Ok(()) => Frame::Simple("OK".into()),
            Err(e) => err(e),
        },
        TenantCmd::Set { name, quotas } => {
            // Check every pair first, so a bad one changes nothing.
            let mut probe = Quotas::default();
            for (k, v) in &quotas {
                if let Err(e) = probe.set(k, v) {
                    return Frame::error("ERR", &e);
                }
            }
            for (k, v) in &quotas {
                if let Err(e) = t.set_quota(&name, k, v, now) {
                    return err(e);
                }
            }
            Frame::Simple("OK".into())
        }
    }
}
