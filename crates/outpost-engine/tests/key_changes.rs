//! Primary-key changes made on a node reach the server as updates of the
//! key (docs/protocol.md, "Key changes"): the foreign keys' `ON UPDATE
//! CASCADE` moves the children along, the server never holds the row
//! twice, server-assigned columns stay, and a retry after a lost
//! acknowledgement writes nothing again. Run in both topologies (direct and
//! through a gateway: .ci/run).

mod common;

use common::*;
use outpost_core::sync::{Direction, Trigger};
use outpost_core::types::Value;
use outpost_engine::{Engine, SyncOptions};
use outpost_remote::tokio_postgres::Client;
use outpost_testkit::TestDb;

/// A change waited for is synced for up to `TRIES × PAUSE` (30 s): the pull
/// horizon is cluster-wide, and another database's open transaction can
/// hold a change back.
const TRIES: usize = 60;
const PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// Departments keyed by a code the users edit, employees referencing them
/// with `ON UPDATE CASCADE` (and the default `NO ACTION` on delete), and a
/// server trigger that stamps every department write.
const ORG: &str = r#"
CREATE TABLE "Dept" (
    code text PRIMARY KEY,
    name text NOT NULL,
    stamped_by text
);
CREATE FUNCTION stamp_dept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.stamped_by := 'server:' || NEW.code;
    RETURN NEW;
END $$;
CREATE TRIGGER stamp_dept BEFORE INSERT OR UPDATE ON "Dept" FOR EACH ROW EXECUTE FUNCTION stamp_dept();
CREATE TABLE "Emp" (
    id int PRIMARY KEY,
    dept text NOT NULL REFERENCES "Dept"(code) ON UPDATE CASCADE,
    name text NOT NULL
);
"#;

async fn org(db: &TestDb) -> anyhow::Result<(Client, outpost_core::schema::Schema, Engine)> {
    let (client, schema) = server(db, ORG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Dept" (code, name) VALUES ('ENG', 'Engineering'), ('OPS', 'Operations');
               INSERT INTO "Emp" (id, dept, name) VALUES (1, 'ENG', 'ada'), (2, 'ENG', 'bob'), (3, 'OPS', 'cy');"#,
        )
        .await?;
    let a = node(db, &schema, "a")?;
    // Until the pull horizon (cluster-wide) passes the rows above, the
    // node knows them only as of a cursor behind its copy, and a push of
    // their edits meets a conflict it must settle first (tested on its own:
    // `a_key_change_while_the_cursor_lags_the_copy_moves_the_children`).
    // These tests want the settled case: sync until nothing is held back.
    for _ in 0..TRIES {
        if !sync(&a, Direction::Bidirectional).await?.held_back {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    Ok((client, schema, a))
}

/// Syncs until the replica equals the server (bounded: another test's open
/// transaction can hold a change back).
async fn settle(
    client: &Client,
    schema: &outpost_core::schema::Schema,
    a: &Engine,
) -> anyhow::Result<()> {
    let mut last = Ok(0);
    for _ in 0..TRIES {
        sync(a, Direction::Bidirectional).await?;
        last = assert_converged(client, schema, &[a]).await;
        if last.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(PAUSE).await;
    }
    last.map(|_| ())
}

/// `(code, name, stamped_by)` of every department on the server.
async fn depts(client: &Client) -> anyhow::Result<Vec<(String, String, Option<String>)>> {
    Ok(client
        .query(
            r#"SELECT code, name, stamped_by FROM "Dept" ORDER BY code"#,
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// `(id, dept)` of every employee on the server.
async fn emps(client: &Client) -> anyhow::Result<Vec<(i32, String)>> {
    Ok(client
        .query(r#"SELECT id, dept FROM "Emp" ORDER BY id"#, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// After ENG → TMP → PLT and a new ENG: the server holds the department
/// under PLT with its employees, and the new ENG beside it.
async fn moved_to_plt_and_eng_reused(client: &Client) -> anyhow::Result<()> {
    assert_eq!(
        depts(client)
            .await?
            .into_iter()
            .map(|d| (d.0, d.1))
            .collect::<Vec<_>>(),
        vec![
            ("ENG".into(), "New engineering".into()),
            ("OPS".into(), "Operations".into()),
            ("PLT".into(), "Engineering".into()),
        ]
    );
    assert_eq!(
        emps(client).await?,
        vec![(1, "PLT".into()), (2, "PLT".into()), (3, "OPS".into())],
        "the children followed their department, not the reused code"
    );
    Ok(())
}

/// The recorded changes of a table, by kind (`I`, `U`, `D`).
async fn change_ops(client: &Client, table: &str) -> anyhow::Result<Vec<String>> {
    Ok(client
        .query(
            r#"SELECT op FROM outpost.changes WHERE table_name = $1 ORDER BY txid, seq"#,
            &[&table],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[tokio::test]
async fn a_key_change_is_an_update_on_the_server_and_cascades() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema, a) = org(&db).await?;
    // Offline, the application renames a department's code (and its name).
    // The replica declares no foreign keys: its employees still say ENG.
    local(
        &a,
        r#"UPDATE "Dept" SET code = 'RND', name = 'Research' WHERE code = 'ENG'"#,
    )
    .await?;
    let before = change_ops(&client, "Dept").await?.len();
    let report = sync(&a, Direction::ToServer).await?;
    let failed: u64 = report.results.values().map(|s| s.records_failed).sum();
    assert_eq!(failed, 0, "{report:?}");

    // One row moved, not a second row beside a first one that cannot go.
    assert_eq!(
        depts(&client).await?,
        vec![
            ("OPS".into(), "Operations".into(), Some("server:OPS".into())),
            ("RND".into(), "Research".into(), Some("server:RND".into())),
        ]
    );
    // The cascade ran.
    assert_eq!(
        emps(&client).await?,
        vec![(1, "RND".into()), (2, "RND".into()), (3, "OPS".into())]
    );
    // Recorded as the feed records any key change: the old key's delete and
    // the new key's insert, once.
    let ops = change_ops(&client, "Dept").await?;
    let mut new_ops = ops[before..].to_vec();
    new_ops.sort();
    assert_eq!(new_ops, vec!["D".to_string(), "I".to_string()]);

    // The cascaded children reach the replica, with the server's stamp.
    settle(&client, &schema, &a).await?;
    let local = local_rows(&a, "Emp").await?;
    assert!(
        local
            .iter()
            .filter(|r| r[0] != Value::Int(3))
            .all(|r| r[1] == Value::Text("RND".into())),
        "{local:?}"
    );
    let status = a.status().await?;
    assert_eq!((status.pending, status.failed, status.conflicts), (0, 0, 0));
    Ok(())
}

/// A key changed twice while offline, and a row inserted under the key
/// the first change freed: the server ends with exactly the replica's rows.
#[tokio::test]
async fn keys_changed_twice_and_reused_offline_converge() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema, a) = org(&db).await?;
    local(
        &a,
        r#"UPDATE "Dept" SET code = 'TMP' WHERE code = 'ENG';
           UPDATE "Dept" SET code = 'PLT' WHERE code = 'TMP';
           INSERT INTO "Dept" (code, name) VALUES ('ENG', 'New engineering');"#,
    )
    .await?;
    sync(&a, Direction::ToServer).await?;
    moved_to_plt_and_eng_reused(&client).await?;
    settle(&client, &schema, &a).await?;
    let status = a.status().await?;
    assert_eq!((status.pending, status.failed, status.conflicts), (0, 0, 0));
    Ok(())
}

/// The move is committed and its acknowledgement lost: the retry finds
/// both halves written by this node's push and writes nothing again.
#[tokio::test]
async fn a_key_change_after_a_lost_acknowledgement_is_applied_once() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema, a) = org(&db).await?;
    local(&a, r#"UPDATE "Dept" SET code = 'RND' WHERE code = 'ENG'"#).await?;
    a.arm_fault(outpost_engine::FaultPoint::PushAfterCommit);
    let lost = a
        .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
        .await?;
    assert!(!lost.success, "the reply was dropped");
    let landed = change_ops(&client, "Dept").await?;
    assert_eq!(a.status().await?.pending, 2, "the node does not know");

    let retry = sync(&a, Direction::ToServer).await?;
    let conflicts: u64 = retry.results.values().map(|s| s.conflicts).sum();
    assert_eq!(conflicts, 0, "{retry:?}");
    assert_eq!(
        change_ops(&client, "Dept").await?,
        landed,
        "nothing written again"
    );
    assert_eq!(
        emps(&client).await?,
        vec![(1, "RND".into()), (2, "RND".into()), (3, "OPS".into())]
    );
    settle(&client, &schema, &a).await?;
    assert_eq!(a.status().await?.pending, 0);
    Ok(())
}

/// The old row changed on the server before the node's key change landed:
/// the key change is not applied over it. The old key's delete is a
/// conflict (as any delete of a row changed since; the new key waits for
/// the node to settle it, then goes as an ordinary insert), so the
/// server's edit is never lost and the node is told.
#[tokio::test]
async fn a_key_change_of_a_row_changed_on_the_server_is_a_conflict() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema, a) = org(&db).await?;
    client
        .batch_execute(r#"UPDATE "Dept" SET name = 'Eng (server)' WHERE code = 'OPS'"#)
        .await?;
    local(&a, r#"UPDATE "Dept" SET code = 'OPX' WHERE code = 'OPS'"#).await?;
    let report = a
        .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
        .await?;
    let conflicts: u64 = report.results.values().map(|s| s.conflicts).sum();
    let failed: u64 = report.results.values().map(|s| s.records_failed).sum();
    assert!(conflicts + failed >= 1, "{report:?}");
    let names: Vec<(String, String)> = depts(&client)
        .await?
        .into_iter()
        .map(|d| (d.0, d.1))
        .collect();
    assert!(
        names.contains(&("OPS".into(), "Eng (server)".into())),
        "the server's edit is kept: {names:?}"
    );
    assert_eq!(
        emps(&client).await?[2],
        (3, "OPS".into()),
        "no cascade over a row the node had not seen"
    );
    Ok(())
}

/// A key change of a row the node has only from its copy, while an open
/// transaction elsewhere in the cluster holds the node's cursor behind the
/// copy's snapshot: the push cannot tell the row's insert from a later
/// change, so the old half of the pair comes back as a conflict. The new
/// key must not be inserted beside it; once the node has settled both
/// halves (the server's row is still its base), the pair goes as one update
/// of the key and the children follow.
#[tokio::test]
async fn a_key_change_while_the_cursor_lags_the_copy_moves_the_children() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let holder = db.client().await?;
    holder
        .batch_execute("BEGIN; SELECT pg_current_xact_id();")
        .await?;
    let (client, schema) = server(&db, ORG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Dept" (code, name) VALUES ('ENG', 'Engineering'), ('OPS', 'Operations');
               INSERT INTO "Emp" (id, dept, name) VALUES (1, 'ENG', 'ada'), (2, 'ENG', 'bob'), (3, 'OPS', 'cy');"#,
        )
        .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    local(
        &a,
        r#"UPDATE "Dept" SET code = 'TMP' WHERE code = 'ENG';
           UPDATE "Dept" SET code = 'PLT' WHERE code = 'TMP';
           INSERT INTO "Dept" (code, name) VALUES ('ENG', 'New engineering');"#,
    )
    .await?;
    for _ in 0..TRIES {
        sync(&a, Direction::ToServer).await?;
        if a.status().await?.pending == 0 {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    moved_to_plt_and_eng_reused(&client).await?;
    let status = a.status().await?;
    assert_eq!((status.failed, status.conflicts), (0, 0));
    holder.batch_execute("COMMIT").await?;
    settle(&client, &schema, &a).await?;
    Ok(())
}
