//! What a push records and refuses. A push's change number
//! (`row_versions.origin_local_seq`, "this node's
//! push wrote this version at or after this change") covers exactly the
//! rows the push wrote: rows the server wrote as a consequence (a foreign
//! key's `ON DELETE CASCADE`, within the table or into another) are changes
//! like anyone's, so a queued edit of one meets it as a conflict instead of
//! being answered "already applied" and lost (campaign seed 163,
//! `docs/reliability.md`). And a row whose shape is not the table's is
//! refused before anything is written.

use std::time::Duration;

use outpost_core::ids::LocalSeq;
use outpost_core::sync::{Cursor, Expected, PushOutcome, PushRow};
use outpost_core::types::Value;
use outpost_core::{Schema, Version};
use outpost_remote::feed::push;
use outpost_remote::{install, introspect};
use outpost_testkit::TestDb;
use tokio_postgres::Client;
use uuid::Uuid;

const LIMITS: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(10));

/// A cursor past every change: the node has seen everything.
const CURSOR: Cursor = Cursor {
    txid: i64::MAX,
    seq: i64::MAX,
};

async fn folders() -> anyhow::Result<(TestDb, Client, Schema)> {
    let db = TestDb::new().await?;
    let mut client = db.client().await?;
    client
        .batch_execute(
            r#"CREATE TABLE "Folder" (id text PRIMARY KEY, name text,
                                      parent text REFERENCES "Folder"(id) ON DELETE CASCADE);"#,
        )
        .await?;
    let schema = introspect(&client, "public", None, &[]).await?;
    install(&mut client, &schema).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Folder" VALUES ('root', 'root', NULL), ('sub', 'sub', 'root'), ('other', 'other', NULL);"#,
        )
        .await?;
    Ok((db, client, schema))
}

async fn version_of(client: &Client, id: &str) -> anyhow::Result<(i64, Option<i64>)> {
    let row = client
        .query_one(
            "SELECT version, origin_local_seq FROM outpost.row_versions
              WHERE table_name = 'Folder' AND pk = jsonb_build_array($1::text)",
            &[&id],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

fn folder(id: &str, name: &str, parent: Option<&str>, seq: i64, expected: Expected) -> PushRow {
    PushRow {
        table: "Folder".into(),
        local_pk: format!("[\"{id}\"]"),
        pk: vec![Value::Text(id.into())],
        values: Some(vec![
            Value::Text(id.into()),
            Value::Text(name.into()),
            parent.map_or(Value::Null, |p| Value::Text(p.into())),
        ]),
        changed: None,
        local_seq: LocalSeq(seq),
        expected,
        moved_from: None,
    }
}

/// A node's delete of `root` cascades to `sub` within the same table; the
/// node's older queued edit of `sub`, pushed afterwards, is a conflict with
/// that delete, not a change the node already applied.
#[tokio::test]
async fn a_cascade_within_the_table_does_not_carry_the_push_number() -> anyhow::Result<()> {
    let (_db, mut client, schema) = folders().await?;
    let node = Uuid::new_v4();
    let (sub_base, _) = version_of(&client, "sub").await?;
    let mut delete_root = folder("root", "root", None, 24, Expected::AsOfCursor);
    delete_root.values = None;
    // Another row of the table in the same push, edited by the node.
    let edit_other = folder("other", "renamed", None, 25, Expected::AsOfCursor);
    let out = push(
        &mut client,
        &schema,
        node,
        CURSOR,
        &[delete_root, edit_other],
        LIMITS,
    )
    .await?;
    assert!(
        out.iter().all(|o| matches!(o, PushOutcome::Applied { .. })),
        "{out:?}"
    );
    let (_, root_seq) = version_of(&client, "root").await?;
    let (sub_version, sub_seq) = version_of(&client, "sub").await?;
    let (_, other_seq) = version_of(&client, "other").await?;
    assert_eq!(
        root_seq,
        Some(24),
        "the push's own delete carries its number"
    );
    assert_eq!(other_seq, Some(25), "and so does its own edit");
    assert_eq!(sub_seq, None, "the cascaded delete carries none");

    // The older edit of `sub`, queued before the delete, arrives later.
    let edit_sub = folder(
        "sub",
        "edited offline",
        Some("root"),
        14,
        Expected::Version(Version(sub_base)),
    );
    let out = push(&mut client, &schema, node, CURSOR, &[edit_sub], LIMITS).await?;
    match &out[..] {
        [PushOutcome::Conflict(server)] => {
            assert_eq!(server.version, Version(sub_version));
            assert_eq!(server.values, None, "the server's side is the delete");
        }
        other => anyhow::bail!("expected a conflict, got {other:?}"),
    }
    Ok(())
}

/// A retry of the same push after a lost acknowledgement still finds its
/// own rows "already applied": the number stays on what the push wrote.
#[tokio::test]
async fn a_retried_push_of_a_cascading_delete_is_already_applied() -> anyhow::Result<()> {
    let (_db, mut client, schema) = folders().await?;
    let node = Uuid::new_v4();
    let mut delete_root = folder("root", "root", None, 7, Expected::AsOfCursor);
    delete_root.values = None;
    let first = push(
        &mut client,
        &schema,
        node,
        CURSOR,
        std::slice::from_ref(&delete_root),
        LIMITS,
    )
    .await?;
    assert!(
        matches!(first[..], [PushOutcome::Applied { .. }]),
        "{first:?}"
    );
    let again = push(&mut client, &schema, node, CURSOR, &[delete_root], LIMITS).await?;
    assert!(
        matches!(again[..], [PushOutcome::AlreadyApplied { .. }]),
        "{again:?}"
    );
    Ok(())
}

/// A row planned under another schema snapshot than the push names (a
/// column added meanwhile, so one value short) is refused with the whole
/// push: its missing value is never taken for NULL over the server's
/// (gateway campaign seed 79 erased a column's default that way).
#[tokio::test]
async fn a_row_of_another_shape_is_refused_and_nothing_is_written() -> anyhow::Result<()> {
    let (_db, mut client, schema) = folders().await?;
    let node = Uuid::new_v4();
    let mut short = folder("other", "renamed", None, 3, Expected::AsOfCursor);
    if let Some(v) = short.values.as_mut() {
        v.pop();
    }
    let fine = folder("root", "root renamed", None, 4, Expected::AsOfCursor);
    let err = push(&mut client, &schema, node, CURSOR, &[fine, short], LIMITS)
        .await
        .expect_err("a short row is refused");
    assert!(
        matches!(&err, outpost_remote::RemoteError::PushShape { table, got: 2, columns: 3 } if table == "Folder"),
        "{err}"
    );
    let names: Vec<String> = client
        .query(r#"SELECT name FROM "Folder" ORDER BY id"#, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        names,
        ["other", "root", "sub"],
        "nothing of the push was written"
    );
    // A changed-column mask of another length is refused the same way.
    let mut masked = folder("other", "renamed", None, 5, Expected::AsOfCursor);
    masked.changed = Some(vec![true, true]);
    let err = push(&mut client, &schema, node, CURSOR, &[masked], LIMITS)
        .await
        .expect_err("a short mask is refused");
    assert!(
        matches!(err, outpost_remote::RemoteError::PushShape { got: 2, .. }),
        "{err}"
    );
    Ok(())
}
