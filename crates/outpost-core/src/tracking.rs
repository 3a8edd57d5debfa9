//! The SQL of the server's tracking schema: everything outpost installs in
//! PostgreSQL to capture changes, as pure functions returning SQL text.
//!
//! This module owns the *text*; `outpost-remote` runs it (install, upgrade,
//! uninstall, status). Nothing here does I/O, and every statement is pinned by
//! an exact-string test (in `tracking/tests.rs`), so a change to the server's
//! schema is always a visible diff.
//!
//! # What is installed
//!
//! Everything lives in the PostgreSQL schema [`SCHEMA`] (`outpost`):
//!
//! * `outpost.meta(key, value)`: holds `schema_version`, the number of the
//!   last [`Migration`] applied.
//! * `outpost.changes(txid, seq, table_name, pk, op, origin, changed_at)`: one
//!   row per captured change. `txid` is the writing transaction
//!   (`pg_current_xact_id()`, `xid8`); pulls read it in `(txid, seq)` order
//!   under the cursor rule (docs/design.md §3), helped by the index on `(txid, seq)`.
//!   `op` is `I`, `U`, `D` or `T` (truncate, `pk` NULL).
//! * `outpost.row_versions(table_name, pk, version, origin, origin_local_seq,
//!   deleted, updated_at)`: per row, the `seq` of its latest change (its
//!   **version**), who made it and whether it is a deletion. A row that has
//!   not changed since tracking began has no entry: version 0. Looked up by
//!   key through a hash index on `pk` (version 3).
//! * `outpost.nodes(node_id, name, registered_at, last_seen_at,
//!   applied_local_seq, cursor_txid, cursor_seq, incarnation)`: the node
//!   registry; `incarnation` (version 4) is the replica file's latest
//!   incarnation the node pushed under.
//! * Functions `outpost.capture_rows()` (statement level, version 2,
//!   replaced in versions 5, 6 and 7: [`MIGRATIONS`]; statements of up to
//!   64 rows run a statement prepared once per session, larger ones one
//!   planned for their size),
//!   `outpost.capture()` (row level), `outpost.notify()`,
//!   `outpost.capture_truncate()` and the row trigger's helper
//!   `outpost.record_change(…)`.
//!
//! And on every synced table its capture triggers
//! ([`CAPTURE_INSERT_TRIGGER`], [`CAPTURE_UPDATE_TRIGGER`],
//! [`CAPTURE_DELETE_TRIGGER`]; [`CAPTURE_TRIGGER`] on a partitioned table, see
//! [`Capture`]), [`NOTIFY_TRIGGER`] and [`TRUNCATE_TRIGGER`]; see
//! [`create_triggers_sql`].
//!
//! # The primary-key form
//!
//! A row is identified by a `jsonb` array holding `to_jsonb(value)` of each
//! primary-key column in key order (`["ckx1"]`, `["ckx1", 7]`). A client
//! computes the same key with [`pk_key_expr`] (`jsonb_build_array($1::text,
//! …)`). The capture functions run with `TimeZone = 'UTC'`,
//! `IntervalStyle = 'postgres'` and `extra_float_digits = 1`, the only
//! settings that change `to_jsonb`'s text for a supported key type; a client
//! computing keys must use the same settings (outpost's own sessions do).
//!
//! # Who may write
//!
//! The trigger functions are `SECURITY DEFINER` (owned by whoever installed
//! the schema) with a fixed `search_path`, so any role that may write a synced
//! table is tracked without needing privileges on schema `outpost`.
//!
//! # Why the table name is a trigger argument
//!
//! The first trigger argument is the table's name, the primary-key columns
//! follow. `TG_TABLE_NAME` would name the *partition* a row landed in when the
//! synced table is partitioned; the argument always names the synced table.
//!
//! # Upgrades
//!
//! [`MIGRATIONS`] is the ordered list of steps, each keyed by the version it
//! produces. Installing on version *n* applies the steps after *n*; a server
//! whose version is newer than [`latest_version`] is refused
//! ([`pending_migrations`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::ident::{literal, quote};
use crate::schema::{Schema, Table};

mod migrations;
pub use migrations::{MIGRATIONS, Migration, latest_version};

/// The PostgreSQL schema holding outpost's tracking objects.
pub const SCHEMA: &str = "outpost";

/// The `LISTEN`/`NOTIFY` channel; the payload is the changed table's name.
pub const CHANNEL: &str = "outpost_changes";

/// The session setting a node sets (`SET LOCAL outpost.origin = '<node id>'`)
/// so the changes of its transaction carry its id as `origin`.
pub const ORIGIN_SETTING: &str = "outpost.origin";

/// The session setting carrying the node's local sequence number of the
/// change being pushed; it lands in `row_versions.origin_local_seq`.
pub const LOCAL_SEQ_SETTING: &str = "outpost.local_seq";

/// The session setting a push sets to the table its next statement writes:
/// the capture stamps [`LOCAL_SEQ_SETTING`] only on that statement's rows
/// (tracking schema version 6).
pub const PUSH_TABLE_SETTING: &str = "outpost.push_table";

/// The row-level trigger recording inserts, updates and deletes (partitioned
/// tables only since version 2; see [`Capture`]).
pub const CAPTURE_TRIGGER: &str = "outpost_capture";

/// The statement-level triggers recording inserts, updates and deletes from
/// their transition tables (one per event: PostgreSQL allows transition
/// tables only on single-event triggers).
pub const CAPTURE_INSERT_TRIGGER: &str = "outpost_capture_ins";
/// See [`CAPTURE_INSERT_TRIGGER`].
pub const CAPTURE_UPDATE_TRIGGER: &str = "outpost_capture_upd";
/// See [`CAPTURE_INSERT_TRIGGER`].
pub const CAPTURE_DELETE_TRIGGER: &str = "outpost_capture_del";

/// How a synced table's changes are captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// Statement-level triggers with transition tables (ordinary tables).
    Statement,
    /// The row-level trigger (partitioned tables: a statement naming a
    /// partition fires only row triggers cloned from the parent).
    Row,
}

/// The statement-level trigger sending a notification on [`CHANNEL`].
pub const NOTIFY_TRIGGER: &str = "outpost_notify";

/// The statement-level trigger recording a `TRUNCATE`.
pub const TRUNCATE_TRIGGER: &str = "outpost_truncate";

/// The key of the transaction-level advisory lock held by install, upgrade
/// and uninstall, so two of them never interleave (`"outpost"` in ASCII).
pub const ADVISORY_LOCK_KEY: i64 = 0x006f_7574_706f_7374;

/// `pg_trigger.tgtype` bit: row-level (otherwise statement-level).
pub const TGTYPE_ROW: i16 = 1;
/// `pg_trigger.tgtype` bit: `INSERT`.
pub const TGTYPE_INSERT: i16 = 4;
/// `pg_trigger.tgtype` bit: `DELETE`.
pub const TGTYPE_DELETE: i16 = 8;
/// `pg_trigger.tgtype` bit: `UPDATE`.
pub const TGTYPE_UPDATE: i16 = 16;
/// `pg_trigger.tgtype` bit: `TRUNCATE`.
pub const TGTYPE_TRUNCATE: i16 = 32;

/// The server's tracking schema is newer than this build knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the server's outpost tracking schema is version {installed}, newer than the \
     version {supported} this outpost knows; upgrade outpost instead"
)]
pub struct NewerSchemaVersion {
    /// The version found in `outpost.meta`.
    pub installed: i32,
    /// [`latest_version`].
    pub supported: i32,
}

/// The migrations still to apply on a server at version `installed` (`None`:
/// nothing installed), or an error when the server is newer than this build.
pub fn pending_migrations(
    installed: Option<i32>,
) -> Result<&'static [Migration], NewerSchemaVersion> {
    let installed = installed.unwrap_or(0);
    if installed > latest_version() {
        return Err(NewerSchemaVersion {
            installed,
            supported: latest_version(),
        });
    }
    let first = MIGRATIONS
        .iter()
        .position(|m| m.version > installed)
        .unwrap_or(MIGRATIONS.len());
    Ok(&MIGRATIONS[first..])
}

/// The statements of one migration step followed by the update of
/// `schema_version` to its version.
pub fn migration_sql(m: &Migration) -> String {
    format!("{}\n{}", m.sql.trim_end(), set_version_sql(m.version))
}

/// Records `version` as the installed schema version.
pub fn set_version_sql(version: i32) -> String {
    format!(
        "INSERT INTO \"outpost\".\"meta\" (\"key\", \"value\") VALUES ('schema_version', {}) \
         ON CONFLICT (\"key\") DO UPDATE SET \"value\" = EXCLUDED.\"value\";",
        literal(&version.to_string())
    )
}

/// Whether `outpost.meta` exists (one boolean column).
pub const META_EXISTS_SQL: &str = "SELECT to_regclass('\"outpost\".\"meta\"') IS NOT NULL";

/// The installed `schema_version` as text (zero or one row); run only when
/// [`META_EXISTS_SQL`] says the table exists.
pub const INSTALLED_VERSION_SQL: &str =
    "SELECT \"value\" FROM \"outpost\".\"meta\" WHERE \"key\" = 'schema_version'";

/// Whether the schema `outpost` exists (one boolean column).
pub const SCHEMA_EXISTS_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'outpost')";

/// Takes the install lock for the rest of the transaction.
pub const LOCK_SQL: &str = "SELECT pg_catalog.pg_advisory_xact_lock(31372865377891188)";

/// Every trigger on any table whose function lives in schema `outpost`,
/// with what [`InstalledTrigger`] needs: `pg_schema`, `table_name`,
/// `trigger_name`, `function_name`, `tgtype` (int4), `enabled` (bool),
/// `plain` (no `WHEN` and no column list), `args` (bytea, `tgargs`) and
/// `nargs` (int4). Triggers cloned onto partitions are left out: they come
/// and go with their parent's.
pub const LIST_TRIGGERS_SQL: &str = "SELECT n.nspname::text AS pg_schema, c.relname::text AS table_name, \
t.tgname::text AS trigger_name, p.proname::text AS function_name, t.tgtype::int4 AS tgtype, \
t.tgenabled <> 'D' AS enabled, \
(t.tgqual IS NULL AND cardinality(t.tgattr::int2[]) = 0) AS plain, \
t.tgargs AS args, t.tgnargs::int4 AS nargs \
FROM pg_catalog.pg_trigger t \
JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid \
JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
WHERE pn.nspname = 'outpost' AND NOT t.tgisinternal AND t.tgparentid = 0 \
ORDER BY 1, 2, 3";

/// Drops the tracking schema with everything in it (its triggers on user
/// tables go with their functions). User tables and data are untouched.
pub const DROP_SCHEMA_SQL: &str = "DROP SCHEMA IF EXISTS \"outpost\" CASCADE;";

/// A trigger whose function lives in schema `outpost`, as found in
/// `pg_trigger` or as outpost wants it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InstalledTrigger {
    /// Schema of the table the trigger is on.
    pub pg_schema: String,
    /// The table.
    pub table: String,
    /// The trigger's name.
    pub name: String,
    /// Its function's name in schema `outpost`.
    pub function: String,
    /// `pg_trigger.tgtype`: timing, level and events ([`TGTYPE_ROW`] …).
    pub tgtype: i16,
    /// Its arguments.
    pub args: Vec<String>,
    /// Not disabled (`ALTER TABLE … DISABLE TRIGGER`).
    pub enabled: bool,
    /// Without a `WHEN` condition or an `UPDATE OF` column list.
    pub plain: bool,
}

/// The triggers outpost wants on `table` (in schema `pg_schema`).
pub fn expected_triggers(
    pg_schema: &str,
    table: &Table,
    capture: Capture,
) -> Vec<InstalledTrigger> {
    let make = |name: &str, function: &str, tgtype: i16, args: Vec<String>| InstalledTrigger {
        pg_schema: pg_schema.to_string(),
        table: table.name.clone(),
        name: name.to_string(),
        function: function.to_string(),
        tgtype,
        args,
        enabled: true,
        plain: true,
    };
    let mut capture_args = vec![table.name.clone()];
    capture_args.extend(table.primary_key.iter().cloned());
    let dml = TGTYPE_INSERT | TGTYPE_DELETE | TGTYPE_UPDATE;
    let mut triggers = match capture {
        Capture::Row => vec![make(
            CAPTURE_TRIGGER,
            "capture",
            TGTYPE_ROW | dml,
            capture_args,
        )],
        Capture::Statement => vec![
            make(
                CAPTURE_DELETE_TRIGGER,
                "capture_rows",
                TGTYPE_DELETE,
                capture_args.clone(),
            ),
            make(
                CAPTURE_INSERT_TRIGGER,
                "capture_rows",
                TGTYPE_INSERT,
                capture_args.clone(),
            ),
            make(
                CAPTURE_UPDATE_TRIGGER,
                "capture_rows",
                TGTYPE_UPDATE,
                capture_args,
            ),
        ],
    };
    triggers.extend([
        make(NOTIFY_TRIGGER, "notify", dml, vec![table.name.clone()]),
        make(
            TRUNCATE_TRIGGER,
            "capture_truncate",
            TGTYPE_TRUNCATE,
            vec![table.name.clone()],
        ),
    ]);
    triggers
}

/// Splits `pg_trigger.tgargs` (each argument followed by a NUL byte) into
/// its `nargs` arguments.
pub fn parse_tgargs(raw: &[u8], nargs: usize) -> Vec<String> {
    raw.split(|b| *b == 0)
        .take(nargs)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// What install must do to the triggers: see [`plan_triggers`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriggerPlan {
    /// Synced tables whose outpost triggers are missing or differ: their
    /// three triggers are (re)created by [`create_triggers_sql`].
    pub recreate: Vec<String>,
    /// Outpost triggers to drop `(pg_schema, table, trigger)`: on tables no
    /// longer synced, or unknown ones on synced tables.
    pub drop: Vec<(String, String, String)>,
}

impl TriggerPlan {
    /// True when the triggers are already as wanted.
    pub fn is_empty(&self) -> bool {
        self.recreate.is_empty() && self.drop.is_empty()
    }
}

/// Compares the outpost triggers found on the server with the ones `schema`
/// wants (`row_capture`: the partitioned tables, see [`Capture`]). A synced
/// table is recreated unless it has exactly the wanted triggers, so a second
/// install finds nothing to do.
pub fn plan_triggers(
    existing: &[InstalledTrigger],
    schema: &Schema,
    row_capture: &BTreeSet<String>,
) -> TriggerPlan {
    let mut found: BTreeMap<(&str, &str), BTreeSet<&InstalledTrigger>> = BTreeMap::new();
    for t in existing {
        found
            .entry((t.pg_schema.as_str(), t.table.as_str()))
            .or_default()
            .insert(t);
    }
    let mut plan = TriggerPlan::default();
    let mut synced: BTreeSet<(&str, &str)> = BTreeSet::new();
    for table in &schema.tables {
        let key = (schema.pg_schema.as_str(), table.name.as_str());
        synced.insert(key);
        let want = expected_triggers(
            &schema.pg_schema,
            table,
            capture_of(row_capture, &table.name),
        );
        let have = found.get(&key).cloned().unwrap_or_default();
        if have != want.iter().collect::<BTreeSet<_>>() {
            plan.recreate.push(table.name.clone());
            let wanted_names: BTreeSet<&str> = want.iter().map(|t| t.name.as_str()).collect();
            // Our names are replaced by create_triggers_sql; anything else
            // calling an outpost function goes (the row trigger of version 1
            // among them).
            for t in have {
                if !wanted_names.contains(t.name.as_str()) {
                    plan.drop
                        .push((t.pg_schema.clone(), t.table.clone(), t.name.clone()));
                }
            }
        }
    }
    for t in existing {
        if !synced.contains(&(t.pg_schema.as_str(), t.table.as_str())) {
            plan.drop
                .push((t.pg_schema.clone(), t.table.clone(), t.name.clone()));
        }
    }
    plan.drop.sort();
    plan
}

/// The capture a table gets, given the set of tables needing row capture.
pub fn capture_of(row_capture: &BTreeSet<String>, table: &str) -> Capture {
    if row_capture.contains(table) {
        Capture::Row
    } else {
        Capture::Statement
    }
}

/// The partitioned tables of a schema (one text column, `relname`; `$1` is
/// the schema): they get row capture.
pub const PARTITIONED_TABLES_SQL: &str = "SELECT c.relname::text FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'p'";

/// Drops one trigger, if it exists.
pub fn drop_trigger_sql(pg_schema: &str, table: &str, trigger: &str) -> String {
    format!(
        "DROP TRIGGER IF EXISTS {} ON {}.{};",
        quote(trigger),
        quote(pg_schema),
        quote(table)
    )
}

/// (Re)creates the outpost triggers on `table`: drop if present, then
/// create (PostgreSQL 13 has no `CREATE OR REPLACE TRIGGER`).
pub fn create_triggers_sql(pg_schema: &str, table: &Table, capture: Capture) -> String {
    let target = format!("{}.{}", quote(pg_schema), quote(&table.name));
    let name_arg = literal(&table.name);
    let mut capture_args = vec![name_arg.clone()];
    capture_args.extend(table.primary_key.iter().map(|c| literal(c)));
    let capture_args = capture_args.join(", ");
    let statement = |event: &str, referencing: &str| {
        format!(
            "AFTER {event} ON {target} REFERENCING {referencing} FOR EACH STATEMENT \
             EXECUTE FUNCTION \"outpost\".\"capture_rows\"({capture_args})"
        )
    };
    let capture_triggers = match capture {
        Capture::Row => vec![(
            CAPTURE_TRIGGER,
            format!(
                "AFTER INSERT OR UPDATE OR DELETE ON {target} FOR EACH ROW \
                 EXECUTE FUNCTION \"outpost\".\"capture\"({capture_args})"
            ),
        )],
        Capture::Statement => vec![
            (
                CAPTURE_DELETE_TRIGGER,
                statement("DELETE", "OLD TABLE AS old_rows"),
            ),
            (
                CAPTURE_INSERT_TRIGGER,
                statement("INSERT", "NEW TABLE AS new_rows"),
            ),
            (
                CAPTURE_UPDATE_TRIGGER,
                statement("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ),
        ],
    };
    let mut sql = String::new();
    for (trigger, body) in capture_triggers.into_iter().chain([
        (
            NOTIFY_TRIGGER,
            format!(
                "AFTER INSERT OR UPDATE OR DELETE ON {target} FOR EACH STATEMENT \
                 EXECUTE FUNCTION \"outpost\".\"notify\"({name_arg})"
            ),
        ),
        (
            TRUNCATE_TRIGGER,
            format!(
                "AFTER TRUNCATE ON {target} FOR EACH STATEMENT \
                 EXECUTE FUNCTION \"outpost\".\"capture_truncate\"({name_arg})"
            ),
        ),
    ]) {
        sql.push_str(&drop_trigger_sql(pg_schema, &table.name, trigger));
        sql.push('\n');
        sql.push_str(&format!("CREATE TRIGGER {} {body};\n", quote(trigger)));
    }
    sql
}

/// The expression computing a row's key (module doc) from bind parameters
/// `$first_param…`, one per primary-key column, each cast to the column's
/// type: `jsonb_build_array($1::text, $2::integer)`.
pub fn pk_key_expr(table: &Table, first_param: usize) -> String {
    let parts: Vec<String> = table
        .primary_key
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let ty = table
                .column(name)
                .map_or_else(|| "text".to_string(), |c| c.ty.pg_name.clone());
            format!("${}::{ty}", first_param + i)
        })
        .collect();
    format!("jsonb_build_array({})", parts.join(", "))
}

#[cfg(test)]
mod tests;
