//! `SyncLog` rows of runs whose process stopped: closed as `INTERRUPTED`
//! when the replica is next opened, never while a run still holds the run
//! lock; and the version 2 table migrated to allow the status.

mod common;

use common::schema;
use outpost_local::Replica;
use outpost_local::log::INTERRUPTED_MESSAGE;
use outpost_local::sync::ModelStats;

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("local.db");
    Replica::setup(&path, &schema()).expect("setup");
    (dir, path)
}

/// (status, completedAt, error) of log row `id`.
fn row(r: &Replica, id: i64) -> (String, Option<String>, Option<String>) {
    r.connection()
        .query_row(
            "SELECT status, \"completedAt\", error FROM \"SyncLog\" WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("log row")
}

#[test]
fn a_run_left_running_is_closed_as_interrupted_when_the_replica_is_opened() {
    let (_dir, path) = setup();
    let (done, killed) = {
        let r = Replica::open(&path).expect("open");
        let done = r
            .log_start("Item", "BIDIRECTIONAL", "manual")
            .expect("start");
        r.log_finish(done, ModelStats::default(), None)
            .expect("finish");
        // What a killed run leaves: its rows opened, never closed, and (its
        // process gone) no lock held.
        let killed = r.log_start("Item", "TO_SERVER", "interval").expect("start");
        assert_eq!(row(&r, killed).0, "RUNNING");
        (done, killed)
    };
    let r = Replica::open(&path).expect("open again");
    let (status, completed, error) = row(&r, killed);
    assert_eq!(status, "INTERRUPTED");
    assert!(completed.is_some(), "an end time is recorded");
    assert_eq!(error.as_deref(), Some(INTERRUPTED_MESSAGE));
    assert_eq!(row(&r, done).0, "SUCCESS", "finished runs are untouched");
    let newest = r.sync_log(None, 1, 0).expect("log");
    assert_eq!(newest[0].status, "INTERRUPTED");
    // It is not a success: the last successful sync is still the first run.
    assert_eq!(
        r.last_successful_sync().expect("last").map(|e| e.id),
        Some(done)
    );
}

#[test]
fn a_run_still_holding_the_run_lock_is_left_running() {
    let (_dir, path) = setup();
    let running = Replica::open(&path).expect("open");
    let lock = running.run_lock();
    let id = running
        .log_start("Item", "BIDIRECTIONAL", "manual")
        .expect("start");
    // Another process (here another connection) opens the file meanwhile.
    let other = Replica::open(&path).expect("open beside a run");
    assert_eq!(row(&other, id).0, "RUNNING", "a live run is not closed");
    assert_eq!(other.close_interrupted_runs().expect("close"), 0);
    running
        .log_finish(id, ModelStats::default(), None)
        .expect("finish");
    drop(lock);
    let later = Replica::open(&path).expect("open after the run");
    assert_eq!(row(&later, id).0, "SUCCESS");
}

#[test]
fn a_version_2_sync_log_is_migrated_keeping_its_rows_and_ids() {
    let (_dir, path) = setup();
    {
        let r = Replica::open(&path).expect("open");
        // The version 2 table: no INTERRUPTED status.
        r.connection()
            .execute_batch(
                "DROP TABLE \"SyncLog\"; \
                 CREATE TABLE \"SyncLog\" (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, \
                 direction TEXT NOT NULL CHECK (direction IN ('BIDIRECTIONAL', 'TO_SERVER', 'FROM_SERVER')), \
                 trigger TEXT NOT NULL CHECK (trigger IN ('manual', 'interval', 'reconnect', 'notify', 'startup')), \
                 status TEXT NOT NULL CHECK (status IN ('RUNNING', 'SUCCESS', 'FAILED')), \
                 \"startedAt\" TEXT NOT NULL, \"completedAt\" TEXT, \
                 \"recordsProcessed\" INTEGER NOT NULL DEFAULT 0, \"recordsSucceeded\" INTEGER NOT NULL DEFAULT 0, \
                 \"recordsFailed\" INTEGER NOT NULL DEFAULT 0, conflicts INTEGER NOT NULL DEFAULT 0, error TEXT); \
                 CREATE INDEX \"_outpost_synclog_model\" ON \"SyncLog\" (model, id); \
                 INSERT INTO \"SyncLog\" (model, direction, trigger, status, \"startedAt\", \"recordsProcessed\") \
                 VALUES ('Item', 'BIDIRECTIONAL', 'manual', 'SUCCESS', '2026-01-01', 7), \
                        ('Item', 'BIDIRECTIONAL', 'manual', 'RUNNING', '2026-01-02', 0), \
                        ('Pair', 'BIDIRECTIONAL', 'manual', 'FAILED', '2026-01-03', 0); \
                 DELETE FROM \"SyncLog\" WHERE model = 'Pair'; \
                 UPDATE _outpost_meta SET value = '2' WHERE key = 'meta_version';",
            )
            .expect("make version 2");
        let err = r.connection().execute(
            "UPDATE \"SyncLog\" SET status = 'INTERRUPTED' WHERE id = 2",
            [],
        );
        assert!(err.is_err(), "version 2 refuses the status");
    }
    let r = Replica::open(&path).expect("open migrates");
    let version: String = r
        .connection()
        .query_row(
            "SELECT value FROM _outpost_meta WHERE key = 'meta_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, outpost_core::sqlite::META_VERSION.to_string());
    let log = r.sync_log(None, 10, 0).expect("log");
    let ids: Vec<(i64, &str, i64)> = log
        .iter()
        .map(|e| (e.id, e.status.as_str(), e.records_processed))
        .collect();
    // The row left RUNNING before the upgrade is closed too.
    assert_eq!(ids, vec![(2, "INTERRUPTED", 0), (1, "SUCCESS", 7)]);
    // Ids are never reused: the deleted row 3 stays unused.
    let next = r
        .log_start("Item", "BIDIRECTIONAL", "manual")
        .expect("start");
    assert_eq!(next, 4);
    let index: i64 = r
        .connection()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = '_outpost_synclog_model' AND tbl_name = 'SyncLog'",
            [],
            |r| r.get(0),
        )
        .expect("index");
    assert_eq!(index, 1);
}
