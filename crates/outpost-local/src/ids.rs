//! Reserved ids: blocks of a server sequence's values kept in
//! `_outpost_ids` so that a row created offline gets an id no other node
//! will take.

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::error::LocalError;
use crate::replica::Replica;

impl Replica {
    /// Ids still reserved for `table.column`.
    pub fn ids_left(&self, table: &str, column: &str) -> Result<i64, LocalError> {
        self.connection()
            .query_row(
                "SELECT COALESCE(sum(last - next + 1), 0) FROM \"_outpost_ids\" WHERE table_name = ?1 AND column_name = ?2",
                params![table, column],
                |r| r.get(0),
            )
            .map_err(LocalError::sqlite("counting reserved ids"))
    }

    /// Adds ids reserved from the server's sequence (each a run `next..=last`).
    pub fn add_ids(
        &mut self,
        table: &str,
        column: &str,
        runs: &[(i64, i64)],
    ) -> Result<(), LocalError> {
        let tx = self
            .connection()
            .unchecked_transaction()
            .map_err(LocalError::sqlite("storing reserved ids"))?;
        for (next, last) in runs {
            tx.execute(
                "INSERT OR IGNORE INTO \"_outpost_ids\" (table_name, column_name, next, last) VALUES (?1, ?2, ?3, ?4)",
                params![table, column, next, last],
            )
            .map_err(LocalError::sqlite("storing reserved ids"))?;
        }
        tx.commit()
            .map_err(LocalError::sqlite("storing reserved ids"))
    }
}

/// The replica's reserved ids, for taking them inside a write that is
/// already under way on the replica's connection (the model service's
/// `fill` of a local create): [`Replica::reserved_ids`].
#[derive(Clone, Copy)]
pub struct ReservedIds<'c> {
    conn: &'c Connection,
}

impl ReservedIds<'_> {
    /// Takes the next reserved id for `table.column` ([`take_id`]).
    pub fn take(&self, table: &str, column: &str) -> Result<Option<i64>, LocalError> {
        take_id(self.conn, table, column)
    }
}

impl Replica {
    /// The reserved ids on the replica's connection: taking one joins the
    /// transaction the connection is in.
    pub fn reserved_ids(&self) -> ReservedIds<'_> {
        ReservedIds {
            conn: self.connection(),
        }
    }
}

/// Takes the next reserved id for `table.column` (inside the caller's
/// transaction), or `None` when the block ran out.
pub fn take_id(conn: &Connection, table: &str, column: &str) -> Result<Option<i64>, LocalError> {
    let run: Option<(i64, i64)> = conn
        .query_row(
            "SELECT next, last FROM \"_outpost_ids\" WHERE table_name = ?1 AND column_name = ?2 ORDER BY next LIMIT 1",
            params![table, column],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(LocalError::sqlite("taking a reserved id"))?;
    let Some((next, last)) = run else {
        return Ok(None);
    };
    if next >= last {
        conn.execute(
            "DELETE FROM \"_outpost_ids\" WHERE table_name = ?1 AND column_name = ?2 AND next = ?3",
            params![table, column, next],
        )
    } else {
        conn.execute(
            "UPDATE \"_outpost_ids\" SET next = next + 1 WHERE table_name = ?1 AND column_name = ?2 AND next = ?3",
            params![table, column, next],
        )
    }
    .map_err(LocalError::sqlite("taking a reserved id"))?;
    Ok(Some(next))
}
