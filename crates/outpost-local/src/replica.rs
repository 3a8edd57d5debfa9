//! The replica file: creating it, laying out its tables from a schema,
//! opening it offline from its stored schema snapshot, and the transaction in
//! which the engine applies server changes with capture silenced.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use outpost_core::schema::{Schema, Table};
use outpost_core::sqlite::{self, META_VERSION};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use uuid::Uuid;

use crate::error::LocalError;
use crate::fold::fold;
use crate::meta::{meta_if_present, meta_set};
use crate::rows::has_dirty;
// Kept at their old paths.
pub use crate::rows::RowEntry;
pub use crate::settings::BUSY_TIMEOUT;
use crate::sql;

/// An open replica: one read-write connection to the SQLite file, its node
/// id and the schema snapshot it was laid out from.
pub struct Replica {
    conn: Connection,
    path: PathBuf,
    node_id: Uuid,
    schema: Schema,
    /// The hash of `schema`, as stored with it: a different stored hash
    /// means another process changed the snapshot (`crate::identity`).
    schema_hash: String,
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
    /// Entries with local changes carried through a rebuilt table's new
    /// definition (they are pushed as before).
    pub kept_edits: usize,
    /// Of those, entries that changed columns the server no longer has:
    /// their other changes are pushed, then they are `FAILED` showing
    /// the values that could not be.
    pub lost_values: usize,
    /// Files holding the local edits of tables that were dropped (or whose
    /// key changed), saved before the table went.
    pub saved_edits: Vec<PathBuf>,
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

pub(crate) fn open_connection(path: &Path, create: bool) -> Result<Connection, LocalError> {
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
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| open_err(e.to_string()))?;
    // Every transaction of the node takes the write lock when it begins
    // (waiting up to the busy timeout): a deferred one that reads first and
    // then writes fails at once with "database is locked" when another
    // connection committed meanwhile, whatever the timeout.
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
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
    crate::settings::wait_when_busy(&mut conn).map_err(|e| open_err(e.to_string()))?;
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

/// Refuses a file made by a newer outpost, and brings an older one up to
/// [`META_VERSION`] in one transaction (a crash leaves it as it was).
fn check_meta_version(conn: &Connection, path: &Path) -> Result<(), LocalError> {
    let Some(v) = meta_if_present(conn, "meta_version")? else {
        return Ok(());
    };
    let found: i64 = v.parse().map_err(|_| LocalError::BadMetadata {
        key: "meta_version",
        value: Some(v.clone()),
        expected: "a number",
    })?;
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
    }
    // The tables' triggers below are rebuilt from the stored snapshot.
    let snapshot: Option<Schema> = match meta_if_present(conn, "schema")? {
        Some(json) => Some(serde_json::from_str(&json)?),
        None => None,
    };
    if from < 4 {
        // Version 3 lets `SyncLog.status` be `INTERRUPTED`, version 4
        // `SyncLog.trigger` be `local-change`: SQLite cannot change a
        // CHECK, so the table is copied into its new definition (ids and
        // the AUTOINCREMENT counter kept).
        conn.execute_batch(
            "ALTER TABLE \"SyncLog\" RENAME TO \"_outpost_synclog_v2\"; \
             DROP INDEX IF EXISTS \"_outpost_synclog_model\";",
        )
        .map_err(err())?;
        conn.execute_batch(&sqlite::sync_log_table())
            .map_err(err())?;
        conn.execute_batch(
            "INSERT INTO \"SyncLog\" (id, model, direction, trigger, status, \"startedAt\", \"completedAt\", \
             \"recordsProcessed\", \"recordsSucceeded\", \"recordsFailed\", conflicts, error) \
             SELECT id, model, direction, trigger, status, \"startedAt\", \"completedAt\", \
             \"recordsProcessed\", \"recordsSucceeded\", \"recordsFailed\", conflicts, error \
             FROM \"_outpost_synclog_v2\"; \
             INSERT INTO sqlite_sequence (name, seq) SELECT 'SyncLog', 0 \
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'SyncLog'); \
             UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence \
             WHERE name = '_outpost_synclog_v2'), 0)) WHERE name = 'SyncLog'; \
             DROP TABLE \"_outpost_synclog_v2\";",
        )
        .map_err(err())?;
        conn.execute_batch(sqlite::SYNC_LOG_INDEX).map_err(err())?;
    }
    if from < 5 {
        // Version 5 guards uuid keys against other spellings (`sqlite::
        // key_guard_triggers`); rows already stored are left as they are.
        if let Some(schema) = &snapshot {
            for table in &schema.tables {
                for stmt in sqlite::key_guard_triggers(table) {
                    conn.execute_batch(&stmt).map_err(err())?;
                }
            }
        }
    }
    if from < 6 {
        // Version 6 guards `timestamptz` keys too (`sqlite::
        // key_guard_triggers`; the uuid guards exist already).
        if let Some(schema) = &snapshot {
            for table in &schema.tables {
                for stmt in sqlite::key_guard_triggers(table) {
                    conn.execute_batch(&stmt).map_err(err())?;
                }
            }
        }
        // It also keeps the local values of columns a schema change
        // removed (`Replica::setup`).
        let has: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM pragma_table_info('_outpost_rows') WHERE name = 'lost_values'",
                [],
                |r| r.get(0),
            )
            .map_err(err())?;
        if !has {
            conn.execute_batch("ALTER TABLE \"_outpost_rows\" ADD COLUMN lost_values TEXT")
                .map_err(err())?;
        }
    }
    if from < 7 {
        // Version 7 links a key change's two halves (`moved_from`, so the
        // push sends it as one update of the key): the columns, and the
        // triggers that fill them.
        for table in ["_outpost_rows", "_outpost_changes"] {
            let has: bool = conn
                .query_row(
                    "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = 'moved_from'",
                    [table],
                    |r| r.get(0),
                )
                .map_err(err())?;
            if !has {
                conn.execute_batch(&format!(
                    "ALTER TABLE \"{table}\" ADD COLUMN moved_from TEXT"
                ))
                .map_err(err())?;
            }
        }
        // The capture triggers are rebuilt (this also carries versions
        // before 3 over: theirs failed an application's write of a blob in
        // a non-blob column instead of saving it as hex).
        if let Some(schema) = &snapshot {
            for table in &schema.tables {
                for name in sqlite::trigger_names(table) {
                    conn.execute_batch(&sql::drop_trigger(&name))
                        .map_err(err())?;
                }
                for stmt in sqlite::capture_triggers(table) {
                    conn.execute_batch(&stmt).map_err(err())?;
                }
            }
        }
    }
    meta_set(conn, "meta_version", Some(&META_VERSION.to_string()))
}

/// Drops a table, its triggers and its synced entries; entries with local
/// changes stay (the table is laid out again and they are carried over).
pub(crate) fn drop_table_keeping_edits(tx: &Connection, table: &Table) -> Result<(), LocalError> {
    drop_table_objects(tx, table)?;
    forget_entries(tx, table, " AND status = 'SYNCED'")
}

fn drop_table(tx: &Connection, table: &Table) -> Result<(), LocalError> {
    drop_table_objects(tx, table)?;
    forget_entries(tx, table, "")
}

/// Deletes a table's `_outpost_rows` entries (those `and` selects).
fn forget_entries(tx: &Connection, table: &Table, and: &str) -> Result<(), LocalError> {
    tx.execute(
        &format!("DELETE FROM \"_outpost_rows\" WHERE table_name = ?1{and}"),
        [&table.name],
    )
    .map_err(LocalError::sqlite(format!(
        "forgetting the rows of {}",
        table.name
    )))?;
    Ok(())
}

fn drop_table_objects(tx: &Connection, table: &Table) -> Result<(), LocalError> {
    for name in sqlite::trigger_names(table)
        .into_iter()
        .chain(sqlite::key_guard_names(table))
    {
        tx.execute_batch(&sql::drop_trigger(&name))
            .map_err(LocalError::sqlite(format!("dropping trigger {name}")))?;
    }
    tx.execute_batch(&sql::drop_table(&table.name))
        .map_err(LocalError::sqlite(format!("dropping table {}", table.name)))?;
    Ok(())
}

impl Replica {
    /// Creates or updates the replica at `path` for `schema`: the file (WAL
    /// mode, owner-only permissions), the metadata tables, every replicated
    /// table with its indexes and capture triggers, the node id (once), and
    /// the schema snapshot with its hash. Running it again with the same
    /// schema changes nothing.
    ///
    /// A table whose definition changed is laid out again with its rows
    /// and local edits carried over (the rows are copied again by the next
    /// sync; edits of columns the server no longer has are kept in their
    /// entries and reported); a table no longer synced is dropped, its
    /// local edits first saved to a file beside the replica
    /// ([`SetupReport::saved_edits`]). No local write is lost.
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
        if meta_if_present(&tx, "meta_version")?.is_none() {
            meta_set(&tx, "meta_version", Some(&META_VERSION.to_string()))?;
        }
        // Changes captured since the last fold count as local changes below.
        fold(&tx)?;
        let node_id = match meta_if_present(&tx, "node_id")? {
            Some(id) => Uuid::parse_str(&id).map_err(|_| LocalError::BadMetadata {
                key: "node_id",
                value: Some(id.clone()),
                expected: "a UUID",
            })?,
            None => {
                let id = Uuid::new_v4();
                meta_set(&tx, "node_id", Some(&id.to_string()))?;
                meta_set(&tx, "created_at", Some(&chrono::Utc::now().to_rfc3339()))?;
                // The file's first incarnation (`crate::identity`).
                let first = serde_json::to_string(&[Uuid::new_v4().to_string()])?;
                meta_set(&tx, "incarnations", Some(&first))?;
                id
            }
        };
        let old: Option<Schema> = match meta_if_present(&tx, "schema")? {
            Some(json) => Some(serde_json::from_str(&json)?),
            None => None,
        };
        let hash = schema.hash();
        if let Some(old) = &old {
            for gone in old
                .tables
                .iter()
                .filter(|t| schema.table(&t.name).is_none())
            {
                if has_dirty(&tx, &gone.name)? {
                    // Nowhere left to push them: saved beside the replica.
                    let file = crate::schema_change::save_edits(
                        &tx,
                        path,
                        gone,
                        "the table is no longer synced (dropped on the server, or excluded)",
                    )?;
                    report.saved_edits.push(file);
                }
                drop_table(&tx, gone)?;
                report.dropped.push(gone.name.clone());
            }
        }
        // Tables new to an existing replica (see below).
        let mut added: Vec<String> = Vec::new();
        for table in &schema.tables {
            let before = old.as_ref().and_then(|s| s.table(&table.name));
            match before {
                Some(b) if b == table => {}
                Some(b) => {
                    if b.primary_key == table.primary_key {
                        // Rows and local edits carried into the new
                        // definition (docs/protocol.md, "Schema changes").
                        let carried = crate::schema_change::rebuild_keeping_rows(&tx, b, table)?;
                        report.kept_edits += carried.edits;
                        report.lost_values += carried.lost;
                    } else {
                        // A new key names other rows: the edits are saved
                        // and the table copied again.
                        if has_dirty(&tx, &table.name)? {
                            let file = crate::schema_change::save_edits(
                                &tx,
                                path,
                                b,
                                "the table's primary key changed on the server",
                            )?;
                            report.saved_edits.push(file);
                        }
                        drop_table(&tx, b)?;
                    }
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
                    // A table new to a replica that was set up before (added
                    // on the server, or no longer excluded) has rows there
                    // older than the cursor: only a copy brings them.
                    if old.is_some() {
                        added.push(table.name.clone());
                    }
                }
            }
            for stmt in sqlite::table_ddl(table) {
                tx.execute_batch(&stmt)
                    .map_err(LocalError::sqlite(format!("creating table {}", table.name)))?;
            }
        }
        if old.as_ref().map(Schema::hash) != Some(hash.clone()) {
            let json = serde_json::to_string(schema)?;
            meta_set(&tx, "schema", Some(&json))?;
            meta_set(&tx, "schema_hash", Some(&hash))?;
        }
        if report.lost_values > 0 {
            // The acknowledgement reports them (`push::report_lost_values`).
            meta_set(&tx, "lost_values", Some("1"))?;
        }
        if !report.rebuilt.is_empty() || !added.is_empty() {
            // Their rows come back only with a copy: say so to the engine.
            let mut tables: Vec<String> = report.rebuilt.clone();
            tables.extend(added);
            crate::bootstrap::list_for_copy(&tx, &tables)?;
        }
        tx.commit()
            .map_err(LocalError::sqlite("committing setup"))?;
        report.node_id = node_id;
        report.schema_hash = hash.clone();
        Ok((
            Replica {
                conn,
                path: path.to_path_buf(),
                node_id,
                schema: schema.clone(),
                schema_hash: hash,
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
        if meta_if_present(&conn, "schema")?.is_some() {
            // Tables added to the metadata since the file was made (all
            // statements are idempotent).
            for stmt in sqlite::metadata_ddl() {
                conn.execute_batch(&stmt)
                    .map_err(LocalError::sqlite("updating the metadata tables"))?;
            }
        }
        let Some(json) = meta_if_present(&conn, "schema")? else {
            return Err(LocalError::NotSetUp {
                path: path.to_path_buf(),
            });
        };
        let schema: Schema = serde_json::from_str(&json)?;
        let schema_hash = match meta_if_present(&conn, "schema_hash")? {
            Some(h) => h,
            None => schema.hash(),
        };
        let node_id = meta_if_present(&conn, "node_id")?
            .and_then(|id| Uuid::parse_str(&id).ok())
            .ok_or(LocalError::BadMetadata {
                key: "node_id",
                value: None,
                expected: "a UUID",
            })?;
        // A crash cannot leave capture silenced (the flag is only ever set
        // inside a transaction), but a hand edit could: never start silenced.
        conn.execute(
            "UPDATE \"_outpost_apply\" SET active = 0 WHERE id = 1 AND active <> 0",
            [],
        )
        .map_err(LocalError::sqlite("resetting the apply flag"))?;
        let replica = Replica {
            conn,
            path: path.to_path_buf(),
            node_id,
            schema,
            schema_hash,
        };
        // Best effort: a log row left open by a killed run must not read
        // "running" forever, but failing to close it is no reason to refuse
        // the file.
        if let Err(e) = replica.close_interrupted_runs() {
            tracing::warn!(error = %e, "could not close the sync log rows of interrupted runs");
        }
        Ok(replica)
    }

    /// The replica's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node's identity: made with the file, replaced only when a copied or
    /// restored file becomes a new node (`crate::identity`).
    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    /// The schema snapshot the replica was laid out from.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The hash stored with the schema snapshot.
    pub fn schema_hash(&self) -> Result<Option<String>, LocalError> {
        meta_if_present(&self.conn, "schema_hash")
    }

    /// A node setting kept in the replica across restarts (`mode`), stored
    /// in `_outpost_meta` as `setting.<key>`.
    pub fn setting(&self, key: &str) -> Result<Option<String>, LocalError> {
        meta_if_present(&self.conn, &format!("setting.{key}"))
    }

    /// Stores a node setting (see [`Replica::setting`]).
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), LocalError> {
        meta_set(&self.conn, &format!("setting.{key}"), Some(value))
    }

    /// The hash of the schema snapshot this connection loaded.
    pub(crate) fn loaded_schema_hash(&self) -> &str {
        &self.schema_hash
    }

    pub(crate) fn set_schema(&mut self, schema: Schema, hash: String) {
        self.schema = schema;
        self.schema_hash = hash;
    }

    pub(crate) fn set_node_id(&mut self, id: Uuid) {
        self.node_id = id;
    }

    pub(crate) fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
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
        // Never write with a schema another process has replaced since it
        // was loaded (`crate::identity`).
        crate::identity::check_schema_on(&tx, &self.schema_hash)?;
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
}
