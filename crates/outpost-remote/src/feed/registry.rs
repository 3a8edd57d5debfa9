//! The node registry: a node announces itself ([`register_node`]),
//! records how far it has pulled ([`record_cursor`]), which retention reads,
//! and claims its replica file's incarnation ([`claim_incarnation`]), which
//! tells a restored or copied file apart from the one the server last heard
//! from (`docs/protocol.md`, "Node identity").

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

/// What [`claim_incarnation`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The server knew no incarnation of the node, or one the file knows:
    /// it now records the file's current one.
    Claimed,
    /// The server's incarnation is not one the file knows: another copy of
    /// the file pushed under this node id since (the file is a restored
    /// backup, or a copy running elsewhere). Nothing was changed.
    Diverged {
        /// The incarnation the server records.
        server: Uuid,
    },
}

/// Records `current` as the node's incarnation when the server's is unset
/// or one of `known` (the file's incarnations);
/// otherwise changes nothing and says [`Claim::Diverged`]. One statement:
/// the check and the update hold the registry row's lock together, so of
/// two copies claiming at once exactly one wins. Registers the node when
/// it is not yet.
pub async fn claim_incarnation(
    client: &Client,
    node: Uuid,
    current: Uuid,
    known: &[Uuid],
) -> Result<Claim, RemoteError> {
    let name = format!("node {node}");
    let claimed = client
        .query_opt(
            "INSERT INTO \"outpost\".\"nodes\" (node_id, name, last_seen_at, incarnation) VALUES ($1, $2, now(), $3) \
             ON CONFLICT (node_id) DO UPDATE SET incarnation = EXCLUDED.incarnation, last_seen_at = now() \
             WHERE \"outpost\".\"nodes\".incarnation IS NULL OR \"outpost\".\"nodes\".incarnation = ANY($4) \
             RETURNING 1",
            &[&node, &name, &current, &known],
        )
        .await
        .map_err(db("claiming the node's incarnation"))?;
    if claimed.is_some() {
        return Ok(Claim::Claimed);
    }
    let row = client
        .query_one(
            "SELECT incarnation FROM \"outpost\".\"nodes\" WHERE node_id = $1",
            &[&node],
        )
        .await
        .map_err(db("reading the node's incarnation"))?;
    let server: Option<Uuid> = row.get(0);
    match server {
        Some(server) => Ok(Claim::Diverged { server }),
        // Cleared meanwhile (by hand): nothing to compare with.
        None => Ok(Claim::Claimed),
    }
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
