//! Who may reach the HTTP door: one middleware in front of every route.
//!
//! Two locks, in this order:
//!
//! 1. **Host** (DNS rebinding): a browser that loaded a page from an
//!    attacker's name which then resolves to this node would send that
//!    name as `Host`; only localhost, loopback addresses, the address the
//!    node is bound to, the address the connection came in on, and the
//!    names in `http-hosts` are answered (with or without a port). Others
//!    get 421 Misdirected Request. `/healthz` and `/readyz` are exempt:
//!    they disclose only liveness, and orchestrators probe them by pod or
//!    host address, which the node cannot know. A request with no `Host`
//!    at all is served: every browser sends one, so rebinding needs one.
//! 2. **Credentials**: once the node has any (`Auth::is_required`), every
//!    route but the health checks and the dashboard page (which holds no
//!    data and asks for the token itself) needs `Authorization: Bearer
//!    <password>`, checked by the node's one [`crate::auth::Auth`];
//!    missing or wrong is 401 with `WWW-Authenticate: Bearer`.
//!
//! A tenant's token (`Bearer tenant:token`) makes the request that
//! tenant's: the principal is set for the handler's task ([`WHO`]), and
//! `AppState::call` wraps every engine command in the tenant's scope. The
//! node's figures (`/metrics`, `/api/cluster`, `/api/nodes/*`,
//! `/api/activity`, the event feed) are the admin's: 403 for a tenant.

use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::Connected;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;

use super::{AppState, HttpError};
use crate::auth::Principal;

/// Routes open without credentials.
pub const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/"];

/// Routes a tenant may not read (the node's own figures), by prefix.
pub const ADMIN_PATHS: &[&str] = &[
    "/metrics",
    "/api/cluster",
    "/api/nodes/",
    "/api/activity",
    "/api/events",
];

tokio::task_local! {
    /// Who sent the request being handled (set by [`guard`]).
    pub static WHO: Principal;
}

/// Routes answered whatever the `Host`.
pub const ANY_HOST_PATHS: &[&str] = &["/healthz", "/readyz"];

/// The local address a connection came in on (a node bound to `0.0.0.0`
/// answers to whichever of its addresses a client used).
#[derive(Clone, Copy, Debug)]
pub struct LocalAddr(pub Option<SocketAddr>);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for LocalAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        LocalAddr(stream.io().local_addr().ok())
    }
}

/// The middleware: Host check, then credentials.
pub async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !ANY_HOST_PATHS.contains(&path) {
        let local = req
            .extensions()
            .get::<axum::extract::ConnectInfo<LocalAddr>>()
            .and_then(|c| c.0.0);
        if let Some(host) = request_host(&req)
            && !st.host_allowed(&host, local)
        {
            let shown: String = host.chars().take(64).collect();
            return HttpError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "bad-host",
                format!(
                    "this node does not answer to Host {shown:?} (DNS rebinding guard): use localhost, its address, or a name listed in http-hosts"
                ),
            )
            .into_response();
        }
    }
    let auth = st.handle().auth();
    let names_tenant = |t: &str| {
        t.split_once(':')
            .is_some_and(|(u, _)| auth.tenants().get(u).is_some())
    };
    let who = match bearer(&req) {
        Some(t) if names_tenant(t) => auth.verify_bearer(t).ok(),
        _ if OPEN_PATHS.contains(&path) => Some(Principal::Admin),
        _ if !auth.is_required() => Some(Principal::Admin),
        Some(t) => auth.verify_bearer(t).ok(),
        None => None,
    };
    match who {
        Some(Principal::Tenant(name)) if ADMIN_PATHS.iter().any(|p| path.starts_with(p)) => {
            HttpError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{path} shows the whole node: it is the admin's, not tenant {name}'s"),
            )
            .into_response()
        }
        Some(p) => WHO.scope(p, next.run(req)).await,
        None => unauthorized(if bearer(&req).is_some() {
            "invalid token: send the node's password as Authorization: Bearer <password>"
        } else {
            "authentication required: send the node's password as Authorization: Bearer <password>"
        }),
    }
}

/// 401 with a JSON body and the challenge header.
fn unauthorized(message: &str) -> Response {
    let mut r =
        HttpError::new(StatusCode::UNAUTHORIZED, "no-auth", message.to_string()).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"wasque\""),
    );
    r
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The host the request names: the absolute URI's authority, else `Host`.
/// `Some("")` for a header that is not text (refused as unknown).
fn request_host(req: &Request) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_string());
    }
    req.headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or_default().to_string())
}

impl AppState {
    /// Whether `host` (a `Host` value, port optional) names this node.
    pub(super) fn host_allowed(&self, host: &str, local: Option<SocketAddr>) -> bool {
        host_allowed(
            host,
            self.inner.http_addr.ip(),
            local.map(|l| l.ip()),
            &self.inner.hosts,
        )
    }
}

/// Whether `host` names a node bound to `bound`, reached on `local`, that
/// answers to `names`: localhost, any loopback address, the bound address
/// (unless it is the wildcard), the address the connection came in on.
fn host_allowed(host: &str, bound: IpAddr, local: Option<IpAddr>, names: &[String]) -> bool {
    let Some(name) = host_name(host) else {
        return false;
    };
    if name == "localhost" {
        return true;
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return ip.is_loopback()
            || (!bound.is_unspecified() && ip == bound)
            || local.is_some_and(|l| l == ip);
    }
    names.contains(&name)
}

/// The name part of a `Host` value, lower case, without port, brackets or
/// a trailing dot; `None` when malformed.
fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6] or [v6]:port
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        ip
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) if is_port(p) && !n.contains(':') => n,
            Some(_) => return None,
            None => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::{host_allowed, host_name};
    use std::net::IpAddr;

    #[test]
    fn only_the_nodes_own_names_and_addresses_are_answered() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let names = vec!["queue.example".to_string()];
        // Bound to the wildcard: the address a client used is answered.
        let any = ip("0.0.0.0");
        let local = Some(ip("192.0.2.10"));
        for ok in [
            "localhost:1",
            "127.0.0.2",
            "[::1]:80",
            "192.0.2.10:7780",
            "queue.example",
        ] {
            assert!(host_allowed(ok, any, local, &names), "{ok}");
        }
        for no in [
            "0.0.0.0",
            "192.0.2.11",
            "evil.example",
            "queue.example.evil",
            "x:y",
        ] {
            assert!(!host_allowed(no, any, local, &names), "{no}");
        }
        // Bound to one address: that one, whatever the connection says.
        let one = ip("192.0.2.20");
        assert!(host_allowed("192.0.2.20:7780", one, None, &[]));
        assert!(!host_allowed("192.0.2.10", one, None, &[]));
        assert!(!host_allowed("queue.example", one, None, &[]));
    }

    #[test]
    fn host_values_are_split_from_their_port() {
        assert_eq!(host_name("localhost").as_deref(), Some("localhost"));
        assert_eq!(host_name("LocalHost:7780").as_deref(), Some("localhost"));
        assert_eq!(host_name("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:7780").as_deref(), Some("::1"));
        assert_eq!(host_name("[::1]").as_deref(), Some("::1"));
        assert_eq!(host_name("node.example.").as_deref(), Some("node.example"));
        assert_eq!(host_name("a:b"), None);
        assert_eq!(host_name("::1"), None, "an IPv6 literal needs brackets");
        assert_eq!(host_name("[::1]x"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name(":80"), None);
    }
}
