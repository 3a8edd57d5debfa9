//! One replica, one identity, one schema: a replica restored from a backup
//! (SQLite's backup API, as `sqlite3 local.db ".backup b.db"` does, or a
//! plain copy with the WAL checkpointed), a replica copied to a second node
//! running at the same time, and `setup` run beside an open node. Every
//! edit made after the restore or on the copy reaches the server, nothing is
//! pushed twice, and no server value is erased by a stale schema.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use outpost_core::sync::Direction;
use outpost_core::types::Value;
use outpost_engine::Engine;
use outpost_local::{Replica, Resolution, rusqlite};
use outpost_remote::tokio_postgres::Client;
use outpost_testkit::TestDb;

/// How the operator backs the replica up (docs/operations.md).
#[derive(Clone, Copy, Debug)]
enum Backup {
    /// SQLite's online backup API: what `sqlite3 local.db ".backup b.db"`
    /// runs; safe while the node runs.
    BackupApi,
    /// `PRAGMA wal_checkpoint(TRUNCATE)`, then a plain file copy.
    CheckpointedCopy,
}

fn back_up(how: Backup, from: &Path, to: &Path) -> anyhow::Result<()> {
    let src = rusqlite::Connection::open(from)?;
    match how {
        Backup::BackupApi => {
            let mut dst = rusqlite::Connection::open(to)?;
            let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
            backup.run_to_completion(100, std::time::Duration::ZERO, None)?;
        }
        Backup::CheckpointedCopy => {
            // Busy (another connection reading) leaves frames in the WAL:
            // the copy would miss them, so insist.
            let (busy, _, _): (i64, i64, i64) =
                src.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            anyhow::ensure!(busy == 0, "the checkpoint could not finish");
            std::fs::copy(from, to)?;
        }
    }
    Ok(())
}

/// Puts a backup in place of the replica while no node has it open, as
/// docs/operations.md says: the old `-wal` and `-shm` files go too.
fn restore(backup: &Path, replica: &Path) -> anyhow::Result<()> {
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", replica.display()));
        if side.exists() {
            std::fs::remove_file(side)?;
        }
    }
    std::fs::copy(backup, replica)?;
    Ok(())
}

fn open(db: &TestDb, path: &Path) -> anyhow::Result<Engine> {
    Ok(Engine::new(Replica::open(path)?, config(db, path)?))
}

/// Counts every write of a `"User"` row on the server (a statement that
/// writes the same values again counts too; the change log would not show
/// it, and retention prunes it anyway).
async fn audit_users(client: &Client) -> anyhow::Result<()> {
    client
        .batch_execute(
            r#"CREATE TABLE user_writes (id text NOT NULL);
               CREATE FUNCTION count_user_write() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO user_writes VALUES (NEW.id); RETURN NULL; END $$;
               CREATE TRIGGER count_user_write AFTER INSERT OR UPDATE ON "User"
               FOR EACH ROW EXECUTE FUNCTION count_user_write();"#,
        )
        .await?;
    Ok(())
}

/// Writes of user `id` since [`audit_users`].
async fn writes_of(client: &Client, id: &str) -> anyhow::Result<i64> {
    Ok(client
        .query_one("SELECT count(*) FROM user_writes WHERE id = $1", &[&id])
        .await?
        .get(0))
}

async fn post(client: &Client, id: &str) -> anyhow::Result<(String, Option<String>, i32)> {
    let row = client
        .query_one(
            r#"SELECT title, body, views FROM "Post" WHERE id = $1"#,
            &[&id],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Syncs until the node has nothing pending, up to 20 runs (another test's
/// open transaction can hold the pull horizon back).
async fn sync_until_clean(node: &Engine) -> anyhow::Result<()> {
    for _ in 0..20 {
        sync(node, Direction::Bidirectional).await?;
        if node.status().await?.pending == 0 {
            return Ok(());
        }
    }
    anyhow::bail!("still pending after 20 syncs: {:?}", node.status().await?)
}

async fn restore_keeps_every_later_edit(how: Backup) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, "userId") VALUES
               ('p1', 't1', 'u1'), ('p2', 't2', 'u1'), ('p3', 't3', 'u1')"#,
        )
        .await?;
    converge(&client, &schema, &[&a]).await?;
    let path = db.dir().join("a.db");
    let old_id = a.node_id();
    audit_users(&client).await?;

    // An edit still pending when the backup is taken.
    local(
        &a,
        r#"UPDATE "User" SET name = 'at backup' WHERE id = 'u1'"#,
    )
    .await?;
    let backup = db.dir().join("backup.db");
    back_up(how, &path, &backup)?;

    // The node keeps working: it pushes that edit, then more.
    sync_until_clean(&a).await?;
    local(
        &a,
        r#"UPDATE "Post" SET title = 'lost timeline' WHERE id = 'p1';
           UPDATE "Post" SET views = 5 WHERE id = 'p2';"#,
    )
    .await?;
    sync_until_clean(&a).await?;
    assert_eq!(post(&client, "p1").await?.0, "lost timeline");
    assert_eq!(writes_of(&client, "u1").await?, 1);

    // Restore: stop the node, put the backup back, start again.
    drop(a);
    restore(&backup, &path)?;
    let a = open(&db, &path)?;
    assert_eq!(a.node_id(), old_id, "the backup has the node's id");
    // Edit the same rows (p1: the field the lost timeline changed; p2:
    // another field) and other ones (p3, a new p4).
    local(
        &a,
        r#"UPDATE "Post" SET title = 'after restore' WHERE id = 'p1';
           UPDATE "Post" SET body = 'after restore' WHERE id = 'p2';
           UPDATE "Post" SET title = 'after restore' WHERE id = 'p3';
           INSERT INTO "Post" (id, title, "userId") VALUES ('p4', 'after restore', 'u1');"#,
    )
    .await?;
    for _ in 0..20 {
        sync(&a, Direction::Bidirectional).await?;
        let s = a.status().await?;
        if s.pending == 0 && s.conflicts > 0 {
            break;
        }
    }

    // Other rows and other fields: on the server, merged with the lost
    // timeline's edits.
    assert_eq!(
        post(&client, "p2").await?,
        ("t2".into(), Some("after restore".into()), 5)
    );
    assert_eq!(post(&client, "p3").await?.0, "after restore");
    assert_eq!(post(&client, "p4").await?.0, "after restore");
    // The edit pending at backup time was pushed already: not again.
    assert_eq!(
        writes_of(&client, "u1").await?,
        1,
        "the edit pending at backup time was pushed twice"
    );
    // The same field changed on both timelines: a conflict that keeps both,
    // never a silent drop, never a silent overwrite.
    let conflicts = a.conflicts().await?;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].pk, "[\"p1\"]");
    assert_eq!(post(&client, "p1").await?.0, "lost timeline");
    let local_p1 = local_rows(&a, "Post").await?;
    assert!(
        local_p1.iter().any(
            |r| r[0] == Value::Text("p1".into()) && r[1] == Value::Text("after restore".into())
        ),
        "{local_p1:?}"
    );
    // The file was recognised as not the one the server last heard from.
    assert_ne!(a.node_id(), old_id, "the restored replica is a new node");
    let former = a.with_replica(|r| r.former_node_ids()).await?;
    assert_eq!(former, [old_id]);
    a.resolve("Post", "[\"p1\"]", Resolution::KeepLocal).await?;
    assert_eq!(converge(&client, &schema, &[&a]).await?, 0);
    assert_eq!(post(&client, "p1").await?.0, "after restore");

    // Later runs keep the new identity and push new edits as usual.
    let new_id = a.node_id();
    local(&a, r#"UPDATE "Post" SET views = 9 WHERE id = 'p3'"#).await?;
    sync_until_clean(&a).await?;
    assert_eq!(a.node_id(), new_id);
    assert_eq!(post(&client, "p3").await?.2, 9);
    Ok(())
}

#[tokio::test]
async fn a_replica_restored_from_a_sqlite_backup_loses_no_later_edit() -> anyhow::Result<()> {
    restore_keeps_every_later_edit(Backup::BackupApi).await
}

#[tokio::test]
async fn a_replica_restored_from_a_checkpointed_copy_loses_no_later_edit() -> anyhow::Result<()> {
    restore_keeps_every_later_edit(Backup::CheckpointedCopy).await
}

/// A backup put back before anything was pushed after it is the same file
/// as far as the server knows: it keeps its node id, and its pending edit
/// is pushed once.
#[tokio::test]
async fn a_restore_with_nothing_pushed_since_keeps_the_node() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema, a) = blog_with_user(&db).await?;
    let path = db.dir().join("a.db");
    audit_users(&client).await?;
    local(&a, r#"UPDATE "User" SET name = 'queued' WHERE id = 'u1'"#).await?;
    let backup = db.dir().join("backup.db");
    back_up(Backup::BackupApi, &path, &backup)?;
    let id = a.node_id();
    // Pull-only runs push nothing.
    sync(&a, Direction::FromServer).await?;
    drop(a);
    restore(&backup, &path)?;
    let a = open(&db, &path)?;
    sync_until_clean(&a).await?;
    assert_eq!(a.node_id(), id);
    assert_eq!(converge(&client, &schema, &[&a]).await?, 0);
    assert_eq!(writes_of(&client, "u1").await?, 1);
    let name: Option<String> = client
        .query_one(r#"SELECT name FROM "User" WHERE id = 'u1'"#, &[])
        .await?
        .get(0);
    assert_eq!(name.as_deref(), Some("queued"));
    Ok(())
}

/// The replica copied to a second node that runs at the same time: the
/// copy that pushes second becomes a new node, and both nodes' edits land.
#[tokio::test]
async fn a_copied_replica_running_beside_the_original_becomes_a_new_node() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 't1', 'u1'), ('p2', 't2', 'u1')"#,
        )
        .await?;
    converge(&client, &schema, &[&a]).await?;
    audit_users(&client).await?;
    // Pending on the original when it is copied: the copy holds it too.
    local(
        &a,
        r#"UPDATE "User" SET name = 'before copy' WHERE id = 'u1'"#,
    )
    .await?;
    let copy = db.dir().join("b.db");
    back_up(Backup::CheckpointedCopy, &db.dir().join("a.db"), &copy)?;
    let b = open(&db, &copy)?;
    assert_eq!(b.node_id(), a.node_id());
    let a_id = a.node_id();

    local(
        &a,
        r#"UPDATE "Post" SET title = 'by a' WHERE id = 'p1';
           INSERT INTO "Post" (id, title, "userId") VALUES ('pa', 'by a', 'u1');"#,
    )
    .await?;
    local(
        &b,
        r#"UPDATE "Post" SET body = 'by b' WHERE id = 'p1';
           UPDATE "Post" SET title = 'by b' WHERE id = 'p2';
           INSERT INTO "Post" (id, title, "userId") VALUES ('pb', 'by b', 'u1');"#,
    )
    .await?;
    sync_until_clean(&a).await?;
    sync_until_clean(&b).await?;
    assert_eq!(converge(&client, &schema, &[&a, &b]).await?, 0);

    assert_eq!(
        post(&client, "p1").await?,
        ("by a".into(), Some("by b".into()), 0)
    );
    assert_eq!(post(&client, "p2").await?.0, "by b");
    assert_eq!(post(&client, "pa").await?.0, "by a");
    assert_eq!(post(&client, "pb").await?.0, "by b");
    // The edit both files held was pushed once.
    assert_eq!(writes_of(&client, "u1").await?, 1);
    assert_eq!(a.node_id(), a_id, "the original keeps its id");
    assert_ne!(b.node_id(), a_id, "the copy became a new node");

    // Both keep syncing under their own ids.
    local(&a, r#"UPDATE "Post" SET views = 1 WHERE id = 'pb'"#).await?;
    local(&b, r#"UPDATE "Post" SET views = 2 WHERE id = 'pa'"#).await?;
    assert_eq!(converge(&client, &schema, &[&a, &b]).await?, 0);
    assert_eq!(post(&client, "pb").await?.2, 1);
    assert_eq!(post(&client, "pa").await?.2, 2);
    assert_eq!(a.node_id(), a_id);
    Ok(())
}

/// `setup` (what `outpost setup` runs: introspect, install, lay out the
/// replica) after a server `ADD COLUMN` and an update filling it, while a
/// node has the replica open; then rows are edited and synced through that
/// node, and through a node started afresh on the file: the new column's
/// values stay on the server.
#[tokio::test]
async fn setup_beside_an_open_node_erases_no_server_value() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (mut client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 't1', 'u1'), ('p2', 't2', 'u1')"#,
        )
        .await?;
    converge(&client, &schema, &[&a]).await?;
    let path = db.dir().join("a.db");

    client
        .batch_execute(
            r#"ALTER TABLE "Post" ADD COLUMN extra text;
               UPDATE "Post" SET extra = 'keep ' || id;"#,
        )
        .await?;
    let report = setup_again(&mut client, &path).await?;
    assert_eq!(report.rebuilt, ["Post"]);

    // The open node notices at its next run.
    sync(&a, Direction::Bidirectional).await?;
    local(&a, r#"UPDATE "Post" SET title = 'edited' WHERE id = 'p1'"#).await?;
    sync_until_clean(&a).await?;
    // A node started afresh on the file (a restart) edits another row.
    let b = open(&db, &path)?;
    local(&b, r#"UPDATE "Post" SET title = 'edited' WHERE id = 'p2'"#).await?;
    sync_until_clean(&b).await?;
    for _ in 0..20 {
        sync(&a, Direction::Bidirectional).await?;
        let titles: Vec<Option<String>> = client
            .query(r#"SELECT title FROM "Post" ORDER BY id"#, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if titles.iter().all(|t| t.as_deref() == Some("edited")) {
            break;
        }
    }
    let rows = client
        .query(r#"SELECT id, title, extra FROM "Post" ORDER BY id"#, &[])
        .await?;
    let got: Vec<(String, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            ("p1".into(), "edited".into(), Some("keep p1".into())),
            ("p2".into(), "edited".into(), Some("keep p2".into())),
        ]
    );
    // The replica holds the new column's values too.
    assert_eq!(converge(&client, &a.schema(), &[&a]).await?, 0);
    assert!(
        a.schema()
            .table("Post")
            .is_some_and(|t| t.column("extra").is_some())
    );
    Ok(())
}

/// A table the server gained after the replica was bootstrapped (or one no
/// longer excluded) arrives with every row it already had, not only the
/// rows changed later; the copy is of that table alone: the other tables
/// are not copied again (a server change made without tracking, which only
/// a copy could bring, stays unseen there), and their local edits push.
#[tokio::test]
async fn a_table_added_after_bootstrap_is_copied_alone_with_its_rows() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (mut client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'tracked', 'u1')"#)
        .await?;
    converge(&client, &schema, &[&a]).await?;
    let path = db.dir().join("a.db");
    // Untracked on the server (replication role skips triggers): no pull
    // brings it, only a copy of "Post" would.
    client
        .batch_execute(
            r#"SET session_replication_role = replica;
               UPDATE "Post" SET title = 'untracked' WHERE id = 'p1';
               RESET session_replication_role;"#,
        )
        .await?;
    local(&a, r#"UPDATE "User" SET email = 'local@x' WHERE id = 'u1'"#).await?;
    client
        .batch_execute(
            r#"CREATE TABLE "Tag" (id int PRIMARY KEY, label text NOT NULL);
               INSERT INTO "Tag" SELECT i, 'tag ' || i FROM generate_series(1, 50) i;"#,
        )
        .await?;
    let report = setup_again(&mut client, &path).await?;
    assert_eq!(report.created, ["Tag"]);

    let report = sync(&a, Direction::Bidirectional).await?;
    assert!(report.bootstrapped, "{report:?}");
    assert_eq!(local_rows(&a, "Tag").await?.len(), 50);
    let email: Option<String> = client
        .query_one(r#"SELECT email FROM "User" WHERE id = 'u1'"#, &[])
        .await?
        .get(0);
    assert_eq!(email.as_deref(), Some("local@x"));
    let posts = local_rows(&a, "Post").await?;
    assert_eq!(posts.len(), 1);
    assert!(
        !format!("{:?}", posts[0]).contains("untracked"),
        "Post was copied again: {posts:?}"
    );
    // Later server changes of the new table arrive by the pull.
    client
        .batch_execute(r#"INSERT INTO "Tag" (id, label) VALUES (51, 'later')"#)
        .await?;
    for _ in 0..60 {
        sync(&a, Direction::Bidirectional).await?;
        if local_rows(&a, "Tag").await?.len() == 51 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(local_rows(&a, "Tag").await?.len(), 51);
    Ok(())
}

/// An engine write with a schema snapshot another process replaced is
/// refused before anything is written, and the next run reloads it.
#[tokio::test]
async fn a_stale_snapshot_never_writes() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (mut client, _schema, a) = blog_with_user(&db).await?;
    let path = db.dir().join("a.db");
    client
        .batch_execute(r#"ALTER TABLE "User" ADD COLUMN nick text"#)
        .await?;
    setup_again(&mut client, &path).await?;
    let err = a
        .with_replica(|r| r.apply_silenced(|_| Ok(())))
        .await
        .expect_err("a stale snapshot must not write");
    assert!(
        err.to_string().contains("changed by another process"),
        "{err}"
    );
    assert!(a.refresh().await?, "the snapshot is reloaded");
    a.with_replica(|r| r.apply_silenced(|_| Ok(()))).await?;
    assert!(!a.refresh().await?, "nothing changed since");
    Ok(())
}

/// The same through a running node's model service in local mode (what
/// `outpost serve` answers): `setup` runs beside it after a server
/// `ADD COLUMN` filled by an update; the node's next model write reloads
/// the snapshot, and after a sync the new column's values are intact on the
/// server and present in the replica.
/// A remote-mode write whose copy into the replica fails because another
/// process's `setup` replaced the replica's schema meanwhile: the write
/// landed, so it succeeds and is written once (campaign seed 21: the
/// model service took the failed copy for "nothing written", reloaded the
/// schema and ran the write on the server a second time).
/// A node handle on `path` that syncs only when told (no interval, no
/// monitor).
async fn quiet_node(db: &TestDb, path: &Path) -> anyhow::Result<outpost_engine::Outpost> {
    let url = db.database_url();
    let local_url = format!("file:{}", path.display());
    let cfg = outpost_core::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "LOCAL_DATABASE_URL" => Some(local_url.clone()),
        "LOCAL_DATABASE_SYNC_INTERVAL" => Some("0".into()),
        _ => None,
    })?;
    let options = outpost_engine::NodeOptions {
        monitor: false,
        ..outpost_engine::NodeOptions::default()
    };
    Ok(outpost_engine::Outpost::open_with(cfg, options).await?)
}

#[tokio::test]
async fn a_remote_write_is_not_run_twice_when_setup_changed_the_replica_meanwhile()
-> anyhow::Result<()> {
    use outpost_engine::Mode;
    use serde_json::{Value as Json, json};

    let db = TestDb::new().await?;
    let (mut client, _schema) = server(&db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x');
               INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 't1', 'u1');"#,
        )
        .await?;
    count_updates(&client, "Post").await?;
    let path = db.dir().join("n.db");
    let node = quiet_node(&db, &path).await?;
    node.sync(Direction::Bidirectional).await?;
    node.set_mode(Mode::Remote).await;
    // The model service plans against the schema it loaded; `setup` in
    // another process then replaces the replica's (a column added to User).
    let posts = node.model("Post")?;
    client
        .batch_execute(r#"ALTER TABLE "User" ADD COLUMN note text"#)
        .await?;
    let report = setup_again(&mut client, &path).await?;
    assert_eq!(report.rebuilt, ["User"]);
    let updated: Json = posts
        .update(json!({"where": {"id": "p1"}, "data": {"title": "remote"}}))
        .await?;
    assert_eq!(updated["title"], "remote");
    let n = updates(&client, "Post").await?;
    assert_eq!(n, 1, "the remote write ran {n} times");
    // The replica gets the row with the next pull.
    let mut title = String::new();
    for _ in 0..60 {
        node.sync(Direction::Bidirectional).await?;
        let rows = local_rows(node.engine(), "Post").await?;
        if let Some(Value::Text(t)) = rows.first().and_then(|r| r.get(1)) {
            title = t.clone();
        }
        if title == "remote" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(title, "remote");
    Ok(())
}

#[tokio::test]
async fn setup_beside_a_serving_node_then_model_writes_erase_nothing() -> anyhow::Result<()> {
    use outpost_engine::Mode;
    use serde_json::{Value as Json, json};

    let db = TestDb::new().await?;
    let (mut client, _schema) = server(&db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x');
               INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 't1', 'u1'), ('p2', 't2', 'u1');"#,
        )
        .await?;
    let path = db.dir().join("n.db");
    let node = quiet_node(&db, &path).await?;
    node.sync(Direction::Bidirectional).await?;
    node.set_mode(Mode::Local).await;

    client
        .batch_execute(
            r#"ALTER TABLE "Post" ADD COLUMN extra text;
               UPDATE "Post" SET extra = 'keep ' || id;"#,
        )
        .await?;
    let report = setup_again(&mut client, &path).await?;
    assert_eq!(report.rebuilt, ["Post"]);

    // A model write right away: the rebuilt table is empty until the next
    // run copies it, so it finds nothing to update, and writes nothing.
    let posts = node.model("Post")?;
    let n: u64 = posts
        .update_many(json!({"where": {"id": "p1"}, "data": {"title": "early"}}))
        .await?;
    assert!(n <= 1);
    node.sync(Direction::Bidirectional).await?;
    posts
        .update::<Json>(json!({"where": {"id": "p1"}, "data": {"title": "edited"}}))
        .await?;
    posts
        .update::<Json>(json!({"where": {"id": "p2"}, "data": {"views": 3}}))
        .await?;
    let mut got = Vec::new();
    for _ in 0..20 {
        node.sync(Direction::Bidirectional).await?;
        got = client
            .query(
                r#"SELECT id, title, views, extra FROM "Post" ORDER BY id"#,
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, i32>(2),
                    r.get::<_, Option<String>>(3),
                )
            })
            .collect();
        if got.first().is_some_and(|p| p.1 == "edited") && got.get(1).is_some_and(|p| p.2 == 3) {
            break;
        }
    }
    assert_eq!(
        got,
        [
            ("p1".into(), "edited".into(), 0, Some("keep p1".into())),
            ("p2".into(), "t2".into(), 3, Some("keep p2".into())),
        ]
    );
    // The node's own reads show the new column with the server's values.
    let read: Vec<Json> = posts.find_many(json!({"orderBy": {"id": "asc"}})).await?;
    let extras: Vec<&Json> = read.iter().map(|p| &p["extra"]).collect();
    assert_eq!(extras, [&json!("keep p1"), &json!("keep p2")]);
    node.shutdown().await;
    Ok(())
}

/// A server whose tracking schema predates incarnations (version 3, not
/// upgraded yet) still syncs: the node skips the identity claims.
#[tokio::test]
async fn a_server_at_tracking_version_3_still_syncs() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let client = db.client().await?;
    client.batch_execute(BLOG).await?;
    let schema =
        outpost_remote::introspect(&client, "public", None, &["_prisma_migrations".to_string()])
            .await?;
    for m in &outpost_core::tracking::MIGRATIONS[..3] {
        client
            .batch_execute(&outpost_core::tracking::migration_sql(m))
            .await?;
    }
    for t in &schema.tables {
        client
            .batch_execute(&outpost_core::tracking::create_triggers_sql(
                "public",
                t,
                outpost_core::tracking::Capture::Statement,
            ))
            .await?;
    }
    assert_eq!(outpost_remote::installed_version(&client).await?, Some(3));
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    local(&a, r#"UPDATE "User" SET name = 'from a' WHERE id = 'u1'"#).await?;
    sync_until_clean(&a).await?;
    let name: Option<String> = client
        .query_one(r#"SELECT name FROM "User" WHERE id = 'u1'"#, &[])
        .await?
        .get(0);
    assert_eq!(name.as_deref(), Some("from a"));
    assert_eq!(converge(&client, &schema, &[&a]).await?, 0);
    Ok(())
}
