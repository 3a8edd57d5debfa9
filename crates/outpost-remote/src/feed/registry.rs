//! The node registry: a node announces itself ([`register_node`]) and
//! records how far it has pulled ([`record_cursor`]), which retention reads.

use outpost_core::sync::Cursor;
use tokio_postgres::Client;
use uuid::Uuid;

use super::support::db;
use crate::error::RemoteError;

/// Registers the node (or updates its last-seen time) and returns the
/// highest `local_seq` the server applied for it.
pub async fn register_node(client: &Client, node: Uuid, name: &str) -> Result<i64, RemoteError> {
    let row = client
        .query_one(
            "INSERT INTO \"outpost\".\"nodes\" (node_id, name, last_seen_at) VALUES ($1, $2, now()) \
             ON CONFLICT (node_id) DO UPDATE SET last_seen_at = now() RETURNING applied_local_seq",
            &[&node, &name],
        )
        .await
        .map_err(db("registering the node"))?;
    Ok(row.get(0))
}

/// Records the node's cursor, so retention knows what it has seen.
pub async fn record_cursor(client: &Client, node: Uuid, cursor: Cursor) -> Result<(), RemoteError> {
    client
        .execute(
            "UPDATE \"outpost\".\"nodes\" SET cursor_txid = $2::text::xid8, cursor_seq = $3, last_seen_at = now() \
             WHERE node_id = $1",
            &[&node, &cursor.txid.to_string(), &cursor.seq],
        )
        .await
        .map_err(db("recording the node's cursor"))?;
    Ok(())
}
