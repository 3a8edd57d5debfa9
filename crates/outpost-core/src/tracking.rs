//! The SQL of the server's tracking schema: everything outpost installs in
//! PostgreSQL to capture changes, as pure functions returning SQL text.
//!
//! This module owns the *text*; `outpost-remote` runs it (install, upgrade,
//! uninstall, status). Nothing here does I/O, and every statement is pinned by
//! an exact-string test below, so a change to the server's schema is always a
//! visible diff.
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
//!   replaced in version 5: [`MIGRATIONS`]),
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

/// One step of the tracking schema's upgrade path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The `schema_version` this step produces (1, 2, …, without gaps).
    pub version: i32,
    /// What the step does, for reports and logs.
    pub description: &'static str,
    /// The statements, run in one transaction with the others.
    pub sql: &'static str,
}

/// Version 1: the tables, the functions and their grants.
const V1: &str = r#"CREATE SCHEMA IF NOT EXISTS "outpost";

CREATE TABLE "outpost"."meta" (
    "key" text PRIMARY KEY,
    "value" text NOT NULL
);

CREATE TABLE "outpost"."changes" (
    "txid" xid8 NOT NULL DEFAULT pg_current_xact_id(),
    "seq" bigserial PRIMARY KEY,
    "table_name" text NOT NULL,
    "pk" jsonb,
    "op" text NOT NULL CHECK ("op" IN ('I', 'U', 'D', 'T')),
    "origin" text,
    "changed_at" timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (("op" = 'T') = ("pk" IS NULL))
);

CREATE INDEX "changes_txid_seq" ON "outpost"."changes" ("txid", "seq");

CREATE TABLE "outpost"."row_versions" (
    "table_name" text NOT NULL,
    "pk" jsonb NOT NULL,
    "version" bigint NOT NULL,
    "origin" text,
    "origin_local_seq" bigint,
    "deleted" boolean NOT NULL DEFAULT false,
    "updated_at" timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY ("table_name", "pk")
);

CREATE TABLE "outpost"."nodes" (
    "node_id" uuid PRIMARY KEY,
    "name" text,
    "registered_at" timestamptz NOT NULL DEFAULT now(),
    "last_seen_at" timestamptz,
    "applied_local_seq" bigint NOT NULL DEFAULT 0,
    "cursor_txid" xid8,
    "cursor_seq" bigint
);

CREATE FUNCTION "outpost"."record_change"(p_table text, p_pk jsonb, p_op text, p_origin text, p_local_seq bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_seq bigint;
BEGIN
    INSERT INTO "outpost"."changes" ("table_name", "pk", "op", "origin")
    VALUES (p_table, p_pk, p_op, p_origin)
    RETURNING "seq" INTO v_seq;
    INSERT INTO "outpost"."row_versions" AS rv
        ("table_name", "pk", "version", "origin", "origin_local_seq", "deleted", "updated_at")
    VALUES (p_table, p_pk, v_seq, p_origin, p_local_seq, p_op = 'D', clock_timestamp())
    ON CONFLICT ("table_name", "pk") DO UPDATE SET
        "version" = EXCLUDED."version",
        "origin" = EXCLUDED."origin",
        "origin_local_seq" = EXCLUDED."origin_local_seq",
        "deleted" = EXCLUDED."deleted",
        "updated_at" = EXCLUDED."updated_at";
    RETURN v_seq;
END
$fn$;

-- Row trigger. TG_ARGV[0] is the synced table's name, TG_ARGV[1..] its
-- primary-key columns in key order.
CREATE FUNCTION "outpost"."capture"()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
AS $fn$
DECLARE
    v_table text := TG_ARGV[0];
    v_origin text := NULLIF(current_setting('outpost.origin', true), '');
    v_local_seq bigint := NULLIF(current_setting('outpost.local_seq', true), '')::bigint;
    v_old jsonb;
    v_new jsonb;
    v_old_pk jsonb;
    v_new_pk jsonb;
BEGIN
    IF TG_OP = 'INSERT' OR TG_OP = 'UPDATE' THEN
        v_new := to_jsonb(NEW);
        SELECT jsonb_agg(v_new -> c ORDER BY n) INTO v_new_pk
        FROM unnest(TG_ARGV[1:]) WITH ORDINALITY AS k(c, n);
    END IF;
    IF TG_OP = 'DELETE' OR TG_OP = 'UPDATE' THEN
        v_old := to_jsonb(OLD);
        SELECT jsonb_agg(v_old -> c ORDER BY n) INTO v_old_pk
        FROM unnest(TG_ARGV[1:]) WITH ORDINALITY AS k(c, n);
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM "outpost"."record_change"(v_table, v_new_pk, 'I', v_origin, v_local_seq);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM "outpost"."record_change"(v_table, v_old_pk, 'D', v_origin, v_local_seq);
    ELSIF v_old::text = v_new::text THEN
        -- Nothing changed (text, not jsonb equality: 1.5 -> 1.50 is a change).
        NULL;
    ELSIF v_old_pk = v_new_pk THEN
        PERFORM "outpost"."record_change"(v_table, v_new_pk, 'U', v_origin, v_local_seq);
    ELSE
        PERFORM "outpost"."record_change"(v_table, v_old_pk, 'D', v_origin, v_local_seq);
        PERFORM "outpost"."record_change"(v_table, v_new_pk, 'I', v_origin, v_local_seq);
    END IF;
    RETURN NULL;
END
$fn$;

-- Statement trigger. TG_ARGV[0] is the synced table's name.
CREATE FUNCTION "outpost"."notify"()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM pg_notify('outpost_changes', TG_ARGV[0]);
    RETURN NULL;
END
$fn$;

-- TRUNCATE trigger. TG_ARGV[0] is the synced table's name.
CREATE FUNCTION "outpost"."capture_truncate"()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_table text := TG_ARGV[0];
    v_origin text := NULLIF(current_setting('outpost.origin', true), '');
    v_local_seq bigint := NULLIF(current_setting('outpost.local_seq', true), '')::bigint;
    v_seq bigint;
BEGIN
    INSERT INTO "outpost"."changes" ("table_name", "pk", "op", "origin")
    VALUES (v_table, NULL, 'T', v_origin)
    RETURNING "seq" INTO v_seq;
    UPDATE "outpost"."row_versions" SET
        "version" = v_seq,
        "origin" = v_origin,
        "origin_local_seq" = v_local_seq,
        "deleted" = true,
        "updated_at" = clock_timestamp()
    WHERE "table_name" = v_table AND NOT "deleted";
    PERFORM pg_notify('outpost_changes', v_table);
    RETURN NULL;
END
$fn$;

REVOKE ALL ON FUNCTION "outpost"."record_change"(text, jsonb, text, text, bigint) FROM PUBLIC;
"#;

/// Version 2: statement-level capture. One trigger call per statement reads
/// the statement's rows from its transition tables and writes
/// `outpost.changes` and `outpost.row_versions` with one set-based statement,
/// instead of a PL/pgSQL call, a key subquery and two single-row inserts per
/// row (about 110 µs a row before, under 20 µs after, on the bench machine).
/// The rules are the row trigger's: the key is `jsonb_build_array(to_jsonb(<pk
/// column>), …)` (the same text as `to_jsonb(NEW) -> <pk column>`); an update
/// pairs old and new rows by key, records `U` when the row's `jsonb` text
/// changed, nothing when it did not, `D` of a key that disappeared and `I` of
/// a key that appeared (deletes first). Partitioned tables keep the row
/// trigger: a statement naming a partition directly fires only the
/// partition's statement triggers, while row triggers are cloned onto it.
const V2: &str = r#"-- Statement trigger with transition tables old_rows/new_rows. TG_ARGV[0]
-- is the synced table's name, TG_ARGV[1..] its primary-key columns.
CREATE FUNCTION "outpost"."capture_rows"()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
AS $fn$
DECLARE
    v_key_new text;
    v_key_old text;
    v_src text;
BEGIN
    SELECT string_agg(format('to_jsonb(n.%I)', c), ', ' ORDER BY o),
           string_agg(format('to_jsonb(o.%I)', c), ', ' ORDER BY o)
    INTO v_key_new, v_key_old
    FROM unnest(TG_ARGV[1:]) WITH ORDINALITY AS k(c, o);
    IF TG_OP = 'INSERT' THEN
        v_src := format('SELECT jsonb_build_array(%s) AS pk, %L AS op FROM new_rows n', v_key_new, 'I');
    ELSIF TG_OP = 'DELETE' THEN
        v_src := format('SELECT jsonb_build_array(%s) AS pk, %L AS op FROM old_rows o', v_key_old, 'D');
    ELSE
        v_src := format(
            'SELECT COALESCE(n.pk, o.pk) AS pk, CASE WHEN o.pk IS NULL THEN %L WHEN n.pk IS NULL THEN %L ELSE %L END AS op '
            'FROM (SELECT jsonb_build_array(%s) AS pk, to_jsonb(o)::text AS r FROM old_rows o) o '
            'FULL JOIN (SELECT jsonb_build_array(%s) AS pk, to_jsonb(n)::text AS r FROM new_rows n) n ON n.pk = o.pk '
            'WHERE o.r IS DISTINCT FROM n.r ORDER BY (n.pk IS NULL) DESC',
            'I', 'D', 'U', v_key_old, v_key_new);
    END IF;
    EXECUTE format(
        'WITH c AS (INSERT INTO "outpost"."changes" ("table_name", "pk", "op", "origin") '
        'SELECT $1, s.pk, s.op, $2 FROM (%s) s RETURNING "seq", "pk", "op") '
        'INSERT INTO "outpost"."row_versions" AS rv '
        '("table_name", "pk", "version", "origin", "origin_local_seq", "deleted", "updated_at") '
        'SELECT $1, c.pk, c.seq, $2, $3, c.op = %L, clock_timestamp() FROM c '
        'ON CONFLICT ("table_name", "pk") DO UPDATE SET '
        '"version" = EXCLUDED."version", "origin" = EXCLUDED."origin", '
        '"origin_local_seq" = EXCLUDED."origin_local_seq", "deleted" = EXCLUDED."deleted", '
        '"updated_at" = EXCLUDED."updated_at"', v_src, 'D')
    USING TG_ARGV[0],
          NULLIF(current_setting('outpost.origin', true), ''),
          NULLIF(current_setting('outpost.local_seq', true), '')::bigint;
    RETURN NULL;
END
$fn$;
"#;

/// Version 3: a hash index on `row_versions.pk`. A pull looks up the entries
/// of a batch's keys (5,000 at a time) and a push those of each group;
/// through the primary key every lookup compares `jsonb` keys at each level
/// of the b-tree (half of a pull's 5,000-key fetch, 17 of 36 ms). The hash
/// index hashes a key once and compares the entries of its bucket: the same
/// lookups take a third of the time. The primary key stays: it is the
/// capture's conflict target. Building it locks `row_versions` against
/// writes for as long as it takes (a few seconds per million entries).
const V3: &str = r#"CREATE INDEX IF NOT EXISTS "row_versions_pk_hash" ON "outpost"."row_versions" USING hash ("pk");
"#;

/// Version 4: the node registry records each node's latest incarnation
/// (a random id the replica file renews before each pushed batch), so a
/// restored or copied replica that reuses a node id is told apart from the
/// file the server last heard from (`docs/protocol.md`, "Node identity").
const V4: &str = r#"ALTER TABLE "outpost"."nodes" ADD COLUMN IF NOT EXISTS "incarnation" uuid;
"#;

/// Version 5: the statement capture compares whole rows whatever the
/// table's column names, and small inserts cost half.
///
/// * Version 2 compared `to_jsonb(o)` with `to_jsonb(n)`, and PostgreSQL
///   reads a bare name as a column before a table: in a table with columns
///   named `o` and `n` it compared those two values, and an `UPDATE` of any
///   other column that left them equal was not recorded (never pulled by
///   any node). `o.*` and `n.*` always mean the rows.
/// * Version 2 built and planned its statement at every call (`EXECUTE`):
///   most of a small statement's price. An `INSERT` of at most 64 rows now
///   runs a static statement, prepared once per trigger and session: 2,000
///   single-row `INSERT`s took 117 ms against 245 ms with version 4's
///   function in `psql` (2026-12-06), while 10,000-row inserts took the
///   same (147–158 against 144–157 ms). For updates and deletes the same
///   shape measured mixed (single-row deletes slower), so they keep the
///   per-call plan.
///
/// Also `row_versions` gets a fill factor of 80: most of its writes update
/// an entry in place (a row changed again), and free room on the page makes
/// that a heap-only update, with no new entries in its two indexes (pages
/// filled before keep no room until rewritten).
const V5: &str = r#"-- Statement trigger with transition tables old_rows/new_rows. TG_ARGV[0]
-- is the synced table's name, TG_ARGV[1..] its primary-key columns.
CREATE OR REPLACE FUNCTION "outpost"."capture_rows"()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
AS $fn$
DECLARE
    v_table text := TG_ARGV[0];
    v_keys text[] := TG_ARGV[1:];
    v_origin text := NULLIF(current_setting('outpost.origin', true), '');
    v_local_seq bigint := NULLIF(current_setting('outpost.local_seq', true), '')::bigint;
    v_key_new text;
    v_key_old text;
    v_src text;
    v_small boolean := false;
BEGIN
    -- A small INSERT (an application's usual write) runs a static
    -- statement, which PL/pgSQL prepares once per trigger and session; the
    -- keys come out of the row's jsonb (`to_jsonb(row) -> column` is the
    -- text `to_jsonb(column)` has). Larger statements are planned for
    -- their size below, where the joins hash.
    -- (Two tests: a statement naming `new_rows` fails in a DELETE's call.)
    IF TG_OP = 'INSERT' THEN
        v_small := (SELECT count(*) FROM (SELECT FROM new_rows LIMIT 65) x) <= 64;
    END IF;
    IF v_small THEN
        WITH c AS (
            INSERT INTO "outpost"."changes" ("table_name", "pk", "op", "origin")
            SELECT v_table,
                   (SELECT jsonb_agg(r.j -> k.c ORDER BY k.o) FROM unnest(v_keys) WITH ORDINALITY AS k(c, o)),
                   'I', v_origin
            FROM (SELECT to_jsonb(n.*) AS j FROM new_rows n) r
            RETURNING "seq", "pk")
        INSERT INTO "outpost"."row_versions" AS rv
            ("table_name", "pk", "version", "origin", "origin_local_seq", "deleted", "updated_at")
        SELECT v_table, c.pk, c.seq, v_origin, v_local_seq, false, clock_timestamp() FROM c
        ON CONFLICT ("table_name", "pk") DO UPDATE SET
            "version" = EXCLUDED."version", "origin" = EXCLUDED."origin",
            "origin_local_seq" = EXCLUDED."origin_local_seq", "deleted" = EXCLUDED."deleted",
            "updated_at" = EXCLUDED."updated_at";
        RETURN NULL;
    END IF;
    SELECT string_agg(format('to_jsonb(n.%I)', c), ', ' ORDER BY o),
           string_agg(format('to_jsonb(o.%I)', c), ', ' ORDER BY o)
    INTO v_key_new, v_key_old
    FROM unnest(v_keys) WITH ORDINALITY AS k(c, o);
    IF TG_OP = 'INSERT' THEN
        v_src := format('SELECT jsonb_build_array(%s) AS pk, %L AS op FROM new_rows n', v_key_new, 'I');
    ELSIF TG_OP = 'DELETE' THEN
        v_src := format('SELECT jsonb_build_array(%s) AS pk, %L AS op FROM old_rows o', v_key_old, 'D');
    ELSE
        -- `o.*` and `n.*`, never a bare `o` or `n`: a column of that name
        -- would be read instead of the row.
        v_src := format(
            'SELECT COALESCE(n.pk, o.pk) AS pk, CASE WHEN o.pk IS NULL THEN %L WHEN n.pk IS NULL THEN %L ELSE %L END AS op '
            'FROM (SELECT jsonb_build_array(%s) AS pk, to_jsonb(o.*)::text AS r FROM old_rows o) o '
            'FULL JOIN (SELECT jsonb_build_array(%s) AS pk, to_jsonb(n.*)::text AS r FROM new_rows n) n ON n.pk = o.pk '
            'WHERE o.r IS DISTINCT FROM n.r ORDER BY (n.pk IS NULL) DESC',
            'I', 'D', 'U', v_key_old, v_key_new);
    END IF;
    EXECUTE format(
        'WITH c AS (INSERT INTO "outpost"."changes" ("table_name", "pk", "op", "origin") '
        'SELECT $1, s.pk, s.op, $2 FROM (%s) s RETURNING "seq", "pk", "op") '
        'INSERT INTO "outpost"."row_versions" AS rv '
        '("table_name", "pk", "version", "origin", "origin_local_seq", "deleted", "updated_at") '
        'SELECT $1, c.pk, c.seq, $2, $3, c.op = %L, clock_timestamp() FROM c '
        'ON CONFLICT ("table_name", "pk") DO UPDATE SET '
        '"version" = EXCLUDED."version", "origin" = EXCLUDED."origin", '
        '"origin_local_seq" = EXCLUDED."origin_local_seq", "deleted" = EXCLUDED."deleted", '
        '"updated_at" = EXCLUDED."updated_at"', v_src, 'D')
    USING v_table, v_origin, v_local_seq;
    RETURN NULL;
END
$fn$;

ALTER TABLE "outpost"."row_versions" SET (fillfactor = 80);
"#;

/// The upgrade path, in order. Never edit a released step: add one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "tracking tables, capture and notify functions",
        sql: V1,
    },
    Migration {
        version: 2,
        description: "statement-level capture with transition tables",
        sql: V2,
    },
    Migration {
        version: 3,
        description: "hash index on row_versions keys",
        sql: V3,
    },
    Migration {
        version: 4,
        description: "node incarnations in the node registry",
        sql: V4,
    },
    Migration {
        version: 5,
        description: "statement capture compares whole rows whatever the column names",
        sql: V5,
    },
];

/// The schema version this build installs.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

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
mod tests {
    use super::*;
    use crate::schema::Column;
    use crate::types::{ColumnType, ScalarType};

    fn col(name: &str, scalar: ScalarType, pg_name: &str) -> Column {
        Column {
            name: name.into(),
            ty: ColumnType::scalar(scalar, pg_name),
            nullable: false,
            default: None,
            identity: None,
            generated: false,
        }
    }

    fn post_tag() -> Table {
        Table {
            name: "PostTag".into(),
            columns: vec![
                col("postId", ScalarType::Text, "text"),
                col("tagId", ScalarType::Int4, "integer"),
            ],
            primary_key: vec!["postId".into(), "tagId".into()],
            foreign_keys: vec![],
            uniques: vec![],
            relations: vec![],
        }
    }

    fn schema(tables: Vec<Table>) -> Schema {
        Schema {
            pg_schema: "public".into(),
            tables,
            enums: vec![],
        }
    }

    #[test]
    fn triggers_sql() {
        let tail = "DROP TRIGGER IF EXISTS \"outpost_notify\" ON \"public\".\"PostTag\";\n\
             CREATE TRIGGER \"outpost_notify\" AFTER INSERT OR UPDATE OR DELETE ON \"public\".\"PostTag\" \
             FOR EACH STATEMENT EXECUTE FUNCTION \"outpost\".\"notify\"('PostTag');\n\
             DROP TRIGGER IF EXISTS \"outpost_truncate\" ON \"public\".\"PostTag\";\n\
             CREATE TRIGGER \"outpost_truncate\" AFTER TRUNCATE ON \"public\".\"PostTag\" \
             FOR EACH STATEMENT EXECUTE FUNCTION \"outpost\".\"capture_truncate\"('PostTag');\n";
        assert_eq!(
            create_triggers_sql("public", &post_tag(), Capture::Statement),
            format!(
                "DROP TRIGGER IF EXISTS \"outpost_capture_del\" ON \"public\".\"PostTag\";\n\
                 CREATE TRIGGER \"outpost_capture_del\" AFTER DELETE ON \"public\".\"PostTag\" \
                 REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT \
                 EXECUTE FUNCTION \"outpost\".\"capture_rows\"('PostTag', 'postId', 'tagId');\n\
                 DROP TRIGGER IF EXISTS \"outpost_capture_ins\" ON \"public\".\"PostTag\";\n\
                 CREATE TRIGGER \"outpost_capture_ins\" AFTER INSERT ON \"public\".\"PostTag\" \
                 REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT \
                 EXECUTE FUNCTION \"outpost\".\"capture_rows\"('PostTag', 'postId', 'tagId');\n\
                 DROP TRIGGER IF EXISTS \"outpost_capture_upd\" ON \"public\".\"PostTag\";\n\
                 CREATE TRIGGER \"outpost_capture_upd\" AFTER UPDATE ON \"public\".\"PostTag\" \
                 REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT \
                 EXECUTE FUNCTION \"outpost\".\"capture_rows\"('PostTag', 'postId', 'tagId');\n{tail}"
            )
        );
        assert_eq!(
            create_triggers_sql("public", &post_tag(), Capture::Row),
            format!(
                "DROP TRIGGER IF EXISTS \"outpost_capture\" ON \"public\".\"PostTag\";\n\
                 CREATE TRIGGER \"outpost_capture\" AFTER INSERT OR UPDATE OR DELETE ON \"public\".\"PostTag\" \
                 FOR EACH ROW EXECUTE FUNCTION \"outpost\".\"capture\"('PostTag', 'postId', 'tagId');\n{tail}"
            )
        );
    }

    #[test]
    fn names_are_quoted() {
        let mut t = post_tag();
        t.name = "we\"ird's".into();
        t.primary_key = vec!["it's".into()];
        let sql = create_triggers_sql("my schema", &t, Capture::Row);
        assert!(sql.contains("ON \"my schema\".\"we\"\"ird's\" FOR EACH ROW"));
        assert!(sql.contains("\"capture\"('we\"ird''s', 'it''s')"));
        let sql = create_triggers_sql("my schema", &t, Capture::Statement);
        assert!(sql.contains("\"capture_rows\"('we\"ird''s', 'it''s')"));
        assert_eq!(
            drop_trigger_sql("s", "t\"", "outpost_notify"),
            "DROP TRIGGER IF EXISTS \"outpost_notify\" ON \"s\".\"t\"\"\";"
        );
    }

    #[test]
    fn version_sql() {
        assert_eq!(
            set_version_sql(1),
            "INSERT INTO \"outpost\".\"meta\" (\"key\", \"value\") VALUES ('schema_version', '1') \
             ON CONFLICT (\"key\") DO UPDATE SET \"value\" = EXCLUDED.\"value\";"
        );
        let sql = migration_sql(&MIGRATIONS[0]);
        assert!(sql.starts_with("CREATE SCHEMA IF NOT EXISTS \"outpost\";\n"));
        assert!(sql.ends_with(&format!("FROM PUBLIC;\n{}", set_version_sql(1))));
    }

    #[test]
    fn v1_pins_the_capture_rules() {
        // The decisions the rest of outpost relies on, spelled out.
        for needle in [
            "\"txid\" xid8 NOT NULL DEFAULT pg_current_xact_id()",
            "\"seq\" bigserial PRIMARY KEY",
            "CREATE INDEX \"changes_txid_seq\" ON \"outpost\".\"changes\" (\"txid\", \"seq\");",
            "PRIMARY KEY (\"table_name\", \"pk\")",
            "\"applied_local_seq\" bigint NOT NULL DEFAULT 0",
            "NULLIF(current_setting('outpost.origin', true), '')",
            "NULLIF(current_setting('outpost.local_seq', true), '')::bigint",
            "ELSIF v_old::text = v_new::text THEN",
            "PERFORM pg_notify('outpost_changes', TG_ARGV[0]);",
            "SET TimeZone = 'UTC'",
        ] {
            assert!(V1.contains(needle), "V1 lacks {needle}");
        }
        assert!(
            V1.contains(CHANNEL) && V1.contains(ORIGIN_SETTING) && V1.contains(LOCAL_SEQ_SETTING)
        );
    }

    #[test]
    fn v2_pins_the_statement_capture() {
        for needle in [
            "to_jsonb(n.%I)",
            "to_jsonb(o)::text AS r",
            "WHERE o.r IS DISTINCT FROM n.r ORDER BY (n.pk IS NULL) DESC",
            "NULLIF(current_setting('outpost.origin', true), '')",
            "NULLIF(current_setting('outpost.local_seq', true), '')::bigint",
            "SET TimeZone = 'UTC'",
            "SET extra_float_digits = 1",
        ] {
            assert!(V2.contains(needle), "V2 lacks {needle}");
        }
    }

    #[test]
    fn lock_key_matches_constant() {
        assert_eq!(
            LOCK_SQL,
            format!("SELECT pg_catalog.pg_advisory_xact_lock({ADVISORY_LOCK_KEY})")
        );
    }

    #[test]
    fn migrations_are_ordered_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1);
        }
        assert_eq!(latest_version(), 5);
    }

    #[test]
    fn v3_pins_the_key_index() {
        assert_eq!(
            V3.trim(),
            "CREATE INDEX IF NOT EXISTS \"row_versions_pk_hash\" ON \"outpost\".\"row_versions\" USING hash (\"pk\");"
        );
    }

    #[test]
    fn v4_pins_the_incarnation_column() {
        assert_eq!(
            V4.trim(),
            "ALTER TABLE \"outpost\".\"nodes\" ADD COLUMN IF NOT EXISTS \"incarnation\" uuid;"
        );
    }

    #[test]
    fn v5_compares_whole_rows_and_inserts_small_statements_statically() {
        for needle in [
            "CREATE OR REPLACE FUNCTION \"outpost\".\"capture_rows\"()",
            "v_small := (SELECT count(*) FROM (SELECT FROM new_rows LIMIT 65) x) <= 64;",
            "(SELECT jsonb_agg(r.j -> k.c ORDER BY k.o) FROM unnest(v_keys) WITH ORDINALITY AS k(c, o))",
            "FROM (SELECT to_jsonb(n.*) AS j FROM new_rows n) r",
            "to_jsonb(o.*)::text AS r FROM old_rows o",
            "to_jsonb(n.*)::text AS r FROM new_rows n",
            "WHERE o.r IS DISTINCT FROM n.r ORDER BY (n.pk IS NULL) DESC",
            "ON CONFLICT (\"table_name\", \"pk\") DO UPDATE SET",
            "USING v_table, v_origin, v_local_seq;",
            "SECURITY DEFINER",
            "SET TimeZone = 'UTC'",
            "SET IntervalStyle = 'postgres'",
            "SET extra_float_digits = 1",
            "NULLIF(current_setting('outpost.origin', true), '')",
            "NULLIF(current_setting('outpost.local_seq', true), '')::bigint",
            "ALTER TABLE \"outpost\".\"row_versions\" SET (fillfactor = 80);",
        ] {
            assert!(V5.contains(needle), "V5 lacks {needle}");
        }
        assert!(!V5.contains("to_jsonb(o)") && !V5.contains("to_jsonb(n)"));
    }

    #[test]
    fn pending() {
        assert_eq!(pending_migrations(None).map(<[_]>::len), Ok(5));
        assert_eq!(pending_migrations(Some(0)).map(<[_]>::len), Ok(5));
        assert_eq!(pending_migrations(Some(1)).map(<[_]>::len), Ok(4));
        assert_eq!(pending_migrations(Some(2)).map(<[_]>::len), Ok(3));
        assert_eq!(pending_migrations(Some(3)).map(<[_]>::len), Ok(2));
        assert_eq!(pending_migrations(Some(4)).map(<[_]>::len), Ok(1));
        assert_eq!(pending_migrations(Some(5)).map(<[_]>::len), Ok(0));
        let err = pending_migrations(Some(7)).expect_err("newer than known");
        assert_eq!(
            err,
            NewerSchemaVersion {
                installed: 7,
                supported: 5
            }
        );
        assert!(
            err.to_string()
                .contains("version 7, newer than the version 5")
        );
    }

    #[test]
    fn tgargs() {
        assert_eq!(
            parse_tgargs(b"PostTag\0postId\0tagId\0", 3),
            vec!["PostTag", "postId", "tagId"]
        );
        assert_eq!(parse_tgargs(b"", 0), Vec::<String>::new());
    }

    #[test]
    fn plan() {
        let s = schema(vec![post_tag()]);
        let none = BTreeSet::new();
        // Nothing installed: create.
        let p = plan_triggers(&[], &s, &none);
        assert_eq!(p.recreate, vec!["PostTag".to_string()]);
        assert!(p.drop.is_empty());
        // All as wanted: nothing to do.
        let want = expected_triggers("public", &s.tables[0], Capture::Statement);
        assert!(plan_triggers(&want, &s, &none).is_empty());
        // A version-1 row trigger is replaced by statement capture, except on
        // a partitioned table.
        let v1 = expected_triggers("public", &s.tables[0], Capture::Row);
        let p = plan_triggers(&v1, &s, &none);
        assert_eq!(p.recreate, vec!["PostTag".to_string()]);
        assert_eq!(
            p.drop,
            vec![("public".into(), "PostTag".into(), "outpost_capture".into())]
        );
        let partitioned: BTreeSet<String> = ["PostTag".to_string()].into();
        assert!(plan_triggers(&v1, &s, &partitioned).is_empty());
        // A disabled trigger or changed key: recreate.
        let mut changed = want.clone();
        changed[0].enabled = false;
        assert_eq!(plan_triggers(&changed, &s, &none).recreate.len(), 1);
        let mut changed = want.clone();
        changed[0].args.pop();
        assert_eq!(plan_triggers(&changed, &s, &none).recreate.len(), 1);
        // A stray trigger on a synced table and triggers on an unsynced one.
        let mut extra = want.clone();
        let mut stray = want[1].clone();
        stray.name = "mine".into();
        extra.push(stray);
        let mut gone = want[0].clone();
        gone.table = "Old".into();
        extra.push(gone);
        let p = plan_triggers(&extra, &s, &none);
        assert_eq!(p.recreate, vec!["PostTag".to_string()]);
        assert_eq!(
            p.drop,
            vec![
                ("public".into(), "Old".into(), "outpost_capture_del".into()),
                ("public".into(), "PostTag".into(), "mine".into()),
            ]
        );
    }

    #[test]
    fn key_expression() {
        assert_eq!(
            pk_key_expr(&post_tag(), 3),
            "jsonb_build_array($3::text, $4::integer)"
        );
    }
}
