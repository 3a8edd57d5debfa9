//! A pull's statements are prepared once per connection and keep the generic
//! plan of their first run. Planned while the tracking tables were nearly
//! empty, they must still walk indexes once the tables have grown: a plan
//! that scanned the change log or `row_versions` would cost every later
//! batch time in proportion to the backlog, not to the batch.

use outpost_core::sync::Cursor;
use outpost_remote::feed::{self, PullStatements};
use outpost_remote::{install, introspect};
use outpost_testkit::TestDb;
use tokio_postgres::Client;

/// Per table a pull reads: sequential scans, and rows read by them and by
/// index scans, from this session's statistics (flushed first: a backend
/// reports its counters lazily).
async fn reads(client: &Client) -> anyhow::Result<Vec<(String, i64, i64)>> {
    client
        .execute("SELECT pg_stat_force_next_flush()", &[])
        .await?;
    let rows = client
        .query(
            "SELECT schemaname || '.' || relname, seq_scan, \
               seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables \
             WHERE (schemaname, relname) IN (('outpost', 'changes'), ('outpost', 'row_versions'), ('public', 'item')) \
             ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

#[tokio::test]
async fn pull_statements_planned_on_empty_tables_stay_index_walks() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut client = db.client().await?;
    client
        .batch_execute("CREATE TABLE item (id uuid PRIMARY KEY, n int NOT NULL)")
        .await?;
    let schema = introspect(&client, "public", None, &[]).await?;
    install(&mut client, &schema).await?;
    // No ANALYZE behind the test's back: it would re-plan the statements
    // with the grown tables' statistics and hide a bad first plan.
    client
        .batch_execute(
            "ALTER TABLE outpost.changes SET (autovacuum_enabled = off);
             ALTER TABLE outpost.row_versions SET (autovacuum_enabled = off);
             ALTER TABLE item SET (autovacuum_enabled = off);
             INSERT INTO item VALUES (gen_random_uuid(), 0);",
        )
        .await?;

    // The first pull prepares and plans every statement on one change.
    // The horizon is cluster-wide: another database's open transaction can
    // hold the change back, so pull until it arrives (bounded).
    let mut statements = PullStatements::default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let first = loop {
        let batch = feed::pull(
            &mut client,
            &schema,
            Cursor::default(),
            5_000,
            None,
            &mut statements,
        )
        .await?;
        if !batch.rows.is_empty() || std::time::Instant::now() > deadline {
            break batch;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(first.rows.len(), 1);

    client
        .execute(
            "INSERT INTO item SELECT gen_random_uuid(), i FROM generate_series(1, 20000) i",
            &[],
        )
        .await?;
    let before = reads(&client).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    assert_eq!(
        before.len(),
        3,
        "statistics of the three tables: {before:?}"
    );

    let mut cursor = first.cursor;
    let mut pulled = 0;
    loop {
        let batch = feed::pull(&mut client, &schema, cursor, 5_000, None, &mut statements).await?;
        pulled += batch.rows.len();
        cursor = batch.cursor;
        if pulled >= 20_000 || std::time::Instant::now() > deadline {
            break;
        }
        if !batch.more {
            // Held back by an open transaction elsewhere on the cluster.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert_eq!(pulled, 20_000, "every inserted row pulled");

    let after = reads(&client).await?;
    for ((table, scans_before, read_before), (_, scans_after, read_after)) in
        before.iter().zip(&after)
    {
        assert_eq!(
            scans_after, scans_before,
            "a pull statement scanned all of {table}"
        );
        // An index walk reads each pulled key's row once; a plan that
        // reads the whole table per batch reads it four times over.
        let read = read_after - read_before;
        assert!(
            read <= 2 * pulled as i64,
            "{read} rows of {table} read to pull {pulled} rows"
        );
    }
    Ok(())
}
