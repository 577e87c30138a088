//! The dashboard, `GET /`: one self-contained page (HTML, CSS and JS from
//! `dashboard/`, embedded at build time; no build step, nothing fetched
//! from outside the node). It reads `/api/cluster`, `/api/activity` and
//! `/api/queues` once, then lives on the `/api/events` feed; it never lists
//! all jobs (jobs are looked up by id, queues paged).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};

static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("dashboard/index.html")
        .replace("/*STYLE*/", include_str!("dashboard/style.css"))
        .replace("/*SCRIPT*/", include_str!("dashboard/app.js"))
});

/// `GET /`.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE.as_str(),
    )
        .into_response()
}
