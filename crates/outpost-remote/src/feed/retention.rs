//! Changelog retention: where a node's cursor stands against what was
//! pruned ([`feed_position`], [`probe`]), pruning ([`prune`]) and the age of
//! the oldest transaction that holds the pull horizon back
//! ([`horizon_age`]).

use std::time::Duration;

use outpost_core::sync::Cursor;
use tokio_postgres::Client;

use super::support::db;
use crate::error::RemoteError;

/// The retention mark as `meta` stores it (`txid,seq`); `None` when it
/// does not read as one.
pub(super) fn parse_mark(v: &str) -> Option<Cursor> {
    let (t, s) = v.split_once(',')?;
    Some(Cursor {
        txid: t.parse().ok()?,
        seq: s.parse().ok()?,
    })
}

/// Where retention stands for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPosition {
    /// Changes up to this point were pruned (`None`: never pruned).
    pub pruned_through: Option<Cursor>,
    /// Whether a node at the given cursor missed pruned changes and must
    /// bootstrap again.
    pub must_rebootstrap: bool,
}

/// Whether a node whose cursor is `cursor` can still pull, or fell behind
/// the retention window.
pub async fn feed_position(
    client: &impl tokio_postgres::GenericClient,
    cursor: Cursor,
) -> Result<FeedPosition, RemoteError> {
    let row = client
        .query_opt(
            "SELECT value FROM \"outpost\".\"meta\" WHERE key = 'pruned_through'",
            &[],
        )
        .await
        .map_err(db("reading the retention mark"))?;
    let pruned_through = row.and_then(|r| parse_mark(&r.get::<_, String>(0)));
    Ok(FeedPosition::at(cursor, pruned_through))
}

impl FeedPosition {
    /// Where a node at `cursor` stands against the retention mark.
    pub fn at(cursor: Cursor, pruned_through: Option<Cursor>) -> FeedPosition {
        FeedPosition {
            must_rebootstrap: pruned_through.is_some_and(|p| cursor < p),
            pruned_through,
        }
    }
}

/// What a kept connection checks before a sync, in one round trip (B5):
/// the installed tracking version (`None` when the `meta` row is missing)
/// and the retention mark. Fails when the tracking schema is gone or the
/// connection is dead; the caller then opens a new connection and checks
/// step by step ([`crate::installed_version`], [`feed_position`]), which
/// says which.
pub async fn probe(client: &Client) -> Result<(Option<i32>, Option<Cursor>), RemoteError> {
    let messages = client
        .simple_query(
            "SELECT key, value FROM \"outpost\".\"meta\" WHERE key IN ('schema_version', 'pruned_through')",
        )
        .await
        .map_err(db("checking the server"))?;
    let (mut version, mut pruned_through) = (None, None);
    for message in messages {
        let tokio_postgres::SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        match (row.get(0), row.get(1)) {
            (Some("schema_version"), Some(v)) => version = v.trim().parse::<i32>().ok(),
            (Some("pruned_through"), Some(v)) => pruned_through = parse_mark(v),
            _ => {}
        }
    }
    Ok((version, pruned_through))
}

/// Deletes changes every registered node has passed, and changes older than
/// `retention` whatever the nodes' cursors (a node behind them is told to
/// bootstrap again by [`feed_position`]). Returns how many were deleted.
pub async fn prune(client: &mut Client, retention: Duration) -> Result<u64, RemoteError> {
    let tx = client.transaction().await.map_err(db("starting a prune"))?;
    // All nodes have passed: at or before the lowest cursor, when every
    // registered node has one (no node: nothing has been passed); or older
    // than the window. One scan of the log: the previous form tested every
    // change against every node and deleted them through a join on
    // `(txid, seq)`, three times as long (770 against 250 ms for 100,000
    // changes, one node; in B3 it ran inside every full pull).
    let row = tx
        .query_one(
            "WITH gone AS (DELETE FROM \"outpost\".\"changes\" c \
               WHERE (c.txid, c.seq) <= (SELECT n.cursor_txid, n.cursor_seq FROM \"outpost\".\"nodes\" n \
                   WHERE NOT EXISTS (SELECT 1 FROM \"outpost\".\"nodes\" x \
                     WHERE x.cursor_txid IS NULL OR x.cursor_seq IS NULL) \
                   ORDER BY n.cursor_txid, n.cursor_seq LIMIT 1) \
                 OR (c.changed_at < now() - $1::float8 * interval '1 second' \
                   AND c.txid < pg_snapshot_xmin(pg_current_snapshot())) \
               RETURNING c.txid::text::int8 AS t, c.seq) \
             SELECT (SELECT count(*) FROM gone), \
               (SELECT t::text || ',' || seq FROM gone ORDER BY t DESC, seq DESC LIMIT 1)",
            &[&retention.as_secs_f64()],
        )
        .await
        .map_err(db("pruning the change log"))?;
    let count: i64 = row.get(0);
    if count > 0 {
        // The highest pruned position: the largest (txid, seq) removed.
        let top = tx
            .query_one(
                "SELECT COALESCE((SELECT value FROM \"outpost\".\"meta\" WHERE key = 'pruned_through'), '0,0')",
                &[],
            )
            .await
            .map_err(db("reading the retention mark"))?;
        let old: String = top.get(0);
        let top_pruned: Option<String> = row.get(1);
        if let Some(new) = top_pruned {
            let parse = |s: &str| -> (i64, i64) {
                let (a, b) = s.split_once(',').unwrap_or(("0", "0"));
                (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
            };
            if parse(&new) > parse(&old) {
                tx.execute(
                    "INSERT INTO \"outpost\".\"meta\" (key, value) VALUES ('pruned_through', $1) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[&new],
                )
                .await
                .map_err(db("recording the retention mark"))?;
            }
        }
    }
    tx.commit().await.map_err(db("committing a prune"))?;
    Ok(count as u64)
}

/// The age of the oldest open transaction that holds the pull horizon back,
/// if any transaction with an xid is open.
pub async fn horizon_age(client: &Client) -> Result<Option<Duration>, RemoteError> {
    let row = client
        .query_one(
            "SELECT EXTRACT(EPOCH FROM max(now() - xact_start))::float8 FROM pg_stat_activity \
             WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .map_err(db("reading open transactions"))?;
    let secs: Option<f64> = row.get(0);
    Ok(secs.filter(|s| *s >= 0.0).map(Duration::from_secs_f64))
}
