//! Scenarios of the node runtime: B5 change latency, B6 capture overhead,
//! B8 `find_many` with `include` on both databases.

use std::time::{Duration, Instant};

use outpost_core::sync::Direction;
use outpost_engine::{Mode, NodeOptions, Outpost};
use outpost_testkit::TestDb;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{Args, Sample, summarize};

const BLOG: &str = r#"
CREATE TABLE "User" (id text PRIMARY KEY, email text NOT NULL, name text);
CREATE TABLE "Post" (id text PRIMARY KEY, title text NOT NULL, views int NOT NULL, "userId" text NOT NULL REFERENCES "User"(id));
"#;

fn node_config(db: &TestDb, name: &str) -> anyhow::Result<outpost_core::config::Config> {
    let url = db.database_url();
    let local = format!("file:{}", db.dir().join(name).display());
    Ok(outpost_core::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "LOCAL_DATABASE_URL" => Some(local.clone()),
        "LOCAL_DATABASE_SYNC_INTERVAL" => Some("0".into()),
        "OUTPOST_TABLES" => Some("User,Post".into()),
        _ => None,
    })?)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sets up the blog tables with `users` users and `posts` posts.
pub async fn blog(db: &TestDb, users: u64, posts: u64) -> anyhow::Result<()> {
    let client = db.client().await?;
    client.batch_execute(BLOG).await?;
    client
        .execute(
            r#"INSERT INTO "User" SELECT 'u' || i, 'u' || i || '@x', 'name ' || i FROM generate_series(1, $1::int8) i"#,
            &[&(users as i64)],
        )
        .await?;
    client
        .execute(
            r#"INSERT INTO "Post" SELECT 'p' || i, 'title ' || i, i % 1000, 'u' || (1 + i % $1::int8) FROM generate_series(1, $2::int8) i"#,
            &[&(users as i64), &(posts as i64)],
        )
        .await?;
    Ok(())
}

/// B5: server commit → visible in an online node's replica.
pub async fn latency(db: &TestDb, commits: usize) -> anyhow::Result<()> {
    let node = Outpost::open_with(
        node_config(db, "b5.db")?,
        NodeOptions {
            check_interval: Duration::from_secs(5),
            ..NodeOptions::default()
        },
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(node.status().await.is_online
        && node
            .status()
            .await
            .last_sync
            .as_ref()
            .is_some_and(|l| l.status == "SUCCESS"))
    {
        anyhow::ensure!(Instant::now() < deadline, "the node did not come online");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reader = rusqlite::Connection::open(db.dir().join("b5.db"))?;
    let client = db.client().await?;
    let mut lat = Vec::with_capacity(commits);
    for i in 0..commits {
        let id = format!("lat{i}");
        let started = Instant::now();
        client
            .execute(
                r#"INSERT INTO "User" (id, email) VALUES ($1, 'l@x')"#,
                &[&id],
            )
            .await?;
        // Polled with a thread sleep: tokio's timer has millisecond
        // resolution, and an async 200 µs sleep would add up to a
        // millisecond to every sample. `block_in_place` hands this worker's
        // other tasks (the node's) to the other workers meanwhile.
        tokio::task::block_in_place(|| -> anyhow::Result<()> {
            loop {
                let seen: bool = reader.query_row(
                    r#"SELECT EXISTS (SELECT 1 FROM "User" WHERE id = ?1)"#,
                    [&id],
                    |r| r.get(0),
                )?;
                if seen {
                    return Ok(());
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(10),
                    "commit {i} never arrived"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        })?;
        lat.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    node.shutdown().await;
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "B5 latency     {commits:>9} commits | p50 {:.2} ms | p99 {:.2} ms | max {:.2} ms | target p50 <= 10 ms, p99 <= 50 ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    Ok(())
}

/// B6: local inserts through the capture triggers against the same inserts
/// into an untracked table of the same shape, in the same file.
pub async fn capture_overhead(db: &TestDb, args: &Args) -> anyhow::Result<()> {
    let node = Outpost::open_with(
        node_config(db, "b6.db")?,
        NodeOptions {
            monitor: false,
            ..NodeOptions::default()
        },
    )
    .await?;
    node.sync(Direction::Bidirectional).await?;
    node.shutdown().await;
    drop(node);
    let conn = rusqlite::Connection::open(db.dir().join("b6.db"))?;
    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    // The baseline table is the replica's `Post` as outpost created it (same
    // columns, key and indexes) without the capture triggers.
    let ddl: Vec<String> = conn
        .prepare(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'Post' AND type IN ('table', 'index') \
             AND sql IS NOT NULL ORDER BY type DESC",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        ddl.len() >= 2,
        "the replica's Post table has no index: {ddl:?}"
    );
    for sql in ddl {
        conn.execute_batch(
            &sql.replace("\"Post\"", "plain_post")
                .replace("_outpost_ix_Post", "plain_ix"),
        )?;
    }
    let rows = args.capture_rows;
    for (label, batch) in [("one per transaction", 1u64), ("batches of 1,000", 1000u64)] {
        let mut samples = Vec::new();
        for run in 0..args.runs {
            let timed = |table: &str| -> anyhow::Result<Duration> {
                let started = Instant::now();
                let sql = format!(
                    r#"INSERT INTO {table} (id, title, views, "userId") VALUES (?1, 'capture', 1, 'u1')"#
                );
                let mut i = 0;
                while i < rows {
                    let tx = conn.unchecked_transaction()?;
                    {
                        let mut stmt = tx.prepare_cached(&sql)?;
                        for j in i..(i + batch).min(rows) {
                            stmt.execute([format!("c{run}_{batch}_{j}")])?;
                        }
                    }
                    tx.commit()?;
                    i += batch;
                }
                Ok(started.elapsed())
            };
            let baseline = timed("plain_post")?;
            let outpost = timed(r#""Post""#)?;
            samples.push(Sample { outpost, baseline });
        }
        let target = if batch == 1 {
            "time ratio <= 1.3"
        } else {
            "time ratio <= 2.0"
        };
        summarize(&format!("B6 capture {label}"), rows, &samples, target);
    }
    Ok(())
}

/// B8's typed result: every column of the post and of its user.
#[derive(Deserialize)]
struct BenchUser {
    id: String,
    email: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct BenchPost {
    id: String,
    title: String,
    views: i64,
    #[serde(rename = "userId")]
    user_id: String,
    user: BenchUser,
}

/// B8: `find_many` with `include` over all posts, local and remote, into
/// a struct (`find_many::<BenchPost>`) and as JSON (`find_many::<Json>`),
/// against hand-written SQL doing the same on each database (every value
/// decoded into tuples), all three in each run on the same data.
pub async fn find_many_include(db: &TestDb, args: &Args) -> anyhow::Result<()> {
    let node = Outpost::open_with(
        node_config(db, "b8.db")?,
        NodeOptions {
            monitor: false,
            ..NodeOptions::default()
        },
    )
    .await?;
    node.sync(Direction::Bidirectional).await?;
    let posts = node.model("Post")?;
    let query = json!({"include": {"user": true}, "orderBy": {"id": "asc"}});
    let client = db.client().await?;
    let sqlite = rusqlite::Connection::open(db.dir().join("b8.db"))?;
    for mode in [Mode::Local, Mode::Remote] {
        node.set_mode(mode).await;
        let (mut typed_samples, mut json_samples) = (Vec::new(), Vec::new());
        let mut n = 0;
        for _ in 0..args.runs {
            let started = Instant::now();
            let found: Vec<Json> = posts.find_many(query.clone()).await?;
            let json_time = started.elapsed();
            n = found.len() as u64;
            anyhow::ensure!(
                found.first().is_some_and(|p| p["user"].is_object()),
                "include missing"
            );
            drop(found);
            let started = Instant::now();
            let found: Vec<BenchPost> = posts.find_many(query.clone()).await?;
            let typed_time = started.elapsed();
            anyhow::ensure!(
                found.len() as u64 == n
                    && found.iter().all(|p| p.user.id == p.user_id
                        && !p.id.is_empty()
                        && !p.title.is_empty()
                        && p.views >= 0
                        && !p.user.email.is_empty()
                        && p.user.name.is_some()),
                "the typed read differs"
            );
            drop(found);
            let started = Instant::now();
            let hand = match mode {
                Mode::Remote => {
                    let posts = client
                        .query(r#"SELECT id, title, views, "userId" FROM "Post" ORDER BY id COLLATE "C""#, &[])
                        .await?;
                    // Every value decoded, as outpost returns every value.
                    let posts: Vec<(String, String, i32, String)> = posts
                        .iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                        .collect::<Result<_, outpost_remote::tokio_postgres::Error>>()?;
                    let mut ids: Vec<&str> = posts.iter().map(|p| p.3.as_str()).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    let users: Vec<(String, String, Option<String>)> = client
                        .query(
                            r#"SELECT id, email, name FROM "User" WHERE id = ANY($1)"#,
                            &[&ids],
                        )
                        .await?
                        .iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                        .collect::<Result<_, outpost_remote::tokio_postgres::Error>>()?;
                    posts.len() + users.len()
                }
                _ => {
                    let mut stmt = sqlite.prepare_cached(
                        r#"SELECT id, title, views, "userId" FROM "Post" ORDER BY id"#,
                    )?;
                    let posts: Vec<(String, String, i64, String)> = stmt
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect::<Result<_, _>>()?;
                    let mut ids: Vec<&str> = posts.iter().map(|p| p.3.as_str()).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    let list = ids.iter().map(|_| "?").collect::<Vec<_>>().join(",");
                    let mut ustmt = sqlite.prepare(&format!(
                        r#"SELECT id, email, name FROM "User" WHERE id IN ({list})"#
                    ))?;
                    let users: Vec<(String, String, Option<String>)> = ustmt
                        .query_map(rusqlite::params_from_iter(ids.iter()), |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })?
                        .collect::<Result<_, _>>()?;
                    posts.len() + users.len()
                }
            };
            let baseline = started.elapsed();
            anyhow::ensure!(hand > 0, "the hand-written query found nothing");
            typed_samples.push(Sample {
                outpost: typed_time,
                baseline,
            });
            json_samples.push(Sample {
                outpost: json_time,
                baseline,
            });
        }
        let place = if mode == Mode::Local {
            "local"
        } else {
            "remote"
        };
        summarize(
            &format!("B8 {place} typed"),
            n,
            &typed_samples,
            "time ratio <= 1.3",
        );
        summarize(
            &format!("B8 {place} json"),
            n,
            &json_samples,
            "time ratio, for comparison",
        );
    }
    node.shutdown().await;
    Ok(())
}

/// B11: edits another program commits to node A's replica file, one
/// transaction each, until every one is in node B's replica. Both nodes
/// are the runtime `outpost serve` runs (in this process, online, the
/// interval off): A's local-write watch pushes, B's notification pulls.
/// The writer is a connection of its own on A's file, as the application's
/// `sqlite3` or ORM would be (SQLite tells a watch about another
/// connection's commits the same way whether it is in this process or
/// another). Per edit: from its commit to the moment B's replica shows it.
pub async fn round_trip(args: &Args) -> anyhow::Result<()> {
    let edits = args.b11_edits;
    let db = TestDb::new().await?;
    blog(&db, edits as u64, 0).await?;
    let open = |name: &'static str| {
        let config = node_config(&db, name);
        async move {
            let node = Outpost::open_with(config?, NodeOptions::default()).await?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let s = node.status().await;
                if s.is_online && s.last_sync.as_ref().is_some_and(|l| l.status == "SUCCESS") {
                    return anyhow::Ok(node);
                }
                anyhow::ensure!(Instant::now() < deadline, "node {name} did not come online");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let a = open("b11a.db").await?;
    let b = open("b11b.db").await?;
    let (a_file, b_file) = (db.dir().join("b11a.db"), db.dir().join("b11b.db"));
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut alls = Vec::new();
    let mut writes = Vec::new();
    for run in 0..args.runs {
        let prefix = format!("b11-{run}-");
        let (wf, rf, wp, rp) = (
            a_file.clone(),
            b_file.clone(),
            prefix.clone(),
            prefix.clone(),
        );
        let write_started = Instant::now();
        let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Instant>> {
            let conn = rusqlite::Connection::open(&wf)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            let mut stmt = conn.prepare(r#"UPDATE "User" SET name = ?1 WHERE id = ?2"#)?;
            let mut committed = Vec::with_capacity(edits);
            for i in 0..edits {
                stmt.execute(rusqlite::params![format!("{wp}{i}"), format!("u{}", i + 1)])?;
                committed.push(Instant::now());
            }
            Ok(committed)
        });
        let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Instant>> {
            let conn = rusqlite::Connection::open(&rf)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            let mut seen: Vec<Option<Instant>> = vec![None; edits];
            let mut left = edits;
            let mut version: i64 = -1;
            let started = Instant::now();
            let pattern = format!("{rp}%");
            while left > 0 {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(120),
                    "{left} of {edits} edits never reached node B"
                );
                // Read only when B's replica changed.
                let v: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
                if v == version {
                    std::thread::sleep(Duration::from_micros(500));
                    continue;
                }
                version = v;
                let now = Instant::now();
                let mut stmt =
                    conn.prepare_cached(r#"SELECT name FROM "User" WHERE name LIKE ?1"#)?;
                let mut rows = stmt.query([&pattern])?;
                while let Some(r) = rows.next()? {
                    let name: String = r.get(0)?;
                    let i: usize = name[rp.len()..].parse()?;
                    if let Some(slot) = seen.get_mut(i)
                        && slot.is_none()
                    {
                        *slot = Some(now);
                        left -= 1;
                    }
                }
            }
            Ok(seen.into_iter().flatten().collect())
        });
        let (committed, seen) = (writer.await??, reader.await??);
        let first = committed.first().copied().unwrap_or_else(Instant::now);
        let last_seen = seen.iter().max().copied().unwrap_or(first);
        let mut lat: Vec<f64> = committed
            .iter()
            .zip(&seen)
            .map(|(c, s)| s.saturating_duration_since(*c).as_secs_f64() * 1000.0)
            .collect();
        lat.sort_by(|x, y| x.total_cmp(y));
        p50s.push(percentile(&lat, 0.5));
        p99s.push(percentile(&lat, 0.99));
        alls.push(last_seen.duration_since(first).as_secs_f64());
        writes.push(
            committed
                .last()
                .map_or(0.0, |l| l.duration_since(write_started).as_secs_f64()),
        );
    }
    a.shutdown().await;
    b.shutdown().await;
    let spread = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(|x, y| x.total_cmp(y));
        (s[s.len() / 2], s[0], s[s.len() - 1])
    };
    let ((p50, p50l, p50h), (p99, _, _), (all, alll, allh), (w, _, _)) =
        (spread(&p50s), spread(&p99s), spread(&alls), spread(&writes));
    println!(
        "B11 round trip {edits:>9} edits | p50 {p50:.0} ms ({p50l:.0}–{p50h:.0}) | p99 {p99:.0} ms | all on B after {all:.2} s ({alll:.2}–{allh:.2}), the writer's commits took {w:.2} s | target p50 <= 500 ms"
    );
    Ok(())
}
