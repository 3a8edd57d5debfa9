//! `outpost demo`: the whole thing in one command.
//!
//! Without `DATABASE_URL` it starts a throwaway PostgreSQL from the installed
//! binaries ([`outpost_remote::cluster`]) on a free port in a new temporary
//! directory, creates the database `outpost_demo` with a small sample schema
//! (`User`, and `Post` whose `userId` references it) and a few rows, installs
//! the tracking schema, sets up a replica in the same directory, and serves
//! the node and its HTTP API exactly as `outpost serve` does, printing the
//! Database Sync Manager page's URL on stdout. SIGINT/SIGTERM stop the node,
//! then the server, then delete the directory (cluster and replica).
//!
//! With `DATABASE_URL` it uses that database and the configured replica
//! (`LOCAL_DATABASE_URL`). The sample tables are created and seeded only if
//! the synced schema has neither a `User` nor a `Post` table; existing
//! tables are never altered or written to. The tracking schema is installed
//! (as `outpost server install` does) and stays after the demo: remove it
//! with `outpost server uninstall`.
//!
//! Signals are caught from the very start, so a Ctrl-C during `initdb` still
//! ends in a clean stop. Only SIGKILL leaves the cluster behind (its
//! directory is printed at start).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use outpost_core::config::{Config, DatabaseUrl};
use outpost_remote::cluster::{Cluster, ClusterOptions};
use tokio::sync::watch;

use crate::commands;

/// The sample schema: Prisma's naming (`"User"`, `"userId"`), a relation
/// `Post.userId → User.id` (giving `Post.user` and `User.posts`).
const SAMPLE_SCHEMA: &str = r#"
CREATE TABLE "User" (
  id text PRIMARY KEY DEFAULT gen_random_uuid()::text,
  email text NOT NULL UNIQUE,
  name text,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE "Post" (
  id text PRIMARY KEY DEFAULT gen_random_uuid()::text,
  title text NOT NULL,
  content text,
  published boolean NOT NULL DEFAULT false,
  "userId" text NOT NULL REFERENCES "User"(id),
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX "Post_userId_idx" ON "Post" ("userId");
INSERT INTO "User" (id, email, name) VALUES
  ('u1', 'ada@example.com', 'Ada'),
  ('u2', 'grace@example.com', 'Grace'),
  ('u3', 'linus@example.com', NULL);
INSERT INTO "Post" (id, title, content, published, "userId") VALUES
  ('p1', 'Hello from the server', 'Written in PostgreSQL before the replica existed.', true, 'u1'),
  ('p2', 'Offline first', 'Edit me in local mode, then sync.', true, 'u1'),
  ('p3', 'Draft', NULL, false, 'u2'),
  ('p4', 'Conflicts', 'Change the same field on both sides to see one.', true, 'u3');
"#;

/// Runs the demo until SIGINT/SIGTERM (module doc).
pub async fn demo(mut config: Config, host: IpAddr, port: Option<u16>) -> anyhow::Result<()> {
    // Catch signals before anything starts, so every exit path cleans up.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        commands::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = {
        let rx = stop_rx.clone();
        move || *rx.borrow()
    };

    let mut cluster = None;
    if config.database_url.is_none() {
        // No binaries: say which package before creating anything.
        outpost_remote::cluster::bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("outpost-demo-")
            .tempdir()
            .context("creating a temporary directory")?
            .keep();
        eprintln!(
            "demo: no DATABASE_URL; starting a throwaway PostgreSQL in {}",
            dir.display()
        );
        let options = ClusterOptions {
            remove_on_stop: true,
            ..ClusterOptions::new(&dir)
        };
        let started = tokio::task::spawn_blocking(move || Cluster::start(options)).await?;
        let c = match started {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
        };
        eprintln!(
            "demo: PostgreSQL {} on 127.0.0.1:{} (pid {})",
            c.version().unwrap_or_default(),
            c.port(),
            c.pid().map(|p| p.to_string()).unwrap_or_default()
        );
        let admin = DatabaseUrl::parse(&c.url("postgres")).map_err(anyhow::Error::msg)?;
        let client = outpost_remote::connect(&admin, outpost_remote::CONNECT_TIMEOUT).await?;
        client
            .batch_execute("CREATE DATABASE outpost_demo")
            .await
            .context("creating the database outpost_demo")?;
        config.database_url =
            Some(DatabaseUrl::parse(&c.url("outpost_demo")).map_err(anyhow::Error::msg)?);
        config.local_database_path = PathBuf::from(c.dir()).join("local.db");
        cluster = Some(c);
    }
    let outcome = run(&config, host, port, stop_rx, &stopped).await;
    if let Some(mut c) = cluster {
        let dir = c.dir().to_path_buf();
        let stop = tokio::task::spawn_blocking(move || c.stop()).await?;
        match stop {
            Ok(()) => eprintln!("demo: PostgreSQL stopped; {} removed", dir.display()),
            Err(e) => eprintln!("demo: stopping PostgreSQL: {e}"),
        }
    }
    outcome
}

async fn run(
    config: &Config,
    host: IpAddr,
    port: Option<u16>,
    stop_rx: watch::Receiver<bool>,
    stopped: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    let url = config.require_database_url("the demo needs a server")?;
    let mut client = outpost_remote::connect(url, outpost_remote::CONNECT_TIMEOUT).await?;
    let schema_name = &config.tables.pg_schema;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname IN ('User', 'Post') AND c.relkind IN ('r', 'p')",
            &[schema_name],
        )
        .await
        .context("looking for the sample tables")?;
    let existing: i64 = row.get(0);
    if existing == 0 {
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SET LOCAL search_path TO {}",
            outpost_core::ident::quote(schema_name)
        ))
        .await?;
        tx.batch_execute(SAMPLE_SCHEMA)
            .await
            .context("creating the sample tables User and Post")?;
        tx.commit().await?;
        eprintln!("demo: created and seeded the sample tables User and Post");
    } else {
        eprintln!("demo: {schema_name} already has User/Post; using the tables as they are");
    }
    if stopped() {
        return Ok(());
    }
    let t = &config.tables;
    let schema =
        outpost_remote::introspect(&client, &t.pg_schema, t.include.as_deref(), &t.exclude).await?;
    outpost_core::sqlite::check_schema(&schema).map_err(anyhow::Error::msg)?;
    let report = outpost_remote::install(&mut client, &schema).await?;
    eprintln!("demo: server tracking: {report}");
    drop(client);
    let path = config.local_database_path.clone();
    tokio::task::spawn_blocking(move || outpost_local::Replica::setup(&path, &schema)).await??;
    eprintln!("demo: replica {}", config.local_database_path.display());
    if stopped() {
        return Ok(());
    }
    let mut stop = stop_rx;
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let server = url.redacted();
    let masked = server != url.expose();
    commands::serve_with(config, host, port, shutdown, move |addr| {
        let mut lines = vec![
            format!("Database Sync Manager: http://{addr}/admin/database-sync"),
            format!("API: http://{addr}/api/database/status"),
            format!("Server database (DATABASE_URL): {server}"),
            // A server-side edit to try, as the quick start invites.
            format!(
                "Try a server-side edit: psql '{}' -c \"UPDATE \\\"Post\\\" SET title = 'Edited on the server' WHERE id = 'p1'\"",
                server.replace('\'', "'\\''")
            ),
        ];
        if masked {
            lines.push("(the password is shown as ***: use your own)".into());
        }
        lines.push("Press Ctrl-C to stop.".into());
        crate::write_stdout(&lines.join("\n"));
    })
    .await
}
