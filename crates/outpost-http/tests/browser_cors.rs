//! CORS in a real browser: an app page served from another origin uses the
//! TypeScript client (`clients/typescript/dist`, built by `npm ci` there)
//! against a node with `OUTPOST_CORS_ORIGINS` and a bearer token. The listed
//! origin reads, writes and follows the live events; an unlisted one is
//! refused by the browser and writes nothing.
//!
//! Headless Chromium over WebDriver (`fantoccini`, Debian's `chromedriver`),
//! as in `browser.rs`; fails with the install command when they are missing.

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::Path as UrlPath;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use fantoccini::{Client, ClientBuilder, Locator};
use outpost_http::{AppState, router};
use serde_json::json;

mod common;

const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL: &str = "apt-get install chromium chromium-driver";
const TOKEN: &str = "browser-cors-token-0123456789";

fn chromedriver() -> anyhow::Result<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("chromedriver"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin/chromedriver")])
        .find(|p| p.is_file());
    match found {
        Some(p) if Path::new(CHROMIUM).is_file() => Ok(p),
        _ => anyhow::bail!("chromium and chromedriver are needed for the browser test ({INSTALL})"),
    }
}

/// The chromedriver process, killed when the test ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser(profile: &Path) -> anyhow::Result<(Driver, Client)> {
    let path = chromedriver()?;
    let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(&path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e} ({INSTALL})", path.display()))?;
    let driver = Driver(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while StdStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await?;
    Ok((driver, client))
}

/// The built client package: `clients/typescript/dist`.
fn client_dist() -> anyhow::Result<PathBuf> {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/typescript/dist");
    anyhow::ensure!(
        dist.join("index.js").is_file(),
        "{} is missing: build the client first (cd clients/typescript && npm ci)",
        dist.display()
    );
    Ok(dist)
}

/// The app's page: it uses the client against the node at `node`, writing
/// what happened into `#read`, `#write` and `#events`.
fn page(node: &str, user: &str) -> String {
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>app</title>
<p id="read">…</p><p id="write">…</p><p id="events">…</p>
<script type="module">
import {{ OutpostClient }} from '/client/index.js';
const db = new OutpostClient({{ url: {node:?}, token: {TOKEN:?} }});
const show = (id, text) => {{ document.getElementById(id).textContent = text; }};
db.model('Post').findMany({{ include: {{ user: true }} }})
  .then((posts) => show('read', 'read ' + posts.length), (e) => show('read', 'error ' + e.code));
db.model('User').create({{ data: {{ id: {user:?}, email: {user:?} + '@app' }} }})
  .then((u) => show('write', 'created ' + u.email), (e) => show('write', 'error ' + e.code));
db.subscribe((e) => {{ if (e.type === 'status') show('events', 'live ' + e.data.isOnline); }},
  {{ onError: () => show('events', 'error') }});
</script>"#
    )
}

/// Serves the app page and the client's files on a port of its own: another
/// origin than the node's.
async fn serve_app(node: String, user: &'static str, dist: PathBuf) -> anyhow::Result<u16> {
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || async move { Html(page(&node, user)) }),
        )
        .route(
            "/client/{file}",
            axum::routing::get(move |UrlPath(file): UrlPath<String>| {
                let dist = dist.clone();
                async move {
                    if file.contains('/') || file.contains("..") || !file.ends_with(".js") {
                        return axum::http::StatusCode::NOT_FOUND.into_response();
                    }
                    match std::fs::read_to_string(dist.join(&file)) {
                        Ok(js) => ([(header::CONTENT_TYPE, "text/javascript")], js).into_response(),
                        Err(_) => axum::http::StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}

async fn wait_text(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::from("(no element)");
    while Instant::now() < deadline {
        if let Ok(el) = c.find(Locator::Css(css)).await
            && let Ok(t) = el.text().await
        {
            if ok(&t) {
                return Ok(t);
            }
            seen = t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("timed out waiting on {css}; it shows {seen:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_on_another_origin_uses_the_client_through_cors() -> anyhow::Result<()> {
    let dist = client_dist()?;
    let f = common::fixture(None).await?;
    // Writes go straight to the server, where the test looks for them.
    f.node.set_mode(outpost_engine::Mode::Remote).await;
    // Two app origins; only the first is listed.
    let node_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let node_url = format!("http://{}", node_listener.local_addr()?);
    let allowed = serve_app(node_url.clone(), "allowed", dist.clone()).await?;
    let refused = serve_app(node_url.clone(), "refused", dist).await?;
    let app = router(AppState {
        node: f.node.clone(),
        admin_token: Some(TOKEN.into()),
        cors_origins: vec![format!("http://127.0.0.1:{allowed}")],
    });
    tokio::spawn(async move { axum::serve(node_listener, app).await });

    let profile = tempfile::tempdir()?;
    let (_driver, c) = browser(profile.path()).await?;
    let run = async {
        c.goto(&format!("http://127.0.0.1:{allowed}/")).await?;
        wait_text(&c, "#read", |t| t == "read 0").await?;
        wait_text(&c, "#write", |t| t == "created allowed@app").await?;
        wait_text(&c, "#events", |t| t == "live false").await?;

        c.goto(&format!("http://127.0.0.1:{refused}/")).await?;
        wait_text(&c, "#read", |t| t == "error network").await?;
        wait_text(&c, "#write", |t| t == "error network").await?;
        wait_text(&c, "#events", |t| t == "error").await?;
        anyhow::Ok(())
    }
    .await;
    c.close().await?;
    run?;
    // The refused page's write never reached the node: the browser stopped
    // it at the preflight.
    let rows = f
        .client
        .query("SELECT id FROM \"User\" ORDER BY id", &[])
        .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, ["allowed", "u0"]);
    f.node.shutdown().await;
    Ok(())
}
