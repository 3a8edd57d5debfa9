//! `POST /v1/query`: remote mode through the gateway (docs/protocol.md,
//! "Over HTTP"). A node's model-service request is planned against the
//! served schema and run on the server as a direct node's session runs
//! it; a write is claimed by its request id so it happens at most once;
//! a refusal carries the model service's error or the server's SQLSTATE.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use outpost_remote::gateway::body;

use super::{Answer, Auth, Body_, check_tables};
use crate::Gateway;
use crate::error::GatewayError;

/// A remote-mode request of the node's model service, run on the server as
/// a direct node's session runs it: planned against the served schema
/// (with the node's relation names), a read on a pooled connection, a
/// write in one transaction under the node's origin, answered with the
/// rows it left for the node to mirror. Under sync rules it runs scoped:
/// its reads see only the node's rows (a count counts those, a relation
/// includes those), an update or delete touches only those (another row
/// is "not found", as in a replica that does not hold it), and a write
/// that leaves a row outside the node's scope (created for another user,
/// handed to one) is refused whole, naming the rule.
pub(super) async fn query(
    State(gw): State<Gateway>,
    Auth(p, claims): Auth,
    Body_(b): Body_<body::Query>,
) -> Answer<body::Queried> {
    let operation: outpost_query::Operation = b
        .operation
        .parse()
        .map_err(|e: outpost_query::QueryError| request_error(&gw, e.into()))?;
    let served = gw.served(Some(&b.schema_hash)).await?;
    check_tables(
        &served,
        &b.schema_hash,
        &b.table_hashes,
        b.table_hashes.keys().map(String::as_str),
    )?;
    let mut schema = served.schema;
    if !b.relation_names.is_empty() {
        let mut renamed = (*schema).clone();
        for t in &mut renamed.tables {
            for r in &mut t.relations {
                if let Some((_, _, name)) = b
                    .relation_names
                    .iter()
                    .find(|(table, from, _)| *table == t.name && *from == r.name)
                {
                    r.name = name.clone();
                }
            }
        }
        schema = std::sync::Arc::new(renamed);
    }
    let plan = outpost_query::plan(&schema, &b.model, operation, &b.args)
        .map_err(|e| request_error(&gw, e.into()))?;
    let limits = Some(b.limits_ms);
    let mut c = gw.conn().await?;
    gw.bind(&c.conn().client, b.node, &p).await?;
    gw.limit(&mut c, limits).await?;
    // Under sync rules the request sees and touches only the node's rows,
    // its rules' claims read from the session as the sync's statements
    // read them; a write is checked before it commits.
    let scope = gw.inner.scope.as_deref();
    let scopes = scope.map(outpost_remote::query::scopes);
    let claimed = gw.claim(&mut c, &claims, None).await?;
    let answer = if plan.is_write() {
        let idle = Duration::from_millis(b.idle_ms.max(1));
        let sent = std::sync::atomic::AtomicBool::new(false);
        match outpost_remote::connections::write_in(
            &mut c.conn().client,
            &schema,
            &plan,
            b.node,
            idle,
            &sent,
            outpost_remote::connections::GatewayWrite {
                request: b.request,
                scope,
            },
        )
        .await
        {
            Ok((result, mut written)) => {
                if b.tags {
                    for w in &mut written {
                        w.tag = gw.tag_of(&w.table, &w.pk);
                    }
                }
                Ok(body::Queried { result, written })
            }
            Err(outpost_remote::connections::WriteError::NotApplied(e)) => {
                Err(request_error(&gw, e))
            }
            Err(outpost_remote::connections::WriteError::CommitLost(e)) => {
                tracing::warn!(principal = %p.0, node = %b.node, error = %e, "a remote-mode write lost its commit's answer");
                Err(GatewayError::OutcomeUnknown {
                    message: format!(
                        "the gateway lost the database's answer to the commit of a {} on {}: \
                         it may or may not have been applied; the next sync shows which",
                        plan.operation(),
                        b.model
                    ),
                })
            }
        }
    } else {
        outpost_remote::query::run_scoped(&c.conn().client, &schema, &plan, scopes.as_ref())
            .await
            .map(|out| body::Queried {
                result: out.result,
                written: Vec::new(),
            })
            .map_err(|e| request_error(&gw, e))
    };
    // A failed request's connection may be mid-transaction or broken:
    // closed, not pooled (dropping it closes it).
    if answer.is_ok() && gw.unclaim(&mut c, &claimed).await {
        gw.unlimit(c, limits).await;
    }
    tracing::info!(principal = %p.0, node = %b.node, model = %b.model, operation = %b.operation, ok = answer.is_ok(), "query");
    answer.map(Json)
}

/// The answer for a remote-mode request's failure: the model service's own
/// error, or the server's refusal with its SQLSTATE, as the node's direct
/// session would read them; a lost database is the gateway's usual 503.
fn request_error(gw: &Gateway, e: outpost_remote::RemoteError) -> GatewayError {
    use outpost_remote::RemoteError;
    use outpost_remote::error::Cause;
    match e {
        RemoteError::Query(q) => {
            let (status, code) = if q.is_not_found() {
                (StatusCode::NOT_FOUND, "not_found")
            } else if q.is_conflict() {
                (StatusCode::CONFLICT, "unique_violation")
            } else if q.is_invalid_request() {
                (StatusCode::BAD_REQUEST, "invalid_query")
            } else {
                (StatusCode::UNPROCESSABLE_ENTITY, "refused")
            };
            GatewayError::Request {
                status,
                code,
                message: q.to_string(),
                query: Some(Box::new(q)),
                sqlstate: None,
            }
        }
        RemoteError::Db { ref source, .. } => {
            let Some(db) = source.as_db_error() else {
                return gw.db_error(&e);
            };
            let sqlstate = db.code().code().to_string();
            let (status, code) = match outpost_remote::error::cause_of_sqlstate(&sqlstate) {
                Cause::Unreachable | Cause::Auth => return gw.db_error(&e),
                Cause::Constraint if sqlstate == "23505" => {
                    (StatusCode::CONFLICT, "unique_violation")
                }
                Cause::Constraint => (StatusCode::CONFLICT, "constraint_violation"),
                Cause::BadInput => (StatusCode::BAD_REQUEST, "invalid_value"),
                Cause::Transient => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
                Cause::Refused => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
            };
            GatewayError::Request {
                status,
                code,
                message: db.message().to_string(),
                query: None,
                sqlstate: Some(sqlstate),
            }
        }
        other => gw.db_error(&other),
    }
}
