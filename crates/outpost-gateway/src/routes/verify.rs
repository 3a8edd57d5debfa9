//! `POST /v1/verify`: `outpost verify` on a node that syncs through the
//! gateway (docs/protocol.md, "Verification through a gateway"). A direct
//! node narrows differing buckets over several rounds in one server
//! snapshot; a stateless gateway holds no snapshot between requests, so a
//! node sends, per table, its bucket digests over its replica's values
//! (`outpost_remote::feed::value_digest`), and the gateway answers in one
//! request from one snapshot: the server's rows of the buckets that differ
//! (only rows in the node's scope under sync rules), up to
//! [`MAX_VERIFY_ROWS`], whole buckets only.

use axum::Json;
use axum::extract::State;
use outpost_remote::feed::{self, BucketDigest};
use outpost_remote::gateway::body;

use super::{Answer, Auth, Body_, check_tables};
use crate::Gateway;
use crate::error::GatewayError;

/// The server rows one answer carries at most; differing buckets past it
/// are counted (`unexamined`), not sent.
pub const MAX_VERIFY_ROWS: usize = 10_000;

/// Buckets are named by at most this many hex digits (65,536 buckets).
const MAX_DEPTH: usize = 4;

pub(super) async fn verify(
    State(gw): State<Gateway>,
    Auth(p, claims): Auth,
    Body_(b): Body_<body::Verify>,
) -> Answer<body::Verified> {
    gw.served_only([b.table.as_str()])?;
    let served = gw.served(Some(&b.schema_hash)).await?;
    check_tables(&served, &b.schema_hash, &b.table_hashes, [b.table.as_str()])?;
    let Some(table) = served.schema.table(&b.table) else {
        return Err(GatewayError::NotServed { table: b.table });
    };
    if !(1..=MAX_DEPTH).contains(&b.depth) {
        return Err(GatewayError::bad(
            "bad_request",
            format!("depth must be 1 to {MAX_DEPTH} hex digits"),
        ));
    }
    let mut buckets = std::collections::BTreeMap::new();
    for (name, (rows, sum)) in b.buckets {
        let hex =
            name.len() == b.depth && name.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        let sum: Option<u128> = sum.parse().ok();
        match (hex, sum) {
            (true, Some(sum)) if rows > 0 => {
                buckets.insert(name, BucketDigest { rows, sum });
            }
            _ => {
                return Err(GatewayError::bad(
                    "bad_request",
                    format!(
                        "bucket {name:?}: a bucket is {} lowercase hex digits with a positive row count and a decimal sum",
                        b.depth
                    ),
                ));
            }
        }
    }
    let scope = gw.inner.scope.as_deref().and_then(|s| s.of(&table.name));
    let mut c = gw.conn().await?;
    let claimed = gw
        .claim(&mut c, &claims, Some(vec![table.name.as_str()]))
        .await?;
    let out = feed::verify_by_values(
        &mut c.conn().client,
        &served.schema.pg_schema,
        table,
        scope,
        b.depth,
        &buckets,
        MAX_VERIFY_ROWS,
    )
    .await
    .map_err(|e| gw.db_error(&e))?;
    if gw.unclaim(&mut c, &claimed).await {
        c.release();
    }
    tracing::info!(principal = %p.0, table = %table.name, server_rows = out.server_rows, compared = out.compared.len(), rows = out.rows.len(), unexamined = out.unexamined, "verify");
    Ok(Json(body::Verified {
        server_rows: out.server_rows,
        compared: out.compared,
        rows: out.rows,
        unexamined: out.unexamined,
    }))
}
