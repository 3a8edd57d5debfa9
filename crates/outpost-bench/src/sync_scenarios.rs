//! Scenarios of sync runs between an engine and the server: B3 pull of
//! server-side updates, B4 sync cost against table size, B7 many nodes
//! pushing at once.
//!
//! Each table here has the B1 table's shape (`LIKE bench`), with its own
//! name so the scenarios do not disturb each other.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, pin_mut};
use outpost_core::config::{Config, TableSelection};
use outpost_core::schema::Schema;
use outpost_core::sync::{Direction, Trigger};
use outpost_core::types::Value;
use outpost_engine::{Engine, SyncOptions};
use outpost_local::{LocalError, Replica};
use outpost_remote::codec::PgValue;
use outpost_remote::tokio_postgres::binary_copy::BinaryCopyOutStream;
use outpost_remote::tokio_postgres::types::Type;
use outpost_testkit::TestDb;

use crate::{Args, Sample, bench_row, config, summarize};

const TYPES: [Type; 6] = [
    Type::UUID,
    Type::TEXT,
    Type::INT4,
    Type::NUMERIC,
    Type::TIMESTAMPTZ,
    Type::JSONB,
];

/// Creates `name` (the bench shape) with `rows` generated rows and installs
/// tracking on it; returns its one-table schema.
pub(crate) async fn tracked_table(db: &TestDb, name: &str, rows: u64) -> anyhow::Result<Schema> {
    let mut client = db.client().await?;
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS bench_shape (id uuid PRIMARY KEY, name text NOT NULL, n integer NOT NULL, \
               amount numeric(12,2) NOT NULL, at timestamptz NOT NULL, doc jsonb NOT NULL); \
             CREATE TABLE {name} (LIKE bench_shape INCLUDING ALL);"
        ))
        .await?;
    client
        .execute(
            &format!(
                "INSERT INTO {name} SELECT gen_random_uuid(), md5(i::text), i, (i % 100000) / 100.0, \
                 now() - i * interval '1 second', jsonb_build_object('i', i, 'tag', 'bench') \
                 FROM generate_series(1, $1::int8) i"
            ),
            &[&(rows as i64)],
        )
        .await?;
    client
        .batch_execute(&format!("VACUUM ANALYZE {name}"))
        .await?;
    let schema =
        outpost_remote::introspect(&client, "public", Some(&[name.to_string()]), &[]).await?;
    outpost_remote::install(&mut client, &schema).await?;
    Ok(schema)
}

/// A node syncing only `table`, bootstrapped.
pub(crate) async fn bootstrapped_node(
    db: &TestDb,
    schema: &Schema,
    table: &str,
    file: &str,
) -> anyhow::Result<Engine> {
    bootstrapped_node_of(db, schema, &[table.to_string()], file).await
}

/// A node syncing `tables`, bootstrapped.
pub(crate) async fn bootstrapped_node_of(
    db: &TestDb,
    schema: &Schema,
    tables: &[String],
    file: &str,
) -> anyhow::Result<Engine> {
    let path = db.dir().join(file);
    let _ = std::fs::remove_file(&path);
    let (replica, _) = Replica::setup(&path, schema)?;
    let cfg = config(&db.database_url(), &path)?;
    let cfg = Config {
        tables: TableSelection {
            include: Some(tables.to_vec()),
            ..cfg.tables
        },
        ..cfg
    };
    let engine = Engine::new(replica, cfg);
    let first = engine
        .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
        .await?;
    anyhow::ensure!(first.success, "bootstrap of {tables:?}: {:?}", first.errors);
    Ok(engine)
}

/// Syncs until `done` holds (the pull horizon is cluster-wide: another
/// session's open transaction can hold changes back for a moment).
pub(crate) async fn sync_until<F, Fut>(
    engine: &Engine,
    direction: Direction,
    done: F,
) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let report = engine
            .sync(SyncOptions::new(direction, Trigger::Manual))
            .await?;
        anyhow::ensure!(report.success, "{:?}", report.errors);
        if done().await? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the sync never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sqlite_values(row: Vec<Value>) -> Vec<rusqlite::types::Value> {
    row.into_iter()
        .map(|v| match v {
            Value::Int(i) => rusqlite::types::Value::Integer(i),
            Value::Text(s) | Value::Json(s) => rusqlite::types::Value::Text(s),
            _ => rusqlite::types::Value::Null,
        })
        .collect()
}

/// Streams `table` with binary `COPY` and hands each decoded row to `sink`.
async fn copy_rows(
    db: &TestDb,
    table: &str,
    mut sink: impl FnMut(Vec<Value>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let client = db.client().await?;
    let copy = client
        .copy_out(&format!(
            "COPY (SELECT id, name, n, amount, at, doc FROM {table}) TO STDOUT (FORMAT binary)"
        ))
        .await?;
    let stream = BinaryCopyOutStream::new(copy, &TYPES);
    pin_mut!(stream);
    while let Some(row) = stream.next().await {
        let row = row?;
        let values: Vec<Value> = (0..6)
            .map(|i| row.try_get::<PgValue>(i).map(|v| v.0))
            .collect::<Result<_, _>>()?;
        sink(values)?;
    }
    Ok(())
}

// ---- B3 -----------------------------------------------------------------------

/// B3: `--pull-rows` server-side updates pulled by an up-to-date replica.
/// Baseline: the same rows read with binary `COPY` and applied by a prepared
/// `UPDATE` loop in one SQLite transaction to a plain table of the same shape.
pub async fn pull_updates(db: &TestDb, args: &Args) -> anyhow::Result<()> {
    let rows = args.pull_rows;
    let schema = tracked_table(db, "pulled", rows).await?;
    let engine = bootstrapped_node(db, &schema, "pulled", "b3.db").await?;
    let plain_path = db.dir().join("b3-plain.db");
    let _ = std::fs::remove_file(&plain_path);
    let plain = rusqlite::Connection::open(&plain_path)?;
    plain.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE plain (id TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL,
           amount TEXT NOT NULL, at TEXT NOT NULL, doc TEXT NOT NULL);",
    )?;
    {
        let tx = plain.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare("INSERT INTO plain VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
            copy_rows(db, "pulled", |row| {
                stmt.execute(rusqlite::params_from_iter(sqlite_values(row)))?;
                Ok(())
            })
            .await?;
        }
        tx.commit()?;
    }
    let client = db.client().await?;
    let replica_path = db.dir().join("b3.db");
    let mut samples = Vec::new();
    for run in 0..args.runs {
        let run = run as i64 + 1;
        client
            .execute(
                "UPDATE pulled SET n = n + 1, name = md5(n::text || $1::int8::text), doc = doc || jsonb_build_object('run', $1::int8)",
                &[&run],
            )
            .await?;
        let want: i64 = client
            .query_one("SELECT sum(n)::int8 FROM pulled", &[])
            .await?
            .get(0);
        let reader = rusqlite::Connection::open(&replica_path)?;
        let sum_of = |c: &rusqlite::Connection, t: &str| -> anyhow::Result<i64> {
            Ok(c.query_row(&format!("SELECT total(n) FROM {t}"), [], |r| {
                r.get::<_, f64>(0)
            })? as i64)
        };
        let started = Instant::now();
        sync_until(&engine, Direction::FromServer, || async {
            Ok(sum_of(&reader, "pulled")? == want)
        })
        .await?;
        let outpost = started.elapsed();

        let started = Instant::now();
        {
            let tx = plain.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare(
                    "UPDATE plain SET name = ?2, n = ?3, amount = ?4, at = ?5, doc = ?6 WHERE id = ?1",
                )?;
                copy_rows(db, "pulled", |row| {
                    stmt.execute(rusqlite::params_from_iter(sqlite_values(row)))?;
                    Ok(())
                })
                .await?;
            }
            tx.commit()?;
        }
        let baseline = started.elapsed();
        anyhow::ensure!(sum_of(&plain, "plain")? == want, "baseline missed rows");
        samples.push(Sample { outpost, baseline });
    }
    summarize("B3 pull updates", rows, &samples, "ratio >= 0.7");
    Ok(())
}

// ---- B4 -----------------------------------------------------------------------

/// `changes` offline edits on a node's table: inserts, updates and deletes
/// of existing rows (60/30/10).
async fn offline_changes(
    engine: &Engine,
    table: &'static str,
    changes: u64,
    run: usize,
) -> anyhow::Result<()> {
    let schema = engine.schema().clone();
    engine
        .with_replica(move |r| {
            let t = schema
                .table(table)
                .ok_or_else(|| LocalError::UnknownTable {
                    table: table.to_string(),
                })?;
            let c = r.connection();
            let tx = c.unchecked_transaction().map_err(sq)?;
            let ids: Vec<String> = {
                let mut stmt = tx
                    .prepare(&format!(
                        "SELECT id FROM {table} ORDER BY random() LIMIT ?1"
                    ))
                    .map_err(sq)?;
                stmt.query_map([changes as i64], |r| r.get(0))
                    .map_err(sq)?
                    .collect::<Result<_, _>>()
                    .map_err(sq)?
            };
            let updates = changes * 6 / 10;
            let deletes = changes / 10;
            for (k, id) in ids.iter().enumerate() {
                let k = k as u64;
                if k < updates {
                    tx.execute(
                        &format!("UPDATE {table} SET n = n + 1, name = ?2 WHERE id = ?1"),
                        rusqlite::params![id, format!("offline {run} {k}")],
                    )
                    .map_err(sq)?;
                } else if k < updates + deletes {
                    tx.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [id])
                        .map_err(sq)?;
                }
            }
            let inserts = changes - updates - deletes;
            let mut stmt = tx
                .prepare(&format!(
                    "INSERT INTO {table} VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ))
                .map_err(sq)?;
            for k in 0..inserts {
                let row = bench_row(k);
                let v = t
                    .columns
                    .iter()
                    .zip(&row)
                    .map(|(c, v)| outpost_local::value::to_sqlite(v, &c.ty));
                stmt.execute(rusqlite::params_from_iter(v)).map_err(sq)?;
            }
            drop(stmt);
            tx.commit().map_err(sq)
        })
        .await?;
    Ok(())
}

/// B4: `--offline-changes` local changes synced (push and pull) by a node
/// whose table has `--b4-large-rows` rows, against the same on a table of
/// `--b4-small-rows`. The figure is time(large) / time(small).
pub async fn sync_vs_size(db: &TestDb, args: &Args) -> anyhow::Result<()> {
    let small_schema = tracked_table(db, "b4_small", args.b4_small_rows).await?;
    let large_schema = tracked_table(db, "b4_large", args.b4_large_rows).await?;
    let small = bootstrapped_node(db, &small_schema, "b4_small", "b4-small.db").await?;
    let large = bootstrapped_node(db, &large_schema, "b4_large", "b4-large.db").await?;
    let mut samples = Vec::new();
    for run in 0..args.runs {
        let mut timed = Vec::new();
        for (engine, table) in [(&small, "b4_small"), (&large, "b4_large")] {
            offline_changes(engine, table, args.offline_changes, run).await?;
            let started = Instant::now();
            let report = engine
                .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
                .await?;
            timed.push(started.elapsed());
            anyhow::ensure!(report.success, "{table}: {:?}", report.errors);
            let pending = engine.with_replica(|r| r.dirty_rows()).await?.len();
            anyhow::ensure!(pending == 0, "{table}: {pending} changes still pending");
        }
        samples.push(Sample {
            outpost: timed[1],
            baseline: timed[0],
        });
    }
    summarize(
        &format!("B4 {} changes", args.offline_changes),
        args.b4_large_rows,
        &samples,
        "time ratio (large/small) <= 1.3",
    );
    Ok(())
}

// ---- B7 -----------------------------------------------------------------------

/// `n` rows inserted locally on `engine` (`tag` keeps them apart).
async fn local_inserts(engine: &Engine, n: u64, tag: u64) -> anyhow::Result<()> {
    let schema = engine.schema().clone();
    engine
        .with_replica(move |r| {
            let t = schema
                .table("fleet")
                .ok_or_else(|| LocalError::UnknownTable {
                    table: "fleet".into(),
                })?;
            let tx = r.connection().unchecked_transaction().map_err(sq)?;
            {
                let mut stmt = tx
                    .prepare("INSERT INTO fleet VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                    .map_err(sq)?;
                for k in 0..n {
                    let row = bench_row(tag * 1_000_000 + k);
                    let v = t
                        .columns
                        .iter()
                        .zip(&row)
                        .map(|(c, v)| outpost_local::value::to_sqlite(v, &c.ty));
                    stmt.execute(rusqlite::params_from_iter(v)).map_err(sq)?;
                }
            }
            tx.commit().map_err(sq)
        })
        .await?;
    Ok(())
}

/// Every row of `fleet` on the server, by key.
async fn server_rows(
    client: &outpost_remote::tokio_postgres::Client,
    schema: &Schema,
) -> anyhow::Result<BTreeMap<String, Vec<Value>>> {
    let rows = outpost_remote::feed::all_rows(client, schema, "fleet").await?;
    Ok(rows
        .into_iter()
        .map(|r| (format!("{:?}", r[0]), r))
        .collect())
}

/// B7: `--nodes` nodes with `--node-changes` pending inserts each, all
/// syncing at once; then every replica must equal the server. Baseline: one
/// node syncing `nodes × node-changes` pending inserts.
pub async fn fleet(db: &TestDb, args: &Args) -> anyhow::Result<()> {
    let schema = tracked_table(db, "fleet", 0).await?;
    let client = db.client().await?;
    let total = args.nodes as u64 * args.node_changes;
    let mut samples = Vec::new();
    for run in 0..args.runs {
        client.batch_execute("TRUNCATE fleet").await?;
        // Baseline: one node, all the changes.
        let one = bootstrapped_node(db, &schema, "fleet", &format!("b7-one-{run}.db")).await?;
        local_inserts(&one, total, 0).await?;
        let started = Instant::now();
        let report = one
            .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
            .await?;
        let baseline = started.elapsed();
        anyhow::ensure!(report.success, "{:?}", report.errors);
        drop(one);
        client.batch_execute("TRUNCATE fleet").await?;

        let mut nodes = Vec::new();
        for k in 0..args.nodes {
            let e = bootstrapped_node(db, &schema, "fleet", &format!("b7-{run}-{k}.db")).await?;
            local_inserts(&e, args.node_changes, k as u64 + 1).await?;
            nodes.push(e);
        }
        let started = Instant::now();
        let reports = futures_util::future::join_all(
            nodes
                .iter()
                .map(|e| e.sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))),
        )
        .await;
        let outpost = started.elapsed();
        for r in reports {
            let r = r?;
            anyhow::ensure!(r.success, "{:?}", r.errors);
        }
        // Convergence: after one more pull each, every replica equals the
        // server (the earlier syncs raced each other's commits).
        let server = server_rows(&client, &schema).await?;
        anyhow::ensure!(
            server.len() as u64 == total,
            "the server has {} of {total} rows",
            server.len()
        );
        for e in &nodes {
            let expected = server.clone();
            sync_until(e, Direction::FromServer, || async {
                let local = e.with_replica(|r| r.all_rows("fleet")).await?;
                Ok(local.len() == expected.len())
            })
            .await?;
            let local: BTreeMap<String, Vec<Value>> = e
                .with_replica(|r| r.all_rows("fleet"))
                .await?
                .into_iter()
                .map(|r| (format!("{:?}", r[0]), r))
                .collect();
            anyhow::ensure!(
                local == server,
                "node {} did not converge ({} rows, server {})",
                e.node_id(),
                local.len(),
                server.len()
            );
        }
        drop(nodes);
        for k in 0..args.nodes {
            remove_db(&db.dir().join(format!("b7-{run}-{k}.db")));
        }
        remove_db(&db.dir().join(format!("b7-one-{run}.db")));
        samples.push(Sample { outpost, baseline });
    }
    summarize(
        &format!("B7 {} nodes", args.nodes),
        total,
        &samples,
        "time ratio <= 3, all converge",
    );
    println!("{:<14} all {} replicas equal the server", "", args.nodes);
    Ok(())
}

pub(crate) fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// SQLite errors of the harness's own statements.
pub(crate) fn sq(source: rusqlite::Error) -> LocalError {
    LocalError::Sqlite {
        context: "a benchmark statement".into(),
        source,
    }
}
