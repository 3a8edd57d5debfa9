//! The replica's setup and capture triggers, on a real SQLite file.

use std::os::unix::fs::PermissionsExt as _;

mod common;

use common::schema;
use outpost_core::types::Value;
use outpost_local::value::{row_from_json, to_sqlite};
use outpost_local::{ChangeKind, LocalError, Replica};
use rusqlite::params;

/// (table, pk, status, local_seq, deleted, base_row) of every entry.
type Entry = (String, String, String, Option<i64>, bool, Option<String>);

fn entries(r: &Replica) -> Vec<Entry> {
    // Capture appends to a log; the replica folds it before reading entries.
    r.fold_changes().expect("fold");
    let mut stmt = r
        .connection()
        .prepare("SELECT table_name, pk, status, local_seq, deleted, base_row FROM _outpost_rows ORDER BY table_name, pk")
        .expect("prepare");
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

fn catalogue(r: &Replica) -> Vec<(String, String, Option<String>)> {
    let mut stmt = r
        .connection()
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn setup() -> (tempfile::TempDir, Replica) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (replica, report) =
        Replica::setup(&dir.path().join("sub/local.db"), &schema()).expect("setup");
    assert!(report.created_file);
    assert_eq!(report.created, vec!["Item", "Pair"]);
    (dir, replica)
}

/// Inserts a row as a pull would: with capture silenced.
fn insert_synced(r: &mut Replica, id: &str, qty: i64) {
    r.apply_silenced(|tx| {
        tx.execute(
            "INSERT INTO \"Item\" (id, qty, score) VALUES (?1, ?2, 1.5)",
            params![id, qty],
        )
        .map_err(LocalError::sqlite("test insert"))?;
        Ok(())
    })
    .expect("apply");
}

#[test]
fn setup_creates_a_wal_owner_only_file_and_is_idempotent() {
    let (dir, replica) = setup();
    let path = dir.path().join("sub/local.db");
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let journal: String = replica
        .connection()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(journal, "wal");
    let before = catalogue(&replica);
    for name in [
        "_outpost_meta",
        "_outpost_cursor",
        "_outpost_rows",
        "_outpost_local_seq",
        "_outpost_apply",
        "SyncLog",
        "Item",
        "Pair",
    ] {
        assert!(
            before.iter().any(|(t, n, _)| t == "table" && n == name),
            "missing table {name}"
        );
    }
    assert_eq!(before.iter().filter(|(t, _, _)| t == "trigger").count(), 8);
    let node = replica.node_id();
    let hash = replica.schema_hash().expect("hash");
    drop(replica);

    let (again, report) = Replica::setup(&path, &schema()).expect("second setup");
    assert!(report.unchanged(), "{report:?}");
    assert_eq!(again.node_id(), node);
    assert_eq!(again.schema_hash().expect("hash"), hash);
    assert_eq!(catalogue(&again), before);
}

#[test]
fn replica_opens_offline_from_its_snapshot() {
    let (dir, replica) = setup();
    let node = replica.node_id();
    drop(replica);
    let opened = Replica::open(&dir.path().join("sub/local.db")).expect("open");
    assert_eq!(opened.node_id(), node);
    assert_eq!(opened.schema(), &schema());

    let missing = Replica::open(&dir.path().join("nope.db"))
        .err()
        .expect("missing file refused");
    assert!(
        missing.to_string().contains("run `outpost setup`"),
        "{missing}"
    );
    let junk = dir.path().join("junk.db");
    std::fs::write(
        &junk,
        b"this is not a database, just some text padding it out to a page",
    )
    .expect("write");
    let err = Replica::open(&junk).err().expect("corrupt file refused");
    assert!(err.to_string().contains("junk.db"), "{err}");
}

#[test]
fn newer_metadata_is_refused() {
    let (dir, replica) = setup();
    replica
        .connection()
        .execute(
            "UPDATE _outpost_meta SET value = '99' WHERE key = 'meta_version'",
            [],
        )
        .expect("update");
    drop(replica);
    let err = Replica::open(&dir.path().join("sub/local.db"))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("metadata version 99"), "{err}");
}

#[test]
fn each_operation_is_tracked_once_with_a_growing_local_seq() {
    let (_dir, replica) = setup();
    let c = replica.connection();
    c.execute(
        "INSERT INTO \"Item\" (id, qty, score) VALUES ('a', 1, 0.5)",
        [],
    )
    .expect("insert");
    assert_eq!(
        entries(&replica),
        vec![(
            "Item".into(),
            "[\"a\"]".into(),
            "PENDING".into(),
            Some(1),
            false,
            None
        )]
    );
    c.execute("UPDATE \"Item\" SET qty = 2 WHERE id = 'a'", [])
        .expect("update");
    // A row created locally has no base: it did not exist on the server.
    assert_eq!(
        entries(&replica),
        vec![(
            "Item".into(),
            "[\"a\"]".into(),
            "PENDING".into(),
            Some(2),
            false,
            None
        )]
    );
    // An update that changes nothing is not a change.
    c.execute("UPDATE \"Item\" SET qty = 2 WHERE id = 'a'", [])
        .expect("no-op update");
    assert_eq!(entries(&replica)[0].3, Some(2));
    c.execute("INSERT INTO \"Pair\" (a, b, v) VALUES (7, 'x', 'v')", [])
        .expect("insert pair");
    c.execute("DELETE FROM \"Item\" WHERE id = 'a'", [])
        .expect("delete");
    let e = entries(&replica);
    assert_eq!(e[0].1, "[\"a\"]");
    assert_eq!((e[0].3, e[0].4), (Some(4), true));
    assert_eq!(
        e[1],
        (
            "Pair".into(),
            "[7,\"x\"]".into(),
            "PENDING".into(),
            Some(3),
            false,
            None
        )
    );
}

#[test]
fn first_change_of_a_synced_row_keeps_its_base() {
    let (_dir, mut replica) = setup();
    insert_synced(&mut replica, "s", 10);
    assert!(
        entries(&replica).is_empty(),
        "a silenced write is not a local change"
    );
    let c = replica.connection();
    c.execute("UPDATE \"Item\" SET qty = 11 WHERE id = 's'", [])
        .expect("update");
    c.execute(
        "UPDATE \"Item\" SET qty = 12, score = 2.5 WHERE id = 's'",
        [],
    )
    .expect("update again");
    let e = entries(&replica);
    let base = e[0].5.clone().expect("base kept");
    let values =
        row_from_json(replica.schema().table("Item").expect("Item"), &base).expect("base row");
    assert_eq!(
        values[..3],
        [Value::Text("s".into()), Value::Int(10), Value::Float(1.5)]
    );
    c.execute("DELETE FROM \"Item\" WHERE id = 's'", [])
        .expect("delete");
    let after = entries(&replica);
    assert_eq!(
        after[0].5.as_deref(),
        Some(base.as_str()),
        "base survives later changes"
    );
    assert!(after[0].4);
}

#[test]
fn a_key_change_is_a_delete_and_an_insert() {
    let (_dir, mut replica) = setup();
    insert_synced(&mut replica, "old", 1);
    replica
        .connection()
        .execute("UPDATE \"Item\" SET id = 'new' WHERE id = 'old'", [])
        .expect("update key");
    let e = entries(&replica);
    assert_eq!(e.len(), 2);
    let (new, old) = (&e[0], &e[1]);
    assert_eq!(
        (new.1.as_str(), new.4, new.5.is_none()),
        ("[\"new\"]", false, true)
    );
    assert_eq!(
        (old.1.as_str(), old.4, old.5.is_some()),
        ("[\"old\"]", true, true)
    );
    assert!(new.3 > old.3);
}

#[test]
fn silencing_holds_inside_the_apply_transaction_only() {
    let (dir, mut replica) = setup();
    let path = dir.path().join("sub/local.db");
    replica
        .apply_silenced(|tx| {
            tx.execute(
                "INSERT INTO \"Item\" (id, qty, score) VALUES ('p', 1, 0)",
                [],
            )
            .map_err(LocalError::sqlite("insert"))?;
            let flag: i64 = tx
                .query_row("SELECT active FROM _outpost_apply", [], |r| r.get(0))
                .map_err(LocalError::sqlite("flag"))?;
            assert_eq!(flag, 1);
            // Another connection never sees the flag set.
            let other = rusqlite::Connection::open(&path).map_err(LocalError::sqlite("open"))?;
            let seen: i64 = other
                .query_row("SELECT active FROM _outpost_apply", [], |r| r.get(0))
                .map_err(LocalError::sqlite("flag"))?;
            assert_eq!(seen, 0);
            Ok(())
        })
        .expect("apply");
    assert!(entries(&replica).is_empty());
    // A failed apply rolls back its writes and the flag with them.
    let err = replica.apply_silenced(|tx| {
        tx.execute(
            "INSERT INTO \"Item\" (id, qty, score) VALUES ('q', 1, 0)",
            [],
        )
        .map_err(LocalError::sqlite("insert"))?;
        Err::<(), _>(LocalError::BadSnapshot("boom".into()))
    });
    assert!(err.is_err());
    let c = replica.connection();
    let flag: i64 = c
        .query_row("SELECT active FROM _outpost_apply", [], |r| r.get(0))
        .expect("flag");
    assert_eq!(flag, 0);
    let q: i64 = c
        .query_row("SELECT count(*) FROM \"Item\" WHERE id = 'q'", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(q, 0);
    // After the apply, local writes are captured again.
    c.execute("UPDATE \"Item\" SET qty = 5 WHERE id = 'p'", [])
        .expect("update");
    assert_eq!(entries(&replica).len(), 1);
}

#[test]
fn conflict_stays_conflict_and_failed_becomes_pending() {
    let (_dir, replica) = setup();
    let c = replica.connection();
    c.execute(
        "INSERT INTO \"Item\" (id, qty, score) VALUES ('c', 1, 0), ('f', 1, 0)",
        [],
    )
    .expect("insert");
    replica.fold_changes().expect("fold");
    c.execute(
        "UPDATE _outpost_rows SET status = 'CONFLICT' WHERE pk = '[\"c\"]'",
        [],
    )
    .expect("mark");
    replica.fold_changes().expect("fold");
    c.execute(
        "UPDATE _outpost_rows SET status = 'FAILED', error = 'duplicate key' WHERE pk = '[\"f\"]'",
        [],
    )
    .expect("mark");
    c.execute("UPDATE \"Item\" SET qty = 2", [])
        .expect("update both");
    let status = |pk: &str| -> (String, Option<String>) {
        replica.fold_changes().expect("fold");
        c.query_row(
            "SELECT status, error FROM _outpost_rows WHERE pk = ?1",
            [pk],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("entry")
    };
    assert_eq!(status("[\"c\"]"), ("CONFLICT".into(), None));
    assert_eq!(status("[\"f\"]"), ("PENDING".into(), None));
}

#[test]
fn base_rows_keep_blobs_infinities_nan_and_arrays() {
    let (_dir, mut replica) = setup();
    let table = replica.schema().table("Item").expect("Item").clone();
    let row = vec![
        Value::Text("k".into()),
        Value::Int(-3),
        Value::Float(f64::NEG_INFINITY),
        Value::Bytes(vec![0, 1, 254, 255]),
        Value::Array(vec![Value::Text("ü".into()), Value::Null]),
    ];
    let stored: Vec<rusqlite::types::Value> = row
        .iter()
        .zip(&table.columns)
        .map(|(v, c)| to_sqlite(v, &c.ty))
        .collect();
    replica
        .apply_silenced(|tx| {
            tx.execute(
                "INSERT INTO \"Item\" VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params_from_iter(stored.iter()),
            )
            .map_err(LocalError::sqlite("insert"))?;
            Ok(())
        })
        .expect("apply");
    replica
        .connection()
        .execute("UPDATE \"Item\" SET score = 'NaN' WHERE id = 'k'", [])
        .expect("update");
    replica
        .connection()
        .execute("UPDATE \"Item\" SET qty = 0 WHERE id = 'k'", [])
        .expect("update");
    let base = entries(&replica)[0].5.clone().expect("base");
    assert_eq!(row_from_json(&table, &base).expect("decode"), row);
    let e = replica
        .row_entry("Item", "[\"k\"]")
        .expect("entry")
        .expect("present");
    assert_eq!(e.status, outpost_core::RowStatus::Pending);
}

fn qty(row: &Option<Vec<Value>>) -> Option<Value> {
    row.as_ref().map(|r| r[1].clone())
}

#[test]
fn pending_changes_are_listed_with_their_kind_and_paged() {
    let (_dir, mut replica) = setup();
    insert_synced(&mut replica, "a", 1);
    insert_synced(&mut replica, "b", 2);
    let c = replica.connection();
    c.execute("UPDATE \"Item\" SET qty = 5 WHERE id = 'a'", [])
        .expect("update");
    c.execute("INSERT INTO \"Item\" (id, qty) VALUES ('n', 9)", [])
        .expect("insert");
    c.execute("DELETE FROM \"Item\" WHERE id = 'b'", [])
        .expect("delete");
    let page = replica.pending_changes(None, 10, 0).expect("pending");
    assert_eq!(page.total, 3);
    let got: Vec<(&str, ChangeKind, Option<Value>)> = page
        .entries
        .iter()
        .map(|e| (e.pk.as_str(), e.kind, qty(&e.values)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("[\"a\"]", ChangeKind::Update, Some(Value::Int(5))),
            ("[\"n\"]", ChangeKind::Insert, Some(Value::Int(9))),
            ("[\"b\"]", ChangeKind::Delete, None),
        ]
    );
    assert!(page.entries.iter().all(|e| e.changed_at.is_some()));
    let second = replica.pending_changes(None, 1, 1).expect("page");
    assert_eq!((second.total, second.entries.len()), (3, 1));
    assert_eq!(second.entries[0].pk, "[\"n\"]");
    let pair = replica.pending_changes(Some("Pair"), 10, 0).expect("pair");
    assert_eq!((pair.total, pair.entries.len()), (0, 0));
    // FAILED rows are listed apart, with the server's message.
    replica.fold_changes().expect("fold");
    c.execute(
        "UPDATE _outpost_rows SET status = 'FAILED', error = 'duplicate key' WHERE pk = '[\"n\"]'",
        [],
    )
    .expect("mark");
    assert_eq!(replica.pending_changes(None, 10, 0).expect("p").total, 2);
    let failed = replica.failed_changes(Some("Item"), 10, 0).expect("failed");
    assert_eq!(failed.total, 1);
    assert_eq!(failed.entries[0].error.as_deref(), Some("duplicate key"));
}

#[test]
fn discarding_a_failed_row_puts_the_server_row_back() {
    let (_dir, mut replica) = setup();
    insert_synced(&mut replica, "a", 1);
    insert_synced(&mut replica, "v", 3);
    let c = replica.connection();
    c.execute("UPDATE \"Item\" SET qty = 5 WHERE id IN ('a', 'v')", [])
        .expect("update");
    c.execute(
        "INSERT INTO \"Item\" (id, qty) VALUES ('n', 9), ('p', 4)",
        [],
    )
    .expect("insert");
    replica.fold_changes().expect("fold");
    c.execute(
        "UPDATE _outpost_rows SET status = 'FAILED', error = 'refused' WHERE pk <> '[\"p\"]'",
        [],
    )
    .expect("mark");
    // `v` was re-based on server version 7 before it was refused.
    replica.fold_changes().expect("fold");
    c.execute(
        "UPDATE _outpost_rows SET server_version = 7 WHERE pk = '[\"v\"]'",
        [],
    )
    .expect("version");

    // As of the cursor: the old row comes back, and no entry is left.
    let d = replica.discard_failed("Item", "[\"a\"]").expect("discard");
    assert_eq!(d.as_ref().map(|d| qty(&d.row)), Some(Some(Value::Int(1))));
    assert_eq!(d.and_then(|d| d.server_version), None);
    // At a server version: synced at that version.
    let d = replica.discard_failed("Item", "[\"v\"]").expect("discard");
    assert_eq!(d.and_then(|d| d.server_version), Some(7));
    // A refused insert: the row goes.
    let d = replica.discard_failed("Item", "[\"n\"]").expect("discard");
    assert_eq!(d.map(|d| d.row), Some(None));
    // Not FAILED: nothing happens.
    assert_eq!(
        replica.discard_failed("Item", "[\"p\"]").expect("pending"),
        None
    );
    assert_eq!(
        replica.discard_failed("Item", "[\"zz\"]").expect("absent"),
        None
    );

    let rows: Vec<(String, i64)> = replica
        .all_rows("Item")
        .expect("rows")
        .into_iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::Text(id), Value::Int(q)) => (id.clone(), *q),
            other => panic!("unexpected row {other:?}"),
        })
        .collect();
    assert_eq!(
        rows,
        vec![("a".into(), 1), ("p".into(), 4), ("v".into(), 3)]
    );
    // Discarding is not a local change: only `p` is pending, `v` is synced.
    let e = entries(&replica);
    let states: Vec<(&str, &str)> = e
        .iter()
        .map(|(_, pk, status, ..)| (pk.as_str(), status.as_str()))
        .collect();
    assert_eq!(states, vec![("[\"p\"]", "PENDING"), ("[\"v\"]", "SYNCED")]);
}

/// The log rows not yet folded.
fn unfolded(r: &Replica) -> i64 {
    r.connection()
        .query_row(
            "SELECT count(*) FROM _outpost_changes WHERE local_seq > (SELECT seq FROM _outpost_local_seq)",
            [],
            |r| r.get(0),
        )
        .expect("count")
}

#[test]
fn changes_between_folds_become_one_entry_per_row() {
    let (_dir, mut replica) = setup();
    insert_synced(&mut replica, "s", 10);
    let c = replica.connection();
    c.execute("UPDATE \"Item\" SET qty = 11 WHERE id = 's'", [])
        .expect("update");
    c.execute("UPDATE \"Item\" SET qty = 12 WHERE id = 's'", [])
        .expect("update again");
    c.execute("DELETE FROM \"Item\" WHERE id = 's'", [])
        .expect("delete");
    c.execute("INSERT INTO \"Item\" (id, qty) VALUES ('n', 1)", [])
        .expect("insert");
    c.execute("UPDATE \"Item\" SET qty = 2 WHERE id = 'n'", [])
        .expect("update new");
    assert_eq!(unfolded(&replica), 5);
    assert_eq!(replica.fold_changes().expect("fold"), 2);
    assert_eq!(unfolded(&replica), 0);
    assert_eq!(replica.fold_changes().expect("fold again"), 0);
    let e = entries(&replica);
    assert_eq!(e.len(), 2, "{e:?}");
    let n = &e[0];
    assert_eq!(
        (n.1.as_str(), n.2.as_str(), n.3, n.4, n.5.as_deref()),
        ("[\"n\"]", "PENDING", Some(5), false, None)
    );
    let s = &e[1];
    assert_eq!(
        (s.1.as_str(), s.2.as_str(), s.3, s.4),
        ("[\"s\"]", "PENDING", Some(3), true)
    );
    // The base is the row before its first change, not before its last.
    let base = row_from_json(
        replica.schema().table("Item").expect("Item"),
        s.5.as_deref().expect("base"),
    )
    .expect("base row");
    assert_eq!(base[1], Value::Int(10));
    // Numbers keep growing after a fold emptied the log.
    replica
        .connection()
        .execute("INSERT INTO \"Item\" (id, qty) VALUES ('m', 1)", [])
        .expect("insert after fold");
    let m = entries(&replica)
        .into_iter()
        .find(|e| e.1 == "[\"m\"]")
        .expect("m");
    assert_eq!(m.3, Some(6));
    let pending = replica.pending_changes(None, 10, 0).expect("pending");
    assert_eq!(pending.total, 3);
}

/// The version 1 insert trigger of `Item`: an upsert into `_outpost_rows`.
const V1_TRIGGER: &str = "CREATE TRIGGER \"_outpost_ins_Item\" AFTER INSERT ON \"Item\" \
WHEN (SELECT active FROM \"_outpost_apply\" WHERE id = 1) = 0 BEGIN \
UPDATE \"_outpost_local_seq\" SET seq = seq + 1 WHERE id = 1; \
INSERT INTO \"_outpost_rows\" (table_name, pk, status, base_row, local_seq, deleted, changed_at) \
VALUES ('Item', json_array(NEW.\"id\"), 'PENDING', NULL, (SELECT seq FROM \"_outpost_local_seq\" WHERE id = 1), 0, \
strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')) \
ON CONFLICT (table_name, pk) DO UPDATE SET \
status = CASE status WHEN 'CONFLICT' THEN 'CONFLICT' ELSE 'PENDING' END, \
base_row = CASE status WHEN 'SYNCED' THEN excluded.base_row ELSE base_row END, \
local_seq = excluded.local_seq, deleted = excluded.deleted, error = NULL, changed_at = excluded.changed_at; END";

/// A version 2 replica (triggers that refused a blob in a text column) gets
/// version 3's triggers when opened: the application's write of a blob then
/// lands, and is captured.
#[test]
fn a_version_2_replica_gets_blob_safe_triggers() {
    let (dir, replica) = setup();
    let c = replica.connection();
    c.execute_batch(
        "DROP TRIGGER \"_outpost_upd_Item\"; \
         CREATE TRIGGER \"_outpost_upd_Item\" AFTER UPDATE ON \"Item\" BEGIN \
         INSERT INTO \"_outpost_changes\" (table_name, pk, base_row, deleted, changed_at) \
         VALUES ('Item', json_array(NEW.\"id\"), json_object('id', OLD.\"id\"), 0, julianday('now')); END; \
         UPDATE _outpost_meta SET value = '2' WHERE key = 'meta_version'",
    )
    .expect("make version 2");
    c.execute("INSERT INTO \"Item\" (id, qty) VALUES (x'DEADBEEF', 1)", [])
        .expect("insert");
    assert!(
        c.execute("UPDATE \"Item\" SET qty = 2 WHERE qty = 1", [])
            .is_err(),
        "the version 2 trigger refuses the blob key"
    );
    drop(replica);
    let replica = Replica::open(&dir.path().join("sub/local.db")).expect("open migrates");
    replica
        .connection()
        .execute("UPDATE \"Item\" SET qty = 3 WHERE qty = 1", [])
        .expect("the update lands");
    let e = entries(&replica);
    assert!(e.iter().any(|e| e.1 == "[\"DEADBEEF\"]"), "{e:?}");
}

/// A version 3 replica (a `SyncLog` that knows no `local-change` trigger)
/// is migrated on open: its log rows and ids are kept, and a run started by
/// a local write can be logged.
#[test]
fn a_version_3_replica_logs_local_change_runs_after_opening() {
    let (dir, replica) = setup();
    let c = replica.connection();
    let v3 = outpost_core::sqlite::sync_log_table().replace(", 'local-change'", "");
    assert_ne!(v3, outpost_core::sqlite::sync_log_table());
    c.execute_batch(&format!(
        "DROP TABLE \"SyncLog\"; {v3}; \
         INSERT INTO \"SyncLog\" (model, direction, trigger, status, \"startedAt\") \
         VALUES ('Item', 'BIDIRECTIONAL', 'manual', 'SUCCESS', '2026-01-01T00:00:00Z'); \
         UPDATE _outpost_meta SET value = '3' WHERE key = 'meta_version'"
    ))
    .expect("make version 3");
    assert!(
        c.execute(
            "INSERT INTO \"SyncLog\" (model, direction, trigger, status, \"startedAt\") \
             VALUES ('Item', 'TO_SERVER', 'local-change', 'RUNNING', '2026-01-01T00:00:01Z')",
            []
        )
        .is_err(),
        "version 3 refuses the trigger"
    );
    drop(replica);
    let replica = Replica::open(&dir.path().join("sub/local.db")).expect("open migrates");
    let id = replica
        .log_start("Item", "TO_SERVER", "local-change")
        .expect("a local-change run is logged");
    let log = replica.sync_log(None, 10, 0).expect("log");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].id, id);
    assert!(id > 1, "ids continue after the kept row");
    assert_eq!(log[1].trigger, "manual");
}

#[test]
fn a_version_1_replica_is_migrated_on_open() {
    let (dir, replica) = setup();
    // Make the file what version 1 left: capture straight into
    // `_outpost_rows`, no log, four changes numbered already.
    let c = replica.connection();
    for t in ["Item", "Pair"] {
        for k in ["ins", "upd", "updkey", "del"] {
            c.execute_batch(&format!("DROP TRIGGER \"_outpost_{k}_{t}\""))
                .expect("drop trigger");
        }
    }
    c.execute_batch(&format!(
        "DROP TABLE _outpost_changes; {V1_TRIGGER}; \
         UPDATE _outpost_local_seq SET seq = 3; \
         UPDATE _outpost_meta SET value = '1' WHERE key = 'meta_version'"
    ))
    .expect("make version 1");
    c.execute("INSERT INTO \"Item\" (id, qty) VALUES ('old', 1)", [])
        .expect("version 1 insert");
    drop(replica);

    let replica = Replica::open(&dir.path().join("sub/local.db")).expect("open migrates");
    let version: String = replica
        .connection()
        .query_row(
            "SELECT value FROM _outpost_meta WHERE key = 'meta_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, outpost_core::sqlite::META_VERSION.to_string());
    let triggers: Vec<String> = replica
        .connection()
        .prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(triggers.len(), 8);
    assert!(
        triggers
            .iter()
            .all(|t| t.contains("_outpost_changes") && !t.contains("_outpost_local_seq")),
        "{triggers:?}"
    );
    // Version 3's triggers: a blob in a text column is saved, not refused.
    assert!(
        triggers.iter().all(|t| t.contains("= 'blob' THEN hex(")),
        "{triggers:?}"
    );
    replica
        .connection()
        .execute("UPDATE \"Item\" SET qty = 2 WHERE id = 'old'", [])
        .expect("update");
    replica
        .connection()
        .execute("INSERT INTO \"Pair\" (a, b, v) VALUES (1, 'x', 'v')", [])
        .expect("insert");
    let e = entries(&replica);
    let seqs: Vec<(String, Option<i64>)> = e.iter().map(|e| (e.1.clone(), e.3)).collect();
    // `old` was change 4 in version 1; the numbers go on from there.
    assert_eq!(
        seqs,
        vec![("[\"old\"]".into(), Some(5)), ("[1,\"x\"]".into(), Some(6))]
    );
    // Setup on the migrated file changes nothing more.
    drop(replica);
    let (_, report) = Replica::setup(&dir.path().join("sub/local.db"), &schema()).expect("setup");
    assert!(report.unchanged(), "{report:?}");
}

#[test]
fn reads_do_not_wait_for_an_applications_write_transaction() {
    let (dir, replica) = setup();
    let app = rusqlite::Connection::open(dir.path().join("sub/local.db")).expect("open");
    app.execute("INSERT INTO \"Item\" (id, qty) VALUES ('a', 1)", [])
        .expect("insert");
    // The application now holds the write lock with more changes under way.
    app.execute_batch("BEGIN IMMEDIATE; INSERT INTO \"Item\" (id, qty) VALUES ('b', 1);")
        .expect("begin");
    // Reads answer at once, without the changes logged since the last fold,
    // instead of failing with "locked" after the busy timeout.
    assert_eq!(replica.status_counts().expect("status").len(), 0);
    assert_eq!(
        replica.pending_changes(None, 10, 0).expect("pending").total,
        0
    );
    assert!(replica.conflicts().expect("conflicts").is_empty());
    // A fold that must happen waits, and says plainly why it gave up.
    let err = replica.fold_changes().expect_err("locked");
    assert!(matches!(err, LocalError::Locked { .. }), "{err}");
    app.execute_batch("COMMIT").expect("commit");
    let pending = replica.pending_changes(None, 10, 0).expect("pending");
    assert_eq!(pending.total, 2);
}

/// An application committing in a loop leaves the lock free only for
/// microseconds between its transactions. The replica's own writes (a
/// fold, an acknowledgement) still get their turn while it goes on, not
/// only once it stops: SQLite's own busy handler sleeps up to 100 ms
/// between looks and almost never found the gap.
#[test]
fn the_replicas_writes_get_their_turn_beside_an_application_writing_in_a_loop() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    // SQLite's own handler waited out the whole loop (about 2 s for 4,000).
    const TRANSACTIONS: usize = 20_000;
    let (dir, mut replica) = setup();
    let path = dir.path().join("sub/local.db");
    let writing = Arc::new(AtomicBool::new(true));
    let still = writing.clone();
    let done = Arc::new(AtomicUsize::new(0));
    let counted = done.clone();
    let app = std::thread::spawn(move || {
        let app = rusqlite::Connection::open(&path).expect("open");
        app.busy_timeout(std::time::Duration::from_secs(10))
            .expect("timeout");
        // Transactions of 20 rows: the lock is held nearly all the time.
        for t in 0..TRANSACTIONS {
            app.execute_batch("BEGIN IMMEDIATE").expect("begin");
            for i in 0..20 {
                app.execute(
                    "INSERT INTO \"Item\" (id, qty) VALUES (?1, 1)",
                    [format!("app{t}-{i}")],
                )
                .expect("insert");
            }
            app.execute_batch("COMMIT").expect("commit");
            counted.store(t + 1, Ordering::Relaxed);
            if !still.load(Ordering::Relaxed) {
                break;
            }
        }
    });
    // Once the application is in its loop: three writes of the replica,
    // each waiting for the lock.
    while done.load(Ordering::Relaxed) < 10 {
        std::thread::yield_now();
    }
    for i in 0..3 {
        insert_synced(&mut replica, &format!("node{i}"), i);
    }
    writing.store(false, Ordering::Relaxed);
    app.join().expect("app");
    assert!(
        done.load(Ordering::Relaxed) < TRANSACTIONS,
        "the replica's writes waited for the application's whole loop"
    );
}

/// A uuid key in another spelling than PostgreSQL's is refused when the
/// application writes it (the server would store its own spelling and the
/// replica would hold the row twice); the canonical spelling, non-key uuid
/// columns and the sync's own writes pass; a replica of layout version 4
/// gets the guard when opened.
#[test]
fn uuid_keys_are_written_in_postgresqls_spelling_or_refused() {
    use outpost_core::schema::{Column, Schema, Table};
    use outpost_core::types::{ColumnType, ScalarType};
    let col = |name: &str, scalar| Column {
        name: name.into(),
        ty: ColumnType {
            scalar,
            array: false,
            pg_name: "uuid".into(),
            domain: None,
        },
        nullable: name != "id",
        default: None,
        identity: None,
        generated: false,
    };
    let schema = Schema {
        pg_schema: "public".into(),
        tables: vec![Table {
            name: "Device".into(),
            columns: vec![col("id", ScalarType::Uuid), col("owner", ScalarType::Uuid)],
            primary_key: vec!["id".into()],
            foreign_keys: vec![],
            uniques: vec![],
            relations: vec![],
        }],
        enums: vec![],
    }
    .finish();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("local.db");
    let (mut replica, _) = Replica::setup(&path, &schema).expect("setup");
    let c = replica.connection();
    let upper = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11";
    let lower = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    for bad in [
        upper,
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
    ] {
        let err = c
            .execute("INSERT INTO \"Device\" (id) VALUES (?1)", [bad])
            .expect_err(bad)
            .to_string();
        assert!(err.contains("Device.id is a uuid key"), "{err}");
    }
    // The canonical key, with a non-key uuid in any spelling.
    c.execute(
        "INSERT INTO \"Device\" (id, owner) VALUES (?1, ?2)",
        [lower, upper],
    )
    .expect("canonical key");
    let err = c
        .execute("UPDATE \"Device\" SET id = ?1", [upper])
        .expect_err("key update to another spelling");
    assert!(err.to_string().contains("Device.id is a uuid key"), "{err}");
    c.execute("UPDATE \"Device\" SET owner = ?1", [lower])
        .expect("other columns are not guarded");
    // The sync's own writes carry the server's spelling and are not checked.
    replica
        .apply_silenced(|tx| {
            tx.execute(
                "INSERT INTO \"Device\" (id) VALUES ('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12')",
                [],
            )
            .map_err(LocalError::sqlite("silenced write"))?;
            Ok(())
        })
        .expect("silenced");
    // A version 4 file (no guard) gets it when opened.
    replica
        .connection()
        .execute_batch(
            "DROP TRIGGER \"_outpost_keyguard_ins_Device_id\"; \
             DROP TRIGGER \"_outpost_keyguard_upd_Device_id\"; \
             UPDATE _outpost_meta SET value = '4' WHERE key = 'meta_version'",
        )
        .expect("make version 4");
    replica
        .connection()
        .execute("INSERT INTO \"Device\" (id) VALUES (?1)", [upper])
        .expect("version 4 lets it in");
    drop(replica);
    let replica = Replica::open(&path).expect("open migrates");
    let err = replica
        .connection()
        .execute(
            "INSERT INTO \"Device\" (id) VALUES (?1)",
            ["C0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A13"],
        )
        .expect_err("guarded after the migration");
    assert!(err.to_string().contains("uuid key"), "{err}");
}

/// A `timestamptz` key in another spelling than the one the replica stores
/// (an offset, another precision) is refused when the application writes
/// it: PostgreSQL would store the instant in its own spelling and the
/// replica would hold the row twice. The stored spelling passes; a replica
/// of layout version 5 gets the guard when opened.
#[test]
fn timestamptz_keys_are_written_as_the_replica_stores_them_or_refused() {
    use outpost_core::schema::{Column, Schema, Table};
    use outpost_core::types::{ColumnType, ScalarType};
    let col = |name: &str, scalar, pg: &str| Column {
        name: name.into(),
        ty: ColumnType {
            scalar,
            array: false,
            pg_name: pg.into(),
            domain: None,
        },
        nullable: name == "value",
        default: None,
        identity: None,
        generated: false,
    };
    let schema = Schema {
        pg_schema: "public".into(),
        tables: vec![Table {
            name: "Reading".into(),
            columns: vec![
                col("sensor", ScalarType::Text, "text"),
                col("at", ScalarType::Timestamptz, "timestamptz"),
                col("value", ScalarType::Timestamptz, "timestamptz"),
            ],
            primary_key: vec!["sensor".into(), "at".into()],
            foreign_keys: vec![],
            uniques: vec![],
            relations: vec![],
        }],
        enums: vec![],
    }
    .finish();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("local.db");
    let (replica, _) = Replica::setup(&path, &schema).expect("setup");
    let c = replica.connection();
    for bad in [
        "2024-01-05T10:00:00+02:00",
        "2024-01-05T08:00:00.000Z",
        "2024-01-05 08:00:00.000000Z",
    ] {
        let err = c
            .execute(
                "INSERT INTO \"Reading\" (sensor, at) VALUES ('s1', ?1)",
                [bad],
            )
            .expect_err(bad)
            .to_string();
        assert!(err.contains("Reading.at is a timestamptz key"), "{err}");
    }
    // The stored spelling, with a non-key timestamptz in any spelling.
    c.execute(
        "INSERT INTO \"Reading\" (sensor, at, value) VALUES ('s1', '2024-01-05T08:00:00.000000Z', '2024-01-05T10:00:00+02:00')",
        [],
    )
    .expect("stored spelling");
    // A version 5 file (no timestamptz guard) gets it when opened.
    c.execute_batch(
        "DROP TRIGGER \"_outpost_keyguard_ins_Reading_at\"; \
         DROP TRIGGER \"_outpost_keyguard_upd_Reading_at\"; \
         UPDATE _outpost_meta SET value = '5' WHERE key = 'meta_version'",
    )
    .expect("make version 5");
    drop(replica);
    let replica = Replica::open(&path).expect("open migrates");
    let err = replica
        .connection()
        .execute(
            "INSERT INTO \"Reading\" (sensor, at) VALUES ('s2', '2024-01-05T10:00:00+02:00')",
            [],
        )
        .expect_err("guarded after the migration");
    assert!(err.to_string().contains("timestamptz key"), "{err}");
}

/// A change of a row's key is captured as the old key's delete and the new
/// key's insert, linked: the push plan sends them as one move (the insert
/// names the old key and writes only the columns that changed, the delete
/// rides along). A key changed twice offline (`a → b → c`) moves `a` to
/// `c`; `b`, which the server never had, is the delete it is.
#[test]
fn a_key_change_is_planned_as_one_move() {
    let (_dir, mut replica) = setup();
    insert_synced(&mut replica, "a", 1);
    insert_synced(&mut replica, "z", 9);
    let c = replica.connection();
    c.execute_batch(
        "UPDATE \"Item\" SET id = 'b', qty = 2 WHERE id = 'a'; \
         UPDATE \"Item\" SET id = 'c' WHERE id = 'b'; \
         UPDATE \"Item\" SET qty = 10 WHERE id = 'z';",
    )
    .expect("key changes");
    let (rows, _) = replica
        .pending_push(None, 100, &outpost_local::push::InFlight::default())
        .expect("plan");
    let keys: Vec<(&str, bool)> = rows
        .iter()
        .map(|r| (r.local_pk.as_str(), r.values.is_some()))
        .collect();
    assert_eq!(keys.len(), 4, "c and z written, a and b deleted: {keys:?}");
    let moved = rows
        .iter()
        .find(|r| r.local_pk == "[\"c\"]")
        .expect("the new key is pushed");
    assert_eq!(moved.moved_from, Some(vec![Value::Text("a".into())]));
    assert_eq!(
        moved.changed,
        Some(vec![true, true, false, false, false]),
        "the key and qty changed relative to a's row"
    );
    let old = rows
        .iter()
        .find(|r| r.local_pk == "[\"a\"]")
        .expect("the old key's delete is in the same batch");
    assert!(old.values.is_none());
    let between = rows
        .iter()
        .find(|r| r.local_pk == "[\"b\"]")
        .expect("the key in between");
    assert!(between.values.is_none());
    let plain = rows.iter().find(|r| r.local_pk == "[\"z\"]").expect("z");
    assert_eq!(plain.moved_from, None, "an ordinary update is no move");
    // The delete half is planned after the insert half (deletes go last).
    let at = |k: &str| rows.iter().position(|r| r.local_pk == k);
    assert!(at("[\"c\"]") < at("[\"a\"]"));

    // A batch that holds only the insert brings the delete with it.
    let (first, _) = replica
        .pending_push(None, 1, &outpost_local::push::InFlight::default())
        .expect("plan of one");
    assert!(
        first.iter().any(|r| r.moved_from.is_some()),
        "the oldest change is the move: {first:?}"
    );
    assert!(
        first.iter().any(|r| r.local_pk == "[\"a\"]"),
        "a move never travels without its delete: {first:?}"
    );
}

/// A version 6 replica (key changes captured unlinked) is migrated on
/// open: the columns are added and the triggers rebuilt, so a key change
/// made after opening is linked.
#[test]
fn a_version_6_replica_links_key_changes_after_opening() {
    let (dir, mut replica) = setup();
    insert_synced(&mut replica, "a", 1);
    let c = replica.connection();
    c.execute_batch(
        "DROP TRIGGER \"_outpost_updkey_Item\"; \
         ALTER TABLE _outpost_rows DROP COLUMN moved_from; \
         ALTER TABLE _outpost_changes DROP COLUMN moved_from; \
         CREATE TRIGGER \"_outpost_updkey_Item\" AFTER UPDATE ON \"Item\" WHEN NOT (OLD.id IS NEW.id) BEGIN \
         INSERT INTO \"_outpost_changes\" (table_name, pk, base_row, deleted, changed_at) \
         VALUES ('Item', json_array(OLD.id), json_object('id', OLD.id), 1, julianday('now')); \
         INSERT INTO \"_outpost_changes\" (table_name, pk, base_row, deleted, changed_at) \
         VALUES ('Item', json_array(NEW.id), NULL, 0, julianday('now')); END; \
         UPDATE _outpost_meta SET value = '6' WHERE key = 'meta_version'",
    )
    .expect("make version 6");
    drop(replica);
    let replica = Replica::open(&dir.path().join("sub/local.db")).expect("open migrates");
    replica
        .connection()
        .execute("UPDATE \"Item\" SET id = 'b' WHERE id = 'a'", [])
        .expect("key change");
    let (rows, _) = replica
        .pending_push(None, 100, &outpost_local::push::InFlight::default())
        .expect("plan");
    let moved = rows
        .iter()
        .find(|r| r.local_pk == "[\"b\"]")
        .expect("b is pushed");
    assert_eq!(moved.moved_from, Some(vec![Value::Text("a".into())]));
}

/// Version 8 keeps the gateway's row tags: a version 7 replica gets their
/// tables when opened, and keeps its rows.
#[test]
fn a_version_7_replica_keeps_row_tags_after_opening() {
    let (dir, mut replica) = setup();
    insert_synced(&mut replica, "a", 1);
    replica
        .connection()
        .execute_batch(
            "DROP TABLE _outpost_tags; DROP TABLE _outpost_tags_copied; \
             UPDATE _outpost_meta SET value = '7' WHERE key = 'meta_version'",
        )
        .expect("make version 7");
    drop(replica);
    let mut replica = Replica::open(&dir.path().join("sub/local.db")).expect("open migrates");
    assert_eq!(replica.tag_count("Item").expect("tags"), 0);
    replica
        .merge_copied_tags()
        .expect("the copy's tags table exists");
    let n: i64 = replica
        .connection()
        .query_row("SELECT count(*) FROM \"Item\"", [], |r| r.get(0))
        .expect("rows");
    assert_eq!(n, 1);
}
