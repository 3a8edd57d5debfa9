//! The Database Sync Manager page at `/admin/database-sync` against a real
//! PostgreSQL server and SQLite replica, called through
//! `tower::ServiceExt::oneshot`.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value as Json;
use tower::ServiceExt;

mod common;
use common::*;

struct Answer {
    status: StatusCode,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Json {
        serde_json::from_str(&self.text).unwrap_or(Json::Null)
    }
}

async fn send(app: &Router, request: Request<Body>) -> anyhow::Result<Answer> {
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok(Answer {
        status,
        content_type,
        text: String::from_utf8(bytes.to_vec())?,
    })
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<&str>) -> anyhow::Result<Answer> {
    let mut b = Request::builder().method(method).uri(uri);
    // Every write says JSON, bodyless ones too (the browser-safety rule).
    if body.is_some() || method != "GET" {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    send(
        app,
        b.body(body.map_or_else(Body::empty, |s| Body::from(s.to_string())))?,
    )
    .await
}

const PAGE: &str = "/admin/database-sync";

fn assert_html(a: &Answer) {
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(
        a.content_type.starts_with("text/html"),
        "content type {:?}",
        a.content_type
    );
}

#[tokio::test]
async fn the_page_shows_status_sync_buttons_and_models() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let app = &f.app;
    call(
        app,
        "PUT",
        "/api/database/mode",
        Some(r#"{"mode":"local"}"#),
    )
    .await?;
    let a = call(
        app,
        "POST",
        "/api/models/Post/create",
        Some(r#"{"data":{"id":"p1","title":"Hello","userId":"u0"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    let a = call(app, "GET", PAGE, None).await?;
    assert_html(&a);
    let html = &a.text;
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("Database Sync Manager"), "{html}");
    assert!(html.contains(r#"id="st-online""#), "{html}");
    assert!(
        html.contains("Online") || html.contains("Offline"),
        "{html}"
    );
    assert!(html.contains("Local (SQLite)"), "{html}");
    assert!(
        html.contains(r#"<option value="local" selected>"#),
        "{html}"
    );
    for direction in ["BIDIRECTIONAL", "TO_SERVER", "FROM_SERVER"] {
        assert!(
            html.contains(&format!(
                r#"<button type="button" data-act="sync" data-direction="{direction}">"#
            )),
            "no {direction} button: {html}"
        );
    }
    assert!(html.contains(r#"<dd id="st-pending">1</dd>"#), "{html}");
    // One row per model, with its pending, conflict and failed counts.
    assert!(
        html.contains(r#"<tr data-model="Post"><th scope="row">Post</th><td class="num">1</td><td class="num">0</td><td class="num">0</td>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<tr data-model="User"><th scope="row">User</th><td class="num">0</td><td class="num">0</td><td class="num">0</td>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"data-act="sync-model" data-model="Post""#),
        "{html}"
    );
    assert!(html.contains("No conflicts."), "{html}");
    assert!(html.contains("Recent sync log"), "{html}");
    // The pending change, with its operation and values.
    assert!(
        html.contains(r#"<tr><td>Post</td><td><code>p1</code></td><td>insert</td>"#),
        "{html}"
    );
    assert!(html.contains("title: Hello"), "{html}");
    assert!(
        html.contains(r#"<p id="progress" class="progress" aria-live="polite" hidden></p>"#),
        "{html}"
    );
    assert!(html.contains("const TOKEN = null;"), "{html}");

    // The live part alone, for the page's polling.
    let a = call(app, "GET", &format!("{PAGE}?fragment=1"), None).await?;
    assert_html(&a);
    assert!(!a.text.contains("<!doctype"), "{}", a.text);
    assert!(a.text.contains(r#"data-model="Post""#), "{}", a.text);

    // After a push, nothing is pending and the log shows the run.
    let a = call(
        app,
        "POST",
        "/api/database/status",
        Some(r#"{"direction":"TO_SERVER"}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["success"], true, "{}", a.text);
    let a = call(app, "GET", PAGE, None).await?;
    assert_html(&a);
    assert!(
        a.text.contains(r#"<dd id="st-pending">0</dd>"#),
        "{}",
        a.text
    );
    assert!(a.text.contains("TO_SERVER"), "{}", a.text);
    Ok(())
}

#[tokio::test]
async fn a_conflict_is_shown_side_by_side_and_escaped() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let app = &f.app;
    call(
        app,
        "PUT",
        "/api/database/mode",
        Some(r#"{"mode":"local"}"#),
    )
    .await?;
    let hostile = "<script>alert(1)</script>";
    let body = serde_json::json!({"where": {"id": "u0"}, "data": {"name": hostile}}).to_string();
    let a = call(app, "POST", "/api/models/User/update", Some(&body)).await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    f.client
        .batch_execute(
            r#"UPDATE "User" SET name = 'Server side', email = 'server@x' WHERE id = 'u0'"#,
        )
        .await?;
    let a = call(app, "POST", "/api/database/status", None).await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(f.node.conflicts().await?.len(), 1);

    let a = call(app, "GET", PAGE, None).await?;
    assert_html(&a);
    let html = &a.text;
    assert!(!html.contains(hostile), "raw hostile value: {html}");
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    // Base, local and server side by side, a local/server choice per
    // differing field: local by default where local changed it, server where
    // only the server did.
    assert!(
        html.contains(concat!(
            r#"<tr class="diff"><th scope="row">name</th><td data-label="Base">Zero</td>"#,
            r#"<td data-label="Local"><label class="pick"><input type="radio" name="pick:User:u0:name" value="local" data-col="name" checked><span class="sr">Use the local name: </span>&lt;script&gt;alert(1)&lt;/script&gt;</label></td>"#,
            r#"<td data-label="Server"><label class="pick"><input type="radio" name="pick:User:u0:name" value="server" data-col="name"><span class="sr">Use the server name: </span>Server side</label></td></tr>"#
        )),
        "{html}"
    );
    assert!(
        html.contains(concat!(
            r#"<tr class="diff"><th scope="row">email</th><td data-label="Base">zero@x</td>"#,
            r#"<td data-label="Local"><label class="pick"><input type="radio" name="pick:User:u0:email" value="local" data-col="email"><span class="sr">Use the local email: </span>zero@x</label></td>"#,
            r#"<td data-label="Server"><label class="pick"><input type="radio" name="pick:User:u0:email" value="server" data-col="email" checked><span class="sr">Use the server email: </span>server@x</label></td></tr>"#
        )),
        "{html}"
    );
    assert!(
        html.contains(r#"<tr><th scope="row">id</th><td data-label="Base">u0</td><td data-label="Local">u0</td><td data-label="Server">u0</td></tr>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<form class="merge" data-model="User" data-key="u0">"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<button type="submit">Resolve with chosen fields</button>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"data-act="resolve" data-keep="local" data-model="User" data-key="u0">Keep local</button>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"data-act="resolve" data-keep="server" data-model="User" data-key="u0">Keep server</button>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<tr data-model="User"><th scope="row">User</th><td class="num">0</td><td class="num">1</td>"#),
        "{html}"
    );
    assert!(html.contains(r#"<dd id="st-conflicts">1</dd>"#), "{html}");

    // The page's keep-server button calls this; the conflict is gone after.
    let a = call(
        app,
        "POST",
        "/api/database/conflicts/User/u0/resolve",
        Some(r#"{"keep":"server"}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = call(app, "GET", PAGE, None).await?;
    assert_html(&a);
    assert!(a.text.contains("No conflicts."), "{}", a.text);
    Ok(())
}

#[tokio::test]
async fn the_page_needs_the_token_when_one_is_set() -> anyhow::Result<()> {
    let f = fixture(Some("s3cret<&>")).await?;
    let app = &f.app;
    let a = call(app, "GET", PAGE, None).await?;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
    assert!(!a.text.contains("Database Sync Manager"), "{}", a.text);
    let a = call(app, "GET", &format!("{PAGE}?token=wrong"), None).await?;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
    let a = call(app, "GET", &format!("{PAGE}?fragment=1"), None).await?;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);

    // The token as a query parameter (for a browser): the page hands it to its script.
    let a = call(app, "GET", &format!("{PAGE}?token=s3cret%3C%26%3E"), None).await?;
    assert_html(&a);
    assert!(
        a.text
            .contains(r#"const TOKEN = "s3cret\u003c\u0026\u003e";"#),
        "{}",
        a.text
    );
    // Or as a bearer token.
    let request = Request::builder()
        .uri(PAGE)
        .header(header::AUTHORIZATION, "Bearer s3cret<&>")
        .body(Body::empty())?;
    let a = send(app, request).await?;
    assert_html(&a);
    Ok(())
}

#[tokio::test]
async fn a_failed_row_shows_the_server_error_and_a_retry_button() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let app = &f.app;
    call(
        app,
        "PUT",
        "/api/database/mode",
        Some(r#"{"mode":"local"}"#),
    )
    .await?;
    let a = call(
        app,
        "POST",
        "/api/models/User/create",
        Some(r#"{"data":{"id":"u9","email":"dup@x","name":"<b>x</b>"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    f.client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u8', 'dup@x')"#)
        .await?;
    let a = call(
        app,
        "POST",
        "/api/database/status",
        Some(r#"{"direction":"TO_SERVER"}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = call(app, "GET", PAGE, None).await?;
    assert_html(&a);
    let html = &a.text;
    assert!(!html.contains("<b>x</b>"), "{html}");
    assert!(
        html.contains(r#"data-act="retry" data-model="User" data-key="u9">Retry</button>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<button type="button" data-act="discard" data-model="User" data-key="u9" aria-label="Discard the local change to User u9">Discard</button>"#),
        "{html}"
    );
    assert!(html.contains("<td>insert</td>"), "{html}");
    assert!(
        html.contains("duplicate key value violates unique constraint &quot;User_email_key&quot;"),
        "{html}"
    );
    Ok(())
}
