//! Noticing local writes that other connections commit to the replica: the
//! application's own `sqlite3` or ORM writing to the file, another process,
//! or the node's model service on its own connection. Without this a
//! running node would push them only at the next interval or manual sync.
//!
//! `PRAGMA data_version` on a connection of its own changes whenever any
//! other connection commits, and costs no I/O while nothing did (SQLite
//! compares a counter in the WAL index). Only then is the capture log read:
//! the newest local change number, two index reads. The node's own sync
//! writes (a pull, an acknowledgement) commit too but are not captured, so
//! they never look like new local writes and a push never triggers another.

use std::path::Path;

use rusqlite::Connection;

use crate::error::LocalError;
use crate::replica::open_connection;

/// The newest local change number the capture log has handed out: the
/// newest folded one, or a newer log row (the fold keeps the newest log row,
/// so the log's maximum alone is enough once anything was written; both
/// are read so an emptied log cannot look like a step back).
const NEWEST_LOCAL_CHANGE: &str = "SELECT max(coalesce((SELECT seq FROM \"_outpost_local_seq\" WHERE id = 1), 0), \
     coalesce((SELECT max(local_seq) FROM \"_outpost_changes\"), 0))";

/// A watch on the replica for local writes committed by any connection but
/// its own.
pub struct LocalWrites {
    conn: Connection,
    data_version: i64,
    newest: i64,
}

impl LocalWrites {
    /// Opens a connection of its own on the replica at `path` and takes the
    /// current state as seen.
    pub fn open(path: &Path) -> Result<LocalWrites, LocalError> {
        let conn = open_connection(path, false)?;
        let mut watch = LocalWrites {
            conn,
            data_version: 0,
            newest: 0,
        };
        watch.data_version = watch.read_data_version()?;
        watch.newest = watch.read_newest()?;
        Ok(watch)
    }

    /// Whether a local write was committed since the last call (or since
    /// [`LocalWrites::open`]). Cheap when nothing was committed at all.
    pub fn poll(&mut self) -> Result<bool, LocalError> {
        let version = self.read_data_version()?;
        if version == self.data_version {
            return Ok(false);
        }
        self.data_version = version;
        let newest = self.read_newest()?;
        let new = newest > self.newest;
        // A replaced file (a restore) may number lower: follow it.
        self.newest = newest;
        Ok(new)
    }

    fn read_data_version(&self) -> Result<i64, LocalError> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(LocalError::sqlite("reading the replica's data version"))
    }

    fn read_newest(&self) -> Result<i64, LocalError> {
        self.conn
            .prepare_cached(NEWEST_LOCAL_CHANGE)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(LocalError::sqlite("reading the newest local change"))
    }
}

#[cfg(test)]
mod tests {
    use outpost_core::schema::{Column, Schema, Table};
    use outpost_core::types::{ColumnType, ScalarType};

    use super::*;
    use crate::replica::Replica;

    fn schema() -> Schema {
        let col = |name: &str| Column {
            name: name.into(),
            ty: ColumnType {
                scalar: ScalarType::Text,
                array: false,
                pg_name: "text".into(),
                domain: None,
            },
            nullable: name != "id",
            default: None,
            identity: None,
            generated: false,
        };
        Schema {
            pg_schema: "public".into(),
            tables: vec![Table {
                name: "t".into(),
                columns: vec![col("id"), col("v")],
                primary_key: vec!["id".into()],
                foreign_keys: vec![],
                uniques: vec![],
                relations: vec![],
            }],
            enums: vec![],
        }
        .finish()
    }

    #[test]
    fn sees_captured_writes_of_other_connections_and_not_silenced_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("local.db");
        let (mut replica, _) = Replica::setup(&path, &schema()).expect("setup");
        let mut watch = LocalWrites::open(&path).expect("watch");
        assert!(!watch.poll().expect("poll"), "nothing written yet");

        // Another program writes to the file: captured, noticed once.
        let other = Connection::open(&path).expect("open");
        other
            .execute("INSERT INTO t (id, v) VALUES ('a', 'x')", [])
            .expect("insert");
        assert!(watch.poll().expect("poll"));
        assert!(
            !watch.poll().expect("poll"),
            "the same write is noticed once"
        );

        // A sync's own write (silenced, not captured) changes the file but
        // is not a local write: no push for it.
        replica
            .apply_silenced(|tx| {
                tx.execute("INSERT INTO t (id, v) VALUES ('b', 'from the server')", [])
                    .map_err(LocalError::sqlite("test write"))?;
                Ok(())
            })
            .expect("silenced write");
        assert!(!watch.poll().expect("poll"));

        // Folding (the node reading its entries) hands out no new number.
        replica.fold_changes().expect("fold");
        assert!(!watch.poll().expect("poll"));

        // The node's own connection writing, as its model service does: seen.
        replica
            .connection()
            .execute("UPDATE t SET v = 'y' WHERE id = 'a'", [])
            .expect("update");
        assert!(watch.poll().expect("poll"));
    }
}
