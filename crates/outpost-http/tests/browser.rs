//! The Database Sync Manager page in real headless Chromium, driven over
//! WebDriver (`fantoccini`) through Debian's `chromedriver`, against a node
//! whose server connection runs through a TCP proxy the test can cut.
//!
//! Needs `/usr/bin/chromium` and `chromedriver` (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). Without them the test fails
//! and says so: a browser test that silently skips proves nothing.

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use outpost_engine::{Mode, NodeOptions, Outpost};
use outpost_http::{AppState, router};
use outpost_testkit::TestDb;
use outpost_testkit::proxy::Proxy;
use serde_json::{Value as Json, json};

mod common;

const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL: &str = "apt-get install chromium chromium-driver";

/// `chromedriver` on the PATH or where Debian puts it.
fn chromedriver() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("chromedriver"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let found = on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/chromedriver")])
        .find(|p| p.is_file());
    match found {
        Some(p) if std::path::Path::new(CHROMIUM).is_file() => Ok(p),
        Some(_) => anyhow::bail!("{CHROMIUM} is missing: the browser test needs it ({INSTALL})"),
        None => anyhow::bail!("chromedriver is missing: the browser test needs it ({INSTALL})"),
    }
}

/// The chromedriver process; killed when the test ends, pass or fail.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start_driver() -> anyhow::Result<Driver> {
    let path = chromedriver()?;
    let port = free_port()?;
    let child = Command::new(&path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e} ({INSTALL})", path.display()))?;
    let driver = Driver { child, port };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while StdStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(driver)
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> anyhow::Result<Client> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1200,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    Ok(ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await?)
}

/// Waits until the element's text satisfies `ok`; fails with what it saw.
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

async fn wait_for(
    what: &str,
    mut f: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

/// Clicks the element as a person would: scrolled into the middle of the
/// window first, clear of the sticky message bar at the top. The page swaps
/// its live fragment as soon as the node's events say something changed, so
/// the element can go stale between finding and clicking it: find it again
/// and retry, as `key_on` does.
async fn press(c: &Client, css: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tried = async {
            let el = c.find(Locator::Css(css)).await?;
            c.execute(
                "arguments[0].scrollIntoView({block: 'center'});",
                vec![serde_json::to_value(&el)?],
            )
            .await?;
            el.click().await?;
            anyhow::Ok(())
        }
        .await;
        match tried {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("clicking {css}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Picks `value` in the drop-down, retrying when the live part was swapped
/// between finding and choosing (a stale element), as `press` does.
async fn choose(c: &Client, css: &str, value: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tried = async {
            c.find(Locator::Css(css))
                .await?
                .select_by_value(value)
                .await?;
            anyhow::Ok(())
        }
        .await;
        match tried {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("choosing {value} in {css}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Whether the radio button or option is selected, found afresh (retrying
/// across a swap of the live part).
async fn selected(c: &Client, css: &str) -> anyhow::Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tried =
            async { anyhow::Ok(c.find(Locator::Css(css)).await?.is_selected().await?) }.await;
        match tried {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("reading {css}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Types `key` into the element from the keyboard, scrolled into view first.
/// The page swaps its live fragment every few seconds and a loaded CI machine
/// can catch the element mid-swap ("element not interactable", or stale):
/// find it again and retry until it takes the key.
async fn key_on(c: &Client, css: &str, key: Key) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tried = async {
            let el = c.find(Locator::Css(css)).await?;
            c.execute(
                "arguments[0].scrollIntoView({block: 'center'});",
                vec![serde_json::to_value(&el)?],
            )
            .await?;
            el.send_keys(&char::from(key).to_string()).await?;
            anyhow::Ok(())
        }
        .await;
        match tried {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("typing into {css}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The JSON API as the page's own origin answers it, fetched by the browser.
async fn fetch_json(c: &Client, path: &str) -> anyhow::Result<Json> {
    Ok(c.execute(
        "return fetch(arguments[0]).then(function (r) { return r.json(); });",
        vec![json!(path)],
    )
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_in_headless_chromium() -> anyhow::Result<()> {
    let driver = start_driver().await?;

    let db = TestDb::new().await?;
    let mut server = db.client().await?;
    server.batch_execute(common::BLOG).await?;
    let schema =
        outpost_remote::introspect(&server, "public", None, &["_prisma_migrations".to_string()])
            .await?;
    outpost_remote::install(&mut server, &schema).await?;
    let proxy = Proxy::start(db.server_addr()?).await?;
    let url = db.database_url_via(proxy.addr);
    let local = format!("file:{}", db.dir().join("node.db").display());
    let config = outpost_core::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "LOCAL_DATABASE_URL" => Some(local.clone()),
        "LOCAL_DATABASE_SYNC_INTERVAL" => Some("0".into()),
        _ => None,
    })?;
    let node = Outpost::open_with(
        config,
        NodeOptions {
            check_interval: Duration::from_millis(100),
            check_timeout: Duration::from_millis(500),
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            ..NodeOptions::default()
        },
    )
    .await?;
    wait_for("online and bootstrapped", async || {
        let s = node.status().await;
        Ok(s.is_online && s.last_sync.is_some_and(|l| l.status == "SUCCESS"))
    })
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = router(AppState {
        node: node.clone(),
        admin_token: None,
        cors_origins: Vec::new(),
    });
    let http = tokio::spawn(async move { axum::serve(listener, app).await });

    let profile = tempfile::tempdir()?;
    let c = browser(&driver, profile.path()).await?;
    let outcome = drive(&c, &base, &node, &server, &proxy).await;
    let _ = c.close().await;
    http.abort();
    node.shutdown().await;
    outcome
}

async fn drive(
    c: &Client,
    base: &str,
    node: &Outpost,
    server: &outpost_remote::tokio_postgres::Client,
    proxy: &Proxy,
) -> anyhow::Result<()> {
    // The status.
    c.goto(&format!("{base}/admin/database-sync")).await?;
    assert_eq!(c.title().await?, "Database Sync Manager");
    wait_text(c, "#st-online", |t| t == "Online").await?;
    wait_text(c, "#st-db", |t| t == "Remote (PostgreSQL)").await?;

    // Switch the mode with the form.
    choose(c, "#mode-select", "local").await?;
    press(c, "#mode-form button").await?;
    wait_text(c, "#st-mode", |t| t == "local").await?;
    wait_text(c, "#st-db", |t| t == "Local (SQLite)").await?;
    assert_eq!(node.mode(), Mode::Local);

    // A local write shows up as pending; a sync from the page pushes it.
    let _: Json = node
        .model("Post")?
        .create(json!({"data": {"id": "p1", "title": "Written offline", "userId": "u0"}}))
        .await?;
    wait_text(c, "#st-pending", |t| t == "1").await?;
    wait_text(c, "#pending", |t| t.contains("p1") && t.contains("insert")).await?;
    press(
        c,
        r#"button[data-act="sync"][data-direction="BIDIRECTIONAL"]"#,
    )
    .await?;
    wait_text(c, "#result", |t| t.contains("Sync BIDIRECTIONAL success")).await?;
    wait_text(c, "#st-pending", |t| t == "0").await?;
    let pushed: i64 = server
        .query_one(r#"SELECT count(*) FROM "Post" WHERE id = 'p1'"#, &[])
        .await?
        .get(0);
    assert_eq!(pushed, 1, "the page's sync pushed the row");
    // The progress line goes away once the sync is over and stays away: a
    // progress event about the finished run that arrives after its result
    // must not bring it back. (The push's own server change can wake a
    // short pull of the node's own, shown while it runs, and on a busy
    // server a few more in a row: hence a bounded wait for the manual
    // run's line to go, then a check that it stays gone.)
    let manual_gone = async || -> anyhow::Result<bool> {
        let el = c.find(Locator::Css("#progress")).await?;
        Ok(el.attr("hidden").await?.is_some() || !el.text().await?.contains("(manual)"))
    };
    if let Err(e) = wait_for(
        "the manual sync's progress gone once it is over",
        manual_gone,
    )
    .await
    {
        let text = c.find(Locator::Css("#progress")).await?.text().await?;
        anyhow::bail!(
            "{e}: the page shows {text:?}, the node {:?}",
            node.engine().progress()
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let progress = c.find(Locator::Css("#progress")).await?;
    let text = progress.text().await?;
    assert!(
        progress.attr("hidden").await?.is_some()
            || !text.contains("(manual)")
            || node.engine().progress().is_some(),
        "a finished sync's progress came back: {text:?}"
    );

    // Times read "… ago" with the exact time on hover; the finished run is
    // a bar in the charts, saying its rows on hover; the lag is shown.
    wait_text(c, "#st-last time", |t| {
        t.ends_with(" ago") || t == "just now"
    })
    .await?;
    let exact = c
        .find(Locator::Css("#st-last time"))
        .await?
        .attr("title")
        .await?
        .unwrap_or_default();
    anyhow::ensure!(
        exact.starts_with("20") && exact.contains('T'),
        "the exact time on hover: {exact:?}"
    );
    let bars = c
        .execute(
            "return Array.from(document.querySelectorAll('#runs-rows rect title')).map(function (t) { return t.textContent; });",
            vec![],
        )
        .await?;
    let bars: Vec<String> = serde_json::from_value(bars)?;
    anyhow::ensure!(
        bars.iter()
            .any(|b| b.contains("BIDIRECTIONAL (manual): ") && b.contains(" rows, ")),
        "the page's sync is a bar in the chart: {bars:?}"
    );
    wait_text(c, "#st-lag", |t| t.ends_with(" s") || t.ends_with(" min")).await?;

    // Both sides edit the same user: a conflict on the page.
    let _: Json = node
        .model("User")?
        .update(json!({"where": {"id": "u0"}, "data": {"name": "Local", "email": "local@x"}}))
        .await?;
    server
        .batch_execute(r#"UPDATE "User" SET name = 'Server', email = 'server@x' WHERE id = 'u0'"#)
        .await?;
    press(
        c,
        r#"button[data-act="sync"][data-direction="FROM_SERVER"]"#,
    )
    .await?;
    wait_text(c, "#st-conflicts", |t| t == "1").await?;
    wait_text(c, "article.conflict h3", |t| {
        t.contains("User") && t.contains("u0")
    })
    .await?;
    // "Keep server" would discard the local edit: the page asks first, and
    // saying no keeps the conflict as it was.
    press(c, r#"button[data-act="resolve"][data-keep="server"]"#).await?;
    let asked = c.get_alert_text().await?;
    anyhow::ensure!(
        asked.contains("local change") && asked.contains("u0"),
        "the confirmation says what is lost: {asked:?}"
    );
    c.dismiss_alert().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_text(c, "#st-conflicts", |t| t == "1").await?;
    anyhow::ensure!(
        !node.conflicts().await?.is_empty(),
        "dismissing the confirmation resolved nothing"
    );
    // Field by field, from the keyboard: the local name (the default, both
    // sides changed it) and the server's email.
    assert!(selected(c, r#"input[name="pick:User:u0:name"][value="local"]"#).await?);
    let email_css = r#"input[name="pick:User:u0:email"][value="server"]"#;
    assert!(
        !selected(c, email_css).await?,
        "local changed the email: local by default"
    );
    key_on(c, email_css, Key::Space).await?;
    assert!(selected(c, email_css).await?);
    key_on(c, "form.merge button[type=submit]", Key::Enter).await?;
    wait_text(c, "#result", |t| t.contains("with the chosen fields")).await?;
    wait_text(c, "#st-conflicts", |t| t == "0").await?;
    let list = fetch_json(c, "/api/database/conflicts").await?;
    assert_eq!(
        list["conflicts"],
        json!([]),
        "gone from the JSON API: {list}"
    );
    let row: Json = node
        .model("User")?
        .find_unique(json!({"where": {"id": "u0"}}))
        .await?
        .unwrap_or(Json::Null);
    assert_eq!(
        (row["name"].clone(), row["email"].clone()),
        (json!("Local"), json!("server@x")),
        "{row}"
    );
    press(c, r#"button[data-act="sync"][data-direction="TO_SERVER"]"#).await?;
    wait_text(c, "#result", |t| t.contains("Sync TO_SERVER success")).await?;
    let r = server
        .query_one(r#"SELECT name, email FROM "User" WHERE id = 'u0'"#, &[])
        .await?;
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, String>(1)),
        ("Local".into(), "server@x".into())
    );

    // Back to auto, then the server goes away: offline, on the replica.
    // A choice not applied yet survives the page's live update: a local
    // write changes the status, the page swaps its live part, and the
    // drop-down still says what the person picked.
    // (The person clicks elsewhere first: while the drop-down has the focus
    // the page holds its updates back.)
    choose(c, "#mode-select", "auto").await?;
    c.execute("document.activeElement.blur();", vec![]).await?;
    let _: Json = node
        .model("Post")?
        .create(json!({"data": {"id": "p2", "title": "While choosing", "userId": "u0"}}))
        .await?;
    wait_text(c, "#pending", |t| t.contains("p2")).await?;
    let picked = c
        .execute(
            "return document.getElementById('mode-select').value;",
            vec![],
        )
        .await?;
    assert_eq!(picked, json!("auto"), "the pick survived the live update");
    press(c, "#mode-form button").await?;
    wait_text(c, "#st-db", |t| t == "Remote (PostgreSQL)").await?;
    proxy.cut();
    wait_text(c, "#st-online", |t| t == "Offline").await?;
    wait_text(c, "#st-db", |t| t == "Local (SQLite)").await?;
    proxy.restore();
    wait_text(c, "#st-online", |t| t == "Online").await?;

    // Phone width: nothing scrolls the page sideways.
    c.set_window_size(390, 844).await?;
    let widths = c
        .execute(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
            vec![],
        )
        .await?;
    let (scroll, client) = (
        widths[0].as_i64().unwrap_or(0),
        widths[1].as_i64().unwrap_or(0),
    );
    assert!(
        scroll <= client,
        "the page is {scroll}px wide in a {client}px window"
    );
    Ok(())
}

/// A page on another origin (another port of 127.0.0.1) that the test
/// opens in the browser, as a user would open any web page.
async fn serve_other_origin() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async {
            axum::response::Html("<!doctype html><title>Elsewhere</title><p>Just a page.</p>")
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((base, task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_cannot_write_and_the_admin_page_still_can() -> anyhow::Result<()>
{
    let driver = start_driver().await?;
    let f = common::fixture(None).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let node_base = format!("http://{}", listener.local_addr()?);
    let app = f.app.clone();
    // Served as `outpost serve` serves it (timeouts included).
    let http = tokio::spawn(outpost_http::serve(
        listener,
        app,
        std::future::pending::<()>(),
    ));
    let (other, other_task) = serve_other_origin().await?;
    let profile = tempfile::tempdir()?;
    let c = browser(&driver, profile.path()).await?;
    let outcome = async {
        // A row the foreign page will try to delete (the node has no
        // monitor, so it is offline and the row lives in the replica).
        let created: Json = f
            .node
            .model("Post")?
            .create(json!({"data": {"id": "p1", "title": "Keep me", "userId": "u0"}}))
            .await?;
        anyhow::ensure!(created["id"] == "p1", "{created}");
        let count = async || -> anyhow::Result<usize> {
            let rows: Vec<Json> = f.node.model("Post")?.find_many(json!({})).await?;
            Ok(rows.len())
        };

        c.goto(&format!("{other}/")).await?;
        let tried: Json = c
            .execute_async(
                r#"const [base, done] = arguments;
                const attempts = [
                  ['no-cors, no body', base + '/api/models/Post/deleteMany', {method: 'POST', mode: 'no-cors'}],
                  ['no-cors, text body', base + '/api/models/Post/deleteMany', {method: 'POST', mode: 'no-cors', body: '{}'}],
                  ['cors, no body', base + '/api/models/Post/deleteMany', {method: 'POST'}],
                  ['cors, JSON', base + '/api/models/Post/deleteMany', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{}'}],
                  ['no-cors, JSON mode', base + '/api/database/mode', {method: 'PUT', mode: 'no-cors', headers: {'Content-Type': 'application/json'}, body: '{"mode":"local"}'}],
                  ['cors, JSON mode', base + '/api/database/mode', {method: 'PUT', headers: {'Content-Type': 'application/json'}, body: '{"mode":"local"}'}],
                ];
                Promise.all(attempts.map(function (a) {
                  return fetch(a[1], a[2]).then(function (r) { return a[0] + ': ' + r.type + ' ' + r.status; },
                                                function (e) { return a[0] + ': refused (' + e.message + ')'; });
                })).then(done);"#,
                vec![json!(node_base)],
            )
            .await?;
        // Whatever the browser reports (opaque answers, network errors),
        // nothing changed on the node.
        assert_eq!(count().await?, 1, "the row is still there after {tried}");
        assert_eq!(f.node.mode(), Mode::Auto, "the mode is unchanged after {tried}");
        for line in tried.as_array().into_iter().flatten() {
            let line = line.as_str().unwrap_or_default();
            assert!(!line.ends_with(" 200"), "a foreign write was answered 200: {line}");
        }

        // The page's own forms and scripts still write.
        c.goto(&format!("{node_base}/admin/database-sync")).await?;
        choose(&c, "#mode-select", "local").await?;
        press(&c, "#mode-form button[type=submit]").await?;
        wait_text(&c, "#result", |t| t.starts_with("Mode: local")).await?;
        anyhow::ensure!(f.node.mode() == Mode::Local, "the page set the mode");
        press(&c, r#"button[data-act="sync"][data-direction="BIDIRECTIONAL"]"#).await?;
        wait_text(&c, "#result", |t| t.starts_with("Sync")).await?;
        Ok(())
    }
    .await;
    let _ = c.close().await;
    http.abort();
    other_task.abort();
    f.node.shutdown().await;
    outcome
}

/// Verify and Resync on the page: a server row changed with the capture
/// bypassed is shown with both values (as text, never markup), the per-model
/// Resync repairs it, and a second Verify finds the replica matching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_resync_from_the_page() -> anyhow::Result<()> {
    let driver = start_driver().await?;
    let f = common::fixture(None).await?;
    f.client
        .batch_execute(
            r#"BEGIN; SET LOCAL session_replication_role = replica;
               UPDATE "User" SET name = '<img src=x onerror=alert(1)>Quiet' WHERE id = 'u0'; COMMIT;"#,
        )
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = f.app.clone();
    let http = tokio::spawn(async move { axum::serve(listener, app).await });
    let profile = tempfile::tempdir()?;
    let c = browser(&driver, profile.path()).await?;
    let outcome = async {
        c.goto(&format!("{base}/admin/database-sync")).await?;
        press(&c, r#"button[data-act="verify"]"#).await?;
        let shown = wait_text(&c, "#verify-body", |t| t.contains("rows differ")).await?;
        anyhow::ensure!(shown.starts_with("1 rows differ"), "{shown}");
        let row = wait_text(&c, "#verify-body tr.difference", |t| !t.is_empty()).await?;
        anyhow::ensure!(row.contains(r#""name":"Zero""#), "the local value: {row}");
        anyhow::ensure!(
            row.contains(r#""name":"<img src=x onerror=alert(1)>Quiet""#),
            "the server value, as text: {row}"
        );
        // The page asks before copying a table again; say yes.
        c.execute("window.confirm = function () { return true; };", vec![])
            .await?;
        press(
            &c,
            r#"#verify button[data-act="resync"][data-model="User"]"#,
        )
        .await?;
        wait_text(&c, "#result", |t| t.starts_with("Resync User success")).await?;
        press(&c, r#"button[data-act="verify"]"#).await?;
        wait_text(&c, "#verify-body", |t| {
            t.starts_with("The replica matches the server")
        })
        .await?;
        // The per-model Resync button is in the models table too.
        c.find(Locator::Css(
            r#"#live tr[data-model="Post"] button[data-act="resync"]"#,
        ))
        .await?;
        Ok(())
    }
    .await;
    let _ = c.close().await;
    http.abort();
    f.node.shutdown().await;
    outcome
}
