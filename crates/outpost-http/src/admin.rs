//! The Database Sync Manager page at `/admin/database-sync`.
//!
//! Sections: status and mode, sync buttons (three directions, and per model),
//! Verify (the replica compared with the server: differing rows with both
//! values, shown until the next verification) and Resync per model,
//! models, pending changes, conflicts side by side (base, local, server) with
//! a local/server choice per differing field plus keep-local and keep-server,
//! failed rows with the server's error (retry, discard), and the sync log
//! with charts of the recent runs (rows, duration) and the replication lag.
//! Times show as "3 min ago" with the exact time on hover.
//!
//! Server-rendered HTML (every dynamic string goes through `escape`) with a
//! small inline script: it follows the live events (`GET
//! /api/database/events`: status and progress), or while those are
//! unavailable polls `GET /api/database/status` every few seconds, and, when
//! something changed, fetches the page's live part again
//! (`?fragment=1`) and swaps it in without a full reload, keeping radio
//! choices and focus. While a sync started from the page runs it polls
//! faster and shows the run's phase and rows (`syncing` in the status). The
//! buttons call the JSON API under `/api/database`; every control is a real
//! button, select or labelled radio, so the page works from the keyboard.
//!
//! When the node has an admin token the page needs it too, either as
//! `Authorization: Bearer <token>` or, for a browser, as `?token=<token>`;
//! the page then sends it as a bearer token on its own `fetch` calls. The
//! page is not part of [`crate::ROUTES`] (that list is the JSON API and its
//! OpenAPI document).

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value as Json;

use crate::AppState;
use crate::auth::constant_time_eq;
use crate::error::ApiError;
use crate::handlers;

mod assets;
use assets::{SCRIPT, STYLE};

/// The page's path.
pub const PAGE_PATH: &str = "/admin/database-sync";

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as display text (strings without quotes), escaped.
fn text(v: &Json) -> String {
    match v {
        Json::Null => String::from("—"),
        Json::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

/// A time from the API as a `<time>` element: the exact time as text and on
/// hover; the script turns the text into "3 min ago" and keeps it current.
fn time_html(v: &Json, none: &str) -> String {
    match v.as_str() {
        Some(t) => {
            let t = escape(t);
            format!(r#"<time datetime="{t}" title="{t}">{t}</time>"#)
        }
        None => String::from(none),
    }
}

fn authorized(state: &AppState, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
    let Some(token) = state.admin_token.as_deref() else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    [bearer, query.get("token").map(String::as_str)]
        .into_iter()
        .flatten()
        .any(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

/// Rows shown in the pending and failed lists (the API pages the rest).
const LIST_LIMIT: usize = 50;

fn page_query(limit: usize) -> HashMap<String, String> {
    HashMap::from([("limit".to_string(), limit.to_string())])
}

/// A key from the API as the page shows it and puts in paths: a one-column
/// key (`["u0"]`) as its value (`u0`), others as JSON.
fn key_text(key: &Json) -> String {
    match key {
        Json::String(s) => s.clone(),
        Json::Array(parts) if parts.len() == 1 => key_text(&parts[0]),
        other => other.to_string(),
    }
}

/// `GET /admin/database-sync`.
pub(crate) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&state, &headers, &query) {
        let mut response = ApiError::unauthorized(
            "this page needs Authorization: Bearer <token> or ?token=<token>",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let live = match live_html(&state).await {
        Ok(html) => html,
        Err(e) => return e.into_response(),
    };
    let mut response = if query.contains_key("fragment") {
        Html(live).into_response()
    } else {
        let token = if state.admin_token.is_some() {
            query.get("token").cloned()
        } else {
            None
        };
        Html(full_page(&live, token.as_deref())).into_response()
    };
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// The last attempt in words: when, and how it ended (with its error).
fn attempt_text(attempt: &serde_json::Value) -> String {
    if attempt.is_null() {
        return String::from("none yet");
    }
    let outcome = match attempt["status"].as_str() {
        Some("SUCCESS") => String::from("succeeded"),
        Some("RUNNING") => String::from("running"),
        Some("INTERRUPTED") => String::from("interrupted: its process stopped before it finished"),
        _ => match attempt["error"].as_str() {
            Some(e) => format!("failed: {}", escape(e)),
            None => String::from("failed"),
        },
    };
    format!(
        "{} {} ({}), {outcome}",
        time_html(&attempt["at"], "—"),
        text(&attempt["direction"]),
        text(&attempt["trigger"]),
    )
}

async fn live_html(state: &AppState) -> Result<String, ApiError> {
    let status = handlers::status(State(state.clone())).await?.0;
    let models = handlers::models(State(state.clone())).await?.0;
    let conflicts = handlers::conflicts(State(state.clone())).await?.0;
    let log = handlers::log(State(state.clone()), Query(page_query(CHART_ENTRIES)))
        .await?
        .0;
    let failed = handlers::failed(State(state.clone()), Query(page_query(LIST_LIMIT)))
        .await?
        .0;
    let pending = handlers::pending(State(state.clone()), Query(page_query(LIST_LIMIT)))
        .await?
        .0;

    let mut h = String::new();
    // Status.
    let online = status["isOnline"].as_bool().unwrap_or(false);
    let using_local = status["usingLocalDatabase"].as_bool().unwrap_or(false);
    let mode = status["mode"].as_str().unwrap_or("auto");
    let _ = write!(
        h,
        r#"<section aria-labelledby="h-status"><h2 id="h-status">Status</h2>
<dl class="status">
<dt>Network</dt><dd><span id="st-online" class="badge {cls}">{online}</span></dd>
<dt>Database in use</dt><dd id="st-db">{db}</dd>
<dt>Mode</dt><dd><span id="st-mode">{mode}</span> (kept across restarts)</dd>
<dt>Local database</dt><dd>{local}</dd>
<dt>Remote database</dt><dd>{remote}</dd>
<dt>Pending changes</dt><dd id="st-pending">{pending}</dd>
<dt>Conflicts</dt><dd id="st-conflicts">{conflicts}</dd>
<dt>Failed</dt><dd id="st-failed">{failed}</dd>
<dt>Last successful sync</dt><dd id="st-last">{last}</dd>
<dt>Last attempt</dt><dd id="st-attempt">{attempt}</dd>
<dt>Replication lag</dt><dd><span id="st-lag"{lag_attr}>{lag}</span>
<svg id="lag-chart" class="spark" viewBox="0 0 240 40" preserveAspectRatio="none" role="img" aria-label="Replication lag over the last minutes, as this page sampled it"><title>Replication lag over the last minutes</title></svg></dd>
</dl>
<form id="mode-form" class="row"><label for="mode-select">Mode</label>
<select id="mode-select" name="mode">{options}</select>
<button type="submit">Set mode</button></form>
</section>
"#,
        cls = if online { "ok" } else { "bad" },
        online = if online { "Online" } else { "Offline" },
        db = if using_local {
            "Local (SQLite)"
        } else {
            "Remote (PostgreSQL)"
        },
        mode = escape(mode),
        local = yes_no(&status["localDbConnected"]),
        remote = yes_no(&status["remoteDbConnected"]),
        pending = text(&status["pendingChanges"]),
        conflicts = text(&status["conflicts"]),
        failed = text(&status["failed"]),
        last = time_html(&status["lastSyncAt"], "never"),
        lag_attr = status["replicationLagSeconds"]
            .as_f64()
            .map_or_else(String::new, |l| format!(r#" data-lag="{l}""#)),
        lag = status["replicationLagSeconds"]
            .as_f64()
            .map_or_else(|| String::from("no pull yet"), lag_text),
        attempt = attempt_text(&status["lastAttempt"]),
        options = ["auto", "local", "remote"]
            .iter()
            .map(|m| format!(
                r#"<option value="{m}"{}>{m}</option>"#,
                if *m == mode { " selected" } else { "" }
            ))
            .collect::<String>(),
    );

    // Sync buttons.
    h.push_str(
        r#"<section aria-labelledby="h-sync"><h2 id="h-sync">Sync</h2><div class="row">
<button type="button" data-act="sync" data-direction="BIDIRECTIONAL">Sync both ways</button>
<button type="button" data-act="sync" data-direction="TO_SERVER">Push to server</button>
<button type="button" data-act="sync" data-direction="FROM_SERVER">Pull from server</button>
<button type="button" data-act="verify">Verify replica</button>
</div></section>
"#,
    );

    // Per model.
    h.push_str(
        r#"<section aria-labelledby="h-models"><h2 id="h-models">Models</h2><div class="scroll"><table>
<thead><tr><th scope="col">Model</th><th scope="col">Pending</th><th scope="col">Conflicts</th><th scope="col">Failed</th><th scope="col">Last sync</th><th scope="col">Result of your last sync</th><th scope="col"><span class="sr">Actions</span></th></tr></thead><tbody>
"#,
    );
    for m in models["models"].as_array().into_iter().flatten() {
        let name = m["model"].as_str().unwrap_or("");
        let last = &m["lastSync"];
        let when = if last.is_null() {
            String::from("never")
        } else if last["completedAt"].is_null() {
            time_html(&last["startedAt"], "—")
        } else {
            time_html(&last["completedAt"], "—")
        };
        // The result of the user's own last sync stays until they start
        // another; the automatic pulls that follow it do not replace it.
        let mine = &m["lastManualSync"];
        let last = if mine.is_null() { last } else { mine };
        let result = if last.is_null() {
            String::from("—")
        } else {
            let mut r = format!(
                "{} {}: {} processed, {} ok, {} failed, {} conflicts",
                text(&last["status"]),
                text(&last["direction"]),
                text(&last["recordsProcessed"]),
                text(&last["recordsSucceeded"]),
                text(&last["recordsFailed"]),
                text(&last["conflicts"]),
            );
            if let Some(e) = last["error"].as_str() {
                let _ = write!(r, " — {}", escape(e));
            }
            r
        };
        let _ = writeln!(
            h,
            r#"<tr data-model="{n}"><th scope="row">{n}</th><td class="num">{p}</td><td class="num">{c}</td><td class="num">{f}</td><td>{when}</td><td>{result}</td><td><div class="row"><button type="button" data-act="sync-model" data-model="{n}" aria-label="Sync {n}">Sync</button><button type="button" data-act="resync" data-model="{n}" aria-label="Resync {n}: copy it again from the server">Resync</button></div></td></tr>"#,
            n = escape(name),
            p = text(&m["pending"]),
            c = text(&m["conflicts"]),
            f = text(&m["failed"]),
        );
    }
    h.push_str("</tbody></table></div></section>\n");

    pending_html(&mut h, &pending);
    conflicts_html(&mut h, &conflicts);
    failed_html(&mut h, &failed);

    // Sync log: the recent runs as charts, then the newest rows.
    let entries = log["entries"].as_array().cloned().unwrap_or_default();
    h.push_str(r#"<section aria-labelledby="h-log"><h2 id="h-log">Recent sync log</h2>"#);
    runs_chart_html(&mut h, &runs(&entries));
    h.push_str(
        r#"<div class="scroll"><table>
<thead><tr><th scope="col">Started</th><th scope="col">Model</th><th scope="col">Direction</th><th scope="col">Trigger</th><th scope="col">Status</th><th scope="col">Processed</th><th scope="col">Failed</th><th scope="col">Conflicts</th><th scope="col">Error</th></tr></thead><tbody>
"#,
    );
    for e in entries.iter().take(LOG_ROWS) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            time_html(&e["startedAt"], "—"),
            text(&e["model"]),
            text(&e["direction"]),
            text(&e["trigger"]),
            text(&e["status"]),
            text(&e["recordsProcessed"]),
            text(&e["recordsFailed"]),
            text(&e["conflicts"]),
            text(&e["error"]),
        );
    }
    h.push_str("</tbody></table></div></section>\n");
    Ok(h)
}

/// Log rows read for the charts (the API pages the rest).
const CHART_ENTRIES: usize = 200;
/// Log rows shown in the table.
const LOG_ROWS: usize = 20;
/// Runs drawn in the charts.
const CHART_RUNS: usize = 30;

/// Seconds of lag in words: "0.4 s", "12 s", "3 min", "2 h".
fn lag_text(secs: f64) -> String {
    if secs < 10.0 {
        format!("{secs:.1} s")
    } else if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.0} h", secs / 3600.0)
    }
}

/// One sync run as the charts show it: its log rows (one per model) folded.
#[derive(Debug, PartialEq)]
struct Run {
    started_at: String,
    direction: String,
    trigger: String,
    rows: i64,
    millis: Option<i64>,
    failed: bool,
}

/// Folds log rows (newest first) into runs, oldest first, at most
/// [`CHART_RUNS`]. A run writes one row per model, started together, so
/// neighbours with the same direction and trigger started within a second
/// of each other are one run; runs take turns, so two distinct runs of the
/// same kind that close together are rare and drawn as one. Rows still
/// `RUNNING` are left out (the progress line shows them).
fn runs(entries: &[Json]) -> Vec<Run> {
    let at = |v: &Json| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
    };
    let mut out: Vec<(Run, i64, i64)> = Vec::new(); // run, first start, last end
    for e in entries {
        if e["status"] == "RUNNING" {
            continue;
        }
        let (Some(start), direction, trigger) = (
            at(&e["startedAt"]),
            e["direction"].as_str().unwrap_or(""),
            e["trigger"].as_str().unwrap_or(""),
        ) else {
            continue;
        };
        let end = at(&e["completedAt"]);
        let rows = e["recordsProcessed"].as_i64().unwrap_or(0);
        let failed = e["status"] == "FAILED";
        if let Some((run, first, last)) = out.last_mut()
            && run.direction == direction
            && run.trigger == trigger
            && (start - *first).abs() < 1000
        {
            run.rows += rows;
            run.failed |= failed;
            *first = (*first).min(start);
            if let Some(end) = end {
                *last = (*last).max(end);
            }
            run.millis = Some(*last - *first).filter(|_| *last > 0);
            if start <= *first {
                run.started_at = e["startedAt"].as_str().unwrap_or("").to_string();
            }
            continue;
        }
        if out.len() == CHART_RUNS {
            break;
        }
        out.push((
            Run {
                started_at: e["startedAt"].as_str().unwrap_or("").to_string(),
                direction: direction.to_string(),
                trigger: trigger.to_string(),
                rows,
                millis: end.map(|end| end - start),
                failed,
            },
            start,
            end.unwrap_or(0),
        ));
    }
    out.reverse();
    out.into_iter().map(|(r, _, _)| r).collect()
}

/// Two small bar charts of the recent runs, oldest on the left: rows moved
/// and duration. Each bar says its run exactly on hover (`<title>`); failed
/// runs are drawn in red. Plain SVG from the server: nothing to load.
fn runs_chart_html(h: &mut String, runs: &[Run]) {
    if runs.is_empty() {
        h.push_str(r#"<p class="note">No finished runs yet.</p>"#);
        return;
    }
    let chart = |h: &mut String, id: &str, label: &str, value: &dyn Fn(&Run) -> i64, unit: &str| {
        let max = runs.iter().map(value).max().unwrap_or(0).max(1);
        let (w, ht) = (240.0_f64, 60.0_f64);
        let slot = w / CHART_RUNS as f64;
        let _ = write!(
            h,
            r#"<figure class="chart"><figcaption>{label} <span class="note">(max {max}{unit})</span></figcaption><svg id="{id}" viewBox="0 0 240 60" preserveAspectRatio="none" role="img" aria-label="{label} of the last {n} runs">"#,
            n = runs.len(),
        );
        for (i, r) in runs.iter().enumerate() {
            let v = value(r);
            let bar = (v as f64 / max as f64 * (ht - 2.0)).max(1.0);
            let _ = write!(
                h,
                r#"<rect class="{cls}" x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bar:.1}"><title>{when} {dir} ({trig}): {rows} rows, {dur}{failed}</title></rect>"#,
                cls = if r.failed { "bar bad" } else { "bar" },
                x = i as f64 * slot + 1.0,
                y = ht - bar,
                bw = (slot - 2.0).max(1.0),
                when = escape(&r.started_at),
                dir = escape(&r.direction),
                trig = escape(&r.trigger),
                rows = r.rows,
                dur = r
                    .millis
                    .map_or_else(|| String::from("duration unknown"), |m| format!("{m} ms")),
                failed = if r.failed { ", failed" } else { "" },
            );
        }
        h.push_str("</svg></figure>");
    };
    h.push_str(r#"<div class="charts">"#);
    chart(h, "runs-rows", "Rows per run", &|r| r.rows, " rows");
    chart(
        h,
        "runs-time",
        "Duration per run",
        &|r| r.millis.unwrap_or(0),
        " ms",
    );
    h.push_str("</div>");
}

/// "Showing 50 of 120." under a list cut at [`LIST_LIMIT`].
fn shown_of(list: &[Json], total: &Json) -> String {
    let total = total.as_i64().unwrap_or(0);
    if (list.len() as i64) < total {
        format!(
            r#"<p class="note">Showing the oldest {} of {total}; the API pages through all of them.</p>"#,
            list.len()
        )
    } else {
        String::new()
    }
}

/// A row's values as compact `column: value` text, escaped.
fn values_text(values: &Json) -> String {
    match values.as_object() {
        None => String::from("<em>(deleted)</em>"),
        Some(obj) => obj
            .iter()
            .map(|(k, v)| format!("{}: {}", escape(k), text(v)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn pending_html(h: &mut String, pending: &Json) {
    let list = pending["changes"].as_array().cloned().unwrap_or_default();
    h.push_str(r#"<section aria-labelledby="h-pending"><h2 id="h-pending">Pending changes</h2>"#);
    if list.is_empty() {
        h.push_str("<p>No pending changes.</p></section>\n");
        return;
    }
    h.push_str(
        r#"<div class="scroll"><table id="pending"><thead><tr><th scope="col">Model</th><th scope="col">Key</th><th scope="col">Operation</th><th scope="col">Changed</th><th scope="col">Values</th></tr></thead><tbody>"#,
    );
    for c in &list {
        let _ = write!(
            h,
            r#"<tr><td>{m}</td><td><code>{k}</code></td><td>{op}</td><td>{when}</td><td class="wrap">{v}</td></tr>"#,
            m = text(&c["model"]),
            k = escape(&key_text(&c["key"])),
            op = text(&c["operation"]),
            when = time_html(&c["changedAt"], "—"),
            v = values_text(&c["values"]),
        );
    }
    h.push_str("</tbody></table></div>");
    h.push_str(&shown_of(&list, &pending["total"]));
    h.push_str("</section>\n");
}

/// Conflicts side by side. When both sides have the row, each column that
/// differs gets a local/server radio pair (default: the side that changed it
/// since the base, local when both did) and a "Resolve with chosen fields"
/// button that sends `{merged}`; the keep-local and keep-server buttons
/// resolve the whole row.
fn conflicts_html(h: &mut String, conflicts: &Json) {
    h.push_str(r#"<section aria-labelledby="h-conflicts"><h2 id="h-conflicts">Conflicts</h2>"#);
    let list = conflicts["conflicts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        h.push_str("<p>No conflicts.</p>");
    }
    for c in &list {
        let model = c["model"].as_str().unwrap_or("");
        let key = key_text(&c["key"]);
        let (base, local, server) = (&c["base"], &c["local"], &c["server"]);
        let choose = local.is_object() && server.is_object();
        let mut columns: Vec<String> = Vec::new();
        for side in [base, local, server] {
            for k in side.as_object().into_iter().flat_map(|o| o.keys()) {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
        let _ = write!(
            h,
            r#"<article class="conflict"><h3>{m} <code>{k}</code></h3>
<form class="merge" data-model="{m}" data-key="{k}"><div class="scroll"><table>
<thead><tr><th scope="col">Column</th><th scope="col">Base</th><th scope="col">Local</th><th scope="col">Server</th></tr></thead><tbody>"#,
            m = escape(model),
            k = escape(&key),
        );
        let mut choices = 0;
        for col in &columns {
            let (b, l, s) = (&base[col], &local[col], &server[col]);
            let differs = l != s;
            let (lt, st) = (side_text(local, l), side_text(server, s));
            let (lt, st) = if choose && differs {
                choices += 1;
                // Default: the side that changed the column since the base.
                let pick_server = base.is_object() && l == b;
                let name = escape(&format!("pick:{model}:{key}:{col}"));
                let radio = |side: &str, checked: bool, shown: &str| {
                    format!(
                        r#"<label class="pick"><input type="radio" name="{name}" value="{side}" data-col="{c}"{chk}><span class="sr">Use the {side} {c}: </span>{shown}</label>"#,
                        c = escape(col),
                        chk = if checked { " checked" } else { "" },
                    )
                };
                (
                    radio("local", !pick_server, &lt),
                    radio("server", pick_server, &st),
                )
            } else {
                (lt, st)
            };
            let _ = write!(
                h,
                r#"<tr{cls}><th scope="row">{col}</th><td data-label="Base">{b}</td><td data-label="Local">{lt}</td><td data-label="Server">{st}</td></tr>"#,
                cls = if differs { r#" class="diff""# } else { "" },
                col = escape(col),
                b = side_text(base, b),
            );
        }
        h.push_str("</tbody></table></div>");
        if let Some(problem) = c["localProblem"].as_str() {
            // Shown as "(deleted)" above otherwise: say why instead.
            let _ = write!(
                h,
                r#"<p class="note">The local row cannot be read: {}. Keep the server's row, or fix the value in the replica.</p>"#,
                escape(problem)
            );
        }
        h.push_str(r#"<div class="row">"#);
        if choices > 0 {
            h.push_str(r#"<button type="submit">Resolve with chosen fields</button>"#);
        }
        let _ = write!(
            h,
            r#"
<button type="button" data-act="resolve" data-keep="local" data-model="{m}" data-key="{k}">Keep local</button>
<button type="button" data-act="resolve" data-keep="server" data-model="{m}" data-key="{k}">Keep server</button>
</div></form></article>
"#,
            m = escape(model),
            k = escape(&key),
        );
    }
    h.push_str("</section>\n");
}

fn failed_html(h: &mut String, failed: &Json) {
    let list = failed["failed"].as_array().cloned().unwrap_or_default();
    h.push_str(r#"<section aria-labelledby="h-failed"><h2 id="h-failed">Failed rows</h2>"#);
    if list.is_empty() {
        h.push_str("<p>No failed rows.</p></section>\n");
        return;
    }
    h.push_str(
        r#"<p class="note">The server refused these changes. Retry after fixing the cause, or discard the local change to take the server's row back.</p>
<div class="scroll"><table><thead><tr><th scope="col">Model</th><th scope="col">Key</th><th scope="col">Operation</th><th scope="col">Server error</th><th scope="col"><span class="sr">Actions</span></th></tr></thead><tbody>"#,
    );
    for f in &list {
        let key = key_text(&f["key"]);
        let _ = write!(
            h,
            r#"<tr><td>{m}</td><td><code>{k}</code></td><td>{op}</td><td class="wrap">{e}</td><td><div class="row"><button type="button" data-act="retry" data-model="{m}" data-key="{k}">Retry</button><button type="button" data-act="discard" data-model="{m}" data-key="{k}" aria-label="Discard the local change to {m} {k}">Discard</button></div></td></tr>"#,
            m = text(&f["model"]),
            k = escape(&key),
            op = text(&f["operation"]),
            e = text(&f["error"]),
        );
    }
    h.push_str("</tbody></table></div>");
    h.push_str(&shown_of(&list, &failed["total"]));
    h.push_str("</section>\n");
}

fn yes_no(v: &Json) -> &'static str {
    match v.as_bool() {
        Some(true) => "connected",
        Some(false) => "not connected",
        None => "unknown",
    }
}

/// A cell of one side of a conflict: "(no row)" when that side has none.
fn side_text(side: &Json, v: &Json) -> String {
    if side.is_null() {
        String::from("<em>(no row)</em>")
    } else {
        match v {
            Json::Null => String::from("<em>null</em>"),
            other => text(other),
        }
    }
}

/// A string as a JavaScript literal that is safe inside `<script>`.
fn js_string(s: &str) -> String {
    Json::String(s.to_string())
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn full_page(live: &str, token: Option<&str>) -> String {
    let token = token.map_or_else(|| String::from("null"), js_string);
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Database Sync Manager</title>
<style>{STYLE}</style></head>
<body><header><h1>Database Sync Manager</h1></header>
<div id="result" role="status" aria-live="polite"></div>
<p id="progress" class="progress" aria-live="polite" hidden></p>
<section id="verify" aria-labelledby="h-verify" hidden><h2 id="h-verify">Verification</h2><div id="verify-body"></div></section>
<main id="live">{live}</main>
<script>const TOKEN = {token};
{SCRIPT}</script>
</body></html>
"#
    )
}

#[cfg(test)]
mod tests;
