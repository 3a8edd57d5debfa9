//! The plans of the statements a push runs at every batch, pinned: each
//! must be an index walk whose cost follows the batch, never a scan of
//! `_outpost_rows` (one entry per row ever pushed or pulled), of the
//! capture log or of a replicated table (docs/performance.md, B10).
//!
//! Checked two ways on a real replica file holding many `SYNCED` entries:
//! `EXPLAIN QUERY PLAN` names the index each statement uses, and the push's
//! own calls (plan, acknowledge, fold) run with SQLite's full-scan step
//! counter of each of their statements at zero. Both with and without
//! `ANALYZE` statistics: replicas are never analyzed by outpost, but an
//! application may analyze its file.

use outpost_core::schema::{Column, Schema, Table};
use outpost_core::sync::{PushOutcome, PushRow};
use outpost_core::types::{ColumnType, ScalarType};
use rusqlite::{Connection, StatementStatus};

use crate::conflicts::Policies;
use crate::fold::{DELETE_FOLDED, UNFOLDED};
use crate::identity::HAS_LOCAL_EDITS;
use crate::push::{MARK_PUSHED_SYNCED, PENDING_BY_AGE, PENDING_OF_TABLE};
use crate::replica::Replica;

/// `SYNCED` entries the replica holds: enough that a scan would show in
/// the planner's estimates and in the step counter.
const SYNCED: i64 = 20_000;

fn schema() -> Schema {
    let col = |name: &str, scalar| Column {
        name: name.into(),
        ty: ColumnType {
            scalar,
            array: false,
            pg_name: name.into(),
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
            name: "Item".into(),
            columns: vec![col("id", ScalarType::Int8), col("v", ScalarType::Text)],
            primary_key: vec!["id".into()],
            foreign_keys: vec![],
            uniques: vec![],
            relations: vec![],
        }],
        enums: vec![],
    }
    .finish()
}

/// A replica with [`SYNCED`] synced rows (each with its entry, as after a
/// push or a pull) and `pending` rows inserted locally, not yet folded.
fn replica(dir: &tempfile::TempDir, pending: i64) -> Replica {
    let (replica, _) = Replica::setup(&dir.path().join("replica.db"), &schema()).expect("setup");
    let conn = replica.connection();
    conn.execute_batch(&format!(
        "UPDATE _outpost_apply SET active = 1; \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {SYNCED}) \
         INSERT INTO \"Item\" (id, v) SELECT i, 'synced' FROM n; \
         INSERT INTO _outpost_rows (table_name, pk, status, server_version) \
         SELECT 'Item', json_array(id), 'SYNCED', id FROM \"Item\"; \
         UPDATE _outpost_apply SET active = 0; \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {pending}) \
         INSERT INTO \"Item\" (id, v) SELECT {SYNCED} + i, 'local' FROM n;"
    ))
    .expect("fill");
    replica
}

/// The `EXPLAIN QUERY PLAN` lines of `sql`.
fn plan(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    let count = stmt.parameter_count();
    let params: Vec<rusqlite::types::Value> = (0..count)
        .map(|_| rusqlite::types::Value::Text("[]".into()))
        .collect();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            r.get::<_, String>(3)
        })
        .expect("plan");
    rows.collect::<Result<_, _>>().expect("plan rows")
}

/// No line of `lines` scans one of the replica's tables (a virtual table,
/// the batch's `json_each`, may be scanned: it is the batch), and each of
/// `wanted` is a line.
fn assert_walks(sql: &str, lines: &[String], wanted: &[&str]) {
    for l in lines {
        let scans_a_table = l.starts_with("SCAN ")
            && !l.contains("VIRTUAL TABLE")
            && !l.starts_with("SCAN (")
            && l != "SCAN CONSTANT ROW";
        assert!(!scans_a_table, "{sql}\nscans a table: {lines:#?}");
    }
    for w in wanted {
        assert!(
            lines.iter().any(|l| l == w),
            "{sql}\nhas no `{w}`: {lines:#?}"
        );
    }
}

fn assert_plans(conn: &Connection) {
    let ordered = |sql: &str, wanted: &[&str]| {
        let lines = plan(conn, sql);
        assert_walks(sql, &lines, wanted);
        // The order comes from the index, not from sorting every entry.
        assert!(
            !lines.iter().any(|l| l.contains("TEMP B-TREE")),
            "{sql}\nsorts: {lines:#?}"
        );
    };
    ordered(
        PENDING_BY_AGE,
        &["SEARCH _outpost_rows USING INDEX _outpost_rows_dirty (status=?)"],
    );
    ordered(
        PENDING_OF_TABLE,
        &[
            "SEARCH _outpost_rows USING INDEX _outpost_rows_pending (status=? AND table_name=? AND deleted=?)",
        ],
    );
    let lines = plan(conn, MARK_PUSHED_SYNCED);
    assert_walks(
        MARK_PUSHED_SYNCED,
        &lines,
        &["SEARCH _outpost_rows USING PRIMARY KEY (table_name=? AND pk=?)"],
    );
    let lines = plan(conn, HAS_LOCAL_EDITS);
    assert_walks(
        HAS_LOCAL_EDITS,
        &lines,
        &["SEARCH _outpost_rows USING COVERING INDEX _outpost_rows_pending (status=?)"],
    );
    let lines = plan(conn, UNFOLDED);
    assert_walks(UNFOLDED, &lines, &["SEARCH _outpost_changes"]);
    let lines = plan(conn, DELETE_FOLDED);
    assert_walks(
        DELETE_FOLDED,
        &lines,
        &["SEARCH _outpost_changes USING INTEGER PRIMARY KEY (rowid<?)"],
    );
    let lines = plan(conn, outpost_core::sqlite::FOLD_CHANGES);
    assert_walks(
        outpost_core::sqlite::FOLD_CHANGES,
        &lines,
        &["SEARCH _outpost_changes USING INTEGER PRIMARY KEY (rowid>?)"],
    );
}

#[test]
fn the_push_statements_walk_indexes_without_statistics() {
    let dir = tempfile::tempdir().expect("dir");
    let replica = replica(&dir, 10);
    assert_plans(replica.connection());
}

#[test]
fn the_push_statements_walk_indexes_with_statistics() {
    let dir = tempfile::tempdir().expect("dir");
    let replica = replica(&dir, 10);
    replica
        .connection()
        .execute_batch("ANALYZE")
        .expect("analyze");
    assert_plans(replica.connection());
}

/// The virtual-machine steps and the full-scan steps a cached statement
/// has taken so far.
fn steps(conn: &Connection, sql: &str) -> (i32, i32) {
    let stmt = conn.prepare_cached(sql).expect("cached");
    (
        stmt.get_status(StatementStatus::VmStep),
        stmt.get_status(StatementStatus::FullscanStep),
    )
}

#[test]
fn a_push_over_many_synced_entries_takes_no_scan_step() {
    let dir = tempfile::tempdir().expect("dir");
    // More pending than a batch: the plan reads by age, then in push order.
    let mut replica = replica(&dir, 30);
    let (rows, _) = replica
        .pending_push(None, 10, &crate::push::InFlight::default())
        .expect("plan");
    assert_eq!(rows.len(), 10);
    assert!(
        rows.iter()
            .all(|r| r.local_seq.get() > 0 && r.values.is_some())
    );
    let outcomes: Vec<PushOutcome> = rows
        .iter()
        .map(|r| PushOutcome::Applied {
            version: outpost_core::Version(1_000_000 + r.local_seq.get()),
            row: r.values.clone(),
            tag: None,
        })
        .collect();
    let stats = replica
        .ack_push(&rows, &outcomes, &Policies::default())
        .expect("ack");
    assert_eq!(stats["Item"].records_succeeded, 10);
    assert!(replica.has_local_edits().expect("edits"));
    let conn = replica.connection();
    for sql in [
        PENDING_BY_AGE,
        PENDING_OF_TABLE,
        MARK_PUSHED_SYNCED,
        HAS_LOCAL_EDITS,
        UNFOLDED,
        DELETE_FOLDED,
        outpost_core::sqlite::FOLD_CHANGES,
    ] {
        let (ran, scanned) = steps(conn, sql);
        assert!(ran > 0, "the push did not run {sql}");
        assert_eq!(scanned, 0, "{sql}");
    }
    // The counter sees a scan: the pending entries read without the
    // partial index's own condition walk every entry.
    let old_form = "SELECT count(*) FROM \"_outpost_rows\" WHERE status = 'PENDING'";
    conn.prepare_cached(old_form)
        .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
        .expect("old form");
    assert!(steps(conn, old_form).1 >= SYNCED as i32);
    let synced: i64 = conn
        .query_row(
            "SELECT count(*) FROM _outpost_rows WHERE status = 'SYNCED'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(synced, SYNCED + 10);
}

/// A replica made before `_outpost_rows_pending` existed gets it when
/// opened (the metadata statements are applied on every open), so its
/// pushes walk the index too.
#[test]
fn a_replica_without_the_pending_index_gets_it_when_opened() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("replica.db");
    {
        let replica = replica(&dir, 10);
        replica
            .connection()
            .execute_batch("DROP INDEX \"_outpost_rows_pending\"")
            .expect("drop");
    }
    let replica = Replica::open(&path).expect("open");
    let conn = replica.connection();
    let found: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = '_outpost_rows_pending'",
            [],
            |r| r.get(0),
        )
        .expect("catalogue");
    assert_eq!(found, 1);
    assert_plans(conn);
}

/// The pipelined push plans a batch while the one before it is on the
/// server: the rows in flight are left out, the next ones taken instead,
/// and no batch shares a row with another; walking past the rows in flight
/// still reads no more than the batches (no full scan).
#[test]
fn a_plan_made_while_a_batch_is_in_flight_takes_the_rows_after_it() {
    use std::collections::HashSet;

    use crate::push::InFlight;

    let dir = tempfile::tempdir().expect("dir");
    let replica = replica(&dir, 25);
    let first = replica
        .pending_push(None, 10, &InFlight::default())
        .expect("plan")
        .0;
    let second = replica
        .pending_push(None, 10, &InFlight::of(&first))
        .expect("plan")
        .0;
    let both: Vec<PushRow> = first.iter().chain(&second).cloned().collect();
    let third = replica
        .pending_push(None, 10, &InFlight::of(&both))
        .expect("plan")
        .0;
    let all: Vec<PushRow> = both.iter().chain(&third).cloned().collect();
    let rest = replica
        .pending_push(None, 10, &InFlight::of(&all))
        .expect("plan")
        .0;
    assert_eq!(
        (first.len(), second.len(), third.len(), rest.len()),
        (10, 10, 5, 0)
    );
    let keys: HashSet<&str> = all.iter().map(|r| r.local_pk.as_str()).collect();
    assert_eq!(keys.len(), 25, "a row was planned twice");
    // Oldest first, batch after batch.
    let seqs: Vec<i64> = all.iter().map(|r| r.local_seq.get()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let conn = replica.connection();
    for sql in [PENDING_BY_AGE, PENDING_OF_TABLE] {
        assert_eq!(steps(conn, sql).1, 0, "{sql} scanned");
    }
}
