//! The replica file: creating it, laying out its tables from a schema,
//! opening it offline from its stored schema snapshot, and the transaction in
//! which the engine applies server changes with capture silenced.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_core::ident::quote;
use outpost_core::schema::{Schema, Table};
use outpost_core::sqlite::{self, META_VERSION};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension as _, Transaction, TransactionBehavior, params,
};
use uuid::Uuid;

use crate::error::LocalError;

/// How long a writer waits for another connection's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open replica: one read-write connection to the SQLite file, its node
/// id and the schema snapshot it was laid out from.
pub struct Replica {
    conn: Connection,
    path: PathBuf,
    node_id: Uuid,
    schema: Schema,
}

/// What [`Replica::setup`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupReport {
    /// The file did not exist before.
    pub created_file: bool,
    /// Tables created.
    pub created: Vec<String>,
    /// Tables dropped and created again because their definition changed
    /// (their rows come back with the next bootstrap).
    pub rebuilt: Vec<String>,
    /// Tables dropped because they are no longer synced.
    pub dropped: Vec<String>,
    /// The node's id.
    pub node_id: Uuid,
    /// The hash of the schema now stored.
    pub schema_hash: String,
}

impl SetupReport {
    /// True when setup changed nothing.
    pub fn unchanged(&self) -> bool {
        !self.created_file
            && self.created.is_empty()
            && self.rebuilt.is_empty()
            && self.dropped.is_empty()
    }
}

/// One entry of `_outpost_rows` (see `outpost_core::sqlite`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowEntry {
    /// The table.
    pub table: String,
    /// The key, a JSON array.
    pub pk: String,
    /// `SYNCED`, `PENDING`, `CONFLICT` or `FAILED`.
    pub status: String,
    /// Server version the row is based on (`None`: as of the cursor).
    pub server_version: Option<i64>,
    /// The row before its first local change, in row-JSON form.
    pub base_row: Option<String>,
    /// Number of the latest local change.
    pub local_seq: Option<i64>,
    /// The local row is deleted.
    pub deleted: bool,
    /// The server's message for a `FAILED` row.
    pub error: Option<String>,
}

fn open_connection(path: &Path, create: bool) -> Result<Connection, LocalError> {
    let open_err = |message: String| LocalError::Open {
        path: path.to_path_buf(),
        message,
    };
    if create && !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(format!("cannot create its directory: {e}")))?;
        }
        // The replica holds the application's data: owner-only from the start.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| open_err(e.to_string()))?;
    }
    // A write-protected file is refused before SQLite sees it: SQLite would
    // quietly open it read-only (or, for root, write to it anyway), and
    // the first write would fail half-way through a command.
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().readonly()
    {
        return Err(open_err(format!(
            "the file is read-only (mode {:o}); outpost writes to its replica: make it writable (chmod u+w)",
            meta.permissions().mode() & 0o7777
        )));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_err(e.to_string()))?;
    if conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(|e| open_err(e.to_string()))?
    {
        return Err(open_err(
            "SQLite opened it read-only (the file or its directory is not writable); \
             outpost writes to its replica"
                .into(),
        ));
    }
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_err(e.to_string()))?;
    // WAL lets readers go on while the engine writes; NORMAL is durable
    // across application crashes (a power cut may lose the last commits,
    // never corrupt the file).
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| open_err(e.to_string()))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_err(format!("cannot switch to WAL mode (got {mode})")));
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;")
        .map_err(|e| open_err(e.to_string()))?;
    Ok(conn)
}

fn meta(conn: &Connection, key: &str) -> Result<Option<String>, LocalError> {
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
    conn.query_row(
        "SELECT value FROM \"_outpost_meta\" WHERE key = ?1",
        [key],
        |r| r.get(0),
    )
    .optional()
    .map_err(LocalError::sqlite(format!("reading _outpost_meta.{key}")))
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), LocalError> {
    conn.execute(
        "INSERT INTO \"_outpost_meta\" (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map_err(LocalError::sqlite(format!("writing _outpost_meta.{key}")))?;
    Ok(())
}

/// Refuses a file made by a newer outpost, and brings an older one up to
/// [`META_VERSION`] in one transaction (a crash leaves it as it was).
fn check_meta_version(conn: &Connection, path: &Path) -> Result<(), LocalError> {
    let Some(v) = meta(conn, "meta_version")? else {
        return Ok(());
    };
    let found: i64 = v
        .parse()
        .map_err(|_| LocalError::BadSnapshot(format!("meta_version {v:?} is not a number")))?;
    if found > META_VERSION {
        return Err(LocalError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: META_VERSION,
        });
    }
    if found < META_VERSION {
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(LocalError::sqlite("starting the replica's migration"))?;
        let migrated = migrate(conn, found).and_then(|()| {
            conn.execute_batch("COMMIT")
                .map_err(LocalError::sqlite("committing the replica's migration"))
        });
        if migrated.is_err() {
            // The error to report is the migration's, not the rollback's.
            let _ = conn.execute_batch("ROLLBACK");
        }
        migrated?;
    }
    Ok(())
}

/// Migrates the metadata from version `from` to [`META_VERSION`].
fn migrate(conn: &Connection, from: i64) -> Result<(), LocalError> {
    let err = || LocalError::sqlite(format!("migrating the replica from version {from}"));
    for stmt in sqlite::metadata_ddl() {
        conn.execute_batch(&stmt).map_err(err())?;
    }
    if from < 2 {
        // Version 2 captures into the `_outpost_changes` log. Its rowids
        // continue the change numbers already handed out, which are all
        // folded (version 1 wrote `_outpost_rows` directly): a placeholder
        // row carries the last one.
        conn.execute(
            "INSERT INTO \"_outpost_changes\" (local_seq, table_name, pk, deleted) \
             SELECT seq, '', '[]', 0 FROM \"_outpost_local_seq\" WHERE id = 1 AND seq > 0 \
             AND NOT EXISTS (SELECT 1 FROM \"_outpost_changes\")",
            [],
        )
        .map_err(err())?;
        if let Some(json) = meta(conn, "schema")? {
            let schema: Schema =
                serde_json::from_str(&json).map_err(|e| LocalError::BadSnapshot(e.to_string()))?;
            for table in &schema.tables {
                for name in sqlite::trigger_names(table) {
                    conn.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", quote(&name)))
                        .map_err(err())?;
                }
                for stmt in sqlite::capture_triggers(table) {
                    conn.execute_batch(&stmt).map_err(err())?;
                }
            }
        }
    }
    set_meta(conn, "meta_version", &META_VERSION.to_string())
}

/// Folds the capture log into `_outpost_rows` (`outpost_core::sqlite`,
/// "Capture triggers and the change log"); returns how many entries it
/// wrote. Inside a transaction it folds in it; outside, in its own
/// `BEGIN IMMEDIATE` one. Nothing to fold costs one indexed read and
/// takes no write lock.
pub(crate) fn fold(conn: &Connection) -> Result<usize, LocalError> {
    fold_with(conn, true)
}

/// [`fold`] for a read (a status, a listing, a query): when another
/// connection holds the write lock, it does not wait for it and reads
/// without the changes logged since the last fold, rather than block a
/// status page behind an application's long transaction. Decisions (pull,
/// push, resolve) always fold first in their own write transaction.
pub(crate) fn fold_for_read(conn: &Connection) -> Result<usize, LocalError> {
    fold_with(conn, false)
}

fn fold_with(conn: &Connection, wait: bool) -> Result<usize, LocalError> {
    let unfolded = |conn: &Connection| -> Result<Option<(i64, i64)>, LocalError> {
        let (folded, newest): (i64, Option<i64>) = conn
            .prepare_cached(
                "SELECT (SELECT seq FROM \"_outpost_local_seq\" WHERE id = 1), \
                 (SELECT max(local_seq) FROM \"_outpost_changes\")",
            )
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(LocalError::sqlite("reading the change log"))?;
        Ok(newest.filter(|n| *n > folded).map(|n| (folded, n)))
    };
    if unfolded(conn)?.is_none() {
        return Ok(0);
    }
    let own = conn.is_autocommit();
    if own {
        let begun = if wait {
            conn.execute_batch("BEGIN IMMEDIATE")
        } else {
            conn.busy_timeout(Duration::ZERO).and_then(|()| {
                let begun = conn.execute_batch("BEGIN IMMEDIATE");
                conn.busy_timeout(BUSY_TIMEOUT).and(begun)
            })
        };
        match begun.map_err(LocalError::sqlite("starting to fold the change log")) {
            Err(LocalError::Locked { .. }) if !wait => {
                tracing::debug!("replica busy: read without folding the change log");
                return Ok(0);
            }
            other => other?,
        }
    }
    let folded = (|| {
        // Read again: another writer may have appended before the lock.
        let Some((folded, newest)) = unfolded(conn)? else {
            return Ok(0);
        };
        let err = || LocalError::sqlite("folding the change log");
        let n = conn
            .prepare_cached(sqlite::FOLD_CHANGES)
            .and_then(|mut s| s.execute([folded]))
            .map_err(err())?;
        conn.prepare_cached("DELETE FROM \"_outpost_changes\" WHERE local_seq < ?1")
            .and_then(|mut s| s.execute([newest]))
            .map_err(err())?;
        conn.prepare_cached("UPDATE \"_outpost_local_seq\" SET seq = ?1 WHERE id = 1")
            .and_then(|mut s| s.execute([newest]))
            .map_err(err())?;
        Ok(n)
    })();
    if own {
        match &folded {
            Ok(_) => conn
                .execute_batch("COMMIT")
                .map_err(LocalError::sqlite("committing the folded change log"))?,
            Err(_) => {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
    }
    folded
}

fn pending_count(tx: &Connection, table: &str) -> Result<i64, LocalError> {
    tx.query_row(
        "SELECT count(*) FROM \"_outpost_rows\" WHERE table_name = ?1 AND status <> 'SYNCED'",
        [table],
        |r| r.get(0),
    )
    .map_err(LocalError::sqlite(format!(
        "counting local changes of {table}"
    )))
}

fn drop_table(tx: &Connection, table: &Table) -> Result<(), LocalError> {
    for name in sqlite::trigger_names(table) {
        tx.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", quote(&name)))
            .map_err(LocalError::sqlite(format!("dropping trigger {name}")))?;
    }
    tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote(&table.name)))
        .map_err(LocalError::sqlite(format!("dropping table {}", table.name)))?;
    tx.execute(
        "DELETE FROM \"_outpost_rows\" WHERE table_name = ?1",
        [&table.name],
    )
    .map_err(LocalError::sqlite(format!(
        "forgetting the rows of {}",
        table.name
    )))?;
    Ok(())
}

impl Replica {
    /// Creates or updates the replica at `path` for `schema`: the file (WAL
    /// mode, owner-only permissions), the metadata tables, every replicated
    /// table with its indexes and capture triggers, the node id (once), and
    /// the schema snapshot with its hash. Running it again with the same
    /// schema changes nothing.
    ///
    /// A table whose definition changed is dropped and created again (its
    /// rows return with the next bootstrap); a table no longer synced is
    /// dropped. Either is refused while the table has local changes not yet
    /// on the server, so no local write is lost.
    pub fn setup(path: &Path, schema: &Schema) -> Result<(Replica, SetupReport), LocalError> {
        sqlite::check_schema(schema).map_err(LocalError::BadSnapshot)?;
        let created_file = !path.exists();
        let mut conn = open_connection(path, true)?;
        check_meta_version(&conn, path)?;
        let mut report = SetupReport {
            created_file,
            ..SetupReport::default()
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(LocalError::sqlite("starting setup"))?;
        for stmt in sqlite::metadata_ddl() {
            tx.execute_batch(&stmt)
                .map_err(LocalError::sqlite("creating the metadata tables"))?;
        }
        if meta(&tx, "meta_version")?.is_none() {
            set_meta(&tx, "meta_version", &META_VERSION.to_string())?;
        }
        // Changes captured since the last fold count as local changes below.
        fold(&tx)?;
        let node_id = match meta(&tx, "node_id")? {
            Some(id) => Uuid::parse_str(&id)
                .map_err(|_| LocalError::BadSnapshot(format!("node_id {id:?} is not a UUID")))?,
            None => {
                let id = Uuid::new_v4();
                set_meta(&tx, "node_id", &id.to_string())?;
                set_meta(&tx, "created_at", &chrono::Utc::now().to_rfc3339())?;
                id
            }
        };
        let old: Option<Schema> = match meta(&tx, "schema")? {
            Some(json) => Some(
                serde_json::from_str(&json).map_err(|e| LocalError::BadSnapshot(e.to_string()))?,
            ),
            None => None,
        };
        let hash = schema.hash();
        if let Some(old) = &old {
            for gone in old
                .tables
                .iter()
                .filter(|t| schema.table(&t.name).is_none())
            {
                if pending_count(&tx, &gone.name)? > 0 {
                    return Err(LocalError::BadSnapshot(format!(
                        "table {:?} is no longer synced but has local changes not yet on the server; sync them first",
                        gone.name
                    )));
                }
                drop_table(&tx, gone)?;
                report.dropped.push(gone.name.clone());
            }
        }
        for table in &schema.tables {
            let before = old.as_ref().and_then(|s| s.table(&table.name));
            match before {
                Some(b) if b == table => {}
                Some(b) => {
                    if pending_count(&tx, &table.name)? > 0 {
                        return Err(LocalError::BadSnapshot(format!(
                            "table {:?} changed on the server but has local changes not yet pushed; sync them first",
                            table.name
                        )));
                    }
                    drop_table(&tx, b)?;
                    report.rebuilt.push(table.name.clone());
                }
                None => {
                    let exists: bool = tx
                        .query_row(
                            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                            [&table.name],
                            |r| r.get(0),
                        )
                        .map_err(LocalError::sqlite("reading the replica's catalogue"))?;
                    if !exists {
                        report.created.push(table.name.clone());
                    }
                }
            }
            for stmt in sqlite::table_ddl(table) {
                tx.execute_batch(&stmt)
                    .map_err(LocalError::sqlite(format!("creating table {}", table.name)))?;
            }
        }
        if old.as_ref().map(Schema::hash) != Some(hash.clone()) {
            let json = serde_json::to_string(schema)
                .map_err(|e| LocalError::BadSnapshot(e.to_string()))?;
            set_meta(&tx, "schema", &json)?;
            set_meta(&tx, "schema_hash", &hash)?;
        }
        if !report.rebuilt.is_empty() {
            // Their rows come back only with a bootstrap: say so to the engine.
            let mut pending: Vec<String> = match meta(&tx, "rebootstrap_tables")? {
                Some(j) => serde_json::from_str(&j).unwrap_or_default(),
                None => Vec::new(),
            };
            pending.extend(report.rebuilt.iter().cloned());
            pending.sort();
            pending.dedup();
            let json = serde_json::to_string(&pending)
                .map_err(|e| LocalError::BadSnapshot(e.to_string()))?;
            set_meta(&tx, "rebootstrap_tables", &json)?;
        }
        tx.commit()
            .map_err(LocalError::sqlite("committing setup"))?;
        report.node_id = node_id;
        report.schema_hash = hash;
        Ok((
            Replica {
                conn,
                path: path.to_path_buf(),
                node_id,
                schema: schema.clone(),
            },
            report,
        ))
    }

    /// Opens an existing replica from its stored schema snapshot, without the
    /// server.
    pub fn open(path: &Path) -> Result<Replica, LocalError> {
        if !path.exists() {
            return Err(LocalError::NotSetUp {
                path: path.to_path_buf(),
            });
        }
        let conn = open_connection(path, false)?;
        check_meta_version(&conn, path)?;
        if meta(&conn, "schema")?.is_some() {
            // Tables added to the metadata since the file was made (all
            // statements are idempotent).
            for stmt in sqlite::metadata_ddl() {
                conn.execute_batch(&stmt)
                    .map_err(LocalError::sqlite("updating the metadata tables"))?;
            }
        }
        let Some(json) = meta(&conn, "schema")? else {
            return Err(LocalError::NotSetUp {
                path: path.to_path_buf(),
            });
        };
        let schema: Schema =
            serde_json::from_str(&json).map_err(|e| LocalError::BadSnapshot(e.to_string()))?;
        let node_id = meta(&conn, "node_id")?
            .and_then(|id| Uuid::parse_str(&id).ok())
            .ok_or_else(|| LocalError::BadSnapshot("node_id missing or not a UUID".into()))?;
        // A crash cannot leave capture silenced (the flag is only ever set
        // inside a transaction), but a hand edit could: never start silenced.
        conn.execute(
            "UPDATE \"_outpost_apply\" SET active = 0 WHERE id = 1 AND active <> 0",
            [],
        )
        .map_err(LocalError::sqlite("resetting the apply flag"))?;
        Ok(Replica {
            conn,
            path: path.to_path_buf(),
            node_id,
            schema,
        })
    }

    /// The replica's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node's identity, fixed when the file was created.
    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    /// The schema snapshot the replica was laid out from.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The hash stored with the schema snapshot.
    pub fn schema_hash(&self) -> Result<Option<String>, LocalError> {
        meta(&self.conn, "schema_hash")
    }

    /// A node setting kept in the replica across restarts (`mode`), stored
    /// in `_outpost_meta` as `setting.<key>`.
    pub fn setting(&self, key: &str) -> Result<Option<String>, LocalError> {
        meta(&self.conn, &format!("setting.{key}"))
    }

    /// Stores a node setting (see [`Replica::setting`]).
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), LocalError> {
        set_meta(&self.conn, &format!("setting.{key}"), value)
    }

    /// The read-write connection. Writes through it are captured like any
    /// other writer's.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction with capture silenced:
    /// what `f` writes to replicated tables is not recorded as local changes.
    /// The flag is set inside the transaction and cleared before it commits,
    /// so no other connection ever sees it set, and a crash rolls it back
    /// with the rest.
    pub fn apply_silenced<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, LocalError>,
    ) -> Result<T, LocalError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(LocalError::sqlite("starting an apply transaction"))?;
        // Every decision `f` takes must see the application's latest writes.
        fold(&tx)?;
        tx.execute("UPDATE \"_outpost_apply\" SET active = 1 WHERE id = 1", [])
            .map_err(LocalError::sqlite("silencing capture"))?;
        let out = f(&tx)?;
        tx.execute("UPDATE \"_outpost_apply\" SET active = 0 WHERE id = 1", [])
            .map_err(LocalError::sqlite("restoring capture"))?;
        tx.commit()
            .map_err(LocalError::sqlite("committing applied changes"))?;
        Ok(out)
    }

    /// Folds the capture log into `_outpost_rows` now (every method that
    /// reads `_outpost_rows` does it first); returns the entries written.
    /// For code that reads `_outpost_rows` itself.
    pub fn fold_changes(&self) -> Result<usize, LocalError> {
        fold(&self.conn)
    }

    /// Entries of `_outpost_rows` that are not `SYNCED`, oldest change first.
    pub fn dirty_rows(&self) -> Result<Vec<RowEntry>, LocalError> {
        self.entries("WHERE status <> 'SYNCED' ORDER BY local_seq")
    }

    /// The entry of one row, if it has one.
    pub fn row_entry(&self, table: &str, pk: &str) -> Result<Option<RowEntry>, LocalError> {
        fold_for_read(&self.conn)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT table_name, pk, status, server_version, base_row, local_seq, deleted, error \
FROM \"_outpost_rows\" WHERE table_name = ?1 AND pk = ?2",
            )
            .map_err(LocalError::sqlite("reading _outpost_rows"))?;
        stmt.query_row(params![table, pk], entry_from_row)
            .optional()
            .map_err(LocalError::sqlite("reading _outpost_rows"))
    }

    fn entries(&self, clause: &str) -> Result<Vec<RowEntry>, LocalError> {
        fold_for_read(&self.conn)?;
        let sql = format!(
            "SELECT table_name, pk, status, server_version, base_row, local_seq, deleted, error FROM \"_outpost_rows\" {clause}"
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(LocalError::sqlite("reading _outpost_rows"))?;
        let rows = stmt
            .query_map([], entry_from_row)
            .map_err(LocalError::sqlite("reading _outpost_rows"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(LocalError::sqlite("reading _outpost_rows"))
    }
}

fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowEntry> {
    Ok(RowEntry {
        table: r.get(0)?,
        pk: r.get(1)?,
        status: r.get(2)?,
        server_version: r.get(3)?,
        base_row: r.get(4)?,
        local_seq: r.get(5)?,
        deleted: r.get(6)?,
        error: r.get(7)?,
    })
}
