//! `GET /api/database/verify` and `POST /api/database/resync` through the
//! router, against a real server and replica.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::fixture;
use serde_json::{Value as Json, json};
use tower::ServiceExt as _;

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> anyhow::Result<(StatusCode, Json)> {
    let mut b = Request::builder().method(method).uri(uri);
    if method != "GET" {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    let request = b.body(body.map_or_else(Body::empty, |s| Body::from(s.to_string())))?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Json::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_a_quiet_server_change_and_resync_repairs_it() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let (status, report) = call(&f.app, "GET", "/api/database/verify", None).await?;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["consistent"], true, "{report}");
    assert_eq!(report["models"].as_array().map(Vec::len), Some(2));

    f.client
        .batch_execute(
            r#"BEGIN; SET LOCAL session_replication_role = replica;
               UPDATE "User" SET name = 'Quiet' WHERE id = 'u0'; COMMIT;"#,
        )
        .await?;
    let (status, report) = call(&f.app, "GET", "/api/database/verify?model=User", None).await?;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["consistent"], false);
    assert_eq!(report["models"].as_array().map(Vec::len), Some(1));
    let diff = &report["models"][0]["differences"][0];
    assert_eq!(diff["key"], json!({"id": "u0"}));
    assert_eq!(diff["local"]["name"], "Zero");
    assert_eq!(diff["server"]["name"], "Quiet");
    assert_eq!(diff["columns"], json!(["name"]));

    let (status, sync) = call(
        &f.app,
        "POST",
        "/api/database/resync",
        Some(r#"{"model":"User"}"#),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{sync}");
    assert_eq!(sync["success"], true, "{sync}");
    assert_eq!(sync["bootstrapped"], true, "{sync}");
    let (_, report) = call(&f.app, "GET", "/api/database/verify", None).await?;
    assert_eq!(report["consistent"], true, "{report}");

    // Bad requests are refused with a clear error, nothing done.
    for (method, uri, body) in [
        ("GET", "/api/database/verify?model=Nope", None),
        ("GET", "/api/database/verify?limit=3", None),
        ("POST", "/api/database/resync", Some(r#"{"model":"Nope"}"#)),
        ("POST", "/api/database/resync", Some("{}")),
        (
            "POST",
            "/api/database/resync",
            Some(r#"{"model":"User","x":1}"#),
        ),
    ] {
        let (status, answer) = call(&f.app, method, uri, body).await?;
        assert!(
            status.is_client_error(),
            "{method} {uri} {body:?}: {status} {answer}"
        );
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let doc = outpost_http::openapi_for(&["Post".into(), "User".into()]);
    assert_eq!(
        doc["paths"]["/api/database/verify"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/VerifyReport"
    );
    assert_eq!(
        doc["components"]["schemas"]["ResyncRequest"]["properties"]["model"]["enum"],
        json!(["Post", "User"])
    );
    f.node.shutdown().await;
    Ok(())
}
