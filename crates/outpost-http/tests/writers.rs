//! Many writers on one replica file: the model service (local mode) and
//! another program writing with `BEGIN IMMEDIATE` at the same time. No
//! answer is a 500; a write that cannot get the lock is a 503 `busy` with
//! `Retry-After` and wrote nothing; every acknowledged write is in the file
//! exactly once. The same condition has the same code in every mode.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use outpost_local::rusqlite;
use serde_json::Value as Json;
use tower::ServiceExt;

mod common;
use common::*;

struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Json,
}

async fn post(app: &Router, uri: &str, body: &str) -> anyhow::Result<Answer> {
    send(app, "POST", uri, body).await
}

async fn send(app: &Router, method: &str, uri: &str, body: &str) -> anyhow::Result<Answer> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok(Answer {
        status,
        retry_after,
        body: serde_json::from_slice(&bytes).unwrap_or(Json::Null),
    })
}

fn create(id: &str) -> String {
    format!(r#"{{"data":{{"id":"{id}","email":"{id}@x"}}}}"#)
}

/// How many rows of `User` the file has with id `id`.
fn copies(conn: &rusqlite::Connection, id: &str) -> i64 {
    conn.query_row(r#"SELECT count(*) FROM "User" WHERE id = ?1"#, [id], |r| {
        r.get(0)
    })
    .unwrap_or(-1)
}

/// A 503 must be `busy` with a `Retry-After`; anything else 5xx fails.
fn check_refusal(a: &Answer, what: &str) {
    assert!(
        !a.status.is_server_error() || a.status == StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {} {}",
        a.status,
        a.body
    );
    if a.status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(a.body["error"]["code"], "busy", "{what}: {}", a.body);
        assert_eq!(a.retry_after.as_deref(), Some("1"), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_model_service_and_an_immediate_writer_share_the_file_without_500s()
-> anyhow::Result<()> {
    let f = fixture(None).await?;
    let a = send(&f.app, "PUT", "/api/database/mode", r#"{"mode":"local"}"#).await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let path = f._db.dir().join("node.db");

    // Another program: short IMMEDIATE transactions, back to back, each
    // holding the lock a little while, for a bounded time.
    let stop = Arc::new(AtomicBool::new(false));
    let external = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || -> anyhow::Result<Vec<String>> {
            let conn = rusqlite::Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            let mut done = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("ext-{i}");
                conn.execute_batch("BEGIN IMMEDIATE")?;
                conn.execute(
                    r#"INSERT INTO "User" (id, email) VALUES (?1, ?1 || '@x')"#,
                    [&id],
                )?;
                std::thread::sleep(Duration::from_millis(3));
                conn.execute_batch("COMMIT")?;
                done.push(id);
                i += 1;
                // A program that never lets go would starve every other
                // writer (SQLite's busy wait polls): a short gap, as a
                // real one has between its writes.
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(done)
        })
    };

    // The model service: four clients creating rows as fast as answered.
    let until = Instant::now() + Duration::from_secs(3);
    let mut clients = Vec::new();
    for c in 0..4 {
        let app = f.app.clone();
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = Vec::new();
            let mut i = 0;
            while Instant::now() < until {
                let id = format!("m{c}-{i}");
                i += 1;
                let a = post(&app, "/api/models/User/create", &create(&id)).await?;
                check_refusal(&a, &id);
                match a.status {
                    StatusCode::OK => acked.push(id),
                    StatusCode::SERVICE_UNAVAILABLE => refused.push(id),
                    other => anyhow::bail!("{id}: unexpected {other} {}", a.body),
                }
            }
            anyhow::Ok((acked, refused))
        }));
    }
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for c in clients {
        let (a, r) = c.await??;
        acked.extend(a);
        refused.extend(r);
    }
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "model service: {} acknowledged, {} answered 503",
        acked.len(),
        refused.len()
    );
    let external = external
        .join()
        .map_err(|_| anyhow::anyhow!("the external writer panicked"))??;
    assert!(acked.len() > 20, "the model service wrote: {}", acked.len());
    assert!(
        external.len() > 20,
        "the other program wrote: {}",
        external.len()
    );

    // Every acknowledged write once; nothing of a refused one.
    let conn = rusqlite::Connection::open(&path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    for id in acked.iter().chain(&external) {
        assert_eq!(copies(&conn, id), 1, "{id}");
    }
    for id in &refused {
        assert_eq!(copies(&conn, id), 0, "{id} was refused but written");
    }
    let model_rows: i64 = conn.query_row(
        r#"SELECT count(*) FROM "User" WHERE id LIKE 'm%'"#,
        [],
        |r| r.get(0),
    )?;
    assert_eq!(model_rows as usize, acked.len());
    // The model service's writes are local changes to push, each once.
    let pending: BTreeSet<String> = {
        let mut stmt = conn.prepare(
            r#"SELECT json_extract(pk, '$[0]') FROM "_outpost_changes" WHERE table_name = 'User'
               UNION SELECT json_extract(pk, '$[0]') FROM "_outpost_rows" WHERE table_name = 'User'"#,
        )?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    for id in acked.iter().chain(&external) {
        assert!(pending.contains(id), "{id} is captured");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_busy_timeout_is_a_503_with_retry_after() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let a = send(&f.app, "PUT", "/api/database/mode", r#"{"mode":"local"}"#).await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let path = f._db.dir().join("node.db");
    let holder = rusqlite::Connection::open(&path)?;
    holder.execute_batch("BEGIN IMMEDIATE")?;
    let started = Instant::now();
    let a = post(&f.app, "/api/models/User/create", &create("late")).await?;
    let waited = started.elapsed();
    holder.execute_batch("COMMIT")?;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    check_refusal(&a, "late");
    assert!(
        waited >= Duration::from_secs(4),
        "it waited for the lock first ({waited:?})"
    );
    let message = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("locked by another process"), "{message}");
    assert_eq!(copies(&holder, "late"), 0, "nothing was written");
    // Once the lock is free, the same request succeeds.
    let a = post(&f.app, "/api/models/User/create", &create("late")).await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(copies(&holder, "late"), 1);
    Ok(())
}

#[tokio::test]
async fn a_duplicate_key_is_409_in_local_and_auto_mode_alike() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    // 'u0' exists on the server and in the replica.
    for mode in ["auto", "local"] {
        let a = send(
            &f.app,
            "PUT",
            "/api/database/mode",
            &format!(r#"{{"mode":"{mode}"}}"#),
        )
        .await?;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let a = post(
            &f.app,
            "/api/models/User/create",
            r#"{"data":{"id":"u0","email":"again@x"}}"#,
        )
        .await?;
        assert_eq!(a.status, StatusCode::CONFLICT, "{mode}: {}", a.body);
        assert_eq!(a.body["error"]["code"], "unique_violation", "{mode}");
        let a = post(
            &f.app,
            "/api/models/User/create",
            &format!(r#"{{"data":{{"id":"dup-{mode}","email":"zero@x"}}}}"#),
        )
        .await?;
        assert_eq!(a.status, StatusCode::CONFLICT, "{mode}: {}", a.body);
        assert_eq!(a.body["error"]["code"], "unique_violation", "{mode}");
    }
    Ok(())
}
