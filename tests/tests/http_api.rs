//! The HTTP front door of a node running as a real process: status codes,
//! JSON shapes (every JSON answer is validated against the node's own
//! `/api/openapi.json`), counters in `/metrics` that move as Wasm jobs run
//! through the QUIC SDK, bad ids and parameters answered with 400/404 JSON
//! errors, and the server-sent event feed. The door's locks: a node with a
//! password refuses every route but health and the page without the
//! bearer token, and every node refuses a `Host` that does not name it.
//! The cluster view: a three-node cluster listed by `/api/cluster`, and a
//! killed member listed down.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasque_sdk::Client;
use wasque_sdk::proto::{AddJob, JobId, ModuleHash};
use wasque_tests::guests;
use wasque_tests::http::{self, EventStream};
use wasque_tests::node::TestNode;

/// The node's OpenAPI document.
struct Spec(Value);

impl Spec {
    fn fetch(addr: SocketAddr) -> Spec {
        Spec::fetch_with(addr, &[])
    }

    fn fetch_with(addr: SocketAddr, headers: &[(&str, &str)]) -> Spec {
        let r = http::get_with(addr, "/api/openapi.json", headers).expect("GET openapi");
        assert_eq!(r.status, 200);
        Spec(serde_json::from_str(&r.body).expect("openapi.json is JSON"))
    }

    /// Validates `body` against the schema the spec gives for `route`
    /// (a path template) answering `status` as JSON.
    fn check(&self, route: &str, status: u16, body: &Value) {
        let get = &self.0["paths"][route]["get"];
        assert!(get.is_object(), "{route} is in openapi.json");
        let mut resp = &get["responses"][status.to_string()];
        assert!(resp.is_object(), "openapi.json has {status} for {route}");
        if let Some(r) = resp["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap_or_default();
            resp = &self.0["components"]["responses"][name];
        }
        let schema = &resp["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{route} {status} has a JSON schema");
        self.validate(schema, body, &format!("{route} {status}"));
    }

    /// Validates `body` against the component schema `name`.
    fn check_schema(&self, name: &str, body: &Value) {
        let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
        self.validate(&schema, body, name);
    }

    fn validate(&self, schema: &Value, body: &Value, what: &str) {
        let mut root = schema.clone();
        if let Some(o) = root.as_object_mut() {
            o.insert("components".into(), self.0["components"].clone());
        }
        let v = jsonschema::validator_for(&root).expect("schema compiles");
        let errors: Vec<String> = v
            .iter_errors(body)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: answer does not match openapi.json:\n{}\n{body:#}",
            errors.join("\n")
        );
    }
}

/// `GET path` as JSON, checked against the spec for `route`.
fn get_json(addr: SocketAddr, spec: &Spec, route: &str, path: &str) -> (u16, Value) {
    let r = http::get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{path}: {:?}",
        r.headers
    );
    let v: Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body));
    spec.check(route, r.status, &v);
    (r.status, v)
}

/// One sample of `/metrics` by its full name (with labels), e.g.
/// `wasque_jobs_failed_total{class="exit"}`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

fn metrics(addr: SocketAddr) -> String {
    let r = http::get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4"))
    );
    r.body
}

async fn put(c: &Client, name: &str) -> ModuleHash {
    c.put_module(guests::wasm(name)).await.expect("upload").hash
}

fn wasm_job(queue: &str, module: ModuleHash, body: &[u8]) -> AddJob {
    let mut j = AddJob::new(queue, body.to_vec());
    j.module = Some(module);
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_metrics_follow_jobs_as_they_run() {
    let node = TestNode::start_http(&["--exec-threads", "2"]);
    let addr = node.http_addr();
    let spec = Spec::fetch(addr);
    let c = node.client().await;

    assert_eq!(get_json(addr, &spec, "/healthz", "/healthz").0, 200);
    assert_eq!(get_json(addr, &spec, "/readyz", "/readyz").0, 200);
    let before = metrics(addr);
    assert_eq!(metric(&before, "wasque_jobs_added_total"), Some(0.0));

    let wc = put(&c, "wordcount").await;
    let fib = put(&c, "fib").await;
    assert_eq!(
        put(&c, "wordcount").await,
        wc,
        "a second upload is a cache hit"
    );

    // Five good jobs, added, run and acknowledged in one request each.
    for i in 0..5 {
        let s = c
            .run(
                wasm_job("words", wc, format!("a b c {i}").as_bytes()),
                60_000,
            )
            .await
            .expect("run");
        assert_eq!(s.result.expect("finished").error_class, None);
    }
    // One that fails, kept (not acknowledged) so the API can show it.
    let failed = c
        .add_job(wasm_job("numbers", fib, b"not a number"))
        .await
        .expect("add");
    let s = c
        .wait(failed, 60_000)
        .await
        .expect("wait")
        .expect("finished");
    assert!(s.result.as_ref().and_then(|r| r.error_class).is_some());
    // A plain job stays queued: a queue with depth 1.
    let parked = c
        .add_job(AddJob::new("parked", b"for a worker".to_vec()))
        .await
        .expect("add");

    let m = metrics(addr);
    assert_eq!(metric(&m, "wasque_jobs_added_total"), Some(7.0), "{m}");
    assert_eq!(metric(&m, "wasque_jobs_delivered_total"), Some(6.0), "{m}");
    assert_eq!(metric(&m, "wasque_jobs_succeeded_total"), Some(5.0), "{m}");
    assert_eq!(
        metric(&m, "wasque_jobs_failed_total{class=\"exit\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "wasque_jobs_failed_total{class=\"trap\"}"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(metric(&m, "wasque_jobs_acked_total"), Some(5.0), "{m}");
    // The job store's latency (appendonly yes by default).
    assert!(
        metric(&m, "wasque_store_write_seconds_count").is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert!(
        metric(&m, "wasque_store_sync_seconds_count").is_some(),
        "{m}"
    );
    assert_eq!(metric(&m, "wasque_job_run_seconds_count"), Some(6.0), "{m}");
    assert_eq!(
        metric(&m, "wasque_job_wait_seconds_count"),
        Some(6.0),
        "{m}"
    );
    assert!(
        metric(&m, "wasque_fuel_consumed_total").is_some_and(|f| f > 0.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "wasque_module_uploads_compiled_total"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "wasque_module_uploads_cached_total"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(metric(&m, "wasque_module_compiles_total"), Some(2.0), "{m}");
    assert_eq!(metric(&m, "wasque_executor_slots"), Some(2.0), "{m}");
    assert_eq!(metric(&m, "wasque_jobs"), Some(2.0), "{m}");
    assert_eq!(
        metric(&m, "wasque_queue_depth{queue=\"parked\"}"),
        Some(1.0),
        "{m}"
    );
    assert!(
        !m.contains(&failed.to_string()),
        "never a job id in a label"
    );

    let (_, cluster) = get_json(addr, &spec, "/api/cluster", "/api/cluster");
    let me = &cluster["nodes"][0];
    assert_eq!(me["id"], c.node_id());
    assert_eq!(me["executor"]["slots"], 2);
    assert_eq!(me["jobs"]["held"], 2);
    let (s, n) = get_json(
        addr,
        &spec,
        "/api/nodes/{id}",
        &format!("/api/nodes/{}", c.node_id()),
    );
    assert_eq!((s, &n["id"]), (200, &me["id"]));

    // The job document is exactly `wasque show --json`'s (ttl aside: it
    // counts down in seconds).
    let (s, mut doc) = get_json(
        addr,
        &spec,
        "/api/jobs/{id}",
        &format!("/api/jobs/{failed}"),
    );
    assert_eq!(s, 200);
    let mut want = c.show(failed).await.expect("show").to_json();
    for d in [&mut doc, &mut want] {
        d.as_object_mut().map(|o| o.remove("ttl"));
    }
    assert_eq!(doc, want);
    assert_eq!(doc["result"]["error_class"], "exit(2)");

    let (_, page) = get_json(addr, &spec, "/api/jobs", "/api/jobs?state=failed");
    assert_eq!(page["jobs"][0]["id"], failed.to_string());
    assert_eq!(page["jobs"][0]["error_class"], "exit(2)");
    let (_, page) = get_json(addr, &spec, "/api/jobs", "/api/jobs?limit=1");
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(1));
    let next = page["next"].as_str().expect("a second page").to_string();
    let (_, page2) = get_json(
        addr,
        &spec,
        "/api/jobs",
        &format!("/api/jobs?limit=1&cursor={next}"),
    );
    assert_eq!(
        page2["jobs"][0]["id"],
        parked.to_string(),
        "oldest first, then the next"
    );
    assert!(page2["next"].is_null());

    let (_, qs) = get_json(addr, &spec, "/api/queues", "/api/queues");
    let names: Vec<&str> = qs["queues"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(names, ["numbers", "parked", "words"]);
    let (_, q) = get_json(addr, &spec, "/api/queues/{name}", "/api/queues/parked");
    assert_eq!(
        (q["depth"].as_u64(), q["oldest"]["id"].as_str()),
        (Some(1), Some(parked.to_string().as_str()))
    );
    let (_, q) = get_json(addr, &spec, "/api/queues/{name}", "/api/queues/words");
    assert_eq!(q["jobs_out"], 5);
    let (_, mods) = get_json(addr, &spec, "/api/modules", "/api/modules");
    assert_eq!(mods["modules"].as_array().map(Vec::len), Some(2));
    let (_, act) = get_json(addr, &spec, "/api/activity", "/api/activity");
    assert_eq!(act["failures"][0]["id"], failed.to_string());
    assert_eq!(act["failures"][0]["class"], "exit(2)");

    // Bad input: 400 or 404, always a JSON error with a class.
    let unknown = JobId::compose(1, 0, 1, false, 60, 0);
    for (route, path, status, class) in [
        (
            "/api/jobs/{id}",
            "/api/jobs/12345".to_string(),
            400,
            "bad-id",
        ),
        (
            "/api/jobs/{id}",
            format!("/api/jobs/{unknown}"),
            404,
            "not-found",
        ),
        (
            "/api/jobs",
            "/api/jobs?limit=0".to_string(),
            400,
            "bad-request",
        ),
        (
            "/api/jobs",
            "/api/jobs?state=nope".to_string(),
            400,
            "bad-request",
        ),
        ("/api/jobs", "/api/jobs?cursor=x".to_string(), 400, "bad-id"),
        (
            "/api/jobs",
            "/api/jobs?what=1".to_string(),
            400,
            "bad-request",
        ),
        (
            "/api/queues",
            "/api/queues?limit=100000".to_string(),
            400,
            "bad-request",
        ),
        (
            "/api/queues/{name}",
            "/api/queues/nothing-here".to_string(),
            404,
            "not-found",
        ),
        (
            "/api/nodes/{id}",
            "/api/nodes/zz".to_string(),
            400,
            "bad-id",
        ),
        (
            "/api/nodes/{id}",
            format!("/api/nodes/{}", "a".repeat(40)),
            404,
            "not-found",
        ),
    ] {
        let (s, e) = get_json(addr, &spec, route, &path);
        assert_eq!(
            (s, e["error"]["class"].as_str()),
            (status, Some(class)),
            "{path}: {e}"
        );
    }
    let r = http::get(addr, "/no/such/page").expect("GET");
    assert_eq!(r.status, 404);
    spec.check_schema("Error", &serde_json::from_str(&r.body).expect("JSON 404"));

    let r = http::get(addr, "/").expect("GET /");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<title>wasque</title>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_feed_streams_job_events_and_ticks() {
    let node = TestNode::start_http(&["--exec-threads", "1"]);
    let addr = node.http_addr();
    let spec = Spec::fetch(addr);
    let c = node.client().await;
    let wc = put(&c, "wordcount").await;

    let mut feed = EventStream::open(addr, "/api/events").expect("open feed");
    assert_eq!(feed.status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let hello = feed.next(deadline).expect("hello");
    assert_eq!(hello.event, "hello");

    let id = c
        .add_job(wasm_job("feed", wc, b"one two"))
        .await
        .expect("add");
    let (mut added, mut finished, mut tick) = (false, false, None);
    while !(added && finished && tick.is_some()) {
        let Some(ev) = feed.next(deadline) else {
            panic!(
                "feed ended or went quiet: added {added}, finished {finished}, tick {}",
                tick.is_some()
            );
        };
        let data: Value = serde_json::from_str(&ev.data).expect("event data is JSON");
        match ev.event.as_str() {
            "job" => {
                spec.check_schema("JobEvent", &data);
                if data["id"] == id.to_string() {
                    added |= data["event"] == "added";
                    finished |= data["event"] == "finished";
                }
            }
            "tick" => {
                spec.check_schema("Tick", &data);
                tick = Some(data);
            }
            other => panic!("unexpected event {other}: {data}"),
        }
    }
    let tick = tick.expect("a tick");
    assert_eq!(tick["nodes"][0]["id"], c.node_id());
}

/// A node with a password, reached over HTTP: each protected route is
/// refused without the token and with a wrong one (401, JSON, the Bearer
/// challenge), served with the right one; health and the page stay open;
/// a foreign Host is refused even with the token; CONFIG SET requirepass
/// over RESP moves the HTTP lock at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_password_locks_every_route_but_health() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("wasque.conf");
    std::fs::write(&file, "requirepass s3cret\nhttp-hosts node.example\n").expect("write");
    let node = TestNode::start_http(&["--config", file.to_str().expect("utf8")]);
    let addr = node.http_addr();
    let good = [("Authorization", "Bearer s3cret")];
    let spec = Spec::fetch_with(addr, &good);
    let zero_job = "019ab6f0-3c2e-7a10-9f2c-bd41000a3e5c";
    let zero_node = "0".repeat(40);
    let locked: Vec<(&str, String)> = vec![
        ("/metrics", "/metrics".into()),
        ("/api/openapi.json", "/api/openapi.json".into()),
        ("/api/cluster", "/api/cluster".into()),
        ("/api/nodes/{id}", format!("/api/nodes/{zero_node}")),
        ("/api/activity", "/api/activity".into()),
        ("/api/queues", "/api/queues".into()),
        ("/api/queues/{name}", "/api/queues/q".into()),
        ("/api/jobs", "/api/jobs".into()),
        ("/api/jobs/{id}", format!("/api/jobs/{zero_job}")),
        ("/api/modules", "/api/modules".into()),
        ("/api/events", "/api/events".into()),
    ];
    let bad_tokens: &[&[(&str, &str)]] = &[
        &[],
        &[("Authorization", "Bearer wrong")],
        &[("Authorization", "Bearer s3cret2")],
        &[("Authorization", "Basic s3cret")],
        &[("Authorization", "Bearer bob:s3cret")],
    ];
    for (route, path) in &locked {
        for headers in bad_tokens {
            let r = http::get_with(addr, path, headers).expect("GET");
            assert_eq!(r.status, 401, "{path} with {headers:?}: {}", r.body);
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{path}: {:?}",
                r.headers
            );
            let v: Value = serde_json::from_str(&r.body).expect("JSON error");
            assert_eq!(v["error"]["class"], "no-auth", "{path}");
            assert!(!r.body.contains("s3cret"), "the answer never echoes it");
            spec.check(route, 401, &v);
        }
        if *route == "/api/events" {
            let mut feed = EventStream::open_with(addr, path, &good).expect("feed");
            assert_eq!(feed.status, 200, "the feed with the token");
            let hello = feed.next(Instant::now() + Duration::from_secs(20));
            assert_eq!(hello.map(|e| e.event).as_deref(), Some("hello"));
            continue;
        }
        for headers in [&good[..], &[("Authorization", "bearer admin:s3cret")]] {
            let r = http::get_with(addr, path, headers).expect("GET");
            assert!(
                r.status == 200 || r.status == 404,
                "{path} with the token: {} {}",
                r.status,
                r.body
            );
        }
    }
    // Unknown routes are locked too: no probing what exists.
    let r = http::get(addr, "/api/nope").expect("GET");
    assert_eq!(r.status, 401);
    for open in ["/healthz", "/readyz", "/"] {
        let r = http::get(addr, open).expect("GET");
        assert_eq!(r.status, 200, "{open} stays open: {}", r.body);
    }

    // DNS rebinding: a foreign Host is refused even with the token; the
    // node's own names and addresses are served.
    for host in [
        "evil.example",
        "evil.example:80",
        "node.example.evil",
        "[::2]",
        "10.1.2.3",
    ] {
        let r = http::get_with(addr, "/api/cluster", &[good[0], ("Host", host)]).expect("GET");
        assert_eq!(r.status, 421, "Host {host}: {}", r.body);
        let v: Value = serde_json::from_str(&r.body).expect("JSON error");
        assert_eq!(v["error"]["class"], "bad-host");
        spec.check("/api/cluster", 421, &v);
        let r = http::get_with(addr, "/", &[("Host", host)]).expect("GET");
        assert_eq!(r.status, 421, "the page too, Host {host}");
        let r = http::get_with(addr, "/healthz", &[("Host", host)]).expect("GET");
        assert_eq!(r.status, 200, "health answers any Host");
    }
    let port = addr.port();
    for host in [
        "localhost".to_string(),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("127.0.0.1:{port}"),
        "[::1]".into(),
        "node.example".into(),
        format!("node.example:{port}"),
    ] {
        let r = http::get_with(addr, "/api/cluster", &[good[0], ("Host", &host)]).expect("GET");
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
    }

    // The password is live: CONFIG SET over RESP moves the HTTP lock.
    let mut c = wasque_tests::resp::connect(node.addr).expect("resp");
    let auth = wasque_tests::resp::cmd(&mut c, &["AUTH", "s3cret"]);
    assert!(auth.is_ok(), "{auth:?}");
    let set = wasque_tests::resp::cmd(&mut c, &["CONFIG", "SET", "requirepass", "n3w"]);
    assert!(set.is_ok(), "{set:?}");
    let r = http::get_with(addr, "/api/cluster", &good).expect("GET");
    assert_eq!(r.status, 401, "the old password no longer opens HTTP");
    let r = http::get_with(addr, "/api/cluster", &[("Authorization", "Bearer n3w")]).expect("GET");
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A node without a password serves every route without a token, as it
/// always did, but still answers only to its own names.
#[test]
fn a_node_without_a_password_is_open_but_checks_the_host() {
    let node = TestNode::start_http(&[]);
    let addr = node.http_addr();
    for path in ["/api/cluster", "/metrics", "/api/queues", "/"] {
        let r = http::get(addr, path).expect("GET");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let r = http::get_with(addr, "/api/cluster", &[("Host", "rebind.example:7780")]).expect("GET");
    assert_eq!(r.status, 421, "{}", r.body);
}

/// `cluster-node-timeout` of the cluster test: short, so a death is seen
/// soon, but long enough for a loaded machine's gossip.
const NODE_TIMEOUT_MS: u64 = 1500;

/// A member's entry in a `/api/cluster` answer, by id.
fn member<'a>(cluster: &'a Value, id: &str) -> Option<&'a Value> {
    cluster["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"].as_str() == Some(id))
}

/// Three nodes as real processes: `/api/cluster` on one lists all three
/// up, each peer with its addresses, version and advert; `/api/nodes/{id}`
/// answers for a peer (404 for a node nobody knows); the feed's tick lists
/// every member. A node killed with SIGKILL is then listed down, by both
/// survivors, within a bounded wait, and the summary counts it.
#[test]
fn api_cluster_lists_every_member_and_a_killed_one_goes_down() {
    let timeout = NODE_TIMEOUT_MS.to_string();
    let mut nodes: Vec<TestNode> = (0..3)
        .map(|_| TestNode::start_http(&["--cluster-node-timeout", &timeout]))
        .collect();
    wasque_tests::node::form_cluster(&nodes);
    let addr = nodes[0].http_addr();
    let spec = Spec::fetch(addr);
    let ids: Vec<String> = nodes
        .iter()
        .map(|n| {
            let (_, c) = get_json(n.http_addr(), &spec, "/api/cluster", "/api/cluster");
            c["self"].as_str().expect("self id").to_string()
        })
        .collect();

    // Every peer's advert has arrived (one a second) once each entry has
    // an age and a version.
    let deadline = Instant::now() + Duration::from_secs(30);
    let cluster = loop {
        let (s, c) = get_json(addr, &spec, "/api/cluster", "/api/cluster");
        assert_eq!(s, 200);
        let advertised = ids.iter().all(|id| {
            member(&c, id).is_some_and(|m| {
                m["state"] == "up" && m["advert_age_ms"].is_u64() && m["version"].is_string()
            })
        });
        if advertised {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "not every member up and advertised within 30 s: {c:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(cluster["mode"], "cluster");
    assert_eq!(cluster["self"], ids[0].as_str());
    assert_eq!(cluster["nodes"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        cluster["nodes"][0]["id"],
        ids[0].as_str(),
        "this node first"
    );
    assert_eq!(cluster["nodes"][0]["self"], true);
    let summary = &cluster["summary"];
    assert_eq!(
        (&summary["nodes"], &summary["up"], &summary["down"]),
        (&3.into(), &3.into(), &0.into()),
        "{summary}"
    );
    for (n, id) in nodes.iter().zip(&ids).skip(1) {
        let m = member(&cluster, id).expect("peer listed");
        assert_eq!(m["self"], false);
        assert_eq!(m["addresses"]["quic"], n.addr.to_string());
        assert_eq!(m["addresses"]["resp"], n.addr.to_string());
        assert_eq!(m["addresses"]["http"], n.http_addr().to_string());
        assert_eq!(m["version"], cluster["nodes"][0]["version"], "same build");
        assert!(
            m["executor"]["slots"].as_u64().is_some_and(|s| s > 0),
            "{m}"
        );
        assert_eq!(m["jobs"]["held"], 0);
        assert!(
            m["advert_age_ms"].as_u64().is_some_and(|a| a < 10_000),
            "{m}"
        );
    }

    // One member by id: a peer, and a node nobody knows.
    let (s, peer) = get_json(
        addr,
        &spec,
        "/api/nodes/{id}",
        &format!("/api/nodes/{}", ids[1]),
    );
    assert_eq!(
        (s, &peer["id"], &peer["state"]),
        (200, &ids[1].clone().into(), &"up".into())
    );
    let (s, _) = get_json(
        addr,
        &spec,
        "/api/nodes/{id}",
        &format!("/api/nodes/{}", "b".repeat(40)),
    );
    assert_eq!(s, 404);

    // The dashboard's feed lists every member in its ticks.
    let mut feed = EventStream::open(addr, "/api/events").expect("open feed");
    let feed_deadline = Instant::now() + Duration::from_secs(20);
    let tick = loop {
        let ev = feed.next(feed_deadline).expect("a tick within 20 s");
        if ev.event == "tick" {
            break serde_json::from_str::<Value>(&ev.data).expect("tick is JSON");
        }
    };
    spec.check_schema("Tick", &tick);
    assert_eq!(tick["nodes"].as_array().map(Vec::len), Some(3), "{tick}");
    drop(feed);

    // A crash: the survivors' membership declares it down.
    let dead = ids[2].clone();
    let dead_http = nodes[2].http_addr().to_string();
    nodes.remove(2).kill9();
    let killed_at = Instant::now();
    let deadline = killed_at + Duration::from_secs(15);
    let mut polls = 0;
    // The states it went through, as polled (suspect is usually among
    // them, for about half the node timeout, but a poll may miss it).
    let mut states: Vec<String> = Vec::new();
    let seen_down = loop {
        polls += 1;
        let (_, c) = get_json(addr, &spec, "/api/cluster", "/api/cluster");
        let state = member(&c, &dead).and_then(|m| m["state"].as_str());
        if let Some(st) = state
            && states.last().map(String::as_str) != Some(st)
        {
            states.push(st.to_string());
        }
        if state == Some("down") {
            break c;
        }
        assert!(
            polls < 1_000 && Instant::now() < deadline,
            "the killed node is not listed down within 15 s: {c:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = killed_at.elapsed();
    eprintln!(
        "killed node listed down after {} ms (cluster-node-timeout {NODE_TIMEOUT_MS} ms), states seen: {}",
        took.as_millis(),
        states.join(" -> ")
    );
    assert!(
        states
            .iter()
            .all(|s| ["up", "suspect", "down"].contains(&s.as_str())),
        "{states:?}"
    );
    assert_eq!(seen_down["mode"], "cluster");
    let summary = &seen_down["summary"];
    assert_eq!(
        (&summary["nodes"], &summary["down"]),
        (&3.into(), &1.into()),
        "{summary}"
    );
    assert_eq!(
        member(&seen_down, &ids[1]).map(|m| &m["state"]),
        Some(&"up".into())
    );
    // Listed with what its last advert said.
    let m = member(&seen_down, &dead).expect("the dead node stays listed");
    assert_eq!(m["addresses"]["http"], dead_http.as_str());
    let (s, n) = get_json(
        addr,
        &spec,
        "/api/nodes/{id}",
        &format!("/api/nodes/{dead}"),
    );
    assert_eq!((s, &n["state"]), (200, &"down".into()));
    // The other survivor sees the same, within the same bound.
    let other = nodes[1].http_addr();
    wasque_tests::wait::eventually(15, "the second survivor lists the dead node down", || {
        let (_, c) = get_json(other, &spec, "/api/cluster", "/api/cluster");
        member(&c, &dead).is_some_and(|m| m["state"] == "down")
    });
}
