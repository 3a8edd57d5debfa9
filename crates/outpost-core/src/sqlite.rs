//! The SQL outpost generates for the SQLite replica: metadata tables,
//! replicated tables, indexes and capture triggers. Pure string generation,
//! pinned by exact-string tests; `outpost-local` executes it.
//!
//! # Metadata tables
//!
//! | table | holds |
//! |---|---|
//! | `_outpost_meta(key, value)` | `node_id`, `meta_version`, `schema` (the [`Schema`] as JSON), `schema_hash`, `created_at`, `incarnations` (the file's incarnations, a JSON array of UUIDs, newest last), `former_node_ids` (ids before the file became a new node) |
//! | `_outpost_cursor` | one row: the pull cursor `(txid, seq)` and the replica `state` (`EMPTY`, `BOOTSTRAPPING`, `READY`) |
//! | `_outpost_local_seq` | one row: the last local change folded into `_outpost_rows` |
//! | `_outpost_changes` | the capture log: one row per local change not yet folded (below) |
//! | `_outpost_apply` | one row: `active = 1` while the engine applies server changes (silences capture) |
//! | `_outpost_rows` | one row per replicated row that differs from "untouched since bootstrap" (below) |
//! | `_outpost_ids` | ranges `next..=last` of ids reserved from the server's sequences, for rows created offline |
//! | `_outpost_tags` | through a gateway with sync rules (version 8): each served row's opaque tag and its key (`_outpost_rows.pk` form), so a deletion that carries only a tag finds its row |
//! | `_outpost_tags_copied` | the tags of a table's copy as they arrive, moved into `_outpost_tags` when the copy is done (version 8) |
//! | `SyncLog` | the seed's log: one row per model per sync run; `status` `RUNNING`, `SUCCESS`, `FAILED`, or `INTERRUPTED` (its process stopped before the run ended: closed when the replica is next opened; version 3) |
//!
//! # `_outpost_rows`
//!
//! A row of a replicated table that has no entry here is **synced as of the
//! cursor**: the server row as of the replica's cursor, never changed
//! locally. An entry records:
//!
//! * `pk`: the row's key as the JSON array of its primary-key values in
//!   row-JSON form (below), e.g. `["clx1"]` or `[7,"a"]`;
//! * `status`: `SYNCED`, `PENDING` (changed locally, not yet on the server),
//!   `CONFLICT` (both sides changed; never pushed until resolved) or
//!   `FAILED` (the server refused it; `error` holds its message);
//! * `server_version`: the server version the local row is based on; `NULL`
//!   means "as of the cursor" (the row was not changed on the server since the
//!   replica's bootstrap, as far as the replica has pulled);
//! * `base_row`: for a non-`SYNCED` row, the row as it was before its first
//!   local change, in row-JSON form (the common ancestor of a three-way
//!   merge); `NULL` when the row did not exist then;
//! * `local_seq`: the number of the row's latest local change (growing);
//! * `deleted`: the local row is deleted;
//! * `conflict_row`, `conflict_version`: the server's side of a conflict;
//! * `lost_values` (version 6): local values of columns the server no
//!   longer has (dropped or renamed), kept by a `setup` that migrated the
//!   table, as a JSON object; the row's other changes are pushed, and then
//!   the entry becomes `FAILED` with a message that shows these values.
//! * `moved_from` (version 7): for a row that an update of its primary key
//!   created, the key it had before (`_outpost_rows.pk` form), kept while
//!   the entry is not `SYNCED`: the push sends the old key's delete and
//!   this insert as one update of the key (docs/protocol.md, "Key
//!   changes").
//!
//! Two partial indexes hold only the entries that are not `SYNCED` (a
//! replica's entries are mostly `SYNCED`: one per row ever pushed or
//! pulled): `_outpost_rows_dirty (status, local_seq)` for reads in change
//! order, `_outpost_rows_pending (status, table_name, deleted, local_seq)`
//! for the push's reads of one table and kind. A statement uses them only
//! when its condition holds `status <> 'SYNCED'` itself.
//!
//! # Row JSON
//!
//! Triggers save rows with SQLite's `json_object`, which cannot hold blobs or
//! infinities, so a row in JSON uses: `BLOB` columns as uppercase hex text,
//! `REAL` infinities as the strings `"Infinity"`/`"-Infinity"` (NaN is already
//! stored as the text `NaN`), a blob stored in any other column (SQLite takes
//! it) as uppercase hex text too, so the application's write never fails in
//! a trigger, every other stored value as itself (arrays and JSON columns are
//! text). `outpost-local` reads it back by column type.
//!
//! # Capture triggers and the change log
//!
//! Four triggers per table, all `AFTER … FOR EACH ROW` and all silent while
//! `_outpost_apply.active = 1`: `_outpost_ins_T`, `_outpost_upd_T` (key
//! unchanged and some column changed), `_outpost_updkey_T` (key changed:
//! recorded as a delete of the old key and an insert of the new one whose
//! `moved_from` names the old key, version 7) and
//! `_outpost_del_T`. Each appends one row to `_outpost_changes(local_seq,
//! table_name, pk, base_row, deleted, changed_at)`: the change's number is
//! the log's rowid (`INTEGER PRIMARY KEY`, so SQLite hands out the largest
//! plus one), `base_row` is the row before the change, `changed_at` a Julian
//! day number. An append to a rowid table is the cheapest write SQLite has;
//! the former per-change upsert into `_outpost_rows` cost five times the
//! application's own insert (docs/performance.md, B6).
//!
//! [`FOLD_CHANGES`] folds the log into `_outpost_rows`, one entry per row:
//! `PENDING` (a `CONFLICT` stays `CONFLICT`, a `FAILED` row is queued again),
//! `base_row` and `moved_from` from the row's first logged change when the
//! entry was `SYNCED` or absent, `local_seq`, `deleted` and `changed_at` from its
//! latest. `outpost-local` folds at the start of every operation that reads
//! or writes `_outpost_rows`, inside the same transaction, so no decision is
//! taken on a stale entry. Folded log rows are deleted except the newest,
//! which keeps the rowid sequence growing; `_outpost_local_seq.seq` is the
//! newest folded number, so only log rows above it are unfolded.
//!
//! A uuid key column also has two `BEFORE` guard triggers (version 5,
//! [`key_guard_triggers`]) that refuse an application's write of the key in
//! another spelling than PostgreSQL's.
//!
//! Foreign keys and unique constraints are not declared in the replica:
//! pulled changes arrive table by table and offline writes are checked by the
//! server at push (a refused row becomes `FAILED`). Their columns get plain
//! indexes so lookups stay fast.

use crate::ident::{literal, quote};
use crate::schema::{Column, Schema, Table};
use crate::types::ScalarType;

/// Version of the replica's metadata layout; bumped with every change to the
/// tables above, and migrated forward on open.
pub const META_VERSION: i64 = 8;

/// SQLite's reserved prefix and outpost's own; a synced table may not use them.
const RESERVED_PREFIXES: &[&str] = &["sqlite_", "_outpost_"];

/// The seed's sync log table in the replica.
pub const SYNC_LOG: &str = "SyncLog";

/// The index of [`SYNC_LOG`] by model.
pub const SYNC_LOG_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS \"_outpost_synclog_model\" ON \"SyncLog\" (model, id)";

/// `CREATE TABLE` of [`SYNC_LOG`]. `INTERRUPTED` (version 3): a run whose
/// process stopped before it ended, closed when the replica is next opened.
/// `local-change` (version 4): a push started because a local write was
/// committed to the replica.
pub fn sync_log_table() -> String {
    "CREATE TABLE IF NOT EXISTS \"SyncLog\" (\
id INTEGER PRIMARY KEY AUTOINCREMENT, \
model TEXT NOT NULL, \
direction TEXT NOT NULL CHECK (direction IN ('BIDIRECTIONAL', 'TO_SERVER', 'FROM_SERVER')), \
trigger TEXT NOT NULL CHECK (trigger IN ('manual', 'interval', 'reconnect', 'notify', 'startup', 'local-change')), \
status TEXT NOT NULL CHECK (status IN ('RUNNING', 'SUCCESS', 'FAILED', 'INTERRUPTED')), \
\"startedAt\" TEXT NOT NULL, \
\"completedAt\" TEXT, \
\"recordsProcessed\" INTEGER NOT NULL DEFAULT 0, \
\"recordsSucceeded\" INTEGER NOT NULL DEFAULT 0, \
\"recordsFailed\" INTEGER NOT NULL DEFAULT 0, \
conflicts INTEGER NOT NULL DEFAULT 0, \
error TEXT)"
        .into()
}

/// Most columns a synced table may have: `json_object` in the triggers
/// takes two arguments per column and SQLite allows 1000.
pub const MAX_COLUMNS: usize = 499;

/// The statements creating the metadata tables. Every statement is
/// idempotent (`IF NOT EXISTS`, `INSERT OR IGNORE`).
pub fn metadata_ddl() -> Vec<String> {
    vec![
        "CREATE TABLE IF NOT EXISTS \"_outpost_meta\" (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID".into(),
        "CREATE TABLE IF NOT EXISTS \"_outpost_cursor\" (id INTEGER PRIMARY KEY CHECK (id = 1), txid INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'EMPTY' CHECK (state IN ('EMPTY', 'BOOTSTRAPPING', 'READY')), updated_at TEXT)".into(),
        "INSERT OR IGNORE INTO \"_outpost_cursor\" (id) VALUES (1)".into(),
        "CREATE TABLE IF NOT EXISTS \"_outpost_local_seq\" (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL DEFAULT 0)".into(),
        "INSERT OR IGNORE INTO \"_outpost_local_seq\" (id) VALUES (1)".into(),
        "CREATE TABLE IF NOT EXISTS \"_outpost_apply\" (id INTEGER PRIMARY KEY CHECK (id = 1), active INTEGER NOT NULL DEFAULT 0)".into(),
        "INSERT OR IGNORE INTO \"_outpost_apply\" (id) VALUES (1)".into(),
        "CREATE TABLE IF NOT EXISTS \"_outpost_rows\" (\
table_name TEXT NOT NULL, \
pk TEXT NOT NULL, \
status TEXT NOT NULL CHECK (status IN ('SYNCED', 'PENDING', 'CONFLICT', 'FAILED')), \
server_version INTEGER, \
base_row TEXT, \
local_seq INTEGER, \
deleted INTEGER NOT NULL DEFAULT 0, \
error TEXT, \
conflict_row TEXT, \
conflict_version INTEGER, \
changed_at TEXT, \
lost_values TEXT, \
moved_from TEXT, \
PRIMARY KEY (table_name, pk)) WITHOUT ROWID".into(),
        "CREATE INDEX IF NOT EXISTS \"_outpost_rows_dirty\" ON \"_outpost_rows\" (status, local_seq) WHERE status <> 'SYNCED'".into(),
        // The push's reads of one table and kind (`outpost-local`'s push);
        // partial like the one above, so it holds only the entries with
        // local changes, and replicas made before it get it when opened.
        "CREATE INDEX IF NOT EXISTS \"_outpost_rows_pending\" ON \"_outpost_rows\" (status, table_name, deleted, local_seq) WHERE status <> 'SYNCED'".into(),
        "CREATE TABLE IF NOT EXISTS \"_outpost_changes\" (local_seq INTEGER PRIMARY KEY, table_name TEXT NOT NULL, \
pk TEXT NOT NULL, base_row TEXT, deleted INTEGER NOT NULL, changed_at REAL, moved_from TEXT)".into(),
        sync_log_table(),
        SYNC_LOG_INDEX.into(),
        "CREATE TABLE IF NOT EXISTS \"_outpost_ids\" (table_name TEXT NOT NULL, column_name TEXT NOT NULL, \
next INTEGER NOT NULL, last INTEGER NOT NULL, PRIMARY KEY (table_name, column_name, next)) WITHOUT ROWID".into(),
        // Version 8: the gateway's row tags (below), looked up by tag, and
        // a copy's tags in arrival order, moved into the first sorted by
        // tag when the table's copy is done (appending is cheap; inserting
        // random tags one chunk at a time cost more than the rows).
        "CREATE TABLE IF NOT EXISTS \"_outpost_tags\" (table_name TEXT NOT NULL, tag TEXT NOT NULL, \
pk TEXT NOT NULL, PRIMARY KEY (table_name, tag)) WITHOUT ROWID".into(),
        "CREATE TABLE IF NOT EXISTS \"_outpost_tags_copied\" (table_name TEXT NOT NULL, tag TEXT NOT NULL, \
pk TEXT NOT NULL)".into(),
    ]
}

/// Checks that every table of `schema` can live in SQLite: no reserved
/// names, no two tables (or two columns of a table) whose names differ only
/// in case (SQLite compares identifiers case-insensitively), at most
/// [`MAX_COLUMNS`] columns. Every problem is named at once, one per line
/// ([`schema_problems`]).
pub fn check_schema(schema: &Schema) -> Result<(), String> {
    let problems = schema_problems(schema);
    if problems.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = problems.into_iter().map(|(_, m)| m).collect();
    Err(lines.join("\n"))
}

/// Every reason a table of `schema` cannot live in SQLite (see
/// [`check_schema`]), as `(table, message)` in table order.
pub fn schema_problems(schema: &Schema) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for t in &schema.tables {
        let lower = t.name.to_ascii_lowercase();
        if RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
            || lower == SYNC_LOG.to_ascii_lowercase()
        {
            out.push((t.name.clone(), format!(
                "table {:?} cannot be replicated: its name is reserved in the replica (sqlite_*, _outpost_*, SyncLog); exclude it with OUTPOST_EXCLUDE_TABLES",
                t.name
            )));
        }
        if let Some(other) = seen.iter().find(|o| o.eq_ignore_ascii_case(&t.name)) {
            out.push((t.name.clone(), format!(
                "tables {other:?} and {:?} differ only in case, which SQLite cannot tell apart; exclude one with OUTPOST_EXCLUDE_TABLES",
                t.name
            )));
        }
        seen.push(&t.name);
        if t.columns.len() > MAX_COLUMNS {
            out.push((
                t.name.clone(),
                format!(
                    "table {:?} has {} columns; the replica supports at most {MAX_COLUMNS}",
                    t.name,
                    t.columns.len()
                ),
            ));
        }
        let mut cols: Vec<&str> = Vec::new();
        for c in &t.columns {
            if let Some(other) = cols.iter().find(|o| o.eq_ignore_ascii_case(&c.name)) {
                out.push((t.name.clone(), format!(
                    "table {:?}: columns {other:?} and {:?} differ only in case, which SQLite cannot tell apart",
                    t.name, c.name
                )));
            }
            cols.push(&c.name);
        }
    }
    out
}

/// `CREATE TABLE` for a replicated table: every column with its SQLite
/// declared type, `NOT NULL` where PostgreSQL has it, defaults SQLite can
/// evaluate itself ([`sqlite_default`]), and the primary key.
pub fn create_table(table: &Table) -> String {
    let mut parts: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let mut s = format!("{} {}", quote(&c.name), c.ty.sqlite_decl());
            if !c.nullable {
                s.push_str(" NOT NULL");
            }
            if let Some(d) = sqlite_default(c) {
                s.push_str(" DEFAULT ");
                s.push_str(&d);
            }
            s
        })
        .collect();
    parts.push(format!(
        "PRIMARY KEY ({})",
        table
            .primary_key
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        quote(&table.name),
        parts.join(", ")
    )
}

/// Plain indexes on the columns of unique constraints and foreign keys, so
/// lookups and relation loading stay fast (the constraints themselves are
/// the server's to enforce).
pub fn create_indexes(table: &Table) -> Vec<String> {
    let mut column_sets: Vec<&Vec<String>> = Vec::new();
    for cols in table
        .uniques
        .iter()
        .chain(table.foreign_keys.iter().map(|fk| &fk.columns))
    {
        // The primary key already has an index, and so does any prefix of it.
        let covered =
            cols.len() <= table.primary_key.len() && table.primary_key[..cols.len()] == cols[..];
        if !covered && !column_sets.contains(&cols) {
            column_sets.push(cols);
        }
    }
    column_sets
        .into_iter()
        .map(|cols| {
            let name = format!("_outpost_ix_{}_{}", table.name, cols.join("_"));
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                quote(&name),
                quote(&table.name),
                cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

/// The SQLite default for a column whose PostgreSQL default SQLite can
/// compute the same way: constants, `now()`/`CURRENT_TIMESTAMP`,
/// `CURRENT_DATE`, `gen_random_uuid()`. Sequences and anything else get
/// none; the model service fills those (a sequence from the node's block of
/// reserved ids).
pub fn sqlite_default(column: &Column) -> Option<String> {
    let raw = column.default.as_deref()?.trim();
    if column.ty.array {
        return (raw == "'{}'::text[]" || raw.starts_with("'{}'::") || raw == "ARRAY[]::text[]")
            .then(|| "'[]'".to_string());
    }
    let lower = raw.to_ascii_lowercase();
    let is_now = matches!(
        lower.as_str(),
        "now()"
            | "current_timestamp"
            | "transaction_timestamp()"
            | "statement_timestamp()"
            | "clock_timestamp()"
    ) || lower.starts_with("current_timestamp(");
    match &column.ty.scalar {
        ScalarType::Timestamptz if is_now => {
            return Some("(strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))".into());
        }
        ScalarType::Timestamp if is_now || lower.starts_with("localtimestamp") => {
            return Some("(strftime('%Y-%m-%dT%H:%M:%f000', 'now'))".into());
        }
        ScalarType::Date if lower == "current_date" => return Some("(date('now'))".into()),
        // With or without a cast (`(gen_random_uuid())::text`, as
        // PostgreSQL prints `gen_random_uuid()::text`): SQLite stores uuids
        // as their text, so the same expression serves text columns.
        ScalarType::Uuid | ScalarType::Text | ScalarType::Varchar if is_random_uuid(&lower) => {
            return Some(UUID_V4_EXPR.into());
        }
        ScalarType::Bool => {
            return match lower.as_str() {
                "true" => Some("1".into()),
                "false" => Some("0".into()),
                _ => None,
            };
        }
        ScalarType::Int2 | ScalarType::Int4 | ScalarType::Int8 => {
            let n = lower
                .trim_start_matches('(')
                .split(')')
                .next()
                .unwrap_or_default();
            return n.parse::<i64>().ok().map(|i| i.to_string());
        }
        ScalarType::Float4 | ScalarType::Float8 => {
            let n = lower
                .trim_start_matches('(')
                .split([')', ':'])
                .next()
                .unwrap_or_default();
            return n
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(|f| format!("{f:?}"));
        }
        _ => {}
    }
    // A string constant: 'text'::type. Keep the text as written when the
    // type's canonical form is the text itself.
    let constant = string_constant(raw)?;
    match &column.ty.scalar {
        ScalarType::Text | ScalarType::Varchar | ScalarType::Char | ScalarType::Enum(_) => {
            Some(literal(&constant))
        }
        ScalarType::Numeric => crate::types::normalise_numeric(&constant).map(|n| literal(&n)),
        ScalarType::Json | ScalarType::Jsonb => {
            serde_json::from_str::<serde_json::Value>(&constant)
                .ok()
                .map(|_| literal(&constant))
        }
        _ => None,
    }
}

/// `gen_random_uuid()` or `uuid_generate_v4()`, in parentheses or not,
/// with a cast to a text or uuid type or none.
fn is_random_uuid(lower: &str) -> bool {
    let mut e = lower.trim();
    for cast in ["::text", "::character varying", "::varchar", "::uuid"] {
        if let Some(rest) = e.strip_suffix(cast) {
            e = rest.trim();
            break;
        }
    }
    while let Some(inner) = e.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        e = inner.trim();
    }
    matches!(e, "gen_random_uuid()" | "uuid_generate_v4()")
}

/// `'it''s'::text` → `it's`; `NULL` and expressions → `None`.
fn string_constant(raw: &str) -> Option<String> {
    let rest = raw.strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
                out.push('\'');
            } else {
                let tail: String = chars.collect();
                return (tail.is_empty() || tail.starts_with("::")).then_some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// A random version-4 UUID, lowercase, computed by SQLite.
pub const UUID_V4_EXPR: &str = "(lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))))";

/// The row-JSON expression for one column of `OLD` or `NEW` (module doc).
fn json_expr(row: &str, column: &Column) -> String {
    json_expr_of(&format!("{row}.{}", quote(&column.name)), column)
}

/// The row-JSON expression for one column's value given as the SQL
/// expression `c`.
fn json_expr_of(c: &str, column: &Column) -> String {
    let c = c.to_string();
    // An application may store a blob in any column (SQLite does not
    // refuse it) and `json_object` cannot hold one: it is saved as hex, so
    // the application's write never fails in the trigger. The push then
    // refuses the value for its column, for that row alone.
    if column.ty.array {
        return format!("CASE WHEN typeof({c}) = 'blob' THEN hex({c}) ELSE {c} END");
    }
    match column.ty.sqlite_decl() {
        "BLOB" => format!("CASE WHEN {c} IS NULL THEN NULL ELSE hex({c}) END"),
        "REAL" => format!(
            "CASE WHEN typeof({c}) = 'blob' THEN hex({c}) WHEN typeof({c}) = 'real' AND {c} > 1.7976931348623157e308 THEN 'Infinity' WHEN typeof({c}) = 'real' AND {c} < -1.7976931348623157e308 THEN '-Infinity' ELSE {c} END"
        ),
        _ => format!("CASE WHEN typeof({c}) = 'blob' THEN hex({c}) ELSE {c} END"),
    }
}

/// `json_array(…)` of the row's primary key: the `pk` of `_outpost_rows`.
pub fn pk_json(table: &Table, row: &str) -> String {
    let parts: Vec<String> = table.pk_columns().map(|c| json_expr(row, c)).collect();
    format!("json_array({})", parts.join(", "))
}

/// `SELECT json_array(…)` of bound key values `?1…`: computes a row's
/// `_outpost_rows.pk` exactly as the triggers do.
pub fn pk_json_select(table: &Table) -> String {
    let parts: Vec<String> = table
        .pk_columns()
        .enumerate()
        .map(|(i, c)| json_expr_of(&format!("?{}", i + 1), c))
        .collect();
    format!("SELECT json_array({})", parts.join(", "))
}

/// `json_object(…)` of the whole row: a `base_row`.
pub fn row_json(table: &Table, row: &str) -> String {
    let parts: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("{}, {}", literal(&c.name), json_expr(row, c)))
        .collect();
    format!("json_object({})", parts.join(", "))
}

const SILENT_WHEN: &str = "(SELECT active FROM \"_outpost_apply\" WHERE id = 1) = 0";

/// The append of one change to the log. `base` is the row-JSON of the row
/// before the change (`NULL` for an insert); `moved_from` the key JSON of
/// the row an update of the key moved here (`NULL` otherwise).
fn record_change(
    table: &Table,
    pk: &str,
    base: &str,
    deleted: bool,
    moved_from: Option<&str>,
) -> String {
    let Some(moved_from) = moved_from else {
        return format!(
            "INSERT INTO \"_outpost_changes\" (table_name, pk, base_row, deleted, changed_at) \
VALUES ({name}, {pk}, {base}, {del}, julianday('now'));",
            name = literal(&table.name),
            del = deleted as i32,
        );
    };
    format!(
        "INSERT INTO \"_outpost_changes\" (table_name, pk, base_row, deleted, changed_at, moved_from) \
VALUES ({name}, {pk}, {base}, {del}, julianday('now'), {moved_from});",
        name = literal(&table.name),
        del = deleted as i32,
    )
}

/// Folds the unfolded part of the change log (`local_seq > ?1`, the value of
/// `_outpost_local_seq.seq`) into `_outpost_rows` (module doc). The caller
/// then deletes the folded log rows but the newest and stores its number.
pub const FOLD_CHANGES: &str = "INSERT INTO \"_outpost_rows\" (table_name, pk, status, base_row, local_seq, deleted, changed_at, moved_from) \
SELECT table_name, pk, 'PENDING', first_base, local_seq, deleted, strftime('%Y-%m-%dT%H:%M:%f000Z', changed_at), first_moved \
FROM (SELECT table_name, pk, local_seq, deleted, changed_at, \
first_value(base_row) OVER (PARTITION BY table_name, pk ORDER BY local_seq) AS first_base, \
first_value(moved_from) OVER (PARTITION BY table_name, pk ORDER BY local_seq) AS first_moved, \
row_number() OVER (PARTITION BY table_name, pk ORDER BY local_seq DESC) AS newest \
FROM \"_outpost_changes\" WHERE local_seq > ?1) \
WHERE newest = 1 \
ON CONFLICT (table_name, pk) DO UPDATE SET \
status = CASE status WHEN 'CONFLICT' THEN 'CONFLICT' ELSE 'PENDING' END, \
base_row = CASE status WHEN 'SYNCED' THEN excluded.base_row ELSE base_row END, \
moved_from = CASE status WHEN 'SYNCED' THEN excluded.moved_from ELSE moved_from END, \
local_seq = excluded.local_seq, deleted = excluded.deleted, error = NULL, changed_at = excluded.changed_at";

/// The names of a table's capture triggers.
pub fn trigger_names(table: &Table) -> [String; 4] {
    ["ins", "upd", "updkey", "del"].map(|k| format!("_outpost_{k}_{}", table.name))
}

/// The capture triggers of a table (module doc).
pub fn capture_triggers(table: &Table) -> Vec<String> {
    let [ins, upd, updkey, del] = trigger_names(table);
    let t = quote(&table.name);
    let key_same = table
        .primary_key
        .iter()
        .map(|c| format!("OLD.{q} IS NEW.{q}", q = quote(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let all_same = table
        .columns
        .iter()
        .map(|c| format!("OLD.{q} IS NEW.{q}", q = quote(&c.name)))
        .collect::<Vec<_>>()
        .join(" AND ");
    vec![
        format!(
            "CREATE TRIGGER IF NOT EXISTS {} AFTER INSERT ON {t} WHEN {SILENT_WHEN} BEGIN {} END",
            quote(&ins),
            record_change(table, &pk_json(table, "NEW"), "NULL", false, None)
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {} AFTER UPDATE ON {t} WHEN {SILENT_WHEN} AND ({key_same}) AND NOT ({all_same}) BEGIN {} END",
            quote(&upd),
            record_change(
                table,
                &pk_json(table, "NEW"),
                &row_json(table, "OLD"),
                false,
                None
            )
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {} AFTER UPDATE ON {t} WHEN {SILENT_WHEN} AND NOT ({key_same}) BEGIN {} {} END",
            quote(&updkey),
            record_change(
                table,
                &pk_json(table, "OLD"),
                &row_json(table, "OLD"),
                true,
                None
            ),
            // The new key's record names the old one: the push sends the
            // pair as one update of the key (foreign keys' `ON UPDATE`
            // actions run on the server, docs/protocol.md "Key changes").
            record_change(
                table,
                &pk_json(table, "NEW"),
                "NULL",
                false,
                Some(&pk_json(table, "OLD"))
            )
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {} AFTER DELETE ON {t} WHEN {SILENT_WHEN} BEGIN {} END",
            quote(&del),
            record_change(
                table,
                &pk_json(table, "OLD"),
                &row_json(table, "OLD"),
                true,
                None
            )
        ),
    ]
}

/// Everything that creates one replicated table: the table, its indexes,
/// its capture triggers. Idempotent.
pub fn table_ddl(table: &Table) -> Vec<String> {
    let mut out = vec![create_table(table)];
    out.extend(create_indexes(table));
    out.extend(capture_triggers(table));
    out.extend(key_guard_triggers(table));
    out
}

/// The canonical text of a uuid, as a `GLOB` pattern: lower-case hex in
/// 8-4-4-4-12 groups, what PostgreSQL's `uuid_out` writes.
fn uuid_glob() -> String {
    [8, 4, 4, 4, 12]
        .iter()
        .map(|n| "[0-9a-f]".repeat(*n))
        .collect::<Vec<_>>()
        .join("-")
}

/// The spelling a key column's text must have, as a `GLOB` pattern, and
/// how to say it: a uuid as `uuid_out` writes it, a `timestamptz` as the
/// replica stores it (UTC, six fraction digits, `Z`). PostgreSQL would take
/// another spelling and store its own, and the replica would then hold the
/// row twice.
fn key_spelling(c: &crate::schema::Column) -> Option<(String, &'static str)> {
    if c.ty.array {
        return None;
    }
    let digits = |n: usize| "[0-9]".repeat(n);
    match c.ty.scalar {
        ScalarType::Uuid => Some((
            uuid_glob(),
            "a uuid key: write it as PostgreSQL does (lower case, 8-4-4-4-12 hex digits)",
        )),
        ScalarType::Timestamptz => Some((
            format!(
                "{}-{}-{}T{}:{}:{}.{}Z",
                digits(4),
                digits(2),
                digits(2),
                digits(2),
                digits(2),
                digits(2),
                digits(6)
            ),
            "a timestamptz key: write it in UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ (six fraction digits), as the replica stores it",
        )),
        _ => None,
    }
}

/// The key columns of a table a key guard watches, with their spelling.
fn guarded_key_columns(
    table: &Table,
) -> impl Iterator<Item = (&crate::schema::Column, (String, &'static str))> {
    table
        .pk_columns()
        .filter_map(|c| key_spelling(c).map(|s| (c, s)))
}

/// Names of a table's key guards (layout version 5 for uuid keys, 6 for
/// `timestamptz` keys): two per guarded key column, for inserts and for
/// updates of the column.
pub fn key_guard_names(table: &Table) -> Vec<String> {
    guarded_key_columns(table)
        .flat_map(|(c, _)| {
            ["ins", "upd"].map(|k| format!("_outpost_keyguard_{k}_{}_{}", table.name, c.name))
        })
        .collect()
}

/// Key guards: an application's write of a key in another spelling than
/// the one the server's rows arrive in (a uuid in upper case, braces, no
/// dashes; a `timestamptz` with an offset or another precision) is refused
/// with a message that says so. PostgreSQL would store the key in its own
/// spelling, and the replica would then hold the row twice, once under
/// each key (docs/protocol.md, "Keys in PostgreSQL's spelling"). Writes of
/// the sync itself (silenced) are not checked: they carry the server's
/// spelling.
pub fn key_guard_triggers(table: &Table) -> Vec<String> {
    let t = quote(&table.name);
    guarded_key_columns(table)
        .flat_map(|(c, (glob, what))| {
            let q = quote(&c.name);
            let message = literal(&format!(
                "outpost: {}.{} is {what}, or the server's spelling would make the row a second one",
                table.name, c.name
            ));
            let when = format!(
                "{SILENT_WHEN} AND typeof(NEW.{q}) = 'text' AND NEW.{q} NOT GLOB '{glob}'"
            );
            let [ins, upd] = ["ins", "upd"]
                .map(|k| quote(&format!("_outpost_keyguard_{k}_{}_{}", table.name, c.name)));
            [
                format!(
                    "CREATE TRIGGER IF NOT EXISTS {ins} BEFORE INSERT ON {t} WHEN {when} BEGIN SELECT RAISE(ABORT, {message}); END"
                ),
                format!(
                    "CREATE TRIGGER IF NOT EXISTS {upd} BEFORE UPDATE OF {q} ON {t} WHEN {when} BEGIN SELECT RAISE(ABORT, {message}); END"
                ),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Column;
    use crate::types::ColumnType;

    fn col(name: &str, scalar: ScalarType, nullable: bool, default: Option<&str>) -> Column {
        Column {
            name: name.into(),
            ty: ColumnType::scalar(scalar, "x"),
            nullable,
            default: default.map(str::to_string),
            identity: None,
            generated: false,
        }
    }

    fn post() -> Table {
        Table {
            name: "Post".into(),
            columns: vec![
                col("id", ScalarType::Text, false, None),
                col("score", ScalarType::Float8, true, None),
                col("body", ScalarType::Bytea, true, None),
                col("createdAt", ScalarType::Timestamptz, false, Some("now()")),
            ],
            primary_key: vec!["id".into()],
            foreign_keys: vec![],
            uniques: vec![],
            relations: vec![],
        }
    }

    #[test]
    fn create_table_sql() {
        assert_eq!(
            create_table(&post()),
            "CREATE TABLE IF NOT EXISTS \"Post\" (\"id\" TEXT NOT NULL, \"score\" REAL, \"body\" BLOB, \
\"createdAt\" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')), PRIMARY KEY (\"id\"))"
        );
    }

    #[test]
    fn trigger_sql() {
        let triggers = capture_triggers(&post());
        assert_eq!(triggers.len(), 4);
        assert_eq!(
            triggers[0],
            "CREATE TRIGGER IF NOT EXISTS \"_outpost_ins_Post\" AFTER INSERT ON \"Post\" \
WHEN (SELECT active FROM \"_outpost_apply\" WHERE id = 1) = 0 BEGIN \
INSERT INTO \"_outpost_changes\" (table_name, pk, base_row, deleted, changed_at) \
VALUES ('Post', json_array(CASE WHEN typeof(NEW.\"id\") = 'blob' THEN hex(NEW.\"id\") ELSE NEW.\"id\" END), \
NULL, 0, julianday('now')); END"
        );
        assert_eq!(
            row_json(&post(), "OLD"),
            "json_object('id', CASE WHEN typeof(OLD.\"id\") = 'blob' THEN hex(OLD.\"id\") ELSE OLD.\"id\" END, \
'score', CASE WHEN typeof(OLD.\"score\") = 'blob' THEN hex(OLD.\"score\") WHEN typeof(OLD.\"score\") = 'real' AND OLD.\"score\" > 1.7976931348623157e308 THEN 'Infinity' \
WHEN typeof(OLD.\"score\") = 'real' AND OLD.\"score\" < -1.7976931348623157e308 THEN '-Infinity' ELSE OLD.\"score\" END, \
'body', CASE WHEN OLD.\"body\" IS NULL THEN NULL ELSE hex(OLD.\"body\") END, \
'createdAt', CASE WHEN typeof(OLD.\"createdAt\") = 'blob' THEN hex(OLD.\"createdAt\") ELSE OLD.\"createdAt\" END)"
        );
        assert!(triggers[1].contains(
            "WHEN (SELECT active FROM \"_outpost_apply\" WHERE id = 1) = 0 AND (OLD.\"id\" IS NEW.\"id\") AND NOT \
(OLD.\"id\" IS NEW.\"id\" AND OLD.\"score\" IS NEW.\"score\" AND OLD.\"body\" IS NEW.\"body\" AND OLD.\"createdAt\" IS NEW.\"createdAt\")"
        ));
        assert!(triggers[2].starts_with(
            "CREATE TRIGGER IF NOT EXISTS \"_outpost_updkey_Post\" AFTER UPDATE ON \"Post\" \
WHEN (SELECT active FROM \"_outpost_apply\" WHERE id = 1) = 0 AND NOT (OLD.\"id\" IS NEW.\"id\") BEGIN"
        ));
    }

    #[test]
    fn hostile_names_are_quoted() {
        let mut t = post();
        t.name = "Po\"st; DROP TABLE x".into();
        assert!(
            create_table(&t).starts_with("CREATE TABLE IF NOT EXISTS \"Po\"\"st; DROP TABLE x\" (")
        );
        assert!(capture_triggers(&t)[0].contains("VALUES ('Po\"st; DROP TABLE x', "));
    }

    #[test]
    fn defaults_sqlite_can_compute() {
        let d = |scalar: ScalarType, raw: &str| sqlite_default(&col("c", scalar, true, Some(raw)));
        assert_eq!(
            d(ScalarType::Text, "'it''s'::text").as_deref(),
            Some("'it''s'")
        );
        assert_eq!(
            d(ScalarType::Enum("Role".into()), "'USER'::\"Role\"").as_deref(),
            Some("'USER'")
        );
        assert_eq!(d(ScalarType::Bool, "false").as_deref(), Some("0"));
        assert_eq!(d(ScalarType::Int4, "0").as_deref(), Some("0"));
        assert_eq!(d(ScalarType::Int4, "'-1'::integer"), None);
        assert_eq!(
            d(ScalarType::Int4, "nextval('\"Tag_id_seq\"'::regclass)"),
            None
        );
        assert_eq!(
            d(ScalarType::Numeric, "'1.50'::numeric").as_deref(),
            Some("'1.50'")
        );
        assert_eq!(
            d(ScalarType::Timestamp, "CURRENT_TIMESTAMP").as_deref(),
            Some("(strftime('%Y-%m-%dT%H:%M:%f000', 'now'))")
        );
        assert_eq!(
            d(ScalarType::Uuid, "gen_random_uuid()").as_deref(),
            Some(UUID_V4_EXPR)
        );
        assert_eq!(d(ScalarType::Text, "upper('x'::text)"), None);
        for cast in [
            "(gen_random_uuid())::text",
            "gen_random_uuid()::text",
            "(uuid_generate_v4())::character varying",
            "gen_random_uuid()::uuid",
        ] {
            assert_eq!(
                d(ScalarType::Text, cast).as_deref(),
                Some(UUID_V4_EXPR),
                "{cast}"
            );
        }
        assert_eq!(
            d(ScalarType::Text, "(gen_random_uuid())::text || 'x'"),
            None
        );
        assert_eq!(d(ScalarType::Jsonb, "'{}'::jsonb").as_deref(), Some("'{}'"));
    }

    #[test]
    fn names_sqlite_cannot_hold_are_refused() {
        let mut schema = Schema {
            pg_schema: "public".into(),
            tables: vec![post()],
            enums: vec![],
        };
        assert_eq!(check_schema(&schema), Ok(()));
        let mut other = post();
        other.name = "post".into();
        schema.tables.push(other);
        assert!(
            check_schema(&schema)
                .unwrap_err()
                .contains("\"Post\" and \"post\" differ only in case")
        );
        schema.tables[1].name = "SyncLog".into();
        assert!(check_schema(&schema).unwrap_err().contains("reserved"));
        // Every problem at once, not the first only.
        let mut third = post();
        third.name = "_outpost_x".into();
        third.columns.push(third.columns[0].clone());
        third.columns.last_mut().expect("column").name = third.columns[0].name.to_uppercase();
        schema.tables.push(third);
        let problems = schema_problems(&schema);
        assert_eq!(problems.len(), 3, "{problems:?}");
        let err = check_schema(&schema).unwrap_err();
        assert_eq!(err.lines().count(), 3, "{err}");
        assert!(err.contains("\"SyncLog\" cannot be replicated"), "{err}");
        assert!(err.contains("\"_outpost_x\" cannot be replicated"), "{err}");
        assert!(err.contains("differ only in case, which SQLite"), "{err}");
    }
}
