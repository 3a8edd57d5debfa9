//! Unit tests of the page's helpers: escaping, the script's string
//! literals, the lag text and the runs gathered from the sync log.

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
