//! The `/v1/…` endpoints (docs/protocol.md, "Over HTTP"): each verifies the
//! bearer token, takes a pooled connection for the one operation it runs,
//! and gives it back when the operation finished. Node-scoped operations
//! (register, claim, record_cursor, push) first bind the node id to the
//! token's principal in `outpost.gateway_nodes`, or refuse it with 403 when
//! another principal holds it.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt as _};
use outpost_remote::feed;
use outpost_remote::gateway::body;
use outpost_remote::gateway::{PROTOCOL_HEADER, PROTOCOL_VERSION};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::GatewayError;
use crate::{Gateway, MAX_BODY};

mod query;
mod verify;

/// The gateway's router (tests call it without a socket).
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/v1/probe", get(probe))
        .route("/v1/schema", get(schema))
        .route("/v1/register", post(register))
        .route("/v1/claim", post(claim))
        .route("/v1/feed_position", post(feed_position))
        .route("/v1/record_cursor", post(record_cursor))
        .route("/v1/horizon_age", get(horizon_age))
        .route("/v1/prune", post(prune))
        .route("/v1/push", post(push))
        .route("/v1/pull", post(pull))
        .route("/v1/query", post(query::query))
        .route("/v1/scope", post(scope_check))
        .route("/v1/verify", post(verify::verify))
        .route("/v1/reserve_ids", post(reserve_ids))
        .route("/v1/bootstrap/{table}", get(bootstrap))
        .route("/v1/changes", get(changes))
        .route("/metrics", get(crate::ops::metrics))
        .fallback(|| async {
            GatewayError::BadRequest {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: "no such endpoint (the protocol's endpoints are under /v1/)".into(),
            }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            crate::ops::track,
        ))
        .with_state(gateway)
}

/// A request's verified principal and its claims (the sync rules read
/// them); the protocol version it speaks is checked on the way.
struct Auth(Principal, crate::auth::ClaimValues);

impl FromRequestParts<Gateway> for Auth {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, gw: &Gateway) -> Result<Auth, GatewayError> {
        if let Some(v) = parts.headers.get(PROTOCOL_HEADER) {
            let spoken = v.to_str().ok().and_then(|s| s.trim().parse::<u32>().ok());
            if spoken != Some(PROTOCOL_VERSION) {
                return Err(GatewayError::bad(
                    "protocol_version",
                    format!(
                        "this gateway speaks protocol {PROTOCOL_VERSION}; the request says {:?}",
                        v.to_str().unwrap_or("?")
                    ),
                ));
            }
        }
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let (principal, claims) = match gw
            .inner
            .options
            .keys
            .verify_claims_fresh(header, |read| gw.inner.metrics.jwks_read(read))
            .await
        {
            Ok(v) => v,
            Err(e) => {
                if let GatewayError::Unauthorized { code, .. } = &e {
                    gw.inner.metrics.refused(code);
                }
                return Err(e);
            }
        };
        // The principal, never the token, for the request's log line and
        // every line logged while it is served.
        tracing::Span::current().record("principal", tracing::field::display(&principal.0));
        if let Some(slot) = parts.extensions.get::<crate::ops::PrincipalSlot>() {
            slot.set(&principal.0);
        }
        if let Some(limiter) = &gw.inner.limiter
            && let Err(e) = limiter.check(&principal.0)
        {
            gw.inner.metrics.refused("rate_limited");
            return Err(e);
        }
        Ok(Auth(principal, claims))
    }
}

/// The JSON body of a request, with a 400 that says what is wrong.
struct Body_<T>(T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<Gateway> for Body_<T> {
    type Rejection = GatewayError;

    async fn from_request(req: axum::extract::Request, gw: &Gateway) -> Result<Self, GatewayError> {
        match Json::<T>::from_request(req, gw).await {
            Ok(Json(v)) => Ok(Body_(v)),
            Err(e) => Err(GatewayError::bad("bad_request", e.body_text())),
        }
    }
}

type Answer<T> = Result<Json<T>, GatewayError>;

impl Gateway {
    async fn conn(&self) -> Result<crate::pool::Pooled, GatewayError> {
        self.inner.pool.get().await.map_err(|e| self.db_error(&e))
    }

    /// Applies a node's statement and lock timeouts to a pooled session
    /// (as a direct node's session has them), never above the gateway's.
    async fn limit(
        &self,
        c: &mut crate::pool::Pooled,
        limits: Option<(u64, u64)>,
    ) -> Result<(), GatewayError> {
        let Some((statement, lock)) = limits else {
            return Ok(());
        };
        let t = &self.inner.options.timeouts;
        let cap = |ms: u64, max: Duration| {
            ms.clamp(1, u64::try_from(max.as_millis()).unwrap_or(u64::MAX))
        };
        let sql = format!(
            "SET statement_timeout = {}; SET lock_timeout = {};",
            cap(statement, t.statement),
            cap(lock, t.lock)
        );
        c.conn().client.batch_execute(&sql).await.map_err(|e| {
            self.db_error(&outpost_remote::RemoteError::db(
                "setting the node's limits",
                e,
            ))
        })
    }

    /// Gives a connection back with the gateway's own limits again (or
    /// closes it when they cannot be restored).
    async fn unlimit(&self, mut c: crate::pool::Pooled, limits: Option<(u64, u64)>) {
        if limits.is_none() {
            c.release();
            return;
        }
        if c.conn()
            .client
            .batch_execute(self.inner.pool.settings())
            .await
            .is_ok()
        {
            c.release();
        }
    }

    /// With sync rules, refuses a request naming a table that has no rule
    /// (`table_not_served`): such a table is not in the schema the gateway
    /// serves, and no node reads or writes it.
    fn served_only<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), GatewayError> {
        let Some(rules) = &self.inner.options.rules else {
            return Ok(());
        };
        match tables.into_iter().find(|t| !rules.rules.contains_key(*t)) {
            Some(t) => Err(GatewayError::NotServed {
                table: t.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Sets, on the session, the claims the rules of `tables` (all tables
    /// when `None`) read: `set_config('outpost.claim.<name>', <value>,
    /// false)` with the names and values bound, never spliced into SQL.
    /// Session-wide rather than transaction-local because the feed's
    /// operations open their transactions themselves; [`Gateway::unclaim`]
    /// empties them before the connection serves another request (and a
    /// connection whose request failed is closed, not pooled). Returns the
    /// names set; refuses the request when the token lacks one
    /// (`claim_missing`).
    async fn claim(
        &self,
        c: &mut crate::pool::Pooled,
        claims: &crate::auth::ClaimValues,
        tables: Option<Vec<&str>>,
    ) -> Result<Vec<String>, GatewayError> {
        let Some(rules) = &self.inner.options.rules else {
            return Ok(Vec::new());
        };
        let needed = rules.claims_of(tables.clone());
        let mut names = Vec::with_capacity(needed.len());
        let mut values = Vec::with_capacity(needed.len());
        for name in needed {
            let Some(value) = claims.get(&name) else {
                let rule = rules
                    .rules
                    .values()
                    .filter(|r| {
                        tables
                            .as_ref()
                            .is_none_or(|t| t.contains(&r.table.as_str()))
                    })
                    .find(|r| r.claims.contains(&name))
                    .map_or_else(|| "a sync rule".to_string(), |r| r.label());
                return Err(GatewayError::ClaimMissing { claim: name, rule });
            };
            names.push(format!("{}{name}", crate::rules::CLAIM_SETTING));
            values.push(value.clone());
        }
        if names.is_empty() {
            return Ok(names);
        }
        c.conn()
            .client
            .execute(
                "SELECT set_config(n, v, false) FROM unnest($1::text[], $2::text[]) AS c(n, v)",
                &[&names, &values],
            )
            .await
            .map_err(|e| {
                self.db_error(&outpost_remote::RemoteError::db(
                    "setting the node's claims",
                    e,
                ))
            })?;
        Ok(names)
    }

    /// Empties the claims [`Gateway::claim`] set; `false` when that failed
    /// (the connection must then be closed, not pooled).
    async fn unclaim(&self, c: &mut crate::pool::Pooled, names: &[String]) -> bool {
        names.is_empty()
            || c.conn()
                .client
                .execute(
                    "SELECT set_config(n, '', false) FROM unnest($1::text[]) AS c(n)",
                    &[&names],
                )
                .await
                .is_ok()
    }

    /// Binds `node` to `principal`, or refuses it when another principal
    /// holds it.
    async fn bind(
        &self,
        client: &outpost_remote::tokio_postgres::Client,
        node: Uuid,
        principal: &Principal,
    ) -> Result<(), GatewayError> {
        let select = "SELECT principal FROM \"outpost\".\"gateway_nodes\" WHERE node_id = $1";
        let db = |e| self.db_error(&outpost_remote::RemoteError::db("binding the node", e));
        let mut holder: Option<String> = client
            .query_opt(select, &[&node])
            .await
            .map_err(db)?
            .map(|r| r.get(0));
        if holder.is_none() {
            client
                .execute(
                    "INSERT INTO \"outpost\".\"gateway_nodes\" (node_id, principal) VALUES ($1, $2) \
                     ON CONFLICT (node_id) DO NOTHING",
                    &[&node, &principal.0],
                )
                .await
                .map_err(db)?;
            holder = client
                .query_opt(select, &[&node])
                .await
                .map_err(db)?
                .map(|r| r.get(0));
        }
        if holder.as_deref() == Some(principal.0.as_str()) {
            Ok(())
        } else {
            tracing::warn!(principal = %principal.0, %node, "refused: the node id belongs to another principal");
            Err(GatewayError::Forbidden {
                code: "node_of_another_principal",
                message: format!(
                    "node {node} is registered by another principal; this token's principal cannot use it"
                ),
            })
        }
    }
}

async fn probe(State(gw): State<Gateway>, Auth(..): Auth) -> Answer<body::Probe> {
    let mut c = gw.conn().await?;
    // The one-statement probe fails when the tracking schema is gone; then
    // read the version step by step as a direct node does, so the node
    // says "no tracking schema" rather than relaying a missing relation.
    let (version, pruned_through) = match feed::probe(&c.conn().client).await {
        Ok(p) => p,
        Err(e) if e.is_refused() => {
            let version = outpost_remote::installed_version(&c.conn().client)
                .await
                .map_err(|e| gw.db_error(&e))?;
            (version, None)
        }
        Err(e) => return Err(gw.db_error(&e)),
    };
    c.release();
    Ok(Json(body::Probe {
        version,
        pruned_through,
        protocol: PROTOCOL_VERSION,
    }))
}

async fn schema(State(gw): State<Gateway>, Auth(p, _): Auth) -> Response {
    // Always read afresh: `outpost setup` after a migration must see it.
    match gw.refreshed().await {
        Ok(s) => {
            tracing::info!(principal = %p.0, tables = s.schema.tables.len(), "schema served");
            Json(s.schema.as_ref().clone()).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn register(
    State(gw): State<Gateway>,
    Auth(p, _): Auth,
    Body_(b): Body_<body::Register>,
) -> Answer<body::Registered> {
    let mut c = gw.conn().await?;
    gw.bind(&c.conn().client, b.node, &p).await?;
    let applied_local_seq = feed::register_node(&c.conn().client, b.node, &b.name)
        .await
        .map_err(|e| gw.db_error(&e))?;
    c.release();
    tracing::info!(principal = %p.0, node = %b.node, "node registered");
    Ok(Json(body::Registered { applied_local_seq }))
}

async fn claim(
    State(gw): State<Gateway>,
    Auth(p, _): Auth,
    Body_(b): Body_<body::ClaimRequest>,
) -> Answer<body::Claimed> {
    let mut c = gw.conn().await?;
    gw.bind(&c.conn().client, b.node, &p).await?;
    let claim = feed::claim_incarnation(&c.conn().client, b.node, b.current, &b.known)
        .await
        .map_err(|e| gw.db_error(&e))?;
    c.release();
    Ok(Json(body::Claimed {
        diverged: match claim {
            feed::Claim::Claimed => None,
            feed::Claim::Diverged { server } => Some(server),
        },
    }))
}

async fn feed_position(
    State(gw): State<Gateway>,
    Auth(..): Auth,
    Body_(b): Body_<body::AtCursor>,
) -> Answer<body::Position> {
    let mut c = gw.conn().await?;
    let pos = feed::feed_position(&c.conn().client, b.cursor)
        .await
        .map_err(|e| gw.db_error(&e))?;
    c.release();
    Ok(Json(body::Position {
        pruned_through: pos.pruned_through,
        must_rebootstrap: pos.must_rebootstrap,
    }))
}

async fn record_cursor(
    State(gw): State<Gateway>,
    Auth(p, _): Auth,
    Body_(b): Body_<body::AtCursor>,
) -> Answer<serde_json::Value> {
    let node = b
        .node
        .ok_or_else(|| GatewayError::bad("bad_request", "record_cursor needs `node`"))?;
    let mut c = gw.conn().await?;
    gw.bind(&c.conn().client, node, &p).await?;
    feed::record_cursor(&c.conn().client, node, b.cursor)
        .await
        .map_err(|e| gw.db_error(&e))?;
    c.release();
    Ok(Json(serde_json::json!({})))
}

async fn horizon_age(State(gw): State<Gateway>, Auth(..): Auth) -> Answer<body::HorizonAge> {
    let mut c = gw.conn().await?;
    let age = feed::horizon_age(&c.conn().client)
        .await
        .map_err(|e| gw.db_error(&e))?;
    c.release();
    Ok(Json(body::HorizonAge {
        ms: age.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }))
}

async fn prune(
    State(gw): State<Gateway>,
    Auth(..): Auth,
    Body_(b): Body_<body::Prune>,
) -> Answer<body::Pruned> {
    // The window deletes changes whatever the other nodes' cursors, so it
    // is the gateway's to bound: a node (or a token holder) asking for a
    // shorter one than the gateway's floor would send every other node
    // back to a bootstrap.
    let retention = Duration::from_millis(b.retention_ms).max(gw.inner.options.min_retention);
    let mut c = gw.conn().await?;
    let deleted = feed::prune(&mut c.conn().client, retention)
        .await
        .map_err(|e| gw.db_error(&e))?;
    c.release();
    Ok(Json(body::Pruned { deleted }))
}

fn mismatch() -> GatewayError {
    GatewayError::BadRequest {
        status: StatusCode::CONFLICT,
        code: "schema_mismatch",
        message: "the node's schema snapshot differs from the tables this gateway serves: \
                  run `outpost setup` on the node"
            .into(),
    }
}

/// Whether the node's snapshot lets the gateway serve `tables` with its
/// own definitions: the same snapshot, or (when the node sent its tables'
/// shapes) the same shape for each of them. A table served with another
/// shape is `table_changed`; a node that sent no shapes gets
/// `schema_mismatch` as before.
fn check_tables<'a>(
    served: &crate::Served,
    schema_hash: &str,
    table_hashes: &std::collections::BTreeMap<String, String>,
    tables: impl IntoIterator<Item = &'a str>,
) -> Result<(), GatewayError> {
    if served.hash == schema_hash {
        return Ok(());
    }
    if table_hashes.is_empty() {
        return Err(mismatch());
    }
    for t in tables {
        let same = served
            .schema
            .table(t)
            .zip(table_hashes.get(t))
            .is_some_and(|(s, h)| &s.shape_hash() == h);
        if !same {
            return Err(GatewayError::TableChanged {
                table: t.to_string(),
            });
        }
    }
    Ok(())
}

async fn push(
    State(gw): State<Gateway>,
    Auth(p, claims): Auth,
    Body_(b): Body_<body::Push>,
) -> Answer<body::Pushed> {
    gw.served_only(b.rows.iter().map(|r| r.table.as_str()))?;
    let served = gw.served(Some(&b.schema_hash)).await?;
    check_tables(
        &served,
        &b.schema_hash,
        &b.table_hashes,
        b.rows.iter().map(|r| r.table.as_str()),
    )?;
    let t = &gw.inner.options.timeouts;
    // The node's limits, never above the gateway's own.
    let limits = (
        Duration::from_millis(b.limits_ms.0).min(t.statement),
        Duration::from_millis(b.limits_ms.1).min(t.lock),
    );
    let mut c = gw.conn().await?;
    gw.bind(&c.conn().client, b.node, &p).await?;
    let tables: std::collections::BTreeSet<&str> =
        b.rows.iter().map(|r| r.table.as_str()).collect();
    let claimed = gw
        .claim(&mut c, &claims, Some(tables.into_iter().collect()))
        .await?;
    let mut outcomes = feed::push_scoped(
        &mut c.conn().client,
        &served.schema,
        b.node,
        b.cursor,
        &b.rows,
        limits,
        gw.inner.scope.as_deref(),
    )
    .await
    .map_err(|e| gw.db_error(&e))?;
    if gw.unclaim(&mut c, &claimed).await {
        c.release();
    }
    if b.tags {
        gw.tag_outcomes(&b.rows, &mut outcomes);
    }
    let mut by_table: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for r in &b.rows {
        *by_table.entry(r.table.as_str()).or_default() += 1;
    }
    for (table, n) in by_table {
        gw.inner.metrics.received(table, n);
    }
    tracing::info!(principal = %p.0, node = %b.node, rows = b.rows.len(), "push");
    Ok(Json(body::Pushed { outcomes }))
}

async fn pull(
    State(gw): State<Gateway>,
    Auth(_, claims): Auth,
    Body_(b): Body_<body::Pull>,
) -> Answer<outpost_core::sync::PullBatch> {
    // A table without a rule is refused by name, whether the node lists
    // it or its snapshot (set up before the rules) has it.
    match &b.tables {
        Some(asked) => gw.served_only(asked.iter().map(String::as_str))?,
        None => gw.served_only(b.table_hashes.keys().map(String::as_str))?,
    }
    let served = gw.served(Some(&b.schema_hash)).await?;
    // With another snapshot, only the node's tables it asked for, each of
    // the same shape here (a table new to the server is not the node's).
    let tables: Option<Vec<String>> = if served.hash == b.schema_hash {
        b.tables.clone()
    } else {
        let asked: Vec<String> = match &b.tables {
            Some(t) => t.clone(),
            None => b.table_hashes.keys().cloned().collect(),
        };
        check_tables(
            &served,
            &b.schema_hash,
            &b.table_hashes,
            asked.iter().map(String::as_str),
        )?;
        Some(asked)
    };
    if !(1..=100_000).contains(&b.limit) {
        return Err(GatewayError::bad(
            "bad_request",
            "limit must be 1 to 100000 changes",
        ));
    }
    let mut c = gw.conn().await?;
    gw.limit(&mut c, b.limits_ms).await?;
    let claimed = gw
        .claim(
            &mut c,
            &claims,
            tables
                .as_ref()
                .map(|t| t.iter().map(String::as_str).collect()),
        )
        .await?;
    let conn = c.conn();
    let mut batch = feed::pull_scoped(
        &mut conn.client,
        &served.schema,
        b.cursor,
        b.limit,
        tables.as_deref(),
        &mut conn.statements,
        gw.inner.scope.as_deref(),
    )
    .await
    .map_err(|e| gw.db_error(&e))?;
    if gw.unclaim(&mut c, &claimed).await {
        gw.unlimit(c, b.limits_ms).await;
    }
    // The rule each covered table is filtered by, so that the node copies
    // a table again when its rule (or its claims) changed.
    batch.scopes = match &tables {
        Some(t) => t.iter().map(String::as_str).collect::<Vec<_>>(),
        None => served
            .schema
            .tables
            .iter()
            .map(|t| t.name.as_str())
            .collect(),
    }
    .into_iter()
    .filter_map(|t| gw.digest(t, &claims, b.tags).map(|d| (t.to_string(), d)))
    .collect();
    // A node that keeps tags gets each row of a filtered table with its
    // tag, and a deletion there with its tag only: whether the row was
    // deleted or is outside the node's scope, its key is not the node's
    // to learn (`crate::tags`).
    if b.tags {
        gw.tag_pull(&mut batch);
    }
    let mut by_table: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for r in &batch.rows {
        *by_table.entry(r.table.as_str()).or_default() += 1;
    }
    for (table, n) in by_table {
        gw.inner.metrics.served(table).inc_by(n);
    }
    Ok(Json(batch))
}

/// Which of the rows a node holds are gone or outside its scope now: the
/// node asks for the rows of filtered tables under a parent that changed,
/// and removes those (a post given to another user takes its comments
/// with it). Only keys the node names are checked, so the answer tells it
/// nothing about rows it does not hold.
async fn scope_check(
    State(gw): State<Gateway>,
    Auth(_, claims): Auth,
    Body_(b): Body_<body::ScopeCheck>,
) -> Answer<body::Outside> {
    gw.served_only([b.table.as_str()])?;
    let served = gw.served(Some(&b.schema_hash)).await?;
    check_tables(&served, &b.schema_hash, &b.table_hashes, [b.table.as_str()])?;
    let Some(table) = served.schema.table(&b.table) else {
        return Err(GatewayError::NotServed { table: b.table });
    };
    if b.keys.len() > 10_000 {
        return Err(GatewayError::bad(
            "bad_request",
            "at most 10000 keys per request",
        ));
    }
    let width = table.primary_key.len();
    if let Some(bad) = b.keys.iter().find(|k| k.len() != width) {
        return Err(GatewayError::bad(
            "bad_request",
            format!(
                "a key of {} has {} values; its primary key has {width}",
                table.name,
                bad.len()
            ),
        ));
    }
    if b.keys.is_empty() || gw.inner.scope.is_none() {
        return Ok(Json(body::Outside {
            outside: Vec::new(),
        }));
    }
    let mut c = gw.conn().await?;
    let claimed = gw
        .claim(&mut c, &claims, Some(vec![table.name.as_str()]))
        .await?;
    let conn = c.conn();
    let outside = feed::outside_scope(
        &mut conn.client,
        &served.schema,
        table,
        b.keys,
        &mut conn.statements,
        gw.inner.scope.as_deref(),
    )
    .await
    .map_err(|e| gw.db_error(&e))?;
    if gw.unclaim(&mut c, &claimed).await {
        c.release();
    }
    Ok(Json(body::Outside { outside }))
}

async fn reserve_ids(
    State(gw): State<Gateway>,
    Auth(..): Auth,
    Body_(b): Body_<body::ReserveIds>,
) -> Answer<body::Reserved> {
    let served = gw.served(None).await?;
    // Only sequences of the served tables' columns, and blocks of a
    // bounded size: a token is not a licence to drain any sequence.
    let known = served
        .schema
        .table(&b.table)
        .is_some_and(|t| t.columns.iter().any(|c| c.name == b.column));
    if !known {
        return Err(GatewayError::BadRequest {
            status: StatusCode::NOT_FOUND,
            code: "unknown_column",
            message: format!("{}.{} is not a served column", b.table, b.column),
        });
    }
    if !(1..=100_000).contains(&b.n) {
        return Err(GatewayError::bad(
            "bad_request",
            "n must be 1 to 100000 ids",
        ));
    }
    let mut c = gw.conn().await?;
    let ranges = feed::reserve_ids(
        &c.conn().client,
        &served.schema.pg_schema,
        &b.table,
        &b.column,
        b.n,
    )
    .await
    .map_err(|e| gw.db_error(&e))?;
    c.release();
    Ok(Json(body::Reserved { ranges }))
}

#[derive(Deserialize)]
struct CopyQuery {
    schema_hash: String,
    /// The table's [`outpost_core::schema::Table::shape_hash`] in the
    /// node's snapshot.
    table_hash: Option<String>,
    statement_ms: Option<u64>,
    lock_ms: Option<u64>,
    /// A resumed copy: the last key the node holds, a JSON array of its
    /// values; only the rows after it are sent.
    after: Option<String>,
    /// The node keeps row tags: each row line of a filtered table carries
    /// its tag past its columns.
    #[serde(default)]
    tags: bool,
}

/// Bytes of rows gathered before a chunk of the body is sent.
const COPY_CHUNK: usize = 64 * 1024;

/// One table's copy in its own `REPEATABLE READ` snapshot, streamed as
/// lines: the head (`{"cursor", "count", "scope"}`), one JSON array per row in key
/// order, and the end (`{"end": rows}`), or an error line when the copy
/// fails after the head was sent.
async fn bootstrap(
    State(gw): State<Gateway>,
    Auth(p, claims): Auth,
    Path(table): Path<String>,
    Query(q): Query<CopyQuery>,
) -> Result<Response, GatewayError> {
    gw.served_only([table.as_str()])?;
    let served = gw.served(Some(&q.schema_hash)).await?;
    let shapes: std::collections::BTreeMap<String, String> = q
        .table_hash
        .iter()
        .map(|h| (table.clone(), h.clone()))
        .collect();
    check_tables(&served, &q.schema_hash, &shapes, [table.as_str()])?;
    let Some(t) = served.schema.table(&table) else {
        return Err(GatewayError::BadRequest {
            status: StatusCode::NOT_FOUND,
            code: "unknown_table",
            message: format!("{table:?} is not a served table"),
        });
    };
    let after: Option<Vec<outpost_core::types::Value>> = match &q.after {
        None => None,
        Some(text) => {
            let key: Vec<outpost_core::types::Value> = serde_json::from_str(text)
                .map_err(|e| GatewayError::bad("bad_request", format!("after: {e}")))?;
            if key.len() != t.primary_key.len() || !feed::resumable(t) {
                return Err(GatewayError::bad(
                    "bad_request",
                    format!(
                        "after: a copy of {table} resumes after a key of {} values of the types a copy can resume by",
                        t.primary_key.len()
                    ),
                ));
            }
            Some(key)
        }
    };
    let mut pooled = gw.conn().await?;
    let limits = q.statement_ms.zip(q.lock_ms);
    gw.limit(&mut pooled, limits).await?;
    let claimed = gw
        .claim(&mut pooled, &claims, Some(vec![table.as_str()]))
        .await?;
    let (head_tx, head_rx) = oneshot::channel::<Result<Bytes, GatewayError>>();
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tracing::info!(principal = %p.0, %table, "bootstrap copy");
    let digest = gw.digest(&table, &claims, q.tags);
    let tagged = q.tags && gw.tags_for(&table).is_some();
    // The copy outlives the handler: it keeps the request's span (and so
    // its principal) for its own log lines.
    tokio::spawn(
        copy_task(
            gw,
            served,
            table,
            pooled,
            limits,
            (claimed, digest, tagged),
            after,
            head_tx,
            tx,
        )
        .instrument(tracing::Span::current()),
    );
    let head = head_rx
        .await
        .map_err(|_| GatewayError::internal("the copy task ended before its head"))??;
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    let stream =
        futures_util::stream::once(async move { Ok::<Bytes, Infallible>(head) }).chain(rest);
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
async fn copy_task(
    gw: Gateway,
    served: crate::Served,
    table: String,
    mut pooled: crate::pool::Pooled,
    limits: Option<(u64, u64)>,
    (claimed, digest, tagged): (Vec<String>, Option<String>, bool),
    after: Option<Vec<outpost_core::types::Value>>,
    head_tx: oneshot::Sender<Result<Bytes, GatewayError>>,
    tx: mpsc::Sender<Bytes>,
) {
    let Some(t) = served.schema.table(&table) else {
        return;
    };
    let pg_schema = served.schema.pg_schema.clone();
    let scope = gw.inner.scope.clone();
    let scope = scope.as_deref().and_then(|s| s.of(&table));
    // Taken when the head is sent: an error before it is the response's
    // status (a 503 the node reads as unreachable), after it an error line.
    let mut head_tx = Some(head_tx);
    let outcome: Result<bool, GatewayError> = async {
        let snapshot = feed::Bootstrap::begin(&mut pooled.conn().client)
            .await
            .map_err(|e| gw.db_error(&e))?;
        let count = snapshot
            .count_in(&pg_schema, t, scope)
            .await
            .map_err(|e| gw.db_error(&e.in_table(&t.name)))?;
        let mut line = serde_json::to_vec(&body::CopyHead {
            cursor: snapshot.cursor,
            count,
            scope: digest.clone(),
            tags: tagged,
        })
        .map_err(|e| GatewayError::internal(e.to_string()))?;
        line.push(b'\n');
        let rows = snapshot
            .rows_in(&pg_schema, t, scope, after.as_deref())
            .await
            .map_err(|e| gw.db_error(&e.in_table(&t.name)))?;
        // From here on the status is sent: failures become an error line.
        let Some(head) = head_tx.take() else {
            return Ok(false);
        };
        if head.send(Ok(Bytes::from(line))).is_err() {
            return Ok(false);
        }
        futures_util::pin_mut!(rows);
        let mut buf = Vec::with_capacity(COPY_CHUNK + 4096);
        let mut sent: u64 = 0;
        let served_rows = gw.inner.metrics.served(&table);
        while let Some(row) = rows.next().await {
            let mut row = match row {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(error_line(&gw.db_error(&e))).await;
                    return Ok(false);
                }
            };
            if tagged {
                let pk: Vec<outpost_core::types::Value> = t
                    .pk_positions()
                    .filter_map(|i| row.get(i).cloned())
                    .collect();
                if let Some(tag) = gw.tag_of(&table, &pk) {
                    row.push(outpost_core::types::Value::Text(tag));
                }
            }
            if serde_json::to_writer(&mut buf, &row).is_err() {
                let _ = tx
                    .send(error_line(&GatewayError::internal(
                        "a row could not be written",
                    )))
                    .await;
                return Ok(false);
            }
            buf.push(b'\n');
            sent += 1;
            served_rows.inc();
            if buf.len() >= COPY_CHUNK
                && tx
                    .send(Bytes::from(std::mem::take(&mut buf)))
                    .await
                    .is_err()
            {
                // The node went away: the connection is closed, not reused.
                return Ok(false);
            }
        }
        snapshot.finish().await.map_err(|e| gw.db_error(&e))?;
        let end = serde_json::to_vec(&body::CopyEnd { end: sent })
            .map_err(|e| GatewayError::internal(e.to_string()))?;
        buf.extend_from_slice(&end);
        buf.push(b'\n');
        Ok(tx.send(Bytes::from(buf)).await.is_ok())
    }
    .await;
    match outcome {
        Ok(true) => {
            if gw.unclaim(&mut pooled, &claimed).await {
                gw.unlimit(pooled, limits).await;
            }
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, %table, "bootstrap copy failed");
            match head_tx.take() {
                Some(head) => {
                    let _ = head.send(Err(e));
                }
                None => {
                    let _ = tx.send(error_line(&e)).await;
                }
            }
        }
    }
}

fn error_line(e: &GatewayError) -> Bytes {
    let mut v = serde_json::to_vec(&e.body()).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    Bytes::from(v)
}

/// The change stream: one `change` event per notification of the
/// gateway's `LISTEN` connection, a comment every 15 s to keep proxies
/// from closing it.
async fn changes(
    State(gw): State<Gateway>,
    Auth(p, _): Auth,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    tracing::info!(principal = %p.0, "change stream opened");
    let rx = gw.inner.changes.subscribe();
    let cancel = gw.inner.cancel.clone();
    // Counted as a connected node for as long as the stream lives (the
    // guard is dropped with the stream when the node goes away).
    let guard = gw.inner.metrics.stream_open();
    let stream =
        futures_util::stream::unfold((rx, cancel, guard), |(mut rx, cancel, guard)| async move {
            tokio::select! {
                () = cancel.cancelled() => None,
                r = rx.recv() => match r {
                    // A lagging stream lost notifications: one event covers them.
                    Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        Some((Ok(Event::default().event("change").data("1")), (rx, cancel, guard)))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
                },
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
