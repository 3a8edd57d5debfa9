//! Scenarios of pushes beside B2: B9 local updates against the statement
//! PowerSync's connector applies them with, B10 a push on a replica that
//! already holds many synced rows against the same push on a fresh one.
//!
//! Tables have the B1 table's shape (`LIKE bench_shape`), each with its own
//! name so the scenarios do not disturb each other.

use std::time::{Duration, Instant};

use outpost_core::sync::{Direction, Trigger};
use outpost_core::types::Value;
use outpost_engine::{Engine, SyncOptions};
use outpost_local::LocalError;
use outpost_remote::tokio_postgres::Client;
use outpost_testkit::TestDb;

use crate::sync_scenarios::{
    bootstrapped_node, bootstrapped_node_of, remove_db, sq, sync_until, tracked_table,
};
use crate::{Args, Sample, bench_row, summarize};

/// `rows` inserted into `table` on `engine`'s replica, one prepared
/// `INSERT` each, in one transaction (through the capture triggers, as an
/// application writes them).
pub(crate) async fn insert_locally(
    engine: &Engine,
    table: &str,
    rows: Vec<Vec<Value>>,
) -> anyhow::Result<()> {
    let schema = engine.schema().clone();
    let table = table.to_string();
    engine
        .with_replica(move |r| {
            let t = schema
                .table(&table)
                .ok_or_else(|| LocalError::UnknownTable {
                    table: table.clone(),
                })?;
            let tx = r.connection().unchecked_transaction().map_err(sq)?;
            {
                let mut stmt = tx
                    .prepare(&format!(
                        "INSERT INTO \"{table}\" VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                    ))
                    .map_err(sq)?;
                for row in &rows {
                    let v = t
                        .columns
                        .iter()
                        .zip(row)
                        .map(|(c, v)| outpost_local::value::to_sqlite(v, &c.ty));
                    stmt.execute(rusqlite::params_from_iter(v)).map_err(sq)?;
                }
            }
            tx.commit().map_err(sq)
        })
        .await?;
    Ok(())
}

/// Times one push-only sync of `engine`, then checks that `table` holds
/// `expected` rows on the server.
pub(crate) async fn timed_push(
    engine: &Engine,
    client: &Client,
    table: &str,
    expected: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let report = engine
        .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
        .await?;
    let took = started.elapsed();
    anyhow::ensure!(report.success, "{:?}", report.errors);
    let landed: i64 = client
        .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
        .await?
        .get(0);
    anyhow::ensure!(
        landed as u64 == expected,
        "{table}: pushed {landed} of {expected}"
    );
    Ok(took)
}

// ---- B9 -----------------------------------------------------------------------

/// Operations per statement of the baseline: PowerSync's connector applies
/// its upload queue in statements of 2,000.
const CONNECTOR_OPS: usize = 2_000;

/// Updates of B9's shape: (id, name, amount), as text.
pub(crate) type Update = (String, String, String);

/// Run `run`'s `updates` rows of `ids` (every `stride`-th, shifted by the
/// run, so runs update different rows), each given a name starting with
/// `label` and an amount.
pub(crate) fn chosen_updates(
    ids: &[String],
    updates: usize,
    run: usize,
    label: &str,
) -> Vec<Update> {
    let stride = (ids.len() / updates.max(1)).max(1);
    ids.iter()
        .skip(run % stride)
        .step_by(stride)
        .take(updates)
        .enumerate()
        .map(|(i, id)| {
            (
                id.clone(),
                format!("{label} run {run} row {i}"),
                format!("{}.{:02}", run + 1, i % 100),
            )
        })
        .collect()
}

/// The baseline: `updates` applied to `table` (untracked) by one `UPDATE …
/// FROM jsonb_array_elements` per [`CONNECTOR_OPS`] rows, each its own
/// transaction, the JSON built here as the connector builds it.
pub(crate) async fn apply_as_connector(
    client: &Client,
    table: &str,
    updates: &[Update],
) -> anyhow::Result<()> {
    let sql = format!(
        "UPDATE {table} AS t SET name = e->>'name', amount = (e->>'amount')::numeric \
         FROM jsonb_array_elements($1::text::jsonb) AS e WHERE t.id = (e->>'id')::uuid"
    );
    for part in updates.chunks(CONNECTOR_OPS) {
        let ops: Vec<serde_json::Value> = part
            .iter()
            .map(|(id, name, amount)| serde_json::json!({"id": id, "name": name, "amount": amount}))
            .collect();
        let doc = serde_json::Value::Array(ops).to_string();
        client.execute(&sql, &[&doc]).await?;
    }
    Ok(())
}

/// B9: `--b9-updates` rows of a `--b9-rows`-row table updated locally (two
/// columns, one `UPDATE` each), pushed. Baseline: the same rows and values
/// applied to an identical untracked copy by [`apply_as_connector`].
pub async fn updates_vs_connector(db: &TestDb, args: &Args) -> anyhow::Result<()> {
    let schema = tracked_table(db, "b9", args.b9_rows).await?;
    let client = db.client().await?;
    client
        .batch_execute(
            "CREATE TABLE b9_plain AS SELECT * FROM b9; ALTER TABLE b9_plain ADD PRIMARY KEY (id);",
        )
        .await?;
    // VACUUM cannot share the implicit transaction of a multi-statement query.
    client.batch_execute("VACUUM ANALYZE b9_plain").await?;
    let engine = bootstrapped_node(db, &schema, "b9", "b9.db").await?;
    let ids: Vec<String> = client
        .query("SELECT id::text FROM b9 ORDER BY n", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let updates = usize::try_from(args.b9_updates)?.min(ids.len());
    anyhow::ensure!(updates > 0, "B9 needs rows to update");
    let mut samples = Vec::new();
    for run in 0..args.runs {
        let chosen = chosen_updates(&ids, updates, run, "b9");
        let local = chosen.clone();
        let t = schema
            .table("b9")
            .ok_or_else(|| anyhow::anyhow!("b9 is not in its schema"))?
            .clone();
        engine
            .with_replica(move |r| {
                let ty = |name: &str| {
                    t.columns
                        .iter()
                        .find(|c| c.name == name)
                        .map(|c| c.ty.clone())
                        .ok_or_else(|| LocalError::UnknownTable {
                            table: format!("b9.{name}"),
                        })
                };
                let (name_ty, amount_ty) = (ty("name")?, ty("amount")?);
                let tx = r.connection().unchecked_transaction().map_err(sq)?;
                {
                    let mut stmt = tx
                        .prepare("UPDATE b9 SET name = ?2, amount = ?3 WHERE id = ?1")
                        .map_err(sq)?;
                    for (id, name, amount) in local {
                        let name = outpost_local::value::to_sqlite(&Value::Text(name), &name_ty);
                        let amount =
                            outpost_local::value::to_sqlite(&Value::Text(amount), &amount_ty);
                        stmt.execute(rusqlite::params![id, name, amount])
                            .map_err(sq)?;
                    }
                }
                tx.commit().map_err(sq)
            })
            .await?;
        let pattern = format!("b9 run {run} row %");
        let started = Instant::now();
        let report = engine
            .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
            .await?;
        let outpost = started.elapsed();
        anyhow::ensure!(report.success, "{:?}", report.errors);
        let landed: i64 = client
            .query_one("SELECT count(*) FROM b9 WHERE name LIKE $1", &[&pattern])
            .await?
            .get(0);
        anyhow::ensure!(
            landed as usize == updates,
            "B9: {landed} of {updates} updates on the server"
        );

        // Baseline: the connector's statement, its JSON built in the window.
        let started = Instant::now();
        apply_as_connector(&client, "b9_plain", &chosen).await?;
        let baseline = started.elapsed();
        let applied: i64 = client
            .query_one(
                "SELECT count(*) FROM b9_plain WHERE name LIKE $1",
                &[&pattern],
            )
            .await?
            .get(0);
        anyhow::ensure!(
            applied as usize == updates,
            "B9 baseline: {applied} of {updates} updates applied"
        );
        samples.push(Sample { outpost, baseline });
    }
    summarize(
        &format!("B9 push updates of {}", args.b9_rows),
        updates as u64,
        &samples,
        "time ratio <= 2",
    );
    Ok(())
}

// ---- B10 ----------------------------------------------------------------------

/// Row count of `table` in `engine`'s replica.
async fn local_count(engine: &Engine, table: &'static str) -> anyhow::Result<i64> {
    Ok(engine
        .with_replica(move |r| {
            r.connection()
                .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |x| {
                    x.get(0)
                })
                .map_err(sq)
        })
        .await?)
}

/// B10: B2 (`--push-rows` local inserts pushed) on a replica that already
/// holds `--b10-held-rows` synced rows, against B2 on a fresh replica; the
/// figure is time(held) / time(fresh).
///
/// The held rows are server inserts pulled by the replica, so each has a
/// `SYNCED` entry in `_outpost_rows`, as a pushed row has. They live in
/// another table of the same replica (`b10_held`), and each side of each
/// run pushes into its own empty server table: the server's work is the
/// same on both sides, and the ratio is what the held entries cost the
/// local bookkeeping. The held replica is kept across runs, so it also
/// holds the entries of its earlier runs' pushes. The sides alternate
/// which goes first.
pub async fn push_on_held_replica(db: &TestDb, args: &Args) -> anyhow::Result<()> {
    let mut admin = db.client().await?;
    let client = db.client().await?;
    let held_tables: Vec<String> = std::iter::once("b10_held".to_string())
        .chain((0..args.runs).map(|r| format!("b10_push_{r}")))
        .collect();
    let fresh_tables: Vec<String> = (0..args.runs).map(|r| format!("b10_fresh_{r}")).collect();
    let all: Vec<String> = held_tables.iter().chain(&fresh_tables).cloned().collect();
    let mut ddl = String::from(
        "CREATE TABLE IF NOT EXISTS bench_shape (id uuid PRIMARY KEY, name text NOT NULL, n integer NOT NULL, \
           amount numeric(12,2) NOT NULL, at timestamptz NOT NULL, doc jsonb NOT NULL);",
    );
    for t in &all {
        ddl.push_str(&format!(
            "CREATE TABLE {t} (LIKE bench_shape INCLUDING ALL);"
        ));
    }
    admin.batch_execute(&ddl).await?;
    let schema = outpost_remote::introspect(&admin, "public", Some(&all), &[]).await?;
    outpost_remote::install(&mut admin, &schema).await?;

    let held_schema = outpost_remote::introspect(&admin, "public", Some(&held_tables), &[]).await?;
    let held = bootstrapped_node_of(db, &held_schema, &held_tables, "b10-held.db").await?;
    let held_rows = i64::try_from(args.b10_held_rows)?;
    let filled = Instant::now();
    client
        .execute(
            "INSERT INTO b10_held SELECT gen_random_uuid(), md5(i::text), i, (i % 100000) / 100.0, \
             now() - i * interval '1 second', jsonb_build_object('i', i, 'tag', 'held') \
             FROM generate_series(1, $1::int8) i",
            &[&held_rows],
        )
        .await?;
    sync_until(&held, Direction::FromServer, || async {
        Ok(local_count(&held, "b10_held").await? == held_rows)
    })
    .await?;
    let entries: i64 = held
        .with_replica(|r| {
            r.connection()
                .query_row(
                    "SELECT count(*) FROM \"_outpost_rows\" WHERE status = 'SYNCED'",
                    [],
                    |x| x.get(0),
                )
                .map_err(sq)
        })
        .await?;
    anyhow::ensure!(
        entries >= held_rows,
        "the held replica has {entries} synced entries, not {held_rows}"
    );
    let prepared = filled.elapsed();

    let mut samples = Vec::new();
    for run in 0..args.runs {
        let rows: Vec<Vec<Value>> = (0..args.push_rows).map(bench_row).collect();
        let fresh_table = fresh_tables[run].clone();
        let fresh_schema = outpost_remote::introspect(
            &admin,
            "public",
            Some(std::slice::from_ref(&fresh_table)),
            &[],
        )
        .await?;
        let fresh_file = format!("b10-fresh-{run}.db");
        let fresh = bootstrapped_node(db, &fresh_schema, &fresh_table, &fresh_file).await?;
        let held_table = &held_tables[run + 1];
        let mut times = [Duration::ZERO; 2];
        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let (engine, table) = if side == 0 {
                (&held, held_table.as_str())
            } else {
                (&fresh, fresh_table.as_str())
            };
            insert_locally(engine, table, rows.clone()).await?;
            times[side] = timed_push(engine, &client, table, args.push_rows).await?;
        }
        drop(fresh);
        remove_db(&db.dir().join(&fresh_file));
        samples.push(Sample {
            outpost: times[0],
            baseline: times[1],
        });
    }
    summarize(
        &format!("B10 push, {} held", args.b10_held_rows),
        args.push_rows,
        &samples,
        "time ratio (held/fresh) <= 1.15",
    );
    println!(
        "{:<14} the held replica had {entries} synced entries at its first push (prepared in {:.1} s)",
        "",
        prepared.as_secs_f64()
    );
    Ok(())
}
