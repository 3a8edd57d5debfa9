//! Row tags through a gateway with sync rules (`_outpost_tags`).
//!
//! A gateway sends a node, with every row it serves of a filtered table, an
//! opaque tag: a keyed hash of the row's table and key under a secret the
//! node never sees. The node keeps each tag with the row's key. A deletion
//! in a filtered table (a row deleted on the server, or one that left the
//! node's scope) then crosses as its tag alone: the node finds its own row
//! by the tag it kept, and a deletion of a row it never held names nothing
//! it can read (docs/gateway.md, "What a node learns outside its scope").
//!
//! A tag depends only on the table and the key, so an entry stays right
//! for as long as the gateway's secret does; entries of rows the replica
//! no longer holds are left (a row that comes back has the same tag).

use std::collections::BTreeMap;

use outpost_core::sync::PullBatch;
use rusqlite::{Connection, params};

use crate::data::table_of;
use crate::error::LocalError;
use crate::keys::pk_values;
use crate::replica::Replica;

/// Records `tag` as the tag of the row of `table` whose `_outpost_rows.pk`
/// is `key`.
pub(crate) fn record(tx: &Connection, table: &str, key: &str, tag: &str) -> Result<(), LocalError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO \"_outpost_tags\" (table_name, tag, pk) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut s| s.execute(params![table, tag, key]))
    .map_err(LocalError::sqlite("recording a row's tag"))?;
    Ok(())
}

/// Appends the `(key, tag)` of a copy's rows of `table` to
/// `_outpost_tags_copied`, in one statement; [`Replica::merge_copied_tags`]
/// moves them into `_outpost_tags` when the copy is done. Tags arrive in
/// no order: inserted into the tag index chunk by chunk, they cost more
/// than the rows (a page split and a page written per row); appended, then
/// moved sorted, about a third.
pub(crate) fn record_copied(
    tx: &Connection,
    table: &str,
    tagged: &[(String, &str)],
) -> Result<(), LocalError> {
    if tagged.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_string(tagged)?;
    tx.prepare_cached(
        "INSERT INTO \"_outpost_tags_copied\" (table_name, tag, pk) \
         SELECT ?1, value ->> 1, value ->> 0 FROM json_each(?2)",
    )
    .and_then(|mut s| s.execute(params![table, json]))
    .map_err(LocalError::sqlite("recording rows' tags"))?;
    Ok(())
}

/// The key (`_outpost_rows.pk` form) recorded with `tag` in `table`.
fn key_of(conn: &Connection, table: &str, tag: &str) -> Result<Option<String>, LocalError> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached("SELECT pk FROM \"_outpost_tags\" WHERE table_name = ?1 AND tag = ?2")
        .and_then(|mut s| s.query_row(params![table, tag], |r| r.get(0)).optional())
        .map_err(LocalError::sqlite("looking up a row by its tag"))
}

impl Replica {
    /// Gives every row of `batch` whose key the gateway withheld
    /// ([`outpost_core::sync::ServerRow::key_withheld`]) the key recorded
    /// with its tag, and drops those whose tag names no row of this
    /// replica (rows it never held). Returns how many were dropped, by
    /// table: a dropped change may be that of the parent of a row this
    /// replica holds without it ([`Replica::orphans_of`]).
    pub fn resolve_withheld(
        &mut self,
        batch: &mut PullBatch,
    ) -> Result<BTreeMap<String, usize>, LocalError> {
        let mut dropped = BTreeMap::new();
        if !batch.rows.iter().any(|r| r.key_withheld()) {
            return Ok(dropped);
        }
        // A copy cut before its tags were moved left them behind.
        self.merge_copied_tags()?;
        let schema = self.schema();
        let conn = self.connection();
        let mut kept = Vec::with_capacity(batch.rows.len());
        for mut row in std::mem::take(&mut batch.rows) {
            if let (true, Some(tag)) = (row.key_withheld(), row.tag.as_deref()) {
                let Some(key) = key_of(conn, &row.table, tag)? else {
                    *dropped.entry(row.table).or_default() += 1;
                    continue;
                };
                // Another program may have written the table: a key that
                // does not read is a deletion not carried out (the row
                // stays, nothing is lost), said in the log.
                match table_of(schema, &row.table).and_then(|t| pk_values(t, &key)) {
                    Ok(pk) => row.pk = pk,
                    Err(e) => {
                        tracing::warn!(table = %row.table, error = %e, "a row tag names a key that does not read; the deletion is not applied");
                        *dropped.entry(row.table).or_default() += 1;
                        continue;
                    }
                }
            }
            kept.push(row);
        }
        batch.rows = kept;
        Ok(dropped)
    }

    /// Moves the tags a copy appended (`_outpost_tags_copied`) into
    /// `_outpost_tags`, in tag order, in one transaction. Called when a
    /// table's copy is done, and before tags are looked up.
    pub fn merge_copied_tags(&mut self) -> Result<(), LocalError> {
        let waiting: bool = self
            .connection()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM \"_outpost_tags_copied\")",
                [],
                |r| r.get(0),
            )
            .map_err(LocalError::sqlite("reading a copy's tags"))?;
        if !waiting {
            return Ok(());
        }
        self.apply_silenced(|tx| {
            tx.execute_batch(
                "INSERT OR REPLACE INTO \"_outpost_tags\" (table_name, tag, pk) \
                 SELECT table_name, tag, pk FROM \"_outpost_tags_copied\" ORDER BY table_name, tag; \
                 DELETE FROM \"_outpost_tags_copied\";",
            )
            .map_err(LocalError::sqlite("moving a copy's tags"))
        })
    }

    /// How many row tags the replica holds for `table` (tests, reports).
    pub fn tag_count(&self, table: &str) -> Result<i64, LocalError> {
        self.connection()
            .query_row(
                "SELECT count(*) FROM \"_outpost_tags\" WHERE table_name = ?1",
                [table],
                |r| r.get(0),
            )
            .map_err(LocalError::sqlite("counting row tags"))
    }
}
