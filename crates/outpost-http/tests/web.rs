//! For web apps: CORS (`OUTPOST_CORS_ORIGINS`) and the live event stream
//! (`GET /api/database/events`), against a real PostgreSQL server and SQLite
//! replica, called through `tower::ServiceExt::oneshot`.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use futures_util::StreamExt as _;
use outpost_http::{AppState, router};
use tower::ServiceExt;

mod common;
use common::*;

const APP: &str = "http://app.example:3000";
const TOKEN: &str = "a-token-of-16-chars-or-more";

fn app_with(f: &Fixture, origins: &[&str], token: Option<&str>) -> Router {
    router(AppState {
        node: f.node.clone(),
        admin_token: token.map(str::to_string),
        cors_origins: origins.iter().map(|o| o.to_string()).collect(),
    })
}

async fn headers_of(
    app: &Router,
    request: Request<Body>,
) -> anyhow::Result<(StatusCode, HeaderMap)> {
    let response = app.clone().oneshot(request).await?;
    Ok((response.status(), response.headers().clone()))
}

fn preflight(origin: &str, path: &str) -> anyhow::Result<Request<Body>> {
    Ok(Request::builder()
        .method("OPTIONS")
        .uri(path)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .body(Body::empty())?)
}

fn header(h: &HeaderMap, name: header::HeaderName) -> &str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_lets_configured_origins_in_with_the_token() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let app = app_with(&f, &[APP, "https://other.example/"], Some(TOKEN));

    // A preflight is answered before the bearer check (browsers send no
    // credentials on it) and allows the token and JSON bodies.
    let (status, h) = headers_of(&app, preflight(APP, "/api/models/Post/create")?).await?;
    assert!(status.is_success(), "{status}");
    assert_eq!(header(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), APP);
    assert_eq!(header(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), "true");
    let allowed = header(&h, header::ACCESS_CONTROL_ALLOW_HEADERS).to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    assert!(header(&h, header::ACCESS_CONTROL_ALLOW_METHODS).contains("POST"));
    // The trailing `/` of a configured origin does not matter.
    let (_, h) = headers_of(
        &app,
        preflight("https://other.example", "/api/database/status")?,
    )
    .await?;
    assert_eq!(
        header(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "https://other.example"
    );

    // The real request: the answer names the origin, so the page may read it.
    let request = Request::get("/api/database/status")
        .header(header::ORIGIN, APP)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())?;
    let (status, h) = headers_of(&app, request).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), APP);
    assert!(
        header(&h, header::VARY)
            .to_ascii_lowercase()
            .contains("origin")
    );
    // Without the token the answer is still 401, readable by the page.
    let request = Request::get("/api/database/status")
        .header(header::ORIGIN, APP)
        .body(Body::empty())?;
    let (status, h) = headers_of(&app, request).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), APP);
    f.node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_refuses_other_origins_and_is_off_by_default() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    for (app, origin) in [
        (app_with(&f, &[APP], None), "http://evil.example"),
        // Scheme and port are part of the origin.
        (app_with(&f, &[APP], None), "https://app.example:3000"),
        (app_with(&f, &[APP], None), "http://app.example:3001"),
        // No OUTPOST_CORS_ORIGINS: no origin gets in.
        (app_with(&f, &[], None), APP),
    ] {
        let (status, h) = headers_of(&app, preflight(origin, "/api/models/Post/create")?).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(
            header(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "",
            "{origin}"
        );
        assert_eq!(
            header(&h, header::ACCESS_CONTROL_ALLOW_METHODS),
            "",
            "{origin}"
        );
        let request = Request::get("/api/database/status")
            .header(header::ORIGIN, origin)
            .body(Body::empty())?;
        let (_, h) = headers_of(&app, request).await?;
        assert_eq!(
            header(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "",
            "{origin}"
        );
    }
    // An OPTIONS that is not a preflight is still a method the API does not have.
    let app = app_with(&f, &[APP], None);
    let request = Request::builder()
        .method("OPTIONS")
        .uri("/api/database/status")
        .body(Body::empty())?;
    let (status, _) = headers_of(&app, request).await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    f.node.shutdown().await;
    Ok(())
}

/// Reads the stream until an event whose text contains every one of
/// `needles`; the events passed over go to `skipped`.
async fn next_event_skipping(
    body: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    buffer: &mut String,
    needles: &[&str],
    skipped: &mut Vec<String>,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if needles.iter().all(|n| event.contains(n)) {
                return Ok(event);
            }
            skipped.push(event);
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .map_err(|_| anyhow::anyhow!("no event with {needles:?}; left: {buffer}"))?
            .ok_or_else(|| anyhow::anyhow!("the stream ended"))??;
        buffer.push_str(std::str::from_utf8(&chunk)?);
    }
}

/// Reads until each of `wanted` (needle lists) matched an event, in any
/// order; returns every event read.
async fn next_events(
    body: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    buffer: &mut String,
    wanted: &[&[&str]],
) -> anyhow::Result<Vec<String>> {
    let mut left: Vec<&[&str]> = wanted.to_vec();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            left.retain(|needles| !needles.iter().all(|n| event.contains(n)));
            seen.push(event);
        }
        if left.is_empty() {
            return Ok(seen);
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .map_err(|_| anyhow::anyhow!("no events with {left:?}; saw {seen:?}"))?
            .ok_or_else(|| anyhow::anyhow!("the stream ended"))??;
        buffer.push_str(std::str::from_utf8(&chunk)?);
    }
}

async fn next_event(
    body: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    buffer: &mut String,
    needles: &[&str],
) -> anyhow::Result<String> {
    next_event_skipping(body, buffer, needles, &mut Vec::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_status_writes_and_sync_results() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let response = f
        .app
        .clone()
        .oneshot(Request::get("/api/database/events").body(Body::empty())?)
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), header::CONTENT_TYPE),
        "text/event-stream"
    );
    let mut body = response.into_body().into_data_stream();
    let mut buf = String::new();

    // The current status first.
    let e = next_event(&mut body, &mut buf, &["event: status"]).await?;
    assert!(
        e.contains(r#""isOnline""#) && e.contains(r#""pendingChanges":0"#),
        "{e}"
    );

    // A write through the model service: which model changed, and the new count.
    let put = |path: &str, body: &str| {
        Request::builder()
            .method(if path.ends_with("mode") {
                "PUT"
            } else {
                "POST"
            })
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
    };
    let r = f
        .app
        .clone()
        .oneshot(put("/api/database/mode", r#"{"mode":"local"}"#)?)
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let e = next_event(&mut body, &mut buf, &["event: status", r#""mode":"local""#]).await?;
    assert!(e.contains(r#""usingLocalDatabase":true"#), "{e}");
    let r = f
        .app
        .clone()
        .oneshot(put(
            "/api/models/User/create",
            r#"{"data":{"id":"u1","email":"one@x"}}"#,
        )?)
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    // Both, in either order: the status is published during the write, the
    // change when its answer goes out.
    next_events(
        &mut body,
        &mut buf,
        &[
            &["event: changed", r#""User""#, r#""source":"write""#],
            &["event: status", r#""pendingChanges":1"#],
        ],
    )
    .await?;
    // A read is no change.
    let r = f
        .app
        .clone()
        .oneshot(put("/api/models/User/findMany", "{}")?)
        .await?;
    assert_eq!(r.status(), StatusCode::OK);

    // A sync pushes the new user: the run's results, then which models moved.
    let r = f
        .app
        .clone()
        .oneshot(put("/api/database/status", "{}")?)
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let seen = next_events(
        &mut body,
        &mut buf,
        &[
            &["event: sync", r#""model":"User""#, r#""status":"SUCCESS""#],
            &[
                "event: changed",
                r#""models":["User"]"#,
                r#""source":"sync""#,
            ],
            &["event: status", r#""pendingChanges":0"#],
        ],
    )
    .await?;
    assert!(
        !seen.iter().any(|e| e.contains(r#""source":"write""#)),
        "a read announced a change: {seen:?}"
    );

    // A change made on the server by someone else: a pull brings it and the
    // stream names the model. (A pull may hold a fresh change back while
    // another transaction is open on the server; the next one brings it.)
    f.client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p9', 'from the server', 'u0')"#,
        )
        .await?;
    let mut pulled = false;
    for _ in 0..20 {
        let sync = put("/api/database/status", r#"{"direction":"FROM_SERVER"}"#)?;
        let r = f.app.clone().oneshot(sync).await?;
        assert_eq!(r.status(), StatusCode::OK);
        let seen = next_events(&mut body, &mut buf, &[&["event: sync"]]).await?;
        if let Ok(more) = tokio::time::timeout(
            Duration::from_millis(500),
            next_event(&mut body, &mut buf, &["event: changed", r#""Post""#]),
        )
        .await
        {
            let e = more?;
            assert!(e.contains(r#""source":"sync""#), "{e} after {seen:?}");
            pulled = true;
            break;
        }
    }
    assert!(pulled, "no changed event for the pulled Post");
    f.node.shutdown().await;
    Ok(())
}
