//! B13, the server's floor: what a push's server write costs at the least,
//! with today's capture and with capture from the WAL, beside the
//! baselines of B9 and B2. It measures no part of outpost but the capture
//! triggers; it is the evidence for a design decision (docs/performance.md,
//! "The floor of trigger capture").
//!
//! * **Updates** (B9's shape: `--b9-updates` of a `--b9-rows`-row table).
//!   Baseline: B9's, PowerSync's connector statement on an untracked copy.
//!   *Trigger capture*: the same values written by one `UPDATE … FROM
//!   unnest(…)` per 5,000 rows on a table with outpost's capture, nothing
//!   else (no lock, state or version read): no push through triggers can
//!   cost less on the server. *xmin guard*: the write a push would make if
//!   changes were decoded from the WAL and a row's version were its
//!   `xmin`: the same statement on an untracked copy, each row written only
//!   if its `xmin` is still the one read before, the new one returned.
//! * **Inserts** (B2's shape, `--push-rows` rows). Baseline: a text `COPY
//!   FROM` into an untracked table. *Trigger capture*: one `INSERT … SELECT
//!   FROM unnest(…)` per 5,000 rows into a table with outpost's capture.
//!   *If absent*: the same into an untracked table, `ON CONFLICT DO NOTHING
//!   RETURNING xmin`.
//! * **Decoding**, only where the server has `wal_level = logical`: a
//!   temporary `pgoutput` slot over the xmin-guarded table, consumed after
//!   its updates; the time per decoded change. Off the write path in that
//!   design, but the server pays it.
//!
//! All candidates receive their values as text arrays, as the baseline's
//! statement receives JSON text and `COPY` text rows.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use outpost_remote::tokio_postgres::Client;
use outpost_testkit::TestDb;

use crate::push_scenarios::{Update, apply_as_connector, chosen_updates};
use crate::sync_scenarios::tracked_table;
use crate::{Args, Sample, median, summarize};

/// Rows per statement of the candidates (the push's group size).
const GROUP: usize = 5_000;

/// The candidates run as the push's writes do: prepared once, generic
/// plans (index lookups; a custom plan of a 5,000-element array would hash
/// the table), the server's planner settings otherwise, so the capture's
/// own statements are planned as in a push.
const GENERIC_PLANS: &str = "SET plan_cache_mode = force_generic_plan";

const TRACKED_UPDATE: &str = "UPDATE b13 AS t SET name = u.name, amount = u.amount \
     FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]::numeric[]) AS u(id, name, amount) \
     WHERE t.id = u.id";

const GUARDED_UPDATE: &str = "WITH w AS (UPDATE b13_guarded AS t SET name = u.name, amount = u.amount \
     FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]::numeric[], $4::int8[]) AS u(id, name, amount, xm) \
     WHERE t.id = u.id AND t.xmin::text::int8 = u.xm RETURNING t.xmin) SELECT count(*) FROM w";

const INSERT_SOURCE: &str = "SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]::int4[], \
     $4::text[]::numeric[], $5::text[]::timestamptz[], $6::text[]::jsonb[])";

/// B13 (module doc).
pub async fn server_floor(db: &TestDb, args: &Args) -> anyhow::Result<()> {
    updates(db, args).await?;
    inserts(db, args).await
}

async fn updates(db: &TestDb, args: &Args) -> anyhow::Result<()> {
    tracked_table(db, "b13", args.b9_rows).await?;
    let client = db.client().await?;
    client
        .batch_execute(
            "CREATE TABLE b13_plain AS SELECT * FROM b13; ALTER TABLE b13_plain ADD PRIMARY KEY (id); \
             CREATE TABLE b13_guarded AS SELECT * FROM b13; ALTER TABLE b13_guarded ADD PRIMARY KEY (id);",
        )
        .await?;
    for t in ["b13", "b13_plain", "b13_guarded"] {
        client.batch_execute(&format!("VACUUM ANALYZE {t}")).await?;
    }
    let decoder = Decoder::open(db, "b13_guarded").await?;
    let ids: Vec<String> = client
        .query("SELECT id::text FROM b13 ORDER BY n", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let updates = usize::try_from(args.b9_updates)?.min(ids.len());
    anyhow::ensure!(updates > 0, "B13 needs rows to update");
    client.batch_execute(GENERIC_PLANS).await?;
    let tracked_update = client.prepare(TRACKED_UPDATE).await?;
    let guarded_update = client.prepare(GUARDED_UPDATE).await?;
    let (mut tracked, mut guarded) = (Vec::new(), Vec::new());
    let mut decoded: Vec<(Duration, u64)> = Vec::new();
    for run in 0..args.runs {
        let chosen = chosen_updates(&ids, updates, run, "b13");
        let pattern = format!("b13 run {run} row %");

        let started = Instant::now();
        apply_as_connector(&client, "b13_plain", &chosen).await?;
        let baseline = started.elapsed();

        let started = Instant::now();
        for part in chosen.chunks(GROUP) {
            let (id, name, amount) = columns3(part);
            client.batch_execute("BEGIN").await?;
            client
                .execute(&tracked_update, &[&id, &name, &amount])
                .await?;
            client.batch_execute("COMMIT").await?;
        }
        tracked.push(Sample {
            outpost: started.elapsed(),
            baseline,
        });

        // The versions a node would hold: read before the window.
        let all: Vec<&str> = chosen.iter().map(|c| c.0.as_str()).collect();
        let seen: std::collections::HashMap<String, i64> = client
            .query(
                "SELECT id::text, xmin::text::int8 FROM b13_guarded WHERE id = ANY($1::text[]::uuid[])",
                &[&all],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, outpost_remote::tokio_postgres::Error>>()?;
        let started = Instant::now();
        for part in chosen.chunks(GROUP) {
            let (id, name, amount) = columns3(part);
            let xm: Vec<i64> = part
                .iter()
                .map(|c| seen.get(&c.0).copied().unwrap_or(-1))
                .collect();
            client.batch_execute("BEGIN").await?;
            let written: i64 = client
                .query_one(&guarded_update, &[&id, &name, &amount, &xm])
                .await?
                .try_get(0)?;
            client.batch_execute("COMMIT").await?;
            anyhow::ensure!(
                written as usize == part.len(),
                "B13: the xmin guard wrote {written} of {} rows",
                part.len()
            );
        }
        guarded.push(Sample {
            outpost: started.elapsed(),
            baseline,
        });
        if let Some(d) = &decoder {
            decoded.push(d.consume().await?);
        }

        for t in ["b13", "b13_plain", "b13_guarded"] {
            let n: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM {t} WHERE name LIKE $1"),
                    &[&pattern],
                )
                .await?
                .try_get(0)?;
            anyhow::ensure!(
                n as usize == updates,
                "B13: {t} has {n} of {updates} updates"
            );
        }
    }
    summarize(
        "B13 updates, trigger",
        updates as u64,
        &tracked,
        "time ratio, the floor of B9 (<= 2) with trigger capture",
    );
    summarize(
        "B13 updates, xmin guard",
        updates as u64,
        &guarded,
        "time ratio, B9's write with capture from the WAL",
    );
    if decoded.is_empty() {
        println!("B13 decoding               not measured: the server's wal_level is not logical");
    } else {
        let per: Vec<f64> = decoded
            .iter()
            .map(|(d, n)| d.as_secs_f64() * 1e6 / (*n).max(1) as f64)
            .collect();
        let (lo, hi) = per
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        println!(
            "B13 decoding               {:>9} messages | {:.2} µs per message ({lo:.2}–{hi:.2}), pgoutput, off the write path",
            decoded[0].1,
            median(per),
        );
    }
    Ok(())
}

/// The id, name and amount columns of a slice of updates.
fn columns3(part: &[Update]) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
    (
        part.iter().map(|c| c.0.as_str()).collect(),
        part.iter().map(|c| c.1.as_str()).collect(),
        part.iter().map(|c| c.2.as_str()).collect(),
    )
}

async fn inserts(db: &TestDb, args: &Args) -> anyhow::Result<()> {
    tracked_table(db, "b13_ins", 0).await?;
    let client = db.client().await?;
    client
        .batch_execute(
            "CREATE TABLE b13_ins_plain (LIKE bench_shape INCLUDING ALL); \
             CREATE TABLE b13_ins_copy (LIKE bench_shape INCLUDING ALL);",
        )
        .await?;
    let rows = usize::try_from(args.push_rows)?;
    anyhow::ensure!(rows > 0, "B13 needs rows to insert");
    let (mut tracked, mut absent) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        // Rows of the B1 shape, as text (what `COPY` reads).
        let data: Vec<[String; 6]> = (0..rows)
            .map(|i| {
                [
                    uuid::Uuid::new_v4().to_string(),
                    format!("b13 run {run} row {i}"),
                    i.to_string(),
                    format!("{}.{:02}", i % 1000, i % 100),
                    format!("2026-12-07 10:{:02}:{:02}+00", (i / 60) % 60, i % 60),
                    format!("{{\"i\": {i}, \"tag\": \"bench\"}}"),
                ]
            })
            .collect();

        let started = Instant::now();
        copy_text(&client, "b13_ins_copy", &data).await?;
        let baseline = started.elapsed();

        let started = Instant::now();
        insert_groups(&client, "INSERT INTO b13_ins ", "", &data).await?;
        tracked.push(Sample {
            outpost: started.elapsed(),
            baseline,
        });

        let started = Instant::now();
        insert_groups(
            &client,
            "WITH w AS (INSERT INTO b13_ins_plain ",
            " ON CONFLICT (id) DO NOTHING RETURNING xmin) SELECT count(*) FROM w",
            &data,
        )
        .await?;
        absent.push(Sample {
            outpost: started.elapsed(),
            baseline,
        });
    }
    let expected = (rows * args.runs) as i64;
    for t in ["b13_ins", "b13_ins_plain", "b13_ins_copy"] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await?
            .try_get(0)?;
        anyhow::ensure!(n == expected, "B13: {t} holds {n} of {expected} rows");
    }
    summarize(
        "B13 inserts, trigger",
        rows as u64,
        &tracked,
        "ratio, the floor of B2 (>= 0.25) with trigger capture",
    );
    summarize(
        "B13 inserts, if absent",
        rows as u64,
        &absent,
        "ratio, B2's write with capture from the WAL",
    );
    Ok(())
}

/// `COPY table FROM STDIN` (text format) of `data`.
async fn copy_text(client: &Client, table: &str, data: &[[String; 6]]) -> anyhow::Result<()> {
    let mut text = String::with_capacity(data.len() * 120);
    for row in data {
        text.push_str(&row.join("\t"));
        text.push('\n');
    }
    let sink = client
        .copy_in::<_, Bytes>(&format!("COPY {table} FROM STDIN"))
        .await?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(text)).await?;
    let n = sink.finish().await?;
    anyhow::ensure!(n as usize == data.len(), "B13: COPY wrote {n} rows");
    Ok(())
}

/// `head` + [`INSERT_SOURCE`] + `tail` per [`GROUP`] rows, each group its
/// own transaction.
async fn insert_groups(
    client: &Client,
    head: &str,
    tail: &str,
    data: &[[String; 6]],
) -> anyhow::Result<()> {
    let sql = format!("{head}{INSERT_SOURCE}{tail}");
    client.batch_execute(GENERIC_PLANS).await?;
    let statement = client.prepare(&sql).await?;
    for part in data.chunks(GROUP) {
        let column = |k: usize| part.iter().map(|r| r[k].as_str()).collect::<Vec<&str>>();
        let cols: Vec<Vec<&str>> = (0..6).map(column).collect();
        client.batch_execute("BEGIN").await?;
        client
            .query(
                &statement,
                &[&cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5]],
            )
            .await?;
        client.batch_execute("COMMIT").await?;
    }
    Ok(())
}

/// A temporary `pgoutput` slot over one table, on a connection of its own
/// (the slot goes with it). `None` where the server cannot decode.
struct Decoder {
    client: Client,
    slot: String,
    publication: String,
}

impl Decoder {
    async fn open(db: &TestDb, table: &str) -> anyhow::Result<Option<Decoder>> {
        let client = db.client().await?;
        let level: String = client.query_one("SHOW wal_level", &[]).await?.try_get(0)?;
        if level != "logical" {
            return Ok(None);
        }
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let (slot, publication) = (format!("b13_{suffix}"), format!("b13_{table}"));
        client
            .batch_execute(&format!(
                "CREATE PUBLICATION {publication} FOR TABLE {table}"
            ))
            .await?;
        client
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput', true)",
                &[&slot],
            )
            .await?;
        Ok(Some(Decoder {
            client,
            slot,
            publication,
        }))
    }

    /// Consumes what the slot holds: the time it took and the messages.
    async fn consume(&self) -> anyhow::Result<(Duration, u64)> {
        let started = Instant::now();
        let n: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, \
                 'proto_version', '1', 'publication_names', $2)",
                &[&self.slot, &self.publication],
            )
            .await?
            .try_get(0)?;
        Ok((started.elapsed(), u64::try_from(n)?))
    }
}
