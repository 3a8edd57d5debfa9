//! The HTTP API against a real PostgreSQL server and SQLite replica, called
//! without a socket through `tower::ServiceExt::oneshot`.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use outpost_http::ROUTES;
use outpost_remote::tokio_postgres::Client;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

mod common;
use common::*;

struct Answer {
    status: StatusCode,
    text: String,
}

impl Answer {
    fn json(&self) -> Json {
        serde_json::from_str(&self.text).unwrap_or(Json::Null)
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

async fn send(app: &Router, request: Request<Body>) -> anyhow::Result<Answer> {
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok(Answer {
        status,
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

async fn count(client: &Client, table: &str) -> anyhow::Result<i64> {
    Ok(client
        .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
        .await?
        .get(0))
}

/// The error answer has the `{error: {code, message}}` shape and a 4xx status.
fn assert_client_error(a: &Answer, status: StatusCode, code: &str, mentions: &str) {
    assert_eq!(a.status, status, "{}", a.text);
    assert_eq!(a.error_code(), code, "{}", a.text);
    let message = a.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_sync_have_the_seed_shape() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let a = call(&f.app, "GET", "/api/database/status", None).await?;
    assert_eq!(a.status, StatusCode::OK);
    let s = a.json();
    for field in ["isOnline", "localDbConnected", "remoteDbConnected"] {
        assert!(s[field].is_boolean(), "{field} in {s}");
    }
    assert!(s["timestamp"].is_string());
    assert_eq!(s["mode"], "auto");
    assert_eq!(s["localDbConnected"], true);
    for field in ["pendingChanges", "conflicts", "failed"] {
        assert!(s[field].is_i64(), "{field} in {s}");
    }
    assert!(s["lastSyncAt"].is_string(), "{s}");
    assert!(s["usingLocalDatabase"].is_boolean());
    assert!(s["syncing"].is_null(), "no run under way: {s}");

    let a = call(
        &f.app,
        "POST",
        "/api/database/status",
        Some(r#"{"direction":"BIDIRECTIONAL"}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let r = a.json();
    assert_eq!(r["success"], true, "{r}");
    assert!(r["errors"].is_object());
    assert!(r["timestamp"].is_string());
    for model in ["User", "Post"] {
        for field in ["recordsProcessed", "recordsSucceeded", "recordsFailed"] {
            assert!(
                r["results"][model][field].is_i64(),
                "{model}.{field} in {r}"
            );
        }
    }
    // No body at all: BIDIRECTIONAL; a subset of models.
    let a = call(&f.app, "POST", "/api/database/status", None).await?;
    assert_eq!(a.json()["success"], true, "{}", a.text);
    let a = call(
        &f.app,
        "POST",
        "/api/database/status",
        Some(r#"{"direction":"FROM_SERVER","models":["User"]}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.json()["results"]["User"].is_object());

    let a = call(
        &f.app,
        "POST",
        "/api/database/status",
        Some(r#"{"direction":"SIDEWAYS"}"#),
    )
    .await?;
    assert_client_error(&a, StatusCode::BAD_REQUEST, "unknown_direction", "SIDEWAYS");
    let a = call(
        &f.app,
        "POST",
        "/api/database/status",
        Some(r#"{"models":["Nope"]}"#),
    )
    .await?;
    assert_client_error(&a, StatusCode::BAD_REQUEST, "unknown_model", "Nope");
    let a = call(
        &f.app,
        "POST",
        "/api/database/status",
        Some(r#"{"direction":7}"#),
    )
    .await?;
    assert_client_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "");
    f.node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_api_creates_and_finds_with_include() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let a = call(
        &f.app,
        "POST",
        "/api/models/User/create",
        Some(r#"{"data":{"id":"u1","email":"one@x","name":"One"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["email"], "one@x");
    let a = call(
        &f.app,
        "POST",
        "/api/models/Post/create",
        Some(r#"{"data":{"id":"p1","title":"Hello","userId":"u1"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = call(
        &f.app,
        "POST",
        "/api/models/Post/findMany",
        Some(r#"{"include":{"user":true}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let posts = a.json();
    assert_eq!(posts.as_array().map(Vec::len), Some(1), "{posts}");
    assert_eq!(posts[0]["user"]["name"], "One", "{posts}");
    assert_eq!(posts[0]["views"], 0);
    let a = call(&f.app, "POST", "/api/models/User/count", None).await?;
    assert_eq!(a.json(), json!(2), "{}", a.text);

    // A duplicate unique value: 409.
    let a = call(
        &f.app,
        "POST",
        "/api/models/User/create",
        Some(r#"{"data":{"id":"u2","email":"one@x"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    // Updating a record that is not there: 404.
    let a = call(
        &f.app,
        "POST",
        "/api/models/User/update",
        Some(r#"{"where":{"id":"ghost"},"data":{"name":"x"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);

    // In local mode the records carry syncStatus. (Without the monitor the
    // node has not seen the server, so auto mode already wrote u1 and p1 to
    // the replica.)
    let a = call(
        &f.app,
        "PUT",
        "/api/database/mode",
        Some(r#"{"mode":"local"}"#),
    )
    .await?;
    assert_eq!(
        a.json(),
        json!({"mode": "local", "usingLocalDatabase": true}),
        "{}",
        a.text
    );
    let a = call(
        &f.app,
        "POST",
        "/api/models/User/create",
        Some(r#"{"data":{"id":"u3","email":"three@x"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["syncStatus"], "PENDING", "{}", a.text);
    let a = call(&f.app, "GET", "/api/database/status", None).await?;
    assert_eq!(a.json()["pendingChanges"], 3, "{}", a.text);
    let a = call(&f.app, "GET", "/api/database/models", None).await?;
    let models = a.json();
    let user = models["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["model"] == "User"))
        .cloned();
    assert_eq!(
        user.as_ref().map(|u| u["pending"].clone()),
        Some(json!(2)),
        "{models}"
    );
    let a = call(&f.app, "GET", "/metrics", None).await?;
    assert!(a.text.contains("outpost_pending_changes 3"), "{}", a.text);
    assert!(
        a.text
            .contains("outpost_model_pending_changes{model=\"User\"} 2"),
        "{}",
        a.text
    );
    let a = call(
        &f.app,
        "PUT",
        "/api/database/mode",
        Some(r#"{"mode":"auto"}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK);
    let a = call(&f.app, "POST", "/api/database/status", None).await?;
    assert_eq!(a.json()["success"], true, "{}", a.text);
    assert_eq!(count(&f.client, "User").await?, 3);
    let a = call(&f.app, "GET", "/api/database/log?model=User&limit=2", None).await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        a.json()["entries"].as_array().map(Vec::len),
        Some(2),
        "{}",
        a.text
    );
    assert_eq!(a.json()["entries"][0]["model"], "User");
    f.node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_json_error_and_changes_nothing() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let before = (
        count(&f.client, "User").await?,
        count(&f.client, "Post").await?,
    );
    let app = &f.app;

    let a = call(
        app,
        "POST",
        "/api/models/User/create",
        Some(r#"{"data": {"id": "#),
    )
    .await?;
    assert_client_error(
        &a,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        "not valid JSON",
    );
    let a = send(
        app,
        Request::post("/api/models/User/create")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(r#"{"data":{"id":"t","email":"t@x"}}"#))?,
    )
    .await?;
    assert_client_error(
        &a,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "text/plain",
    );
    let big = format!(
        r#"{{"data":{{"id":"big","email":"big@x","name":"{}"}}}}"#,
        "x".repeat(1024 * 1024 + 10)
    );
    let a = call(app, "POST", "/api/models/User/create", Some(&big)).await?;
    assert_client_error(
        &a,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "larger",
    );
    // Nesting past serde_json's depth limit, and a where clause nested
    // within it: refused or answered, never a stack overflow or a 5xx.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let a = call(app, "POST", "/api/models/User/findMany", Some(&deep)).await?;
    assert_client_error(&a, StatusCode::BAD_REQUEST, "malformed_json", "recursion");
    let nested_where = format!(
        r#"{{"where":{}{{"id":"u1"}}{}}}"#,
        r#"{"AND":["#.repeat(60),
        "]}".repeat(60)
    );
    let a = call(
        app,
        "POST",
        "/api/models/User/findMany",
        Some(&nested_where),
    )
    .await?;
    assert!(
        a.status == StatusCode::OK || a.status.is_client_error(),
        "{} {}",
        a.status,
        a.text
    );
    // Bytes that are not UTF-8.
    let a = send(
        app,
        Request::builder()
            .method("POST")
            .uri("/api/models/User/create")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                b"{\"data\":{\"id\":\"\xff\xfe\",\"email\":\"x\"}}".to_vec(),
            ))?,
    )
    .await?;
    assert_client_error(&a, StatusCode::BAD_REQUEST, "malformed_json", "");
    // A form feed is whitespace to Rust, not to JSON: not an empty body (a
    // deleteMany without arguments), but one that is not JSON (found by
    // the API fuzzer).
    let a = call(app, "POST", "/api/models/User/deleteMany", Some("\x0c")).await?;
    assert_client_error(&a, StatusCode::BAD_REQUEST, "malformed_json", "");
    let a = call(app, "POST", "/api/models/Nope/findMany", None).await?;
    assert_client_error(&a, StatusCode::NOT_FOUND, "unknown_model", "Nope");
    let a = call(app, "POST", "/api/models/User/dropTable", None).await?;
    assert_client_error(&a, StatusCode::NOT_FOUND, "unknown_operation", "dropTable");
    let a = call(
        app,
        "POST",
        "/api/models/User/findMany",
        Some(r#"{"where":{"nickname":"x"}}"#),
    )
    .await?;
    assert_client_error(&a, StatusCode::BAD_REQUEST, "invalid_query", "nickname");
    let a = call(app, "POST", "/api/models/User/create", Some(r#"[1,2]"#)).await?;
    assert_client_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
        "object",
    );
    // serde would read the sync options from an array; the API does not.
    let a = call(app, "POST", "/api/database/status", Some("[]")).await?;
    assert_client_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
        "must be a JSON object; got an array",
    );
    for hostile in [
        r#"{"where":{"x\"; DROP TABLE \"User\"; --":1}}"#,
        r#"{"where":{"id":{"equals; DROP TABLE \"User\"":1}}}"#,
        r#"{"orderBy":{"id\" DESC; DELETE FROM \"User\"; --":"asc"}}"#,
        r#"{"select":{"1; DROP TABLE \"Post\"":true}}"#,
    ] {
        let a = call(app, "POST", "/api/models/User/findMany", Some(hostile)).await?;
        assert!(
            a.status.is_client_error(),
            "{hostile}: {} {}",
            a.status,
            a.text
        );
        assert!(!a.error_code().is_empty(), "{}", a.text);
        let a = call(app, "POST", "/api/models/User/deleteMany", Some(hostile)).await?;
        assert!(
            a.status.is_client_error(),
            "{hostile}: {} {}",
            a.status,
            a.text
        );
    }
    let a = call(
        app,
        "POST",
        "/api/models/User/create",
        Some(r#"{"data":{"id":"u9","email":"nine@x","x\"; DROP TABLE \"User\"; --":1}}"#),
    )
    .await?;
    assert!(a.status.is_client_error(), "{}", a.text);
    let a = call(
        app,
        "PUT",
        "/api/database/mode",
        Some(r#"{"mode":"offline"}"#),
    )
    .await?;
    assert_client_error(&a, StatusCode::BAD_REQUEST, "unknown_mode", "offline");
    let a = call(app, "GET", "/api/database/log?limit=-1", None).await?;
    assert_client_error(&a, StatusCode::BAD_REQUEST, "bad_request", "limit");
    let a = call(app, "GET", "/api/database/log?model=Nope", None).await?;
    assert_client_error(&a, StatusCode::BAD_REQUEST, "unknown_model", "Nope");
    let a = call(app, "GET", "/api/database/conflicts/User/u0", None).await?;
    assert_client_error(&a, StatusCode::NOT_FOUND, "no_conflict", "u0");
    let a = call(app, "POST", "/api/database/failed/User/u0/retry", None).await?;
    assert_client_error(&a, StatusCode::NOT_FOUND, "no_failed_row", "u0");
    let a = call(app, "GET", "/api/nowhere", None).await?;
    assert_client_error(&a, StatusCode::NOT_FOUND, "not_found", "/api/nowhere");
    let a = call(app, "DELETE", "/api/database/status", None).await?;
    assert_client_error(
        &a,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "GET, POST",
    );

    let after = (
        count(&f.client, "User").await?,
        count(&f.client, "Post").await?,
    );
    assert_eq!(before, after);
    let a = call(app, "POST", "/api/models/User/count", None).await?;
    assert_eq!(a.json(), json!(before.0), "{}", a.text);
    f.node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required() -> anyhow::Result<()> {
    let f = fixture(Some("s3cret-token")).await?;
    for uri in [
        "/api/database/status",
        "/metrics",
        "/api/openapi.json",
        "/api/database/conflicts",
    ] {
        let a = call(&f.app, "GET", uri, None).await?;
        assert_client_error(&a, StatusCode::UNAUTHORIZED, "unauthorized", "Bearer");
        for bad in [
            "Bearer wrong",
            "Bearer s3cret-toke",
            "Basic s3cret-token",
            "s3cret-token",
        ] {
            let a = send(
                &f.app,
                Request::get(uri)
                    .header(header::AUTHORIZATION, bad)
                    .body(Body::empty())?,
            )
            .await?;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri} {bad}");
            assert_eq!(a.error_code(), "unauthorized");
        }
        let a = send(
            &f.app,
            Request::get(uri)
                .header(header::AUTHORIZATION, "Bearer s3cret-token")
                .body(Body::empty())?,
        )
        .await?;
        assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.text);
    }
    // A write without the token changes nothing.
    let a = call(&f.app, "POST", "/api/models/User/deleteMany", None).await?;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(count(&f.client, "User").await?, 1);
    f.node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route_the_router_serves() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let a = call(&f.app, "GET", "/api/openapi.json", None).await?;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["license"]["identifier"], "Apache-2.0");
    assert!(doc["servers"][0]["url"].is_string());
    // The model service is written out per model and operation, with the
    // model's argument and result schemas; every other route as it is.
    let documented: usize = doc["paths"]
        .as_object()
        .map(|p| {
            p.values()
                .filter_map(Json::as_object)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(documented, ROUTES.len() - 1 + 2 * 11);
    let find_many = &doc["paths"]["/api/models/Post/findMany"]["post"];
    assert_eq!(
        find_many["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/PostFindManyArgs"
    );
    assert_eq!(
        find_many["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"],
        "#/components/schemas/Post"
    );
    let post = &doc["components"]["schemas"]["Post"]["properties"];
    assert_eq!(post["title"]["type"], "string");
    assert_eq!(
        post["user"]["anyOf"][0]["$ref"],
        "#/components/schemas/User"
    );
    let create = &doc["components"]["schemas"]["PostCreateInput"];
    assert!(
        create["required"]
            .as_array()
            .is_some_and(|r| r.contains(&serde_json::json!("title"))),
        "{create}"
    );
    let status = &doc["paths"]["/api/database/status"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert_eq!(status["$ref"], "#/components/schemas/DatabaseStatus");
    let mode = &doc["components"]["schemas"]["ModeRequest"];
    assert_eq!(mode["required"], serde_json::json!(["mode"]));
    assert_eq!(
        mode["properties"]["mode"]["enum"],
        serde_json::json!(["auto", "local", "remote"])
    );
    // Without the node's schema, the templated route with the models as its values.
    let generic = outpost_http::openapi_for(&["Post".to_string(), "User".to_string()]);
    let params = &generic["paths"]["/api/models/{model}/{operation}"]["post"]["parameters"];
    assert_eq!(
        params[0]["schema"]["enum"],
        serde_json::json!(["Post", "User"])
    );
    assert_eq!(params[1]["schema"]["enum"][0], "findMany");
    for route in ROUTES {
        if route.path == "/api/database/events" {
            // An endless stream: tests/events.rs reads it.
            continue;
        }
        let op = if route.path == "/api/models/{model}/{operation}" {
            &doc["paths"]["/api/models/User/findMany"]["post"]
        } else {
            &doc["paths"][route.path][route.method.to_ascii_lowercase()]
        };
        assert!(
            op.is_object(),
            "{} {} is not documented",
            route.method,
            route.path
        );
        // The router serves it: no route-level 404 or 405.
        let uri = route
            .path
            .replace("{model}", "User")
            .replace("{key}", "u0")
            .replace("{operation}", "findMany");
        let body = matches!(route.method, "POST" | "PUT").then_some(match route.path {
            "/api/database/mode" => r#"{"mode":"auto"}"#,
            p if p.ends_with("/resolve") => r#"{"keep":"server"}"#,
            _ => "{}",
        });
        let a = call(&f.app, route.method, &uri, body).await?;
        assert_ne!(
            a.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {uri}",
            route.method
        );
        assert_ne!(
            a.error_code(),
            "not_found",
            "{} {uri}: {}",
            route.method,
            a.text
        );
        assert!(
            !a.status.is_server_error(),
            "{} {uri}: {}",
            route.method,
            a.text
        );
    }
    f.node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_is_shown_and_resolved_with_a_merge() -> anyhow::Result<()> {
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
        "/api/models/User/update",
        Some(r#"{"where":{"id":"u0"},"data":{"name":"Local"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    f.client
        .batch_execute(r#"UPDATE "User" SET name = 'Server', email = 'server@x' WHERE id = 'u0'"#)
        .await?;
    let a = call(app, "POST", "/api/database/status", None).await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = call(app, "GET", "/api/database/conflicts", None).await?;
    let list = a.json();
    assert_eq!(
        list["conflicts"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    assert_eq!(list["conflicts"][0]["model"], "User");

    for key in ["u0", "%22u0%22", "%5B%22u0%22%5D"] {
        let a = call(
            app,
            "GET",
            &format!("/api/database/conflicts/User/{key}"),
            None,
        )
        .await?;
        assert_eq!(a.status, StatusCode::OK, "{key}: {}", a.text);
        let c = a.json();
        assert_eq!(c["local"]["name"], "Local", "{c}");
        assert_eq!(c["server"]["name"], "Server", "{c}");
        assert_eq!(c["base"]["name"], "Zero", "{c}");
    }
    let a = call(
        app,
        "POST",
        "/api/database/conflicts/User/u0/resolve",
        Some(r#"{"merged":{"nope":1}}"#),
    )
    .await?;
    assert_client_error(&a, StatusCode::BAD_REQUEST, "bad_request", "nope");
    let a = call(
        app,
        "POST",
        "/api/database/conflicts/User/u0/resolve",
        Some(r#"{"keep":"both"}"#),
    )
    .await?;
    assert_client_error(&a, StatusCode::BAD_REQUEST, "bad_request", "both");
    let a = call(
        app,
        "POST",
        "/api/database/conflicts/User/u0/resolve",
        Some(r#"{"merged":{"name":"Merged"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    call(app, "PUT", "/api/database/mode", Some(r#"{"mode":"auto"}"#)).await?;
    let a = call(app, "POST", "/api/database/status", None).await?;
    assert_eq!(a.json()["success"], true, "{}", a.text);
    let row = f
        .client
        .query_one(r#"SELECT name, email FROM "User" WHERE id = 'u0'"#, &[])
        .await?;
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("Merged".into(), "server@x".into())
    );
    let a = call(app, "GET", "/api/database/status", None).await?;
    assert_eq!(a.json()["conflicts"], 0, "{}", a.text);
    f.node.shutdown().await;
    Ok(())
}

/// The value of one sample (`name` with its labels, exactly) in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn local_mode(app: &Router) -> anyhow::Result<()> {
    let a = call(
        app,
        "PUT",
        "/api/database/mode",
        Some(r#"{"mode":"local"}"#),
    )
    .await?;
    anyhow::ensure!(a.status == StatusCode::OK, "{}", a.text);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_changes_are_listed_a_page_at_a_time() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let app = &f.app;
    local_mode(app).await?;
    for body in [
        r#"{"data":{"id":"u1","email":"one@x","name":"One"}}"#,
        r#"{"where":{"id":"u0"},"data":{"name":"Renamed"}}"#,
    ] {
        let op = if body.contains("where") {
            "update"
        } else {
            "create"
        };
        let a = call(app, "POST", &format!("/api/models/User/{op}"), Some(body)).await?;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    }
    let a = call(
        app,
        "POST",
        "/api/models/Post/create",
        Some(r#"{"data":{"id":"p1","title":"Hello","userId":"u1"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = call(
        app,
        "POST",
        "/api/models/Post/delete",
        Some(r#"{"where":{"id":"p1"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    let a = call(app, "GET", "/api/database/pending", None).await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let p = a.json();
    assert_eq!(
        (p["total"].clone(), p["limit"].clone(), p["offset"].clone()),
        (json!(3), json!(50), json!(0)),
        "{p}"
    );
    let changes = p["changes"].as_array().cloned().unwrap_or_default();
    let summary: Vec<(String, Json, String)> = changes
        .iter()
        .map(|c| {
            (
                c["model"].as_str().unwrap_or("").to_string(),
                c["key"].clone(),
                c["operation"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("User".into(), json!(["u1"]), "insert".into()),
            ("User".into(), json!(["u0"]), "update".into()),
            ("Post".into(), json!(["p1"]), "delete".into()),
        ],
        "{p}"
    );
    assert_eq!(changes[0]["values"]["email"], "one@x", "{p}");
    assert_eq!(changes[1]["values"]["name"], "Renamed", "{p}");
    assert!(changes[2]["values"].is_null(), "{p}");
    assert!(changes.iter().all(|c| c["changedAt"].is_string()), "{p}");

    let a = call(app, "GET", "/api/database/pending?limit=1&offset=1", None).await?;
    let p = a.json();
    assert_eq!(p["total"], 3, "{p}");
    assert_eq!(p["changes"].as_array().map(Vec::len), Some(1), "{p}");
    assert_eq!(p["changes"][0]["key"], json!(["u0"]), "{p}");
    let a = call(app, "GET", "/api/database/pending?model=Post", None).await?;
    assert_eq!(a.json()["total"], 1, "{}", a.text);
    assert_eq!(a.json()["changes"][0]["model"], "Post", "{}", a.text);

    // Bad paging or filters: 400, nothing listed or changed.
    for (uri, mentions) in [
        ("/api/database/pending?limit=abc", "limit"),
        ("/api/database/pending?limit=5000", "limit"),
        ("/api/database/pending?offset=-3", "offset"),
        ("/api/database/pending?page=2", "page"),
        ("/api/database/failed?limit=-1", "limit"),
    ] {
        let a = call(app, "GET", uri, None).await?;
        assert_client_error(&a, StatusCode::BAD_REQUEST, "bad_request", mentions);
    }
    let a = call(
        app,
        "GET",
        "/api/database/pending?model=Nope%3B%20DROP",
        None,
    )
    .await?;
    assert_client_error(&a, StatusCode::BAD_REQUEST, "unknown_model", "Nope; DROP");

    // The sync log is paged and filtered the same way, with its total.
    call(app, "POST", "/api/database/status", None).await?;
    let a = call(app, "GET", "/api/database/log?model=Post&limit=1", None).await?;
    let log = a.json();
    assert_eq!(log["total"], 2, "{log}");
    assert_eq!(log["entries"].as_array().map(Vec::len), Some(1), "{log}");
    assert_eq!(log["entries"][0]["model"], "Post", "{log}");
    let a = call(app, "GET", "/api/database/log?offset=1&limit=1000", None).await?;
    assert_eq!(a.json()["total"], 4, "{}", a.text);
    assert_eq!(
        a.json()["entries"].as_array().map(Vec::len),
        Some(3),
        "{}",
        a.text
    );
    let a = call(app, "GET", "/api/database/pending", None).await?;
    assert_eq!(a.json()["total"], 0, "pushed: {}", a.text);
    f.node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rows_are_listed_and_discarding_puts_the_server_row_back() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let app = &f.app;
    local_mode(app).await?;
    // A new row and an edit of an existing one, both refused by the server.
    let a = call(
        app,
        "POST",
        "/api/models/User/create",
        Some(r#"{"data":{"id":"u9","email":"taken@x","name":"Nine"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = call(
        app,
        "POST",
        "/api/models/User/update",
        Some(r#"{"where":{"id":"u0"},"data":{"email":"taken2@x","name":"Mine"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    // Meanwhile, on the server, both emails were taken.
    f.client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u7', 'taken@x'), ('u8', 'taken2@x')"#,
        )
        .await?;
    let a = call(
        app,
        "POST",
        "/api/database/status",
        Some(r#"{"direction":"TO_SERVER"}"#),
    )
    .await?;
    assert_eq!(
        a.json()["results"]["User"]["recordsFailed"],
        2,
        "{}",
        a.text
    );

    let a = call(app, "GET", "/api/database/failed", None).await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let list = a.json();
    assert_eq!(list["total"], 2, "{list}");
    let failed = list["failed"].as_array().cloned().unwrap_or_default();
    assert_eq!(failed[0]["key"], json!(["u9"]), "{list}");
    assert_eq!(failed[0]["operation"], "insert", "{list}");
    assert_eq!(failed[1]["operation"], "update", "{list}");
    assert_eq!(failed[1]["values"]["name"], "Mine", "{list}");
    for f in &failed {
        assert!(
            f["error"]
                .as_str()
                .is_some_and(|e| e.contains("duplicate key")),
            "{list}"
        );
    }
    let a = call(
        app,
        "GET",
        "/api/database/failed?limit=1&offset=1&model=User",
        None,
    )
    .await?;
    assert_eq!(a.json()["failed"][0]["key"], json!(["u0"]), "{}", a.text);
    let a = call(app, "GET", "/api/database/failed?model=Post", None).await?;
    assert_eq!(a.json()["total"], 0, "{}", a.text);

    // Bad input changes nothing: the two rows are still FAILED.
    for (uri, status, code) in [
        (
            "/api/database/failed/User/u1/discard",
            StatusCode::NOT_FOUND,
            "no_failed_row",
        ),
        (
            "/api/database/failed/Nope/u9/discard",
            StatusCode::NOT_FOUND,
            "unknown_model",
        ),
        (
            "/api/database/failed/User/%22u1%22/discard",
            StatusCode::NOT_FOUND,
            "no_failed_row",
        ),
    ] {
        let a = call(app, "POST", uri, None).await?;
        assert_client_error(&a, status, code, "");
    }
    let a = call(app, "GET", "/api/database/failed/User/u9/discard", None).await?;
    assert_client_error(
        &a,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "POST",
    );
    assert_eq!(
        call(app, "GET", "/api/database/failed", None).await?.json()["total"],
        2
    );

    // Discarding the edit brings the server's row back, synced.
    let a = call(app, "POST", "/api/database/failed/User/u0/discard", None).await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["row"]["email"], "zero@x", "{}", a.text);
    assert_eq!(a.json()["row"]["name"], "Zero", "{}", a.text);
    let a = call(
        app,
        "POST",
        "/api/models/User/findUnique",
        Some(r#"{"where":{"id":"u0"}}"#),
    )
    .await?;
    assert_eq!(a.json()["email"], "zero@x", "{}", a.text);
    assert_eq!(a.json()["syncStatus"], "SYNCED", "{}", a.text);
    // Discarding the new row removes it: the server never had it.
    let a = call(
        app,
        "POST",
        "/api/database/failed/User/%5B%22u9%22%5D/discard",
        None,
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.json()["row"].is_null(), "{}", a.text);
    let a = call(
        app,
        "POST",
        "/api/models/User/findUnique",
        Some(r#"{"where":{"id":"u9"}}"#),
    )
    .await?;
    assert!(a.json().is_null(), "{}", a.text);
    let a = call(app, "POST", "/api/database/failed/User/u9/discard", None).await?;
    assert_client_error(&a, StatusCode::NOT_FOUND, "no_failed_row", "u9");

    let s = call(app, "GET", "/api/database/status", None).await?.json();
    assert_eq!(
        (s["failed"].clone(), s["pendingChanges"].clone()),
        (json!(0), json!(0)),
        "{s}"
    );
    // Nothing went to the server, and a sync has nothing to push.
    let a = call(app, "POST", "/api/database/status", None).await?;
    assert_eq!(a.json()["success"], true, "{}", a.text);
    let row = f
        .client
        .query_one(r#"SELECT email, name FROM "User" WHERE id = 'u0'"#, &[])
        .await?;
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("zero@x".into(), "Zero".into())
    );
    assert_eq!(count(&f.client, "User").await?, 3);
    f.node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_syncs() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let app = &f.app;
    let before = call(app, "GET", "/metrics", None).await?.text;
    let runs = |t: &str| sample(t, "outpost_sync_runs_total{result=\"success\"}").unwrap_or(-1.0);
    assert_eq!(runs(&before), 1.0, "the fixture's first sync: {before}");
    assert_eq!(
        sample(&before, "outpost_rows_bootstrapped_total"),
        Some(1.0),
        "{before}"
    );
    assert_eq!(
        sample(&before, "outpost_sync_running"),
        Some(0.0),
        "{before}"
    );
    assert!(
        sample(&before, "outpost_replication_lag_seconds")
            .is_some_and(|l| (0.0..60.0).contains(&l)),
        "{before}"
    );

    local_mode(app).await?;
    let a = call(
        app,
        "POST",
        "/api/models/User/create",
        Some(r#"{"data":{"id":"u1","email":"one@x"}}"#),
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    f.client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('s1', 's1@x')"#)
        .await?;
    let a = call(app, "POST", "/api/database/status", None).await?;
    assert_eq!(a.json()["success"], true, "{}", a.text);
    let after = call(app, "GET", "/metrics", None).await?.text;
    assert_eq!(runs(&after), 2.0, "{after}");
    assert_eq!(
        sample(&after, "outpost_sync_runs_total{result=\"failure\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&after, "outpost_rows_pushed_total"),
        Some(1.0),
        "{after}"
    );
    // The server's row is pulled, though an open transaction anywhere on the
    // shared server may hold it back for a moment (the pull horizon).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut text = after.clone();
    while sample(&text, "outpost_rows_pulled_total").unwrap_or(0.0) < 1.0 {
        assert!(std::time::Instant::now() < deadline, "never pulled: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        call(
            app,
            "POST",
            "/api/database/status",
            Some(r#"{"direction":"FROM_SERVER"}"#),
        )
        .await?;
        text = call(app, "GET", "/metrics", None).await?.text;
    }
    assert_eq!(
        sample(&after, "outpost_sync_duration_seconds_count"),
        Some(2.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "outpost_sync_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(2.0),
        "{after}"
    );
    assert!(after.contains("# TYPE outpost_sync_duration_seconds histogram"));
    assert_eq!(sample(&after, "outpost_sync_conflicts_total"), Some(0.0));
    assert_eq!(sample(&after, "outpost_sync_failed_rows_total"), Some(0.0));
    f.node.shutdown().await;
    Ok(())
}
