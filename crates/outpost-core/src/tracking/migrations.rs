//! The tracking schema's upgrade path: each [`Migration`] step's SQL text,
//! in order, never edited once released.

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
pub(super) const V1: &str = r#"CREATE SCHEMA IF NOT EXISTS "outpost";

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
pub(super) const V2: &str = r#"-- Statement trigger with transition tables old_rows/new_rows. TG_ARGV[0]
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
pub(super) const V3: &str = r#"CREATE INDEX IF NOT EXISTS "row_versions_pk_hash" ON "outpost"."row_versions" USING hash ("pk");
"#;

/// Version 4: the node registry records each node's latest incarnation
/// (a random id the replica file renews before each pushed batch), so a
/// restored or copied replica that reuses a node id is told apart from the
/// file the server last heard from (`docs/protocol.md`, "Node identity").
pub(super) const V4: &str = r#"ALTER TABLE "outpost"."nodes" ADD COLUMN IF NOT EXISTS "incarnation" uuid;
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
pub(super) const V5: &str = r#"-- Statement trigger with transition tables old_rows/new_rows. TG_ARGV[0]
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

/// Version 6: a push's change number (`origin_local_seq`) is stamped only
/// on the rows the push's own statement wrote. Before, every version the
/// push's transaction wrote carried it, including rows a foreign-key action
/// (`ON DELETE CASCADE`, `ON UPDATE CASCADE`) or an application trigger
/// wrote: such a row looked like the node's own push at that number, and an
/// older queued edit of it was answered "already applied" and lost (the
/// campaign's seed 163, `docs/reliability.md`). Now the push names the
/// table it writes (`outpost.push_table`, set before each statement), and
/// the capture stamps a version only when
///
/// * its table is that table,
/// * it runs at trigger depth 1 (a statement an application trigger runs
///   fires its capture deeper; a foreign-key action's does not, which is
///   why depth alone did not do).
///
/// The other rows keep the node as origin but no number, so the own-write
/// rules treat them as anyone's change: a pull brings them and a queued edit
/// of them is judged against them. A foreign-key action within the same
/// table (a self-reference `ON DELETE CASCADE`) lands in the push
/// statement's own transition table, so the capture cannot tell those rows
/// apart: the push clears their number itself (`outpost_remote`'s push,
/// "unstamp").
pub(super) const V6: &str = r#"-- Row trigger. TG_ARGV[0] is the synced table's name, TG_ARGV[1..] its
-- primary-key columns in key order.
CREATE OR REPLACE FUNCTION "outpost"."capture"()
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
    -- Only the push's own statement's rows carry its change number: not
    -- rows written by statements the application's triggers run (depth
    -- above 1), nor rows another table's foreign-key action wrote.
    v_local_seq bigint := CASE
        WHEN pg_trigger_depth() = 1
         AND current_setting('outpost.push_table', true) = TG_ARGV[0]
        THEN NULLIF(current_setting('outpost.local_seq', true), '')::bigint END;
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

-- Statement trigger with transition tables old_rows/new_rows. TG_ARGV[0]
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
    -- Only the push's own statement's rows carry its change number: not
    -- rows written by statements the application's triggers run (depth
    -- above 1), nor rows another table's foreign-key action wrote.
    v_local_seq bigint := CASE
        WHEN pg_trigger_depth() = 1
         AND current_setting('outpost.push_table', true) = TG_ARGV[0]
        THEN NULLIF(current_setting('outpost.local_seq', true), '')::bigint END;
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
"#;

/// Version 7: the statement capture's static way for small `UPDATE`s and
/// `DELETE`s too (before, only `INSERT` had it: a one-row `UPDATE` planned
/// its capture at every call), and rows compared by their text rather than
/// their `jsonb` (the same values' output, at half the cost).
pub(super) const V7: &str = r#"-- Statement trigger with transition tables old_rows/new_rows. TG_ARGV[0]
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
    -- Only the push's own statement's rows carry its change number: not
    -- rows written by statements the application's triggers run (depth
    -- above 1), nor rows another table's foreign-key action wrote.
    v_local_seq bigint := CASE
        WHEN pg_trigger_depth() = 1
         AND current_setting('outpost.push_table', true) = TG_ARGV[0]
        THEN NULLIF(current_setting('outpost.local_seq', true), '')::bigint END;
    v_key_new text;
    v_key_old text;
    v_src text;
    v_small boolean;
BEGIN
    -- A small statement (an application's usual write: one row, a few)
    -- runs a static statement, which PL/pgSQL prepares once per trigger
    -- and session; the keys come out of the row's jsonb (`to_jsonb(row) ->
    -- column` is the text `to_jsonb(column)` has). Larger statements are
    -- planned for their size below, where the joins hash. Before version
    -- 7 only INSERT had the static way: a one-row UPDATE paid for planning
    -- its capture on every statement (about 0.3 ms).
    -- A statement naming `new_rows` fails in a DELETE's call, and one
    -- naming `old_rows` in an INSERT's: each operation has its own.
    -- Rows are compared by their text (`ROW(o.*)::text`): the values'
    -- own output, as PostgreSQL returns them (1.5 -> 1.50 is a change),
    -- at half the cost of building each row's jsonb.
    IF TG_OP = 'INSERT' THEN
        v_small := (SELECT count(*) FROM (SELECT FROM new_rows LIMIT 65) x) <= 64;
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
    ELSIF TG_OP = 'DELETE' THEN
        v_small := (SELECT count(*) FROM (SELECT FROM old_rows LIMIT 65) x) <= 64;
        IF v_small THEN
            WITH c AS (
                INSERT INTO "outpost"."changes" ("table_name", "pk", "op", "origin")
                SELECT v_table,
                       (SELECT jsonb_agg(r.j -> k.c ORDER BY k.o) FROM unnest(v_keys) WITH ORDINALITY AS k(c, o)),
                       'D', v_origin
                FROM (SELECT to_jsonb(o.*) AS j FROM old_rows o) r
                RETURNING "seq", "pk")
            INSERT INTO "outpost"."row_versions" AS rv
                ("table_name", "pk", "version", "origin", "origin_local_seq", "deleted", "updated_at")
            SELECT v_table, c.pk, c.seq, v_origin, v_local_seq, true, clock_timestamp() FROM c
            ON CONFLICT ("table_name", "pk") DO UPDATE SET
                "version" = EXCLUDED."version", "origin" = EXCLUDED."origin",
                "origin_local_seq" = EXCLUDED."origin_local_seq", "deleted" = EXCLUDED."deleted",
                "updated_at" = EXCLUDED."updated_at";
            RETURN NULL;
        END IF;
    ELSE
        v_small := (SELECT count(*) FROM (SELECT FROM new_rows LIMIT 65) x) <= 64;
        IF v_small THEN
            -- A key change is a delete of the old key and an insert of the
            -- new; deletions first, so a key another row gives up and this
            -- one takes is recorded in that order.
            WITH o AS (
                SELECT (SELECT jsonb_agg(r.j -> k.c ORDER BY k.o) FROM unnest(v_keys) WITH ORDINALITY AS k(c, o)) AS pk, r.t
                FROM (SELECT to_jsonb(o.*) AS j, ROW(o.*)::text AS t FROM old_rows o) r
            ), n AS (
                SELECT (SELECT jsonb_agg(r.j -> k.c ORDER BY k.o) FROM unnest(v_keys) WITH ORDINALITY AS k(c, o)) AS pk, r.t
                FROM (SELECT to_jsonb(n.*) AS j, ROW(n.*)::text AS t FROM new_rows n) r
            ), s AS (
                SELECT COALESCE(n.pk, o.pk) AS pk,
                       CASE WHEN o.pk IS NULL THEN 'I' WHEN n.pk IS NULL THEN 'D' ELSE 'U' END AS op
                FROM o FULL JOIN n ON n.pk = o.pk
                WHERE o.t IS DISTINCT FROM n.t
                ORDER BY (n.pk IS NULL) DESC
            ), c AS (
                INSERT INTO "outpost"."changes" ("table_name", "pk", "op", "origin")
                SELECT v_table, s.pk, s.op, v_origin FROM s
                RETURNING "seq", "pk", "op")
            INSERT INTO "outpost"."row_versions" AS rv
                ("table_name", "pk", "version", "origin", "origin_local_seq", "deleted", "updated_at")
            SELECT v_table, c.pk, c.seq, v_origin, v_local_seq, c.op = 'D', clock_timestamp() FROM c
            ON CONFLICT ("table_name", "pk") DO UPDATE SET
                "version" = EXCLUDED."version", "origin" = EXCLUDED."origin",
                "origin_local_seq" = EXCLUDED."origin_local_seq", "deleted" = EXCLUDED."deleted",
                "updated_at" = EXCLUDED."updated_at";
            RETURN NULL;
        END IF;
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
            'FROM (SELECT jsonb_build_array(%s) AS pk, ROW(o.*)::text AS r FROM old_rows o) o '
            'FULL JOIN (SELECT jsonb_build_array(%s) AS pk, ROW(n.*)::text AS r FROM new_rows n) n ON n.pk = o.pk '
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
    Migration {
        version: 6,
        description: "a push's change number only on the rows its own statement wrote",
        sql: V6,
    },
    Migration {
        version: 7,
        description: "small updates and deletes captured by prepared statements",
        sql: V7,
    },
];

/// The schema version this build installs.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}
