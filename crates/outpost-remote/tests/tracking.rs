//! The tracking schema on a real server: install/uninstall are idempotent and
//! leave user data alone; the triggers record exactly the changes the design
//! says, with origin, versions and notifications.

use std::time::Duration;

use futures_util::StreamExt as _;
use outpost_core::Schema;
use outpost_remote::tracking::{self, status};
use outpost_remote::{RemoteError, install, installed_version, introspect, uninstall};
use outpost_testkit::TestDb;
use tokio_postgres::{AsyncMessage, Client, NoTls};

const SCHEMA_SQL: &str = r#"
CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN');
CREATE TABLE "User" (
    id text PRIMARY KEY,
    email text NOT NULL UNIQUE,
    role "Role" NOT NULL DEFAULT 'USER',
    score numeric
);
CREATE TABLE "Tag" (id serial PRIMARY KEY, name text UNIQUE NOT NULL);
CREATE TABLE "PostTag" ("postId" text, "tagId" int REFERENCES "Tag"(id) ON UPDATE CASCADE,
                        PRIMARY KEY ("postId", "tagId"));
INSERT INTO "User" VALUES ('u0', 'zero@example.com', 'USER', 1);
"#;

async fn setup() -> anyhow::Result<(TestDb, Client, Schema)> {
    let db = TestDb::new().await?;
    let client = db.client().await?;
    client.batch_execute(SCHEMA_SQL).await?;
    let schema = introspect(&client, "public", None, &[]).await?;
    Ok((db, client, schema))
}

/// Everything install may touch, as text: tables, functions, triggers.
async fn catalogue(client: &Client) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT 'table ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' ' || c.oid::text
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname IN ('public', 'outpost')
             UNION ALL
             SELECT 'function ' || n.nspname || '.' || p.proname || ' ' || p.oid::text || ' '
                    || md5(pg_get_functiondef(p.oid))
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'outpost'
             UNION ALL
             SELECT 'trigger ' || c.relname || ' ' || t.tgname || ' ' || t.oid::text || ' '
                    || pg_get_triggerdef(t.oid)
               FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              WHERE NOT t.tgisinternal
             ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

async fn user_data(client: &Client) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            r#"SELECT u::text FROM "User" u UNION ALL SELECT t::text FROM "Tag" t ORDER BY 1"#,
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// (row, origin, origin_local_seq) of `row_versions` entries, as `sql`
/// selects them.
async fn stamps(
    client: &Client,
    sql: &str,
) -> anyhow::Result<Vec<(String, Option<String>, Option<i64>)>> {
    let rows = client.query(sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

#[derive(Debug, PartialEq)]
struct Change {
    seq: i64,
    table: String,
    pk: Option<String>,
    op: String,
    origin: Option<String>,
}

async fn changes_after(client: &Client, seq: i64) -> anyhow::Result<Vec<Change>> {
    let rows = client
        .query(
            "SELECT seq, table_name, pk::text, op, origin FROM outpost.changes \
             WHERE seq > $1 ORDER BY txid, seq",
            &[&seq],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Change {
            seq: r.get(0),
            table: r.get(1),
            pk: r.get(2),
            op: r.get(3),
            origin: r.get(4),
        })
        .collect())
}

async fn last_seq(client: &Client) -> anyhow::Result<i64> {
    Ok(client
        .query_one("SELECT coalesce(max(seq), 0) FROM outpost.changes", &[])
        .await?
        .get(0))
}

/// (op, key) of the changes of `table` after `seq`, sorted: statements
/// split another way record the same changes in another order.
async fn sorted_ops_after(
    client: &Client,
    seq: i64,
    table: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut got: Vec<(String, String)> = changes_after(client, seq)
        .await?
        .into_iter()
        .filter(|c| c.table == table)
        .map(|c| (c.op, c.pk.unwrap_or_default()))
        .collect();
    got.sort();
    Ok(got)
}

fn ops(changes: &[Change]) -> Vec<(&str, &str, Option<&str>)> {
    changes
        .iter()
        .map(|c| (c.table.as_str(), c.op.as_str(), c.pk.as_deref()))
        .collect()
}

#[tokio::test]
async fn install_is_idempotent_and_uninstall_leaves_user_data() -> anyhow::Result<()> {
    let (db, mut client, schema) = setup().await?;
    let before_install = catalogue(&client).await?;
    let data = user_data(&client).await?;
    assert_eq!(installed_version(&client).await?, None);

    let first = install(&mut client, &schema).await?;
    assert!(first.changed());
    assert_eq!(first.from_version, None);
    assert_eq!(first.to_version, 7);
    assert_eq!(first.migrations_applied, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(first.triggers_installed, ["PostTag", "Tag", "User"]);
    assert!(first.triggers_dropped.is_empty());
    assert_eq!(installed_version(&client).await?, Some(7));
    assert!(status(&client, &schema).await?.up_to_date());

    let installed = catalogue(&client).await?;
    let second = install(&mut client, &schema).await?;
    assert!(!second.changed(), "{second:?}");
    assert_eq!(second.from_version, Some(7));
    assert_eq!(catalogue(&client).await?, installed);
    let triggers = installed
        .iter()
        .filter(|l| l.starts_with("trigger "))
        .count();
    assert_eq!(triggers, 15);

    // Another session installing concurrently-ish also finds nothing to do.
    let mut other = db.client().await?;
    assert!(!install(&mut other, &schema).await?.changed());

    // A disabled trigger is repaired; a table leaving the schema loses its
    // triggers.
    client
        .batch_execute(r#"ALTER TABLE "Tag" DISABLE TRIGGER outpost_capture_ins"#)
        .await?;
    let st = status(&client, &schema).await?;
    assert_eq!(st.tables_needing_triggers, ["Tag"]);
    let mut smaller = schema.clone();
    smaller.tables.retain(|t| t.name != "PostTag");
    let report = install(&mut client, &smaller).await?;
    assert!(report.migrations_applied.is_empty());
    assert_eq!(report.triggers_installed, ["Tag"]);
    assert_eq!(
        report.triggers_dropped,
        [
            "public.PostTag.outpost_capture_del",
            "public.PostTag.outpost_capture_ins",
            "public.PostTag.outpost_capture_upd",
            "public.PostTag.outpost_notify",
            "public.PostTag.outpost_truncate"
        ]
    );
    assert!(!install(&mut client, &smaller).await?.changed());
    assert!(!status(&client, &schema).await?.up_to_date());
    install(&mut client, &schema).await?;

    // Uninstall: user tables and data untouched, schema and triggers gone.
    client
        .batch_execute(r#"INSERT INTO "Tag"(name) VALUES ('rust')"#)
        .await?;
    let data = {
        let mut d = data;
        d.push("(1,rust)".into());
        d.sort();
        d
    };
    let report = uninstall(&mut client).await?;
    assert!(report.schema_dropped);
    assert_eq!(report.triggers_dropped.len(), 15);
    assert_eq!(catalogue(&client).await?, before_install);
    assert_eq!(user_data(&client).await?, data);
    assert_eq!(installed_version(&client).await?, None);
    let again = uninstall(&mut client).await?;
    assert!(!again.changed(), "{again:?}");

    // Install after uninstall works and captures again.
    let report = install(&mut client, &schema).await?;
    assert_eq!(report.migrations_applied, [1, 2, 3, 4, 5, 6, 7]);
    client
        .batch_execute(r#"INSERT INTO "Tag"(name) VALUES ('sql')"#)
        .await?;
    let changes = changes_after(&client, 0).await?;
    assert_eq!(ops(&changes), [("Tag", "I", Some("[2]"))]);
    Ok(())
}

#[tokio::test]
async fn a_newer_tracking_schema_is_refused() -> anyhow::Result<()> {
    let (_db, mut client, schema) = setup().await?;
    install(&mut client, &schema).await?;
    client
        .batch_execute("UPDATE outpost.meta SET value = '99' WHERE key = 'schema_version'")
        .await?;
    let err = install(&mut client, &schema).await.expect_err("newer");
    assert!(matches!(err, RemoteError::NewerTrackingSchema(_)), "{err}");
    assert!(err.to_string().contains("version 99"), "{err}");
    client
        .batch_execute("UPDATE outpost.meta SET value = 'x' WHERE key = 'schema_version'")
        .await?;
    let err = installed_version(&client).await.expect_err("corrupt");
    assert!(matches!(err, RemoteError::TrackingCorrupt { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn triggers_record_each_change_once() -> anyhow::Result<()> {
    let (_db, mut client, schema) = setup().await?;
    install(&mut client, &schema).await?;

    // Rows that existed before install have no version.
    let n: i64 = client
        .query_one("SELECT count(*) FROM outpost.row_versions", &[])
        .await?
        .get(0);
    assert_eq!(n, 0);

    client
        .batch_execute(r#"INSERT INTO "User"(id, email) VALUES ('u1', 'a@example.com')"#)
        .await?;
    let c = changes_after(&client, 0).await?;
    assert_eq!(ops(&c), [("User", "I", Some(r#"["u1"]"#))]);
    assert_eq!(c[0].origin, None);

    let s = last_seq(&client).await?;
    client
        .batch_execute(r#"UPDATE "User" SET role = 'ADMIN' WHERE id = 'u1'"#)
        .await?;
    assert_eq!(
        ops(&changes_after(&client, s).await?),
        [("User", "U", Some(r#"["u1"]"#))]
    );

    // A no-op update records nothing, neither does an update of no rows.
    let s = last_seq(&client).await?;
    client
        .batch_execute(r#"UPDATE "User" SET role = 'ADMIN' WHERE id = 'u1'"#)
        .await?;
    client
        .batch_execute(r#"UPDATE "User" SET role = 'ADMIN' WHERE id = 'nobody'"#)
        .await?;
    assert_eq!(changes_after(&client, s).await?, []);

    // 1 -> 1.0 is a change of the value PostgreSQL returns.
    client
        .batch_execute(r#"UPDATE "User" SET score = 1.0 WHERE id = 'u0'"#)
        .await?;
    assert_eq!(
        ops(&changes_after(&client, s).await?),
        [("User", "U", Some(r#"["u0"]"#))]
    );

    // A primary-key change is a delete of the old key and an insert of the new.
    let s = last_seq(&client).await?;
    client
        .batch_execute(r#"UPDATE "User" SET id = 'u2' WHERE id = 'u1'"#)
        .await?;
    assert_eq!(
        ops(&changes_after(&client, s).await?),
        [
            ("User", "D", Some(r#"["u1"]"#)),
            ("User", "I", Some(r#"["u2"]"#))
        ]
    );

    let s = last_seq(&client).await?;
    client
        .batch_execute(r#"DELETE FROM "User" WHERE id = 'u2'"#)
        .await?;
    let deleted = changes_after(&client, s).await?;
    assert_eq!(ops(&deleted), [("User", "D", Some(r#"["u2"]"#))]);

    // Composite keys in key order, with their JSON types; a cascaded key
    // update is captured on the child too.
    let s = last_seq(&client).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Tag"(id, name) VALUES (7, 'x');
               INSERT INTO "PostTag" VALUES ('p1', 7);
               UPDATE "Tag" SET id = 8 WHERE id = 7;"#,
        )
        .await?;
    assert_eq!(
        ops(&changes_after(&client, s).await?),
        [
            ("Tag", "I", Some("[7]")),
            ("PostTag", "I", Some(r#"["p1", 7]"#)),
            ("Tag", "D", Some("[7]")),
            ("Tag", "I", Some("[8]")),
            ("PostTag", "D", Some(r#"["p1", 7]"#)),
            ("PostTag", "I", Some(r#"["p1", 8]"#)),
        ]
    );

    // The key a client computes server-side matches.
    let user = schema.table("PostTag").expect("PostTag");
    let expr = outpost_core::tracking::pk_key_expr(user, 1);
    let key: String = client
        .query_one(&format!("SELECT ({expr})::text"), &[&"p1", &8i32])
        .await?
        .get(0);
    assert_eq!(key, r#"["p1", 8]"#);

    // Every row's version is the seq of its latest change.
    let mismatched: i64 = client
        .query_one(
            "SELECT count(*) FROM outpost.row_versions rv
              WHERE rv.version <> (SELECT max(c.seq) FROM outpost.changes c
                                    WHERE c.table_name = rv.table_name AND c.pk = rv.pk)
                 OR rv.deleted <> ((SELECT c.op FROM outpost.changes c
                                     WHERE c.seq = rv.version) = 'D')",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(mismatched, 0);
    let row = client
        .query_one(
            r#"SELECT version, deleted FROM outpost.row_versions
                WHERE table_name = 'User' AND pk = '["u2"]'"#,
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, i64>(0), deleted[0].seq);
    assert!(row.get::<_, bool>(1));

    // TRUNCATE: one T change, every tracked row of the table marked deleted.
    let s = last_seq(&client).await?;
    client.batch_execute(r#"TRUNCATE "PostTag""#).await?;
    let c = changes_after(&client, s).await?;
    assert_eq!(ops(&c), [("PostTag", "T", None)]);
    let live: i64 = client
        .query_one(
            "SELECT count(*) FROM outpost.row_versions WHERE table_name = 'PostTag' AND NOT deleted",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(live, 0);
    let at_t: i64 = client
        .query_one(
            "SELECT count(*) FROM outpost.row_versions WHERE table_name = 'PostTag' AND version = $1",
            &[&c[0].seq],
        )
        .await?
        .get(0);
    assert_eq!(at_t, 1); // ["p1", 8]; ["p1", 7] was already deleted
    Ok(())
}

#[tokio::test]
async fn origin_is_set_per_transaction() -> anyhow::Result<()> {
    let (_db, mut client, schema) = setup().await?;
    install(&mut client, &schema).await?;
    let node = "0f8fad5b-d9cb-469f-a165-70867728950e";

    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL outpost.origin = '{node}'; SET LOCAL outpost.local_seq = '42';
         SET LOCAL outpost.push_table = 'Tag';
         INSERT INTO \"Tag\"(name) VALUES ('from-node');"
    ))
    .await?;
    tx.commit().await?;
    let s = last_seq(&client).await?;

    // Same session, next transaction: the setting reads '' now, origin NULL.
    client
        .batch_execute(r#"INSERT INTO "Tag"(name) VALUES ('from-app')"#)
        .await?;
    let c = changes_after(&client, 0).await?;
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].origin.as_deref(), Some(node));
    assert_eq!(c[0].seq, s);
    assert_eq!(c[1].origin, None);

    let got = stamps(
        &client,
        "SELECT pk::text, origin, origin_local_seq FROM outpost.row_versions
          WHERE table_name = 'Tag' ORDER BY version",
    )
    .await?;
    assert_eq!(
        got,
        [
            ("[1]".to_string(), Some(node.to_string()), Some(42)),
            ("[2]".to_string(), None, None)
        ]
    );
    Ok(())
}

/// A push's change number (`outpost.local_seq`) lands only on the rows of
/// the statement the push marked (`outpost.push_table`): not on rows a
/// foreign-key action wrote into another table, nor on rows an application
/// trigger's statement wrote. Those keep the node as
/// origin but are anyone's change to the own-write rules.
#[tokio::test]
async fn a_push_number_marks_only_the_push_statements_rows() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut client = db.client().await?;
    client
        .batch_execute(
            r#"CREATE TABLE "Folder" (id text PRIMARY KEY, parent text REFERENCES "Folder"(id) ON DELETE CASCADE);
               CREATE TABLE "Doc" (id text PRIMARY KEY, folder text NOT NULL REFERENCES "Folder"(id) ON DELETE CASCADE,
                                   touched int NOT NULL DEFAULT 0);
               CREATE TABLE "Note" (id text PRIMARY KEY, body text);
               -- An application trigger: every note edit touches note 'log'.
               CREATE FUNCTION touch_log() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                   IF NEW.id <> 'log' THEN UPDATE "Note" SET body = NEW.body WHERE id = 'log'; END IF;
                   RETURN NULL;
               END $$;
               CREATE TRIGGER touch_log AFTER UPDATE ON "Note" FOR EACH ROW EXECUTE FUNCTION touch_log();
               INSERT INTO "Folder" VALUES ('root', NULL), ('sub', 'root'), ('other', NULL);
               INSERT INTO "Doc" VALUES ('d1', 'sub'), ('d2', 'other');
               INSERT INTO "Note" VALUES ('n1', 'a'), ('log', '');"#,
        )
        .await?;
    let schema = introspect(&client, "public", None, &[]).await?;
    install(&mut client, &schema).await?;
    let node = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL outpost.origin = '{node}'; SET LOCAL outpost.local_seq = '42';
         SET LOCAL outpost.push_table = 'Folder';
         DELETE FROM \"Folder\" WHERE id = 'root';
         SET LOCAL outpost.push_table = 'Note';
         UPDATE \"Note\" SET body = 'b' WHERE id = 'n1';"
    ))
    .await?;
    tx.commit().await?;
    let got = stamps(
        &client,
        "SELECT table_name || ' ' || pk::text, origin, origin_local_seq FROM outpost.row_versions
          WHERE origin IS NOT NULL ORDER BY 1",
    )
    .await?;
    let by = Some(node.to_string());
    assert_eq!(
        got,
        [
            // Cascaded from the folder into another table.
            ("Doc [\"d1\"]".to_string(), by.clone(), None),
            // The push's own row.
            ("Folder [\"root\"]".to_string(), by.clone(), Some(42)),
            // Cascaded within the same table: in the push statement's own
            // transition table, so the capture cannot tell; the push
            // clears it (`push_stamps.rs`).
            ("Folder [\"sub\"]".to_string(), by.clone(), Some(42)),
            // Written by the application's trigger.
            ("Note [\"log\"]".to_string(), by.clone(), None),
            ("Note [\"n1\"]".to_string(), by.clone(), Some(42)),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn writers_without_outpost_privileges_are_tracked() -> anyhow::Result<()> {
    let (db, mut client, schema) = setup().await?;
    install(&mut client, &schema).await?;
    let role = format!("app_{}", &db.name[10..20]);
    client
        .batch_execute(&format!(
            r#"CREATE ROLE {role};
               GRANT USAGE ON SCHEMA public TO {role};
               GRANT ALL ON "Tag", "Tag_id_seq" TO {role};
               SET ROLE {role};
               INSERT INTO "Tag"(name) VALUES ('by-app');
               RESET ROLE;"#
        ))
        .await?;
    let c = changes_after(&client, 0).await?;
    assert_eq!(ops(&c), [("Tag", "I", Some("[1]"))]);
    uninstall(&mut client).await?;
    client
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await?;
    Ok(())
}

#[tokio::test]
async fn listeners_are_notified_after_commit() -> anyhow::Result<()> {
    let (db, mut client, schema) = setup().await?;
    install(&mut client, &schema).await?;

    let (listener, mut connection) = tokio_postgres::connect(&db.url, NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    tokio::spawn(async move {
        while let Some(Ok(msg)) = messages.next().await {
            if let AsyncMessage::Notification(n) = msg {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    listener.batch_execute("LISTEN outpost_changes").await?;

    let txn = client.transaction().await?;
    txn.batch_execute(r#"INSERT INTO "User"(id, email) VALUES ('n1', 'n@example.com')"#)
        .await?;
    // Nothing before commit.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err()
    );
    txn.commit().await?;
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?;
    assert_eq!(
        got,
        Some(("outpost_changes".to_string(), "User".to_string()))
    );

    client.batch_execute(r#"TRUNCATE "PostTag""#).await?;
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?;
    assert_eq!(
        got,
        Some(("outpost_changes".to_string(), "PostTag".to_string()))
    );
    drop(listener);
    let _ = tracking::installed_triggers(&client).await?;
    Ok(())
}

#[tokio::test]
async fn keys_do_not_depend_on_the_writers_session_settings() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut client = db.client().await?;
    client
        .batch_execute(
            r#"CREATE TABLE "Reading"(at timestamptz, sensor int, value float8, PRIMARY KEY (at, sensor));
               CREATE TABLE "Span"(d interval PRIMARY KEY);"#,
        )
        .await?;
    let schema = introspect(&client, "public", None, &[]).await?;
    install(&mut client, &schema).await?;
    client
        .batch_execute(
            r#"SET TimeZone = 'Asia/Tokyo'; SET IntervalStyle = 'iso_8601';
               INSERT INTO "Reading" VALUES ('2024-05-01 09:00:00+09', 1, 0.1);
               INSERT INTO "Span" VALUES ('1 day 2 hours');
               RESET TimeZone; RESET IntervalStyle;"#,
        )
        .await?;
    let c = changes_after(&client, 0).await?;
    assert_eq!(
        ops(&c),
        [
            ("Reading", "I", Some(r#"["2024-05-01T00:00:00+00:00", 1]"#)),
            ("Span", "I", Some(r#"["1 day 02:00:00"]"#)),
        ]
    );
    // The key a client computes (in UTC) finds the row's version.
    let reading = schema.table("Reading").expect("Reading");
    let expr = outpost_core::tracking::pk_key_expr(reading, 1);
    let at = "2024-05-01T00:00:00Z";
    client.batch_execute("SET TimeZone = 'UTC'").await?;
    let n: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM outpost.row_versions WHERE table_name = 'Reading' AND pk = {expr}"
            ),
            &[&outpost_remote::Bind(&outpost_core::Value::Text(at.into())), &1i32],
        )
        .await?
        .get(0);
    assert_eq!(n, 1);
    Ok(())
}

#[tokio::test]
async fn partitioned_tables_are_tracked_under_their_own_name() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut client = db.client().await?;
    client
        .batch_execute(
            r#"CREATE TABLE "Event"(id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
               CREATE TABLE "Event_2024" PARTITION OF "Event" FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"#,
        )
        .await?;
    let schema = introspect(&client, "public", None, &[]).await?;
    let first = install(&mut client, &schema).await?;
    assert_eq!(first.triggers_installed, ["Event"]);
    assert!(!install(&mut client, &schema).await?.changed());
    client
        .batch_execute(
            r#"INSERT INTO "Event" VALUES (1, '2024-03-01');
               UPDATE "Event_2024" SET id = 2;
               TRUNCATE "Event";"#,
        )
        .await?;
    let c = changes_after(&client, 0).await?;
    assert_eq!(
        ops(&c),
        [
            ("Event", "I", Some(r#"[1, "2024-03-01"]"#)),
            ("Event", "D", Some(r#"[1, "2024-03-01"]"#)),
            ("Event", "I", Some(r#"[2, "2024-03-01"]"#)),
            ("Event", "T", None),
        ]
    );
    let report = uninstall(&mut client).await?;
    assert_eq!(report.triggers_dropped.len(), 3);
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(left, 0);
    Ok(())
}

#[tokio::test]
async fn connection_failures_are_transient_and_sql_errors_are_not() -> anyhow::Result<()> {
    // Nothing listens on port 1.
    let err = tokio_postgres::connect(
        "host=127.0.0.1 port=1 user=postgres connect_timeout=2",
        NoTls,
    )
    .await
    .err()
    .map(|e| RemoteError::db("connecting", e))
    .expect("connection refused");
    assert!(err.is_transient(), "{err}");

    let db = TestDb::new().await?;
    let client = db.client().await?;
    let err = client
        .batch_execute("SELEC 1")
        .await
        .map_err(|e| RemoteError::db("running a typo", e))
        .expect_err("syntax error");
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .starts_with("running a typo: ERROR: syntax error"),
        "{err}"
    );

    // A connection killed by the server.
    let victim = db.client().await?;
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = victim
        .query_one("SELECT 1", &[])
        .await
        .map_err(|e| RemoteError::db("querying", e))
        .expect_err("terminated");
    assert!(err.is_transient(), "{err}");
    Ok(())
}

/// A server installed at version 1 (row-level capture) upgrades to
/// statement-level capture, and both record the same changes for the same
/// statements (keys, ops, order, versions).
#[tokio::test]
async fn version_1_upgrades_to_statement_capture_with_the_same_changes() -> anyhow::Result<()> {
    let (_db, mut client, schema) = setup().await?;
    // Version 1 as an older outpost installed it.
    let v1 = &outpost_core::tracking::MIGRATIONS[0];
    client
        .batch_execute(&outpost_core::tracking::migration_sql(v1))
        .await?;
    for t in &schema.tables {
        client
            .batch_execute(&outpost_core::tracking::create_triggers_sql(
                "public",
                t,
                outpost_core::tracking::Capture::Row,
            ))
            .await?;
    }
    assert_eq!(installed_version(&client).await?, Some(1));
    let statements = r#"
        INSERT INTO "User" VALUES ('u1', 'a@x', 'USER', 1.5), ('u2', 'b@x', 'ADMIN', NULL);
        UPDATE "User" SET score = 1.50 WHERE id = 'u1';
        UPDATE "User" SET score = score WHERE id IN ('u0', 'u1');
        INSERT INTO "Tag"(name) VALUES ('a'), ('b');
        INSERT INTO "PostTag" SELECT 'p1', id FROM "Tag";
        UPDATE "Tag" SET id = id + 10 WHERE name = 'a';
        DELETE FROM "PostTag" WHERE "postId" = 'p1';
        DELETE FROM "User" WHERE id = 'u2';
    "#;
    let undo = r#"DELETE FROM "PostTag"; DELETE FROM "Tag"; DELETE FROM "User" WHERE id <> 'u0';
        ALTER SEQUENCE "Tag_id_seq" RESTART WITH 1;"#;
    let shape = |c: Vec<Change>| -> Vec<(String, Option<String>, String)> {
        c.into_iter().map(|c| (c.table, c.pk, c.op)).collect()
    };
    let before = last_seq(&client).await?;
    client.batch_execute(statements).await?;
    let row_level = shape(changes_after(&client, before).await?);
    client.batch_execute(undo).await?;

    let report = install(&mut client, &schema).await?;
    assert_eq!(report.from_version, Some(1));
    assert_eq!(report.migrations_applied, [2, 3, 4, 5, 6, 7]);
    assert_eq!(report.triggers_installed, ["PostTag", "Tag", "User"]);
    assert!(status(&client, &schema).await?.up_to_date());
    let before = last_seq(&client).await?;
    client.batch_execute(statements).await?;
    let statement_level = shape(changes_after(&client, before).await?);
    assert_eq!(statement_level, row_level);
    // The row versions follow the last change of each key.
    let stale: i64 = client
        .query_one(
            "SELECT count(*) FROM outpost.row_versions rv WHERE rv.version <> \
             (SELECT max(seq) FROM outpost.changes c WHERE c.table_name = rv.table_name AND c.pk = rv.pk)",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(stale, 0);
    Ok(())
}

/// A server at version 2 gains the key index of version 3 (and the later ones);
/// a second install finds nothing to do; the index is what entry lookups by
/// key use.
#[tokio::test]
async fn version_2_upgrades_to_the_hash_key_index() -> anyhow::Result<()> {
    let (_db, mut client, schema) = setup().await?;
    for m in &outpost_core::tracking::MIGRATIONS[..2] {
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
    assert_eq!(installed_version(&client).await?, Some(2));
    client
        .batch_execute(r#"INSERT INTO "Tag"(name) VALUES ('a'), ('b')"#)
        .await?;
    assert_eq!(hash_key_index(&client).await?, 0);
    let report = install(&mut client, &schema).await?;
    assert_eq!(report.from_version, Some(2));
    assert_eq!(report.migrations_applied, [3, 4, 5, 6, 7]);
    assert!(report.triggers_installed.is_empty(), "{report:?}");
    assert_eq!(hash_key_index(&client).await?, 1);
    assert!(!install(&mut client, &schema).await?.changed());
    // Entries written before the upgrade and after it are found by key.
    client
        .batch_execute(r#"INSERT INTO "Tag"(name) VALUES ('c')"#)
        .await?;
    let found: i64 = client
        .query_one(
            "SELECT count(*) FROM outpost.row_versions WHERE table_name = 'Tag' AND pk IN ('[2]', '[3]')",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(found, 2);
    Ok(())
}

/// How many valid hash indexes on `row_versions.pk` exist (0 or 1).
async fn hash_key_index(client: &Client) -> anyhow::Result<i64> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname \
             JOIN pg_index x ON x.indexrelid = c.oid \
             WHERE i.schemaname = 'outpost' AND i.indexname = 'row_versions_pk_hash' \
               AND i.indexdef LIKE '%USING hash (pk)%' AND x.indisvalid",
            &[],
        )
        .await?
        .get(0))
}

/// Retention by cursors: a change is pruned once every registered node's
/// cursor is at or past it; no node, or a node without a cursor yet, keeps
/// everything; the retention mark records the highest change pruned.
#[tokio::test]
async fn prune_deletes_what_every_node_has_passed() -> anyhow::Result<()> {
    use outpost_core::sync::Cursor;
    use outpost_remote::feed::{feed_position, prune, record_cursor, register_node};

    let (_db, mut client, schema) = setup().await?;
    install(&mut client, &schema).await?;
    for name in ["a", "b", "c"] {
        // One transaction each: three txids.
        client
            .execute(r#"INSERT INTO "Tag"(name) VALUES ($1)"#, &[&name])
            .await?;
    }
    let changes: Vec<Cursor> = client
        .query(
            "SELECT txid::text::int8, seq FROM outpost.changes ORDER BY txid, seq",
            &[],
        )
        .await?
        .iter()
        .map(|r| Cursor {
            txid: r.get(0),
            seq: r.get(1),
        })
        .collect();
    assert_eq!(changes.len(), 3);
    let week = Duration::from_secs(7 * 24 * 3600);
    assert_eq!(prune(&mut client, week).await?, 0, "no node");
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    register_node(&client, a, "a").await?;
    register_node(&client, b, "b").await?;
    record_cursor(&client, a, changes[2]).await?;
    assert_eq!(prune(&mut client, week).await?, 0, "b has no cursor yet");
    record_cursor(&client, b, changes[1]).await?;
    assert_eq!(prune(&mut client, week).await?, 2);
    assert_eq!(change_count(&client).await?, 1);
    let pos = feed_position(&client, changes[0]).await?;
    assert_eq!(pos.pruned_through, Some(changes[1]));
    assert!(pos.must_rebootstrap);
    assert!(!feed_position(&client, changes[1]).await?.must_rebootstrap);
    assert_eq!(prune(&mut client, week).await?, 0, "nothing new passed");
    record_cursor(&client, b, changes[2]).await?;
    assert_eq!(prune(&mut client, week).await?, 1);
    assert_eq!(change_count(&client).await?, 0);
    assert_eq!(
        feed_position(&client, changes[2]).await?.pruned_through,
        Some(changes[2])
    );
    Ok(())
}

async fn change_count(client: &Client) -> anyhow::Result<i64> {
    Ok(client
        .query_one("SELECT count(*) FROM outpost.changes", &[])
        .await?
        .get(0))
}

/// A table with columns named `o` and `n`: version 2's capture compared
/// those two columns instead of the rows (a bare name is a column before a
/// table in PostgreSQL), so an update of another column that left them
/// equal was never recorded. A server at version 4 shows the loss; after the
/// upgrade to version 5 the same update is recorded.
#[tokio::test]
async fn an_update_is_recorded_whatever_the_tables_column_names() -> anyhow::Result<()> {
    let (_db, mut client, _) = setup().await?;
    client
        .batch_execute(r#"CREATE TABLE "Grid" (id text PRIMARY KEY, o int, n int, label text)"#)
        .await?;
    let schema = introspect(&client, "public", None, &[]).await?;
    let grid = schema.table("Grid").expect("Grid");
    for m in &outpost_core::tracking::MIGRATIONS[..4] {
        client
            .batch_execute(&outpost_core::tracking::migration_sql(m))
            .await?;
    }
    client
        .batch_execute(&outpost_core::tracking::create_triggers_sql(
            "public",
            grid,
            outpost_core::tracking::Capture::Statement,
        ))
        .await?;
    async fn updates(client: &Client) -> anyhow::Result<i64> {
        Ok(client
            .query_one(
                "SELECT count(*) FROM outpost.changes WHERE table_name = 'Grid' AND op = 'U'",
                &[],
            )
            .await?
            .get(0))
    }
    client
        .batch_execute(
            r#"INSERT INTO "Grid" VALUES ('a', 5, 5, 'first');
               UPDATE "Grid" SET label = 'second' WHERE id = 'a';"#,
        )
        .await?;
    assert_eq!(updates(&client).await?, 0, "version 4 missed the update");

    let report = install(&mut client, &schema).await?;
    assert_eq!(report.migrations_applied, [5, 6, 7]);
    client
        .batch_execute(r#"UPDATE "Grid" SET label = 'third' WHERE id = 'a'"#)
        .await?;
    assert_eq!(updates(&client).await?, 1, "version 5 records it");
    // A statement that changes nothing is still not a change.
    client
        .batch_execute(r#"UPDATE "Grid" SET label = label WHERE id = 'a'"#)
        .await?;
    assert_eq!(updates(&client).await?, 1);
    Ok(())
}

/// The capture runs a statement prepared once for statements of up to 64
/// rows and plans larger ones for their size (tracking version 7 gave
/// `UPDATE` and `DELETE` the prepared way too). Both ways must record the
/// same changes: the same statements run on one table in one go (100 rows)
/// and on a copy in ten slices of about ten rows.
#[tokio::test]
async fn small_and_large_statements_record_the_same_changes() -> anyhow::Result<()> {
    let (_db, mut client, _) = setup().await?;
    client
        .batch_execute(
            r#"CREATE TABLE "Whole" (id int PRIMARY KEY, label text, amount numeric);
               CREATE TABLE "Sliced" (LIKE "Whole" INCLUDING ALL);"#,
        )
        .await?;
    let schema = introspect(&client, "public", None, &[]).await?;
    install(&mut client, &schema).await?;

    // (op, key) of the changes a phase recorded for a table, sorted: the
    // slices run in another order than the whole.
    async fn phase(
        client: &Client,
        table: &str,
        statement: &str,
        slices: bool,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let before = last_seq(client).await?;
        let run = |cond: String| statement.replace("{T}", table).replace("{COND}", &cond);
        if slices {
            for k in 0..10 {
                client.batch_execute(&run(format!("id % 10 = {k}"))).await?;
            }
        } else {
            client.batch_execute(&run("true".into())).await?;
        }
        sorted_ops_after(client, before, table).await
    }
    let statements = [
        // 100 inserts.
        r#"INSERT INTO "{T}" SELECT id, 'row ' || id, id * 1.5 FROM generate_series(1, 100) id WHERE {COND}"#,
        // Every row named: a third left as it was (no change), a fifth with
        // 1.5 -> 1.50 (a change of the value returned), every seventh with a
        // new key (a delete and an insert).
        r#"UPDATE "{T}" SET
               id = CASE WHEN id % 7 = 0 THEN id + 1000 ELSE id END,
               label = CASE WHEN id % 3 = 0 THEN label ELSE label || '!' END,
               amount = CASE WHEN id % 5 = 0 THEN round(amount, 2) ELSE amount END
             WHERE {COND}"#,
        // Three rows in four deleted.
        r#"DELETE FROM "{T}" WHERE id % 4 <> 1 AND {COND}"#,
    ];
    let key = |id: i32| format!("[{id}]");
    let mut expected: Vec<Vec<(String, String)>> = Vec::new();
    expected.push((1..=100).map(|i| ("I".to_string(), key(i))).collect());
    let mut update = Vec::new();
    for i in 1..=100 {
        if i % 7 == 0 {
            update.push(("D".to_string(), key(i)));
            update.push(("I".to_string(), key(i + 1000)));
        } else if i % 3 != 0 || i % 5 == 0 {
            update.push(("U".to_string(), key(i)));
        }
    }
    expected.push(update);
    let after_update = (1..=100).map(|i| if i % 7 == 0 { i + 1000 } else { i });
    expected.push(
        after_update
            .filter(|i| i % 4 != 1)
            .map(|i| ("D".to_string(), key(i)))
            .collect(),
    );
    for (statement, mut want) in statements.iter().zip(expected) {
        want.sort();
        let whole = phase(&client, "Whole", statement, false).await?;
        assert_eq!(whole, want, "in one statement: {statement}");
        let sliced = phase(&client, "Sliced", statement, true).await?;
        assert_eq!(sliced, want, "in slices: {statement}");
    }
    // The same entries, each at its latest change.
    let entries = |table: &'static str| {
        let client = &client;
        async move {
            let rows = client
                .query(
                    "SELECT rv.pk::text, rv.deleted, rv.version = (SELECT max(c.seq) FROM outpost.changes c \
                      WHERE c.table_name = rv.table_name AND c.pk = rv.pk) \
                       FROM outpost.row_versions rv WHERE rv.table_name = $1 ORDER BY 1",
                    &[&table],
                )
                .await?;
            anyhow::Ok(
                rows.iter()
                    .map(|r| {
                        (
                            r.get::<_, String>(0),
                            r.get::<_, bool>(1),
                            r.get::<_, bool>(2),
                        )
                    })
                    .collect::<Vec<_>>(),
            )
        }
    };
    let whole = entries("Whole").await?;
    assert_eq!(whole.len(), 114, "100 keys and 14 new ones");
    assert!(
        whole.iter().all(|e| e.2),
        "every entry at its latest change"
    );
    assert_eq!(whole, entries("Sliced").await?);
    Ok(())
}

/// Columns named like the capture's own variables and aliases (`v_table`,
/// `v_keys`, `j`, `t`, `pk`, `op`…) change nothing it records, in its
/// prepared statements (small) and its planned ones (large) alike: a
/// column of such a name must never be read in their place.
#[tokio::test]
async fn columns_named_like_the_captures_own_names_are_captured() -> anyhow::Result<()> {
    let (_db, mut client, _) = setup().await?;
    client
        .batch_execute(
            r#"CREATE TABLE "Odd" (
                 pk int PRIMARY KEY, v_table text, v_keys text, v_origin text, v_local_seq int,
                 j text, t text, op text, seq int, c text, k text, r text, s text, o text, n text, x int)"#,
        )
        .await?;
    let schema = introspect(&client, "public", None, &[]).await?;
    install(&mut client, &schema).await?;
    // (op, key) of what one statement recorded, sorted.
    async fn recorded(client: &Client, statement: &str) -> anyhow::Result<Vec<(String, String)>> {
        let s = last_seq(client).await?;
        client.batch_execute(statement).await?;
        sorted_ops_after(client, s, "Odd").await
    }
    let each = |op: &str, keys: &mut dyn Iterator<Item = i64>| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            keys.map(|i| (op.to_string(), format!("[{i}]"))).collect();
        v.sort();
        v
    };
    for rows in [3_i64, 100] {
        let inserted = recorded(
            &client,
            &format!(
                r#"INSERT INTO "Odd" SELECT i, 'Odd', 'pk', 'me', 1, 'j', 't', 'U', 1, 'c', 'k', 'r', 's', 'o', 'n', i
                     FROM generate_series(1, {rows}) i"#
            ),
        )
        .await?;
        assert_eq!(inserted, each("I", &mut (1..=rows)), "{rows} rows");
        let updated = recorded(&client, r#"UPDATE "Odd" SET x = x + 1"#).await?;
        assert_eq!(updated, each("U", &mut (1..=rows)), "{rows} rows");
        let unchanged = recorded(&client, r#"UPDATE "Odd" SET op = op, t = t, j = j"#).await?;
        assert_eq!(unchanged, [], "{rows} rows");
        let moved = recorded(&client, r#"UPDATE "Odd" SET pk = pk + 1000"#).await?;
        let mut want = each("D", &mut (1..=rows));
        want.extend(each("I", &mut (1001..=1000 + rows)));
        want.sort();
        assert_eq!(moved, want, "{rows} rows");
        let deleted = recorded(&client, r#"DELETE FROM "Odd""#).await?;
        assert_eq!(deleted, each("D", &mut (1001..=1000 + rows)), "{rows} rows");
    }
    Ok(())
}
