//! Applying a pull batch (`Replica::apply_pull`) on a real SQLite file:
//! every kind of entry a pulled row can meet, in one batch, and the keys the
//! apply computes matching the ones the capture triggers store.

mod common;

use common::schema;
use outpost_core::sync::{Cursor, PullBatch, ServerRow};
use outpost_core::types::Value;
use outpost_local::{LocalError, Policies, Replica};

fn setup() -> (tempfile::TempDir, Replica) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (replica, _) = Replica::setup(&dir.path().join("local.db"), &schema()).expect("setup");
    (dir, replica)
}

/// Runs `sql` with capture silenced (as a bootstrap or an earlier pull).
fn silently(r: &mut Replica, sql: &str) {
    r.apply_silenced(|tx| {
        tx.execute_batch(sql)
            .map_err(LocalError::sqlite("test setup"))?;
        Ok(())
    })
    .expect("apply");
}

fn item(id: &str, qty: i64, score: f64, version: i64) -> ServerRow {
    ServerRow {
        table: "Item".into(),
        pk: vec![Value::Text(id.into())],
        values: Some(vec![
            Value::Text(id.into()),
            Value::Int(qty),
            Value::Float(score),
            Value::Null,
            Value::Null,
        ]),
        version: outpost_core::Version(version),
        origin: Some("another-node".into()),
        origin_local_seq: Some(outpost_core::LocalSeq(1)),
        changed_at: None,
        out_of_scope: false,
        tag: None,
    }
}

/// `(qty, score)` of an item, if present.
fn row(r: &Replica, id: &str) -> Option<(i64, f64)> {
    r.connection()
        .query_row("SELECT qty, score FROM \"Item\" WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .ok()
}

/// `(status, server_version, deleted)` of an entry.
fn state(r: &Replica, table: &str, pk: &str) -> Option<(String, Option<i64>, bool)> {
    r.row_entry(table, pk).expect("entry").map(|e| {
        (
            e.status.to_string(),
            e.server_version.to_stored(),
            e.deleted,
        )
    })
}

const TRICKY: &str = "q\"u\\o'te\n\u{1}é😀";

#[test]
fn one_batch_meets_every_kind_of_entry() {
    let (_dir, mut r) = setup();
    silently(
        &mut r,
        "INSERT INTO \"Item\" (id, qty, score) VALUES ('a', 1, 1.5), ('b', 2, 1.5), ('c', 3, 1.5), \
         ('d', 4, 1.5), ('e', 5, 1.5), ('g', 7, 1.5); \
         INSERT INTO _outpost_rows (table_name, pk, status, server_version) VALUES \
         ('Item', '[\"b\"]', 'SYNCED', 3), ('Item', '[\"c\"]', 'SYNCED', 7);",
    );
    r.apply_silenced(|tx| {
        tx.execute(
            "INSERT INTO \"Pair\" (a, b, v) VALUES (1, ?1, 'old')",
            [TRICKY],
        )
        .map_err(LocalError::sqlite("test setup"))?;
        Ok(())
    })
    .expect("apply");
    let c = r.connection();
    c.execute("UPDATE \"Item\" SET qty = 100 WHERE id = 'd'", [])
        .expect("local edit");
    c.execute("UPDATE \"Item\" SET qty = 50 WHERE id = 'e'", [])
        .expect("local edit");
    // Capture logs the edits; the replica folds them into `_outpost_rows`.
    r.fold_changes().expect("fold");
    c.execute(
        "UPDATE _outpost_rows SET status = 'CONFLICT', conflict_version = 5 WHERE pk = '[\"e\"]'",
        [],
    )
    .expect("mark conflict");

    let mut gone = item("g", 0, 0.0, 10);
    gone.values = None;
    let batch = PullBatch {
        rows: vec![
            item("a", 11, 1.5, 5),
            item("b", 12, 1.5, 4),
            // Version the replica already has: nothing changes.
            item("c", 999, 1.5, 7),
            // The server changed the score, the node the quantity: merged.
            item("d", 4, 2.5, 6),
            item("e", 6, 1.5, 8),
            item("f", 9, 1.5, 9),
            gone,
            ServerRow {
                table: "Pair".into(),
                pk: vec![Value::Int(1), Value::Text(TRICKY.into())],
                values: Some(vec![
                    Value::Int(1),
                    Value::Text(TRICKY.into()),
                    Value::Text("new".into()),
                ]),
                version: outpost_core::Version(11),
                origin: None,
                origin_local_seq: None,
                changed_at: None,
                out_of_scope: false,
                tag: None,
            },
        ],
        changes: 8,
        cursor: Cursor { txid: 900, seq: 11 },
        ..PullBatch::default()
    };
    let stats = r
        .apply_pull(&batch, &Policies::default(), true)
        .expect("apply pull");
    let items = stats["Item"];
    // The version the replica already has is not a change pulled: it is
    // not counted (so a pull that only sees this node's own echoes moved
    // nothing).
    assert_eq!(
        (
            items.records_processed,
            items.records_succeeded,
            items.conflicts
        ),
        (6, 5, 1)
    );
    assert_eq!(stats["Pair"].records_succeeded, 1);

    assert_eq!(row(&r, "a"), Some((11, 1.5)));
    assert_eq!(
        state(&r, "Item", "[\"a\"]"),
        Some(("SYNCED".into(), Some(5), false))
    );
    assert_eq!(row(&r, "b"), Some((12, 1.5)));
    assert_eq!(
        state(&r, "Item", "[\"b\"]"),
        Some(("SYNCED".into(), Some(4), false))
    );
    assert_eq!(row(&r, "c"), Some((3, 1.5)));
    assert_eq!(
        state(&r, "Item", "[\"c\"]"),
        Some(("SYNCED".into(), Some(7), false))
    );
    assert_eq!(row(&r, "d"), Some((100, 2.5)));
    assert_eq!(
        state(&r, "Item", "[\"d\"]"),
        Some(("PENDING".into(), Some(6), false))
    );
    assert_eq!(row(&r, "e"), Some((50, 1.5)));
    let conflict_version: Option<i64> = r
        .connection()
        .query_row(
            "SELECT conflict_version FROM _outpost_rows WHERE pk = '[\"e\"]'",
            [],
            |r| r.get(0),
        )
        .expect("conflict");
    assert_eq!(conflict_version, Some(8));
    assert_eq!(
        state(&r, "Item", "[\"e\"]").map(|s| s.0),
        Some("CONFLICT".into())
    );
    assert_eq!(row(&r, "f"), Some((9, 1.5)));
    assert_eq!(
        state(&r, "Item", "[\"f\"]"),
        Some(("SYNCED".into(), Some(9), false))
    );
    assert_eq!(row(&r, "g"), None);
    assert_eq!(
        state(&r, "Item", "[\"g\"]"),
        Some(("SYNCED".into(), Some(10), true))
    );
    assert_eq!(r.cursor().expect("cursor").0, Cursor { txid: 900, seq: 11 });

    // The pulled Pair's entry has the key the triggers compute: a local edit
    // finds it (one entry, now PENDING, based on version 11).
    let v: String = r
        .connection()
        .query_row("SELECT v FROM \"Pair\" WHERE a = 1", [], |r| r.get(0))
        .expect("pair");
    assert_eq!(v, "new");
    r.connection()
        .execute("UPDATE \"Pair\" SET v = 'local' WHERE a = 1", [])
        .expect("local edit");
    r.fold_changes().expect("fold");
    let pairs: Vec<(String, String, Option<i64>)> = r
        .connection()
        .prepare("SELECT pk, status, server_version FROM _outpost_rows WHERE table_name = 'Pair'")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    assert_eq!((pairs[0].1.as_str(), pairs[0].2), ("PENDING", Some(11)));

    // The same batch again changes nothing.
    let before: Vec<Vec<Value>> = r.all_rows("Item").expect("rows");
    let again = r
        .apply_pull(&batch, &Policies::default(), true)
        .expect("apply pull");
    assert_eq!(r.all_rows("Item").expect("rows"), before);
    assert_eq!(again["Item"].conflicts, 0);
}

#[test]
fn a_batch_naming_a_row_twice_applies_both_in_order() {
    let (_dir, mut r) = setup();
    silently(
        &mut r,
        "INSERT INTO \"Item\" (id, qty, score) VALUES ('a', 1, 1.5)",
    );
    let batch = PullBatch {
        rows: vec![
            item("a", 20, 1.5, 20),
            item("a", 21, 1.5, 21),
            item("b", 3, 1.5, 22),
        ],
        changes: 3,
        ..PullBatch::default()
    };
    let stats = r
        .apply_pull(&batch, &Policies::default(), false)
        .expect("apply pull");
    assert_eq!(stats["Item"].records_succeeded, 3);
    assert_eq!(row(&r, "a"), Some((21, 1.5)));
    assert_eq!(
        state(&r, "Item", "[\"a\"]"),
        Some(("SYNCED".into(), Some(21), false))
    );
    assert_eq!(row(&r, "b"), Some((3, 1.5)));
    // Not advanced: the cursor stays.
    assert_eq!(r.cursor().expect("cursor").0, Cursor::default());
}

/// A deletion that crossed as a tag alone (gateway topology): it removes
/// the row whose tag the replica kept from an earlier pull, and a tag the
/// replica never kept, or one another program garbled in `_outpost_tags`,
/// removes nothing and fails nothing.
#[test]
fn a_deletion_by_tag_removes_the_row_that_kept_it_and_nothing_else() {
    let (_dir, mut r) = setup();
    let tagged = |id: &str, tag: &str| ServerRow {
        tag: Some(tag.into()),
        ..item(id, 1, 1.0, 5)
    };
    let withheld = |tag: &str| ServerRow {
        pk: Vec::new(),
        values: None,
        version: outpost_core::Version(9),
        ..tagged("", tag)
    };
    let batch = |rows: Vec<ServerRow>| PullBatch {
        rows,
        cursor: Cursor { txid: 1, seq: 1 },
        ..PullBatch::default()
    };
    r.apply_pull(
        &batch(vec![
            tagged("a", "t-a"),
            tagged("b", "t-b"),
            tagged("c", "t-c"),
        ]),
        &Policies::default(),
        true,
    )
    .expect("pull");
    assert_eq!(r.tag_count("Item").expect("count"), 3);
    silently(
        &mut r,
        "UPDATE _outpost_tags SET pk = 'not json' WHERE tag = 't-c'",
    );
    r.apply_pull(
        &batch(vec![
            withheld("t-a"),
            withheld("t-never-held"),
            withheld("t-c"),
        ]),
        &Policies::default(),
        true,
    )
    .expect("a deletion by tag");
    assert_eq!(row(&r, "a"), None);
    assert_eq!(
        state(&r, "Item", "[\"a\"]"),
        Some(("SYNCED".into(), Some(9), true))
    );
    assert_eq!(row(&r, "b"), Some((1, 1.0)));
    assert_eq!(
        row(&r, "c"),
        Some((1, 1.0)),
        "a garbled tag removes nothing"
    );
}

/// A copy's tags (one value past a row's columns) are kept as they arrive
/// and moved into the tag index when the copy is done; a copy cut before
/// that still has its rows found by a deletion's tag.
#[test]
fn a_copys_tags_find_their_rows_even_before_the_copy_is_done() {
    let (_dir, mut r) = setup();
    let copied = |id: &str| {
        let mut values = item(id, 1, 1.0, 1).values.expect("values");
        values.push(Value::Text(format!("t-{id}")));
        values
    };
    r.bootstrap_insert("Item", &[copied("a"), copied("b")], None)
        .expect("copy");
    // Not moved yet: the copy did not end.
    assert_eq!(r.tag_count("Item").expect("count"), 0);
    let deletion = ServerRow {
        pk: Vec::new(),
        values: None,
        tag: Some("t-b".into()),
        ..item("", 0, 0.0, 9)
    };
    r.apply_pull(
        &PullBatch {
            rows: vec![deletion],
            cursor: Cursor { txid: 1, seq: 1 },
            ..PullBatch::default()
        },
        &Policies::default(),
        true,
    )
    .expect("pull");
    assert_eq!(r.tag_count("Item").expect("count"), 2);
    assert_eq!(row(&r, "a"), Some((1, 1.0)));
    assert_eq!(row(&r, "b"), None);
}
