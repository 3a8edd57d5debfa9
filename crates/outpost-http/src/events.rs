//! `GET /api/database/events`: the node's live events as Server-Sent Events.
//!
//! One stream per client, so a page or a hook updates when something
//! happens instead of polling. Events (the SSE `event:` name, JSON `data:`):
//!
//! * `status` — the body of `GET /api/database/status`, sent once on
//!   connect and again whenever the node's status changes (online state,
//!   mode, counts, the last sync).
//! * `progress` — the run under way (`{direction, trigger, phase, rows,
//!   table, startedAt}`, the status's `syncing`), while it moves; `null`
//!   once it has ended.
//! * `sync` — a run finished: `{entries}`, its `SyncLog` rows (one per
//!   model, with the counts and the error of each).
//! * `changed` — `{models, source}`: which models' data may have changed,
//!   because of a write through this node's model service (`source:
//!   "write"`) or a finished run that moved rows (`source: "sync"`). A
//!   client refetches what it shows of those models.
//!
//! Why Server-Sent Events and not a WebSocket: the traffic is one-way, SSE
//! is plain HTTP (the bearer check, CORS and proxies apply unchanged) and
//! browsers reconnect by themselves. The stream polls the progress every
//! [`PROGRESS_EVERY`] (a mutex read in the engine), and a comment line every
//! 15 s keeps idle connections open through proxies.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use outpost_engine::{Operation, Outpost, Status};
use serde_json::{Value as Json, json};
use tokio::sync::{broadcast, watch};

use crate::AppState;

/// How often a stream looks at the progress of the run under way.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// The node-wide channel of data changes made through the HTTP API
/// (`changed` events with `source: "write"`). Created once per router.
#[derive(Clone)]
pub(crate) struct Hub {
    tx: broadcast::Sender<Json>,
}

impl Hub {
    pub(crate) fn new() -> Hub {
        // Slow readers that fall this far behind get one catch-all event.
        let (tx, _) = broadcast::channel(256);
        Hub { tx }
    }
}

/// Middleware: after a write through `/api/models/{model}/{operation}`
/// answered 2xx, tells every stream that the model changed.
pub(crate) async fn note_writes(
    Extension(hub): Extension<Hub>,
    request: Request,
    next: Next,
) -> Response {
    let written = written_model(request.method(), request.uri().path());
    let response = next.run(request).await;
    if let Some(model) = written
        && response.status().is_success()
    {
        // No receiver is not an error: nobody is listening.
        let _ = hub.tx.send(json!({ "models": [model], "source": "write" }));
    }
    response
}

/// The model a request writes, when it is a write of the model service.
fn written_model(method: &axum::http::Method, path: &str) -> Option<String> {
    if method != axum::http::Method::POST {
        return None;
    }
    let rest = path.strip_prefix("/api/models/")?;
    let (model, operation) = rest.split_once('/')?;
    let operation: Operation = operation.parse().ok()?;
    operation.is_write().then(|| model.to_string())
}

/// What a stream keeps between two events.
struct Listener {
    state: AppState,
    status: watch::Receiver<Status>,
    writes: broadcast::Receiver<Json>,
    progress: Option<outpost_engine::SyncProgress>,
    last_log_id: i64,
    queue: VecDeque<Event>,
    ticker: tokio::time::Interval,
}

fn event(name: &str, data: &Json) -> Event {
    Event::default().event(name).data(data.to_string())
}

async fn status_json(state: &AppState) -> Json {
    match crate::handlers::status(State(state.clone())).await {
        Ok(axum::Json(j)) => j,
        Err(e) => json!({ "error": { "code": e.code, "message": e.message } }),
    }
}

fn all_models(node: &Outpost) -> Vec<String> {
    node.engine()
        .schema()
        .tables
        .iter()
        .map(|t| node.model_name(&t.name))
        .collect()
}

impl Listener {
    /// The newest finished `SyncLog` id now (0 when there is none): a run
    /// under way when the client connects is reported when it ends.
    async fn newest_log_id(node: &Outpost) -> i64 {
        node.engine()
            .log(None, 200, 0)
            .await
            .ok()
            .and_then(|l| {
                l.iter()
                    .filter(|e| e.status != "RUNNING")
                    .map(|e| e.id)
                    .max()
            })
            .unwrap_or(0)
    }

    /// Queues `sync` and `changed` events for runs logged since the last look.
    async fn new_runs(&mut self) {
        let Ok(entries) = self.state.node.engine().log(None, 200, 0).await else {
            return;
        };
        let fresh: Vec<_> = entries
            .into_iter()
            .filter(|e| e.id > self.last_log_id && e.status != "RUNNING")
            .collect();
        let Some(newest) = fresh.iter().map(|e| e.id).max() else {
            return;
        };
        self.last_log_id = newest;
        let moved: Vec<String> = fresh
            .iter()
            .filter(|e| e.records_succeeded > 0 || e.conflicts > 0 || e.records_failed > 0)
            // The application's model names (a Prisma `@@map`ped table).
            .map(|e| self.state.node.model_name(&e.model))
            .collect();
        let mut entries: Vec<_> = fresh;
        entries.reverse();
        self.queue
            .push_back(event("sync", &json!({ "entries": entries })));
        if !moved.is_empty() {
            self.queue.push_back(event(
                "changed",
                &json!({ "models": moved, "source": "sync" }),
            ));
        }
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            tokio::select! {
                changed = self.status.changed() => {
                    if changed.is_err() {
                        // The node shut down: end the stream.
                        return None;
                    }
                    self.status.borrow_and_update();
                    let status = status_json(&self.state).await;
                    self.queue.push_back(event("status", &status));
                    self.new_runs().await;
                }
                write = self.writes.recv() => match write {
                    Ok(data) => self.queue.push_back(event("changed", &data)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let models = all_models(&self.state.node);
                        self.queue.push_back(event("changed", &json!({ "models": models, "source": "write" })));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.ticker.tick() => {
                    let now = self.state.node.engine().progress();
                    if now != self.progress {
                        let ended = now.is_none();
                        self.queue.push_back(event("progress", &json!(now)));
                        self.progress = now;
                        if ended {
                            // The run's log rows are written by now.
                            self.new_runs().await;
                        }
                    }
                }
            }
        }
    }
}

/// The handler: a stream that starts with the current `status` (and
/// `progress`, when a run is under way).
pub(crate) async fn handler(
    State(state): State<AppState>,
    Extension(hub): Extension<Hub>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut status = state.node.subscribe();
    status.borrow_and_update();
    let mut queue = VecDeque::new();
    queue.push_back(event("status", &status_json(&state).await));
    let progress = state.node.engine().progress();
    if progress.is_some() {
        queue.push_back(event("progress", &json!(progress)));
    }
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let listener = Listener {
        last_log_id: Listener::newest_log_id(&state.node).await,
        writes: hub.tx.subscribe(),
        state,
        status,
        progress,
        queue,
        ticker,
    };
    let stream = futures_util::stream::unfold(listener, |mut l| async move {
        l.next_event().await.map(|e| (Ok(e), l))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::written_model;
    use axum::http::Method;

    #[test]
    fn only_model_writes_count() {
        assert_eq!(
            written_model(&Method::POST, "/api/models/Post/create").as_deref(),
            Some("Post")
        );
        assert_eq!(
            written_model(&Method::POST, "/api/models/Post/deleteMany").as_deref(),
            Some("Post")
        );
        assert_eq!(
            written_model(&Method::POST, "/api/models/Post/findMany"),
            None
        );
        assert_eq!(written_model(&Method::POST, "/api/models/Post/nope"), None);
        assert_eq!(written_model(&Method::GET, "/api/models/Post/create"), None);
        assert_eq!(written_model(&Method::POST, "/api/database/status"), None);
    }
}
