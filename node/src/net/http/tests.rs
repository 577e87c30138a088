//! The HTTP front door driven in-process with `oneshot` (no socket) against
//! a real node (engine, executor, driver), plus the check that the router
//! and `openapi.json` describe the same routes. Process-level tests with
//! real guests live in `tests/tests/http_api.rs`.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::{OPENAPI, router, routes};
use crate::api::{AddJob, Command, Reply};
use crate::config::Config;
use crate::runtime::Node;

/// A node with HTTP on an ephemeral port and a fresh data dir.
async fn node(dir: &std::path::Path) -> Node {
    let mut cfg = Config::defaults();
    cfg.port = 0;
    cfg.http_port = Some(0);
    cfg.data_dir = dir.to_path_buf();
    cfg.exec_threads = 1;
    Node::start(cfg).await.expect("node starts")
}

async fn get(node: &Node, path: &str) -> (StatusCode, String, Option<String>) {
    let app = router(node.http_state().expect("http is on"));
    let res = app
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = res.status();
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = axum::body::to_bytes(res.into_body(), 16 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned(), ctype)
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn router_and_openapi_describe_the_same_routes() {
    let spec = json(OPENAPI);
    let in_spec: BTreeSet<String> = spec["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    let in_router: BTreeSet<String> = routes().into_iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(in_spec, in_router, "openapi.json paths vs routes()");
    for (path, item) in spec["paths"].as_object().expect("paths") {
        let ops: Vec<&String> = item.as_object().expect("path item").keys().collect();
        // Read-only (GET only), but for the one operator action: requeueing
        // dead letters (a POST that takes JSON only, so no form can send it).
        let want = if super::WRITE_PATHS.contains(&path.as_str()) {
            "post"
        } else {
            "get"
        };
        assert_eq!(ops, [want], "{path}: GET only, POST on the write routes");
        // The guard's open routes are the ones the spec says need nothing.
        let get = &item[want];
        let open = super::guard::OPEN_PATHS.contains(&path.as_str());
        assert_eq!(
            get["security"].as_array().is_some_and(Vec::is_empty),
            open,
            "{path}: `security: []` exactly on the open routes"
        );
        assert_eq!(
            get["responses"]["401"].is_object(),
            !open,
            "{path}: 401 documented exactly on the locked routes"
        );
        let any_host = super::guard::ANY_HOST_PATHS.contains(&path.as_str());
        assert_eq!(
            get["responses"]["421"].is_object(),
            !any_host,
            "{path}: 421"
        );
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_with_their_status_and_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = node(dir.path()).await;

    let (s, body, _) = get(&node, "/healthz").await;
    assert_eq!(
        (s, json(&body)["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (s, body, _) = get(&node, "/readyz").await;
    assert_eq!(s, StatusCode::OK, "{body}");

    let (s, body, _) = get(&node, "/api/cluster").await;
    assert_eq!(s, StatusCode::OK);
    let c = json(&body);
    assert_eq!(c["nodes"][0]["id"], node.node_id());
    assert_eq!(c["nodes"][0]["state"], "up");
    assert_eq!(c["nodes"][0]["executor"]["slots"], 1);
    // No peer: a single node, counted once.
    assert_eq!(c["mode"], "single");
    assert_eq!(c["nodes"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (&c["summary"]["nodes"], &c["summary"]["up"]),
        (&1.into(), &1.into())
    );
    assert_eq!(c["nodes"][0]["advert_age_ms"], 0);

    // A plain job (no module): it stays queued, so queue and job lists show it.
    let reply = node
        .handle()
        .call(Command::AddJob(Box::new(AddJob::new(
            "q1",
            b"hello".to_vec(),
        ))))
        .await;
    let Reply::JobAdded(id) = reply else {
        panic!("added: {reply:?}")
    };
    let (s, body, _) = get(&node, &format!("/api/jobs/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    let Reply::Job(status) = node.handle().call(Command::Show { id }).await else {
        panic!("show")
    };
    let mut doc = json(&body);
    let mut want = status.to_json();
    // ttl counts down in seconds: compare the rest exactly.
    doc.as_object_mut().map(|o| o.remove("ttl"));
    want.as_object_mut().map(|o| o.remove("ttl"));
    assert_eq!(doc, want, "the same document as `wasque show --json`");

    let (s, body, _) = get(&node, "/api/queues").await;
    assert_eq!(s, StatusCode::OK);
    let q = json(&body);
    assert_eq!(q["queues"][0]["name"], "q1");
    assert_eq!(q["queues"][0]["depth"], 1);
    assert_eq!(q["queues"][0]["oldest"]["id"], id.to_string());
    let (s, body, _) = get(&node, "/api/queues/q1").await;
    assert_eq!(
        (s, json(&body)["ready_plain"].as_u64()),
        (StatusCode::OK, Some(1))
    );

    let (s, body, _) = get(&node, "/api/jobs?queue=q1&state=queued&limit=10").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["jobs"][0]["id"], id.to_string());
    let (_, body, _) = get(&node, "/api/jobs?queue=other").await;
    assert_eq!(json(&body)["jobs"].as_array().map(Vec::len), Some(0));

    let (s, body, ctype) = get(&node, "/metrics").await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.is_some_and(|c| c.starts_with("text/plain")));
    assert!(body.contains("wasque_jobs_added_total 1"), "{body}");
    assert!(
        body.contains("wasque_queue_depth{queue=\"q1\"} 1"),
        "{body}"
    );

    // A worker takes the plain job (GETJOB): a delivery too.
    let got = node
        .handle()
        .call(Command::GetJob(Box::new(crate::api::GetJob {
            queues: vec!["q1".into()],
            nohang: true,
            timeout_ms: 0,
            count: 1,
            withcounters: false,
        })))
        .await;
    assert!(matches!(got, Reply::Jobs(ref j) if j.len() == 1), "{got:?}");
    let (_, body, _) = get(&node, "/metrics").await;
    assert!(body.contains("wasque_jobs_delivered_total 1"), "{body}");

    let (s, body, ctype) = get(&node, "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.is_some_and(|c| c.starts_with("text/html")));
    assert!(body.contains("<canvas id=\"chart\"") && !body.contains("/*SCRIPT*/"));

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_json_error_with_a_class() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = node(dir.path()).await;
    let zero = "0".repeat(40);
    let cases: &[(&str, StatusCode, &str)] = &[
        ("/api/jobs/not-a-uuid", StatusCode::BAD_REQUEST, "bad-id"),
        (
            "/api/jobs/019ab6f0-3c2e-7a10-9f2c-bd41000a3e5c",
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        ("/api/jobs?limit=0", StatusCode::BAD_REQUEST, "bad-request"),
        (
            "/api/jobs?limit=1001",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            "/api/jobs?limit=ten",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            "/api/jobs?state=sleeping",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        ("/api/jobs?cursor=nope", StatusCode::BAD_REQUEST, "bad-id"),
        (
            "/api/jobs?colour=red",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            "/api/jobs?limit=1&limit=2",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            "/api/queues?limit=-1",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        ("/api/queues/nope", StatusCode::NOT_FOUND, "not-found"),
        ("/api/nodes/xyz", StatusCode::BAD_REQUEST, "bad-id"),
        ("/api/no-such-route", StatusCode::NOT_FOUND, "not-found"),
    ];
    for (path, status, class) in cases {
        let (s, body, ctype) = get(&node, path).await;
        assert_eq!(s, *status, "{path}: {body}");
        assert!(
            ctype.is_some_and(|c| c.starts_with("application/json")),
            "{path}"
        );
        let e = json(&body);
        assert_eq!(e["error"]["class"], *class, "{path}: {body}");
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let (s, _, _) = get(&node, &format!("/api/nodes/{zero}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    node.shutdown().await;
}
