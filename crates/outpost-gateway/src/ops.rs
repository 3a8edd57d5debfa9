//! Operations: the gateway's `/metrics` (Prometheus text), rate limits per
//! token principal, and one structured log line per request carrying the
//! principal.
//!
//! * [`Metrics`]: one `prometheus-client` registry per gateway (not a
//!   process-wide recorder: tests run several gateways in one process, and
//!   a library should not install globals). Counters are updated where the
//!   work happens (requests and bytes in [`track`], rows in the routes);
//!   pool gauges and the oldest node's age are read when scraped.
//! * [`Limiter`]: `governor`'s keyed GCRA, one bucket per principal
//!   (`sub`), checked right after the token verified; a refused request is
//!   429 with `Retry-After` and the gateway's error body.
//! * [`track`]: the middleware that counts and logs every request. The
//!   principal reaches it through a [`PrincipalSlot`] the token check fills
//!   (middleware runs before the extractor that knows it). Neither the
//!   token nor any header is logged, only the route's pattern (no query
//!   string, no table name from the path) and the principal.

use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt as _;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::Instrument as _;

use crate::Gateway;
use crate::error::GatewayError;

/// Default burst of the rate limit: a sync is 6 to 8 requests in quick
/// succession (probe, claim, push, pull, cursor, …) and a bootstrap one
/// more per table, so a smaller burst would slow every sync, not only
/// abusive ones.
pub const DEFAULT_BURST: u32 = 20;

/// `OUTPOST_GATEWAY_RATE` and `OUTPOST_GATEWAY_BURST`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second per principal.
    pub per_second: f64,
    /// Requests a principal may make at once after being idle.
    pub burst: u32,
}

impl RateLimit {
    /// The limit from the variables' values (`None`: no limit).
    pub fn parse(rate: Option<&str>, burst: Option<&str>) -> Result<Option<RateLimit>, String> {
        let Some(rate) = rate else {
            if burst.is_some() {
                return Err(
                    "OUTPOST_GATEWAY_BURST is set without OUTPOST_GATEWAY_RATE: set the rate too"
                        .into(),
                );
            }
            return Ok(None);
        };
        let per_second = rate
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r >= 0.001 && *r <= 1_000_000.0)
            .ok_or_else(|| {
                format!(
                    "OUTPOST_GATEWAY_RATE={rate:?} is invalid: expected requests per second per principal (0.001 to 1000000, e.g. 5 or 0.5)"
                )
            })?;
        let burst = match burst {
            Some(b) => b
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|b| *b >= 1)
                .ok_or_else(|| {
                    format!("OUTPOST_GATEWAY_BURST={b:?} is invalid: expected a whole number of requests, 1 or more")
                })?,
            None => DEFAULT_BURST,
        };
        Ok(Some(RateLimit { per_second, burst }))
    }
}

/// The per-principal limiter.
pub struct Limiter {
    limit: RateLimit,
    buckets: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    /// Requests let through per principal since the last exchange with
    /// the other gateways (`crate::share`).
    used: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Limiter {
    /// A limiter for `limit`.
    pub fn new(limit: RateLimit) -> Limiter {
        let period = Duration::from_secs_f64(1.0 / limit.per_second);
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        // `with_period` refuses only a zero period, which the parse's upper
        // bound rules out; fall back to the bound itself all the same.
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Limiter {
            limit,
            buckets: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            used: Default::default(),
        }
    }

    /// Takes one request from `principal`'s bucket, or says how long to
    /// wait.
    pub fn check(&self, principal: &str) -> Result<(), GatewayError> {
        // The keyed store takes `&String`: one small allocation per
        // request, nothing next to the request's database work.
        let key = principal.to_string();
        match self.buckets.check_key(&key) {
            Ok(()) => {
                if let Ok(mut used) = self.used.lock() {
                    *used.entry(key).or_default() += 1;
                }
                Ok(())
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(GatewayError::RateLimited {
                    retry_after: wait,
                    per_second: self.limit.per_second,
                    burst: self.limit.burst,
                })
            }
        }
    }

    /// The requests let through per principal since the last call.
    pub(crate) fn drain_used(&self) -> std::collections::HashMap<String, u64> {
        self.used
            .lock()
            .map(|mut u| std::mem::take(&mut *u))
            .unwrap_or_default()
    }

    /// Puts back counts [`Limiter::drain_used`] took that could not be
    /// shared (the database was out of reach): they go with the next try.
    pub(crate) fn restore_used(&self, counts: std::collections::HashMap<String, u64>) {
        if let Ok(mut used) = self.used.lock() {
            for (k, n) in counts {
                *used.entry(k).or_default() += n;
            }
        }
    }

    /// Takes up to `n` requests out of `principal`'s bucket without
    /// serving them: the requests other gateways let through for it. A
    /// bucket holds no debt, so at most what it has is taken.
    pub(crate) fn take(&self, principal: &str, n: u64) {
        let key = principal.to_string();
        for _ in 0..n.min(u64::from(self.limit.burst)) {
            if self.buckets.check_key(&key).is_err() {
                break;
            }
        }
    }

    /// Forgets principals whose buckets are full again (they are as good as
    /// new), so the map does not grow with every principal ever seen.
    pub fn forget_idle(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }
}

/// Where the token check leaves the principal for [`track`]'s log line.
#[derive(Clone, Default)]
pub struct PrincipalSlot(Arc<OnceLock<String>>);

impl PrincipalSlot {
    /// Records the request's principal (the first one counts).
    pub fn set(&self, principal: &str) {
        let _ = self.0.set(principal.to_string());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

/// The gateway's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    request_bytes: Family<RouteLabel, Counter>,
    response_bytes: Family<RouteLabel, Counter>,
    rows_served: Family<TableLabel, Counter>,
    rows_received: Family<TableLabel, Counter>,
    refused: Family<CodeLabel, Counter>,
    nodes_connected: Gauge,
    pool_in_use: Gauge,
    pool_open: Gauge,
    pool_size: Gauge,
    nodes_registered: Gauge,
    oldest_node_age: Gauge<f64, AtomicU64>,
    jwks_reads: Family<ResultLabel, Counter>,
    jwks_keys: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered under the `outpost_gateway` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("outpost_gateway");
        let m = Metrics {
            requests: Family::default(),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            rows_served: Family::default(),
            rows_received: Family::default(),
            refused: Family::default(),
            nodes_connected: Gauge::default(),
            pool_in_use: Gauge::default(),
            pool_open: Gauge::default(),
            pool_size: Gauge::default(),
            nodes_registered: Gauge::default(),
            oldest_node_age: Gauge::default(),
            jwks_reads: Family::default(),
            jwks_keys: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests answered, by route pattern and HTTP status",
            m.requests.clone(),
        );
        registry.register(
            "request_bytes",
            "Bytes of request bodies read, by route pattern",
            m.request_bytes.clone(),
        );
        registry.register(
            "response_bytes",
            "Bytes of response bodies sent (streams included), by route pattern",
            m.response_bytes.clone(),
        );
        registry.register(
            "rows_served",
            "Rows sent to nodes (bootstrap copies and pulled changes, deletions included), by table",
            m.rows_served.clone(),
        );
        registry.register(
            "rows_received",
            "Rows pushed by nodes, by table",
            m.rows_received.clone(),
        );
        registry.register(
            "requests_refused",
            "Requests refused before their work: token refusals and rate limits, by error code",
            m.refused.clone(),
        );
        registry.register(
            "nodes_connected",
            "Change streams (GET /v1/changes) open now: the nodes online",
            m.nodes_connected.clone(),
        );
        registry.register(
            "pool_connections_in_use",
            "PostgreSQL connections of the pool serving a request now",
            m.pool_in_use.clone(),
        );
        registry.register(
            "pool_connections_open",
            "PostgreSQL connections of the pool open now (idle and in use)",
            m.pool_open.clone(),
        );
        registry.register(
            "pool_size",
            "The pool's bound (OUTPOST_GATEWAY_POOL)",
            m.pool_size.clone(),
        );
        registry.register(
            "nodes_registered",
            "Nodes ever bound to a principal through a gateway (outpost.gateway_nodes)",
            m.nodes_registered.clone(),
        );
        registry.register(
            "oldest_node_seconds",
            "Seconds since the gateway node that synced least recently recorded its cursor (its lag, or an abandoned node)",
            m.oldest_node_age.clone(),
        );
        registry.register(
            "jwks_reads",
            "Reads of the JWKS (OUTPOST_GATEWAY_JWKS: at start, every refresh, on a token's unknown kid), by result: ok or failed",
            m.jwks_reads.clone(),
        );
        registry.register(
            "jwks_keys",
            "Keys of the JWKS read last (those verifying tokens now)",
            m.jwks_keys.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a read of the JWKS: its keys, or why it failed (the keys
    /// read before stay).
    pub fn jwks_read(&self, read: &Result<usize, String>) {
        let result = match read {
            Ok(keys) => {
                self.jwks_keys.set(i64::try_from(*keys).unwrap_or(i64::MAX));
                "ok"
            }
            Err(_) => "failed",
        };
        self.jwks_reads
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts rows sent to a node from `table`.
    pub fn served(&self, table: &str) -> Counter {
        self.rows_served
            .get_or_create(&TableLabel {
                table: table.to_string(),
            })
            .clone()
    }

    /// Counts rows pushed to `table`.
    pub fn received(&self, table: &str, n: u64) {
        self.rows_received
            .get_or_create(&TableLabel {
                table: table.to_string(),
            })
            .inc_by(n);
    }

    /// Counts a request refused with `code` before its work.
    pub fn refused(&self, code: &str) {
        self.refused
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }

    /// A guard that counts one open change stream while it lives.
    pub fn stream_open(&self) -> StreamGuard {
        self.nodes_connected.inc();
        StreamGuard(self.nodes_connected.clone())
    }

    fn route_bytes(family: &Family<RouteLabel, Counter>, route: &str) -> Counter {
        family
            .get_or_create(&RouteLabel {
                route: route.to_string(),
            })
            .clone()
    }
}

/// Counts an open change stream until dropped.
pub struct StreamGuard(Gauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `body` with each data frame's length added to `counter` as it passes.
fn counted(body: Body, counter: Counter) -> Body {
    Body::from_stream(body.into_data_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            counter.inc_by(bytes.len() as u64);
        }
        chunk
    }))
}

/// The middleware around every route: counts the request, its bytes and
/// its status, and logs one line with the route, status, time and
/// principal, inside a span that carries the principal to the handler's
/// own log lines.
pub async fn track(State(gw): State<Gateway>, mut req: Request, next: Next) -> Response {
    // The route's pattern, never the path: `/v1/bootstrap/{table}` keeps
    // the label set small, and unknown paths all count as one.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().clone();
    let slot = PrincipalSlot::default();
    req.extensions_mut().insert(slot.clone());
    let metrics = &gw.inner.metrics;
    let req = req.map(|b| counted(b, Metrics::route_bytes(&metrics.request_bytes, &route)));
    let span = tracing::info_span!(
        "request",
        %method,
        route = %route,
        principal = tracing::field::Empty
    );
    let started = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    metrics
        .requests
        .get_or_create(&RouteStatus {
            route: route.clone(),
            status: status.as_u16().to_string(),
        })
        .inc();
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let principal = slot.0.get().map_or("-", String::as_str);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), ms, %principal, "request");
        } else {
            tracing::info!(status = status.as_u16(), ms, %principal, "request");
        }
    });
    resp.map(|b| counted(b, Metrics::route_bytes(&metrics.response_bytes, &route)))
}

/// Compares the metrics token in constant time (a timing difference would
/// tell an attacker how much of a guess was right).
fn same_token(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How long a scrape waits for a pooled connection to read the node
/// registry: a scrape must answer even when every connection is busy.
const SCRAPE_DB_WAIT: Duration = Duration::from_secs(2);

/// `GET /metrics`: every metric in Prometheus' text format. With
/// `OUTPOST_GATEWAY_METRICS_TOKEN`, only for `Authorization: Bearer
/// <that token>` (never a node's token: nodes have no business here).
pub async fn metrics(
    State(gw): State<Gateway>,
    headers: axum::http::HeaderMap,
) -> Result<Response, GatewayError> {
    if let Some(expected) = &gw.inner.options.metrics_token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| same_token(g, expected.secret())) {
            gw.inner.metrics.refused("metrics_token");
            return Err(GatewayError::Unauthorized {
                code: "metrics_token",
                message: "/metrics needs `Authorization: Bearer <OUTPOST_GATEWAY_METRICS_TOKEN>`"
                    .into(),
            });
        }
    }
    let m = &gw.inner.metrics;
    let pool = &gw.inner.pool;
    m.pool_in_use
        .set(i64::try_from(pool.in_use()).unwrap_or(i64::MAX));
    m.pool_open
        .set(i64::try_from(pool.open()).unwrap_or(i64::MAX));
    m.pool_size
        .set(i64::try_from(pool.size()).unwrap_or(i64::MAX));
    // The registry's gauges keep their last values when the database does
    // not answer in time: a scrape is never an outage of its own.
    let read = async {
        let mut c = pool.get().await.map_err(|e| gw.db_error(&e))?;
        let row = c
            .conn()
            .client
            .query_one(
                "SELECT count(*)::int8, EXTRACT(EPOCH FROM now() - min(n.last_seen_at))::float8 \
                 FROM \"outpost\".\"gateway_nodes\" g JOIN \"outpost\".\"nodes\" n USING (node_id)",
                &[],
            )
            .await
            .map_err(|e| {
                gw.db_error(&outpost_remote::RemoteError::db(
                    "reading the node registry",
                    e,
                ))
            })?;
        c.release();
        let count: i64 = row.get(0);
        let age: Option<f64> = row.get(1);
        Ok::<_, GatewayError>((count, age))
    };
    match tokio::time::timeout(SCRAPE_DB_WAIT, read).await {
        Ok(Ok((count, age))) => {
            m.nodes_registered.set(count);
            m.oldest_node_age.set(age.unwrap_or(0.0).max(0.0));
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics: the node registry was not read"),
        Err(_) => tracing::warn!("metrics: no pooled connection within 2 s for the node registry"),
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &m.registry)
        .map_err(|e| GatewayError::internal(format!("encoding the metrics: {e}")))?;
    let mut resp = Response::new(Body::from(text));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    Ok(resp)
}

/// A secret setting whose `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The value.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_settings_parse_and_refuse_with_the_variable() {
        assert_eq!(RateLimit::parse(None, None), Ok(None));
        assert_eq!(
            RateLimit::parse(Some("5"), None),
            Ok(Some(RateLimit {
                per_second: 5.0,
                burst: DEFAULT_BURST
            }))
        );
        assert_eq!(
            RateLimit::parse(Some("0.5"), Some("3")),
            Ok(Some(RateLimit {
                per_second: 0.5,
                burst: 3
            }))
        );
        for (r, b) in [
            (Some("0"), None),
            (Some("fast"), None),
            (Some("-1"), None),
            (Some("5"), Some("0")),
            (None, Some("3")),
        ] {
            let e = RateLimit::parse(r, b).expect_err("refused");
            assert!(e.contains("OUTPOST_GATEWAY_"), "{e}");
        }
    }

    #[test]
    fn a_principal_beyond_its_burst_waits_and_others_do_not() {
        let l = Limiter::new(RateLimit {
            per_second: 1.0,
            burst: 2,
        });
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        match l.check("a") {
            Err(GatewayError::RateLimited { retry_after, .. }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(l.check("b").is_ok());
        assert!(same_token("abc", "abc") && !same_token("abd", "abc") && !same_token("ab", "abc"));
    }
}
