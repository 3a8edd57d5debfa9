//! The replica's small metadata: `_outpost_meta` (key → text: node id,
//! schema snapshot, bootstrap progress…) and `_outpost_cursor` (the pull
//! cursor and the replica's state, one row).

use outpost_core::ReplicaState;
use outpost_core::sync::Cursor;
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::error::LocalError;
use crate::replica::Replica;
use crate::stored::Sql;

/// Now, as outpost stores times (canonical UTC text).
pub(crate) fn now() -> String {
    outpost_core::types::timestamptz_from_chrono(chrono::Utc::now())
}

/// `_outpost_meta.key`, or `None` when unset or when the file has no
/// metadata tables yet (a file being set up, or not outpost's).
pub(crate) fn meta_if_present(conn: &Connection, key: &str) -> Result<Option<String>, LocalError> {
    let has_meta: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_outpost_meta'",
            [],
            |r| r.get(0),
        )
        .map_err(LocalError::sqlite("reading the replica's catalogue"))?;
    if !has_meta {
        return Ok(None);
    }
    meta_get(conn, key)
}

/// `_outpost_meta.key`, or `None` when unset.
pub(crate) fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, LocalError> {
    conn.query_row(
        "SELECT value FROM \"_outpost_meta\" WHERE key = ?1",
        [key],
        |r| r.get(0),
    )
    .optional()
    .map_err(LocalError::sqlite(format!("reading _outpost_meta.{key}")))
}

/// Sets (`Some`) or removes (`None`) `_outpost_meta.key`.
pub(crate) fn meta_set(
    conn: &Connection,
    key: &str,
    value: Option<&str>,
) -> Result<(), LocalError> {
    match value {
        Some(v) => conn.execute(
            "INSERT INTO \"_outpost_meta\" (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, v],
        ),
        None => conn.execute("DELETE FROM \"_outpost_meta\" WHERE key = ?1", [key]),
    }
    .map_err(LocalError::sqlite(format!("writing _outpost_meta.{key}")))?;
    Ok(())
}

/// A JSON value kept in `_outpost_meta.key`; unset or unreadable (written
/// by hand) reads as the default, which at worst repeats work (a table
/// copied again).
pub(crate) fn meta_json<T: serde::de::DeserializeOwned + Default>(
    conn: &Connection,
    key: &str,
) -> Result<T, LocalError> {
    Ok(match meta_get(conn, key)? {
        Some(j) => serde_json::from_str(&j).unwrap_or_default(),
        None => T::default(),
    })
}

/// The pull cursor and the replica's state.
pub(crate) fn cursor_row(conn: &Connection) -> Result<(Cursor, ReplicaState), LocalError> {
    conn.query_row(
        "SELECT txid, seq, state FROM \"_outpost_cursor\" WHERE id = 1",
        [],
        |r| {
            Ok((
                Cursor {
                    txid: r.get(0)?,
                    seq: r.get(1)?,
                },
                r.get::<_, Sql<ReplicaState>>(2)?.0,
            ))
        },
    )
    .map_err(LocalError::sqlite("reading the cursor"))
}

/// Moves the cursor and sets the state, stamping the time.
pub(crate) fn set_cursor(
    conn: &Connection,
    cursor: Cursor,
    state: ReplicaState,
) -> Result<(), LocalError> {
    conn.execute(
        "UPDATE \"_outpost_cursor\" SET txid = ?1, seq = ?2, state = ?3, updated_at = ?4 WHERE id = 1",
        params![cursor.txid, cursor.seq, Sql(state), now()],
    )
    .map_err(LocalError::sqlite("moving the cursor"))?;
    Ok(())
}

impl Replica {
    /// The pull cursor and the replica's state.
    pub fn cursor(&self) -> Result<(Cursor, ReplicaState), LocalError> {
        cursor_row(self.connection())
    }

    /// When the pull cursor last moved (a full pull or a bootstrap), as
    /// stored: the age of the replica's copy of the server.
    pub fn cursor_updated_at(&self) -> Result<Option<String>, LocalError> {
        self.connection()
            .query_row(
                "SELECT updated_at FROM \"_outpost_cursor\" WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .map_err(LocalError::sqlite("reading the cursor"))
    }
}
