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

const STYLE: &str = r#"
*{box-sizing:border-box}
html{scroll-padding-top:4rem}
body{font-family:system-ui,sans-serif;margin:0;padding:0 1rem 2rem;line-height:1.4;color:#111;background:#fafafa}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:1.5rem}h3{font-size:1rem}
section,article{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;margin:.75rem 0}
.status{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.25rem 1rem;margin:0}
.status dt{font-weight:600}.status dd{margin:0;overflow-wrap:anywhere}
.badge{padding:.1rem .5rem;border-radius:1rem;color:#fff}.ok{background:#1a7f37}.bad{background:#b42318}
.row{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.5rem 0}
.scroll{position:relative;overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;min-width:100%}
th,td{border-bottom:1px solid #eee;padding:.3rem .5rem;text-align:left;vertical-align:top;white-space:nowrap}
td.num{text-align:right}tr.diff td{background:#fff4e5}
button,select{font:inherit;padding:.4rem .8rem;border:1px solid #555;border-radius:4px;background:#fff;min-height:2.5rem}
button:hover{background:#eef}
button:focus-visible,select:focus-visible{outline:3px solid #1f6feb;outline-offset:2px}
button[disabled]{opacity:.6}
#result{position:sticky;top:0;background:#fafafa;min-height:1.5rem;padding:.25rem 0;word-break:break-word}
#result.err{color:#b42318}
.sr{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0}
td.wrap{white-space:normal;overflow-wrap:anywhere;min-width:10rem}
.conflict td{white-space:normal;overflow-wrap:break-word;min-width:6rem}
.pick{display:flex;gap:.4rem;align-items:flex-start;cursor:pointer}
.pick input{width:1.2rem;height:1.2rem;margin:.1rem 0 0;flex:none}
input[type=radio]:focus-visible{outline:3px solid #1f6feb;outline-offset:2px}
.note{color:#444;font-size:.9rem}
.charts{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem}
.chart{margin:.25rem 0;flex:1 1 14rem;max-width:28rem}
.chart svg{width:100%;height:4rem;background:#f5f7fa;border-radius:4px;display:block}
.bar{fill:#1f6feb}.bar.bad{fill:#b42318}
.spark{width:12rem;max-width:100%;height:1.6rem;vertical-align:middle;margin-left:.5rem;background:#f5f7fa;border-radius:4px}
.spark polyline{fill:none;stroke:#1f6feb;stroke-width:1.5}
.progress{background:#e7f0ff;border:1px solid #9bbcf5;border-radius:6px;padding:.4rem .75rem;margin:.5rem 0}
@media (max-width:600px){body{padding:0 .5rem}section,article{padding:.5rem}
.conflict thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
.conflict table,.conflict tbody,.conflict tr,.conflict th,.conflict td{display:block;min-width:0}
.conflict tr{border-bottom:1px solid #ddd;padding:.3rem 0}
.conflict th,.conflict td{border:0;padding:.15rem .25rem}
.conflict td{display:flex;gap:.5rem;align-items:flex-start}
.conflict td::before{content:attr(data-label);font-weight:600;width:4.5rem;flex:none}}
"#;

const SCRIPT: &str = r#"
(function () {
  const headers = TOKEN ? { Authorization: 'Bearer ' + TOKEN } : {};
  const result = document.getElementById('result');
  const progress = document.getElementById('progress');
  const live = document.getElementById('live');
  let last = '';
  function show(msg, err) { result.textContent = msg; result.className = err ? 'err' : ''; }
  async function api(method, path, body) {
    const h = Object.assign({}, headers);
    // Every write says JSON, bodyless ones too: the node refuses others.
    const write = method !== 'GET';
    if (write) h['Content-Type'] = 'application/json';
    const r = await fetch(path, { method: method, headers: h, body: write ? JSON.stringify(body === undefined ? {} : body) : undefined });
    const j = await r.json().catch(function () { return null; });
    if (!r.ok) throw new Error((j && j.error && j.error.message) || ('HTTP ' + r.status));
    return j;
  }
  function path(d, kind, action) { return '/api/database/' + kind + '/' + encodeURIComponent(d.model || '') + '/' + encodeURIComponent(d.key || '') + (action ? '/' + action : ''); }
  // Swaps in a fresh live part, keeping radio choices and the focused
  // control. Calls while one runs coalesce into one more afterwards.
  let reloading = null, again = false;
  function reload() {
    if (reloading) { again = true; return reloading; }
    reloading = swap().finally(function () {
      reloading = null;
      if (again) { again = false; return reload(); }
    });
    return reloading;
  }
  async function swap() {
    const url = location.pathname + '?fragment=1' + (TOKEN ? '&token=' + encodeURIComponent(TOKEN) : '');
    const r = await fetch(url, { headers: headers });
    if (!r.ok) return;
    const html = await r.text();
    const picks = {};
    live.querySelectorAll('input[type=radio]:checked').forEach(function (i) { picks[i.name] = i.value; });
    // A choice made in a drop-down but not applied yet survives the swap too.
    const chosen = {};
    live.querySelectorAll('select[id]').forEach(function (s) {
      const d = Array.from(s.options).find(function (o) { return o.defaultSelected; });
      if (d && d.value !== s.value) chosen[s.id] = s.value;
    });
    const a = document.activeElement;
    const same = function (el) {
      if (!a || !live.contains(a) || el.tagName !== a.tagName || el.type !== a.type) return false;
      if (a.type === 'radio') return el.name === a.name && el.value === a.value;
      if (a.type === 'submit') { const f = a.form, g = el.form; return !!f && !!g && f.dataset.model === g.dataset.model && f.dataset.key === g.dataset.key; }
      const x = a.dataset, y = el.dataset;
      return ['act', 'model', 'key', 'keep', 'direction'].every(function (k) { return x[k] === y[k]; }) && (a.id || '') === (el.id || '');
    };
    const hadFocus = a && live.contains(a);
    live.innerHTML = html;
    live.querySelectorAll('input[type=radio]').forEach(function (i) { if (picks[i.name] !== undefined) i.checked = picks[i.name] === i.value; });
    Object.keys(chosen).forEach(function (id) { const s = document.getElementById(id); if (s) s.value = chosen[id]; });
    if (hadFocus) { const el = Array.from(live.querySelectorAll('button, input, select')).find(same); if (el) el.focus(); }
    relTimes();
    drawLag();
  }
  // Times read as "3 min ago" (exact on hover), against the node's clock:
  // `skew` is the node's time minus this browser's, from the last status.
  let skew = 0;
  function ago(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return null;
    const s = Math.round((Date.now() + skew - t) / 1000), a = Math.abs(s);
    if (a < 5) return 'just now';
    const v = a < 60 ? a + ' s' : a < 3600 ? Math.round(a / 60) + ' min' : a < 86400 ? Math.round(a / 3600) + ' h' : Math.round(a / 86400) + ' d';
    return s < 0 ? 'in ' + v : v + ' ago';
  }
  function relTimes() {
    document.querySelectorAll('time[datetime]').forEach(function (el) {
      const r = ago(el.getAttribute('datetime'));
      if (r) el.textContent = r;
    });
  }
  // Replication lag as this page samples it (the node keeps no history):
  // the status's `replicationLagSeconds` every few seconds, the last ten
  // minutes drawn as a line.
  const lags = [];
  function lagWords(x) { return x < 10 ? x.toFixed(1) + ' s' : x < 120 ? Math.round(x) + ' s' : x < 7200 ? Math.round(x / 60) + ' min' : Math.round(x / 3600) + ' h'; }
  function sampleLag(s) {
    const x = s && s.replicationLagSeconds;
    if (typeof x !== 'number') return;
    const now = Date.now();
    lags.push([now, x]);
    while (lags.length && lags[0][0] < now - 600000) lags.shift();
    const el = document.getElementById('st-lag');
    if (el) { el.textContent = lagWords(x); el.dataset.lag = String(x); }
    drawLag();
  }
  function drawLag() {
    const svg = document.getElementById('lag-chart');
    if (!svg || lags.length < 2) return;
    const t0 = lags[0][0], span = Math.max(lags[lags.length - 1][0] - t0, 1);
    const top = Math.max.apply(null, lags.map(function (p) { return p[1]; }).concat([1]));
    const pts = lags.map(function (p) { return ((p[0] - t0) / span * 240).toFixed(1) + ',' + (38 - p[1] / top * 36).toFixed(1); }).join(' ');
    let line = svg.querySelector('polyline');
    if (!line) { line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline'); svg.appendChild(line); }
    line.setAttribute('points', pts);
    svg.querySelector('title').textContent = 'Replication lag over the last ' + Math.max(1, Math.round(span / 60000)) + ' min: now ' + lagWords(lags[lags.length - 1][1]) + ', at most ' + lagWords(top);
  }
  // Runs known to be over: a progress event still on its way about one is
  // stale. Runs take turns, so one that started before the last known end
  // (both times from the node's clock) is over too, even if this page never
  // showed it.
  const ended = new Set();
  let shown = null, lastEnd = NaN;
  function stale(p) {
    return ended.has(p.startedAt) || Date.parse(p.startedAt) <= lastEnd;
  }
  function showProgress(s) {
    const p = s && s.syncing && !stale(s.syncing) ? s.syncing : null;
    shown = p ? p.startedAt : shown;
    if (!p) { progress.hidden = true; progress.textContent = ''; return; }
    progress.hidden = false;
    progress.textContent = 'Sync running: ' + p.direction + ' (' + p.trigger + '), ' + p.phase + (p.table ? ' ' + p.table : '') + ', ' + p.rows + ' rows so far';
  }
  function summary(rep) {
    if (!rep || typeof rep !== 'object') return 'done';
    let processed = 0, failed = 0, conflicts = 0;
    for (const m in (rep.results || {})) { const r = rep.results[m]; processed += r.recordsProcessed || 0; failed += r.recordsFailed || 0; conflicts += r.conflicts || 0; }
    const errs = Object.keys(rep.errors || {});
    return (rep.success ? 'success' : 'failed') + ': ' + processed + ' rows processed, ' + failed + ' failed, ' + conflicts + ' conflicts' + (errs.length ? ' (' + rep.errors[errs[0]] + ')' : '');
  }
  // While a sync started here runs, the status is polled fast for progress.
  async function syncing(label, body) {
    show('Syncing ' + label + '…');
    const timer = setInterval(function () { if (!streaming) api('GET', '/api/database/status').then(showProgress, function () {}); }, 300);
    try {
      const rep = await api('POST', '/api/database/status', body);
      const end = Date.parse(rep && rep.timestamp);
      if (!Number.isNaN(end) && !(end <= lastEnd)) lastEnd = end;
      show('Sync ' + label + ' ' + summary(rep), rep && rep.success === false);
    }
    finally { clearInterval(timer); if (shown) ended.add(shown); showProgress(null); }
  }
  // The verification's result, built with DOM nodes and textContent only
  // (row values are data, never markup). It stays until the next one.
  function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; }
  function showVerify(rep) {
    const box = document.getElementById('verify'), body = document.getElementById('verify-body');
    body.replaceChildren();
    body.appendChild(el('p', rep.consistent
      ? 'The replica matches the server (' + rep.pending + ' rows with local changes not yet pushed).'
      : rep.differences + ' rows differ from the server (' + rep.pending + ' rows with local changes listed apart).', rep.consistent ? '' : 'err'));
    (rep.models || []).forEach(function (m) {
      if (!m.differences.length && !m.pending.length) return;
      const art = el('article'); art.dataset.model = m.model;
      art.appendChild(el('h3', m.model + ': ' + m.localRows + ' local rows, ' + m.serverRows + ' server rows, ' + m.differences.length + ' differing'));
      if (m.differences.length) {
        const wrap = el('div', undefined, 'scroll'), t = el('table'), head = el('tr');
        ['Key', 'Columns', 'Local', 'Server'].forEach(function (x) { const th = el('th', x); th.scope = 'col'; head.appendChild(th); });
        t.appendChild(el('thead')).appendChild(head);
        const tb = t.appendChild(el('tbody'));
        m.differences.forEach(function (d) {
          const tr = el('tr'); tr.className = 'difference';
          tr.appendChild(el('td', JSON.stringify(d.key)));
          tr.appendChild(el('td', d.columns.join(', ')));
          tr.appendChild(el('td', d.local === null ? '(missing)' : JSON.stringify(d.local), 'wrap'));
          tr.appendChild(el('td', d.server === null ? '(missing)' : JSON.stringify(d.server), 'wrap'));
          tb.appendChild(tr);
        });
        wrap.appendChild(t); art.appendChild(wrap);
        const b = el('button', 'Resync ' + m.model); b.type = 'button'; b.dataset.act = 'resync'; b.dataset.model = m.model;
        art.appendChild(b);
      }
      if (m.pending.length) art.appendChild(el('p', 'Local changes not yet pushed: ' + m.pending.map(function (p) { return JSON.stringify(p.key) + ' ' + p.status; }).join('; ')));
      body.appendChild(art);
    });
    box.hidden = false;
  }
  async function act(btn) {
    const d = btn.dataset;
    if (d.act === 'discard' && !confirm('Discard the local change to ' + d.model + ' ' + d.key + ' and take the server\'s row?')) return;
    if (d.act === 'resolve' && d.keep === 'server' && !confirm('Keep the server\'s row for ' + d.model + ' ' + d.key + '? Your local change to it will be discarded.')) return;
    if (d.act === 'resync' && !confirm('Copy ' + d.model + ' again from the server? Rows with local changes are kept.')) return;
    btn.disabled = true;
    try {
      if (d.act === 'sync') await syncing(d.direction, { direction: d.direction });
      else if (d.act === 'sync-model') await syncing(d.model, { direction: 'BIDIRECTIONAL', models: [d.model] });
      else if (d.act === 'resolve') { await api('POST', path(d, 'conflicts', 'resolve'), { keep: d.keep }); show('Resolved ' + d.model + ' ' + d.key + ' (kept ' + d.keep + ')'); }
      else if (d.act === 'verify') { show('Verifying…'); const rep = await api('GET', '/api/database/verify'); showVerify(rep); show(rep.consistent ? 'Verified: the replica matches the server' : 'Verified: ' + rep.differences + ' rows differ', !rep.consistent); }
      else if (d.act === 'resync') { show('Resyncing ' + d.model + '…'); const rep = await api('POST', '/api/database/resync', { model: d.model }); document.getElementById('verify').hidden = true; show('Resync ' + d.model + ' ' + summary(rep), rep && rep.success === false); }
      else if (d.act === 'retry') { await api('POST', path(d, 'failed', 'retry')); show('Queued ' + d.model + ' ' + d.key + ' again'); }
      else if (d.act === 'discard') { await api('POST', path(d, 'failed', 'discard')); show('Discarded the local change to ' + d.model + ' ' + d.key); }
    } catch (e) { show(String(e.message || e), true); }
    btn.disabled = false;
    await reload();
  }
  // Field-by-field merge: the server's row with the columns picked "local" taken from the local row.
  async function merge(form) {
    const d = form.dataset;
    const c = await api('GET', path(d, 'conflicts'));
    const merged = Object.assign({}, c.server);
    form.querySelectorAll('input[type=radio]:checked').forEach(function (i) { if (i.value === 'local') merged[i.dataset.col] = c.local[i.dataset.col]; });
    await api('POST', path(d, 'conflicts', 'resolve'), { merged: merged });
    show('Resolved ' + d.model + ' ' + d.key + ' with the chosen fields');
  }
  document.addEventListener('click', function (ev) {
    const btn = ev.target.closest('button[data-act]');
    if (btn) { ev.preventDefault(); act(btn); }
  });
  document.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    const form = ev.target;
    if (form.id === 'mode-form') {
      const mode = form.querySelector('select').value;
      try { const r = await api('PUT', '/api/database/mode', { mode: mode }); show('Mode: ' + r.mode + (r.usingLocalDatabase ? ' (local database)' : ' (remote database)')); }
      catch (e) { show(String(e.message || e), true); }
    } else if (form.classList.contains('merge')) {
      const b = form.querySelector('button[type=submit]');
      if (b) b.disabled = true;
      try { await merge(form); } catch (e) { show(String(e.message || e), true); }
      if (b) b.disabled = false;
    }
    await reload();
  });
  async function onStatus(s) {
    const t = Date.parse(s && s.timestamp);
    if (!Number.isNaN(t)) skew = t - Date.now();
    sampleLag(s);
    showProgress(s);
    const sig = JSON.stringify([s.isOnline, s.mode, s.usingLocalDatabase, s.pendingChanges, s.conflicts, s.failed, s.lastSyncAt, s.lastAttempt]);
    if (sig !== last) {
      const first = last === '';
      last = sig;
      const inForm = document.activeElement && document.activeElement.tagName === 'SELECT';
      if (!first && !inForm) await reload();
    }
  }
  async function poll() {
    if (streaming) return;
    try { await onStatus(await api('GET', '/api/database/status')); }
    catch (e) { /* offline or server down: keep the last view */ }
  }
  // Live events (GET /api/database/events, Server-Sent Events read over
  // fetch so the bearer token goes along): status changes, the progress of
  // any run, and data changes. While the stream is open the polling below
  // stands by; it takes over when the stream fails, which retries in 5 s.
  let streaming = false;
  async function stream() {
    try {
      const r = await fetch('/api/database/events', { headers: Object.assign({ Accept: 'text/event-stream' }, headers) });
      if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      streaming = true;
      for (;;) {
        const c = await reader.read();
        if (c.done) break;
        buf += dec.decode(c.value, { stream: true }).replace(/\r\n?/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          let name = 'message', data = '';
          block.split('\n').forEach(function (l) {
            if (l.startsWith('event:')) name = l.slice(6).trim();
            else if (l.startsWith('data:')) data += l.slice(5).trim();
          });
          let d = null;
          try { d = JSON.parse(data); } catch (e) { continue; }
          // Everything the page shows follows the status (counts, last
          // sync), so `changed` (data) events need nothing here. Not
          // awaited: the next events are read while the page reloads.
          if (name === 'status') onStatus(d);
          else if (name === 'progress') showProgress({ syncing: d });
        }
      }
    } catch (e) { /* fall back to polling */ }
    streaming = false;
    setTimeout(stream, 5000);
  }
  stream();
  poll();
  setInterval(poll, 3000);
  relTimes();
  setInterval(relTimes, 15000);
  // The lag moves without any status change: sample it while streaming too.
  setInterval(function () { if (streaming) api('GET', '/api/database/status').then(sampleLag, function () {}); }, 5000);
})();
"#;

#[cfg(test)]
mod tests {
    use super::{Run, escape, js_string, lag_text, runs};
    use serde_json::json;

    fn entry(
        id: i64,
        model: &str,
        trigger: &str,
        start: &str,
        end: Option<&str>,
        rows: i64,
        status: &str,
    ) -> serde_json::Value {
        json!({"id": id, "model": model, "direction": "BIDIRECTIONAL", "trigger": trigger,
               "status": status, "startedAt": start, "completedAt": end, "recordsProcessed": rows})
    }

    #[test]
    fn log_rows_fold_into_runs_oldest_first() {
        // Newest first, as the API lists them: a manual run of two models
        // (started a few ms apart), before it an interval run, and a run
        // still going (left to the progress line).
        let entries = [
            entry(
                6,
                "Post",
                "manual",
                "2026-12-05T10:00:10.000Z",
                None,
                0,
                "RUNNING",
            ),
            entry(
                5,
                "Post",
                "manual",
                "2026-12-05T10:00:00.004Z",
                Some("2026-12-05T10:00:00.250Z"),
                7,
                "FAILED",
            ),
            entry(
                4,
                "User",
                "manual",
                "2026-12-05T10:00:00.001Z",
                Some("2026-12-05T10:00:00.120Z"),
                3,
                "SUCCESS",
            ),
            entry(
                3,
                "Post",
                "interval",
                "2026-12-05T09:59:00.002Z",
                Some("2026-12-05T09:59:00.050Z"),
                0,
                "SUCCESS",
            ),
            entry(
                2,
                "User",
                "interval",
                "2026-12-05T09:59:00.000Z",
                Some("2026-12-05T09:59:00.040Z"),
                1,
                "SUCCESS",
            ),
        ];
        let got = runs(&entries);
        assert_eq!(
            got,
            vec![
                Run {
                    started_at: "2026-12-05T09:59:00.000Z".into(),
                    direction: "BIDIRECTIONAL".into(),
                    trigger: "interval".into(),
                    rows: 1,
                    millis: Some(50),
                    failed: false,
                },
                Run {
                    started_at: "2026-12-05T10:00:00.001Z".into(),
                    direction: "BIDIRECTIONAL".into(),
                    trigger: "manual".into(),
                    rows: 10,
                    millis: Some(249),
                    failed: true,
                },
            ]
        );
    }

    #[test]
    fn lag_in_words() {
        assert_eq!(lag_text(0.42), "0.4 s");
        assert_eq!(lag_text(42.4), "42 s");
        assert_eq!(lag_text(600.0), "10 min");
        assert_eq!(lag_text(3.0 * 3600.0), "3 h");
    }

    #[test]
    fn escapes() {
        assert_eq!(
            escape(r#"<script>"a"&'b'</script>"#),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(js_string("</script>"), r#""\u003c/script\u003e""#);
    }
}
