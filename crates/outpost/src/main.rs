//! The `outpost` command line.
//!
//! ```text
//! outpost setup                  create or update the local replica (the seed's `npm run local:setup`)
//! outpost server install         install or upgrade the tracking schema on PostgreSQL
//! outpost server uninstall       remove it (user tables and data untouched)
//! outpost server status          what is installed
//! outpost config                 the effective configuration, passwords hidden
//! outpost sync [--direction D] [--model M]...   push and/or pull (the seed's POST /api/database/status)
//! outpost status                 pending changes, conflicts, failed rows, last sync, the server
//! outpost conflicts list|show|resolve
//! outpost log [--model M]        the SyncLog
//! outpost verify [--model M]...  compare the replica with the server, row differences with both values
//! outpost resync --model M       copy one model again from the server, keeping its local changes
//! outpost serve [--host H] [--port P]   the node and its HTTP API
//! outpost demo [--port P]        a throwaway PostgreSQL with sample data, a replica, the page
//! outpost generate typescript [--out F]   TypeScript model types for outpost-client
//! ```
//!
//! Exit status: 0 on success, 1 when the work failed, 2 when the command line
//! or the configuration is invalid. Errors go to stderr.

mod commands;
mod demo;
mod gateway;
mod generate;
mod settings;

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use outpost_core::config::{Config, ConfigError};
use outpost_core::schema::Schema;
use outpost_local::Replica;
use outpost_remote::connections::AdminConnection;
use serde_json::json;
use settings::ConfigFlags;

#[derive(Debug, Parser)]
#[command(
    name = "outpost",
    version,
    about = "A local SQLite replica of a PostgreSQL database that keeps working offline and syncs both ways."
)]
struct Cli {
    #[command(flatten)]
    config: ConfigFlags,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or update the local replica from the server's schema: the
    /// SQLite file, its tables, metadata and capture triggers. Installs the
    /// server's tracking schema too, unless told not to. Idempotent.
    Setup {
        /// Do not install or upgrade the tracking schema on the server.
        #[arg(long)]
        skip_server_install: bool,
    },
    /// Manage the tracking schema (`outpost`) on the PostgreSQL server.
    Server {
        #[command(subcommand)]
        action: ServerAction,
    },
    /// Show the effective configuration (passwords hidden).
    Config,
    /// Synchronize the replica with the server. Prints the seed's response
    /// shape with --json; exits 1 when the sync failed.
    Sync {
        /// BIDIRECTIONAL (push then pull), TO_SERVER (push) or FROM_SERVER (pull).
        #[arg(long, default_value = "BIDIRECTIONAL", value_parser = parse_direction)]
        direction: outpost_core::sync::Direction,
        /// Only this model (repeat for several).
        #[arg(long = "model", value_name = "MODEL")]
        models: Vec<String>,
        /// Conflict policy for a model, `Model=policy` (manual, server-wins,
        /// client-wins, last-write-wins); repeatable.
        #[arg(long = "policy", value_name = "MODEL=POLICY", value_parser = parse_policy)]
        policies: Vec<(String, outpost_engine::Policy)>,
    },
    /// The node's sync state: pending changes, conflicts, failed rows, the
    /// last sync, and whether the server is reachable.
    Status,
    /// List, show and resolve conflicts.
    Conflicts {
        #[command(subcommand)]
        action: commands::ConflictAction,
    },
    /// Run the node: the monitor and sync loop, and the HTTP API on
    /// `--host`:`--port`. Binding beyond loopback requires OUTPOST_ADMIN_TOKEN
    /// (sent as `Authorization: Bearer <token>`). Stops on SIGINT/SIGTERM
    /// after the running sync finishes.
    Serve {
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Port to bind.
        #[arg(long, default_value_t = 3000)]
        port: u16,
    },
    /// Serve the sync protocol over HTTP next to PostgreSQL (DATABASE_URL)
    /// to nodes that hold only a token (verified with OUTPOST_GATEWAY_SECRET,
    /// OUTPOST_GATEWAY_SECRET_FILE, OUTPOST_GATEWAY_PUBLIC_KEY or
    /// OUTPOST_GATEWAY_JWKS); `gateway token
    /// create` makes one. See docs/gateway.md.
    #[command(args_conflicts_with_subcommands = true)]
    Gateway {
        #[command(subcommand)]
        action: Option<gateway::GatewayAction>,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Port to bind.
        #[arg(long, default_value_t = 4100)]
        port: u16,
        /// The sync rules (TOML): per-table row filters by token claims;
        /// tables without a rule are not served (OUTPOST_GATEWAY_RULES).
        #[arg(long, value_name = "FILE")]
        rules: Option<std::path::PathBuf>,
        /// Public keys (PEM: RS256, EdDSA, ES256 or ES384) tokens are verified with,
        /// comma-separated (OUTPOST_GATEWAY_PUBLIC_KEY).
        #[arg(long, value_name = "FILES")]
        public_key: Option<String>,
        /// A JWKS whose keys verify tokens by `kid`: a file, or an
        /// `https://` URL such as an auth provider's
        /// `/.well-known/jwks.json`; read again every
        /// OUTPOST_GATEWAY_JWKS_REFRESH ms (5 minutes) and on a token's
        /// unknown `kid` (OUTPOST_GATEWAY_JWKS).
        #[arg(long, value_name = "FILE|URL")]
        jwks: Option<String>,
        /// Serve TLS with this certificate chain (PEM); with --tls-key
        /// (OUTPOST_GATEWAY_TLS_CERT). Without both, plain HTTP for a
        /// terminating proxy.
        #[arg(long, value_name = "FILE")]
        tls_cert: Option<std::path::PathBuf>,
        /// The certificate's private key (PEM) (OUTPOST_GATEWAY_TLS_KEY).
        #[arg(long, value_name = "FILE")]
        tls_key: Option<std::path::PathBuf>,
    },
    /// Try outpost in one command: without DATABASE_URL, starts a throwaway
    /// PostgreSQL (from the installed binaries) with a sample schema (User,
    /// Post) and rows, sets up a replica, serves the node and the Database
    /// Sync Manager page and prints its URL. Ctrl-C stops everything and
    /// removes the throwaway cluster. With DATABASE_URL, uses that database
    /// and creates the sample tables only if it has neither User nor Post.
    Demo {
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Port to bind (default 3000, or a free port if 3000 is taken; 0 for any).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Write code from the node's schema (the replica's, so it works
    /// offline; run `outpost setup` first).
    Generate {
        #[command(subcommand)]
        target: GenerateTarget,
    },
    /// Compare the replica with the server table by table (digests over
    /// key buckets, then the differing rows with both values). Rows with
    /// local changes not yet pushed are listed apart. Exits 1 when a row
    /// differs.
    Verify {
        /// Only this model (repeat for several).
        #[arg(long = "model", value_name = "MODEL")]
        models: Vec<String>,
    },
    /// Copy one model again from the server (a re-bootstrap of that table
    /// alone), keeping its rows with local changes; then pull.
    Resync {
        /// The model.
        #[arg(long)]
        model: String,
    },
    /// The sync log (newest first).
    Log {
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// How many entries.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

/// `Model=policy`, checked by clap so a bad one stops before anything runs.
fn parse_policy(s: &str) -> Result<(String, outpost_engine::Policy), String> {
    let (model, policy) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected MODEL=POLICY"))?;
    let policy = policy.parse().map_err(|e| format!("{s:?}: {e}"))?;
    Ok((model.to_string(), policy))
}

fn parse_direction(s: &str) -> Result<outpost_core::sync::Direction, String> {
    s.parse()
}

/// `outpost generate …`
#[derive(Debug, Subcommand)]
enum GenerateTarget {
    /// TypeScript types of every model in the style of Prisma's client
    /// (`Post`, `PostWhereInput`, `PostInclude`, `PostCreateInput`, …),
    /// registered with the `outpost-client` package so its model services
    /// and hooks are typed.
    Typescript {
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ServerAction {
    /// Install the tracking schema and triggers, or upgrade an older one. Idempotent.
    #[command(alias = "upgrade")]
    Install,
    /// Remove the tracking schema and every trigger it put on user tables.
    /// User tables and their data are not touched. Idempotent.
    Uninstall,
    /// Show the installed tracking version, if any.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // `OUTPOST_LOG_FORMAT=json`: one JSON object a line (timestamp, level,
    // target, fields, the spans with theirs) for a log shipper; text
    // otherwise. Read before `.env`, as `RUST_LOG` is.
    match std::env::var("OUTPOST_LOG_FORMAT").as_deref() {
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        Ok("text") | Ok("") | Err(_) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        Ok(other) => {
            eprintln!("error: OUTPOST_LOG_FORMAT={other:?}: expected `json` or `text`");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<ConfigError>().is_some()
                || e.downcast_ref::<settings::EnvFileError>().is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Gateway {
        action,
        host,
        port,
        rules,
        public_key,
        jwks,
        tls_cert,
        tls_key,
    } = cli.command
    {
        let lookup = settings::lookup(&cli.config)?;
        // The flag over the variable, as every flag.
        let rules = rules.map(|p| p.display().to_string());

        let tls_cert = tls_cert.map(|p| p.display().to_string());
        let tls_key = tls_key.map(|p| p.display().to_string());
        let lookup = move |k: &str| match k {
            "OUTPOST_GATEWAY_RULES" if rules.is_some() => rules.clone(),
            "OUTPOST_GATEWAY_PUBLIC_KEY" if public_key.is_some() => public_key.clone(),
            "OUTPOST_GATEWAY_JWKS" if jwks.is_some() => jwks.clone(),
            "OUTPOST_GATEWAY_TLS_CERT" if tls_cert.is_some() => tls_cert.clone(),
            "OUTPOST_GATEWAY_TLS_KEY" if tls_key.is_some() => tls_key.clone(),
            _ => lookup(k),
        };
        return gateway::run(lookup, action, host, port).await;
    }
    let config = settings::load(&cli.config)?;
    match cli.command {
        Command::Setup {
            skip_server_install,
        } => setup(&config, skip_server_install, cli.json).await,
        Command::Server { action } => server(&config, action, cli.json).await,
        Command::Config => {
            show_config(&config, cli.json);
            Ok(())
        }
        Command::Sync {
            direction,
            models,
            policies,
        } => commands::sync(&config, direction, models, &policies, cli.json).await,
        Command::Status => commands::status(&config, cli.json).await,
        Command::Conflicts { action } => commands::conflicts(&config, action, cli.json).await,
        Command::Verify { models } => commands::verify(&config, models, cli.json).await,
        Command::Resync { model } => commands::resync(&config, &model, cli.json).await,
        Command::Log { model, limit } => commands::log(&config, model, limit, cli.json).await,
        Command::Serve { host, port } => commands::serve(&config, host, port).await,
        Command::Demo { host, port } => demo::demo(config, host, port).await,
        Command::Gateway { .. } => Ok(()),
        Command::Generate {
            target: GenerateTarget::Typescript { out },
        } => generate_typescript(&config, out.as_deref()),
    }
}

fn generate_typescript(
    config: &outpost_core::config::Config,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let path = &config.local_database_path;
    let replica = Replica::open(path).with_context(|| {
        format!(
            "reading the schema from the replica {} (run `outpost setup` first)",
            path.display()
        )
    })?;
    // Under the application's Prisma names when it has a Prisma schema.
    let schema =
        outpost_engine::prisma_api_schema(config, replica.schema()).map_err(anyhow::Error::msg)?;
    let text = generate::typescript(&schema);
    match out {
        Some(file) => {
            std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?
        }
        // Not `print!`: it panics when the reader went away.
        None => write_stdout(text.trim_end_matches('\n')),
    }
    Ok(())
}

pub(crate) fn print(json_mode: bool, value: serde_json::Value, text: impl FnOnce() -> String) {
    let out = if json_mode { value.to_string() } else { text() };
    write_stdout(&out);
}

/// Writes a line to stdout. A reader that went away (`outpost status |
/// head -3`) is not an error of ours: the rest is dropped quietly, as
/// other command-line tools do, instead of `println!`'s panic.
pub(crate) fn write_stdout(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: writing to stdout: {e}");
    }
}

/// Where `setup` reads the schema from.
enum Topology {
    /// The server itself (and it installs tracking there).
    Direct(AdminConnection),
    /// A gateway, which served this schema and installed tracking.
    Gateway(Schema),
}

/// Connects to the server with a bounded wait.
async fn connect(config: &Config) -> anyhow::Result<AdminConnection> {
    let url = config.require_database_url("the command needs the PostgreSQL server")?;
    Ok(AdminConnection::connect(url, outpost_remote::CONNECT_TIMEOUT).await?)
}

async fn introspect(client: &AdminConnection, config: &Config) -> anyhow::Result<Schema> {
    let schema = client.introspect(&config.tables).await?;
    outpost_core::sqlite::check_schema(&schema).map_err(anyhow::Error::msg)?;
    Ok(schema)
}

async fn setup(config: &Config, skip_server_install: bool, json_mode: bool) -> anyhow::Result<()> {
    if !config.enable_local_database {
        bail!("ENABLE_LOCAL_DATABASE is false: there is no local replica to set up");
    }
    let path = &config.local_database_path;
    // Through a gateway: the schema it serves (it installed tracking
    // itself); `--skip-server-install` changes nothing there.
    let from_gateway = match &config.gateway {
        Some(target) => Some(
            async {
                let gw = outpost_remote::gateway::GatewayConnection::new(
                    target,
                    outpost_remote::CONNECT_TIMEOUT,
                )?;
                let schema = gw.schema().await?;
                outpost_core::sqlite::check_schema(&schema).map_err(anyhow::Error::msg)?;
                anyhow::Ok(schema)
            }
            .await,
        ),
        None => None,
    };
    let connected = match from_gateway {
        Some(Ok(schema)) => Ok(Topology::Gateway(schema)),
        Some(Err(e)) => Err(e),
        None => connect(config).await.map(Topology::Direct),
    };
    let mut client = match connected {
        Ok(c) => c,
        Err(e) => {
            // Offline: a replica that was set up before still opens.
            // Only an unreachable server falls back to the stored snapshot;
            // any other failure (a wrong password, a bad database name) is
            // the error itself.
            let unreachable = e
                .downcast_ref::<outpost_remote::RemoteError>()
                .is_some_and(|r| {
                    matches!(r, outpost_remote::RemoteError::Unreachable { .. })
                        || matches!(r, outpost_remote::RemoteError::Gateway { .. } if r.is_transient())
                });
            if !unreachable {
                return Err(e);
            }
            let Ok(replica) = Replica::open(path) else {
                return Err(e.context(format!(
                    "setting up {}: a first setup reads the schema from the server",
                    path.display()
                )));
            };
            let hash = replica.schema_hash()?.unwrap_or_default();
            print(
                json_mode,
                json!({"offline": true, "error": format!("{e:#}"), "path": path, "nodeId": replica.node_id(),
                       "tables": replica.schema().tables.len(), "schemaHash": hash}),
                || {
                    format!(
                        "server unreachable ({e:#});\nreplica {} opened from its schema snapshot: node {}, {} tables, schema {}",
                        path.display(),
                        replica.node_id(),
                        replica.schema().tables.len(),
                        &hash[..hash.len().min(12)]
                    )
                },
            );
            return Ok(());
        }
    };
    let schema = match &client {
        Topology::Direct(c) => introspect(c, config).await?,
        Topology::Gateway(s) => s.clone(),
    };
    // The application's Prisma schema must fit the synced tables before
    // anything is installed; what does not stop the node is reported.
    let prisma =
        outpost_engine::check_prisma_schema(config, &schema).map_err(anyhow::Error::msg)?;
    let server = match &mut client {
        Topology::Direct(c) if !skip_server_install => Some(c.install(&schema).await?),
        _ => None,
    };
    let (replica, report) = Replica::setup(path, &schema)?;
    let tables: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    print(
        json_mode,
        json!({
            "offline": false,
            "path": path,
            "nodeId": replica.node_id(),
            "tables": tables,
            "created": report.created,
            "rebuilt": report.rebuilt,
            "dropped": report.dropped,
            "keptEdits": report.kept_edits,
            "lostValues": report.lost_values,
            "savedEdits": report.saved_edits,
            "unchanged": report.unchanged(),
            "schemaHash": report.schema_hash,
            "serverTracking": server.as_ref().map(|s| s.to_string()),
            "prismaSchema": prisma.as_ref().map(|(p, notes)| json!({"path": p, "notes": notes})),
        }),
        || {
            let mut out = format!(
                "replica {} (node {}): {} tables synced: {}\n",
                path.display(),
                replica.node_id(),
                tables.len(),
                tables.join(", ")
            );
            if report.unchanged() {
                out.push_str("already up to date; nothing changed\n");
            }
            for (what, list) in [
                ("created", &report.created),
                ("rebuilt", &report.rebuilt),
                ("dropped", &report.dropped),
            ] {
                if !list.is_empty() {
                    out.push_str(&format!("{what}: {}\n", list.join(", ")));
                }
            }
            if report.kept_edits > 0 {
                out.push_str(&format!(
                    "local edits kept through the schema change: {} ({} changed columns the server no longer has: they are reported as FAILED once the rest is pushed)\n",
                    report.kept_edits, report.lost_values
                ));
            }
            for file in &report.saved_edits {
                out.push_str(&format!(
                    "local edits of a table that is gone saved to {}\n",
                    file.display()
                ));
            }
            if let Some(s) = &server {
                out.push_str(&format!("server tracking: {s}\n"));
            }
            if let Some((p, notes)) = &prisma {
                out.push_str(&format!("Prisma schema: {}\n", p.display()));
                for note in notes {
                    out.push_str(&format!("  note: {note}\n"));
                }
            }
            out.trim_end().to_string()
        },
    );
    Ok(())
}

async fn server(config: &Config, action: ServerAction, json_mode: bool) -> anyhow::Result<()> {
    let mut client = connect(config).await?;
    match action {
        ServerAction::Install => {
            let schema = introspect(&client, config).await?;
            let report = client.install(&schema).await?;
            print(json_mode, json!({"report": report.to_string()}), || {
                format!("server tracking: {report}")
            });
        }
        ServerAction::Uninstall => {
            let removed = client
                .uninstall()
                .await
                .context("uninstalling the tracking schema")?
                .changed();
            print(json_mode, json!({"removed": removed}), || {
                if removed {
                    "tracking schema and triggers removed; user tables untouched".into()
                } else {
                    "nothing to remove: the tracking schema is not installed".into()
                }
            });
        }
        ServerAction::Status => {
            let version = client.installed_version().await?;
            print(
                json_mode,
                json!({"installedVersion": version}),
                || match version {
                    Some(v) => format!("tracking schema version {v} installed"),
                    None => "tracking schema not installed".into(),
                },
            );
        }
    }
    Ok(())
}

fn show_config(config: &Config, json_mode: bool) {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let url = config.database_url.as_ref().map(|u| u.redacted());
    let interval = config
        .sync_interval
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let value = json!({
        "DATABASE_URL": url,
        "ENABLE_LOCAL_DATABASE": config.enable_local_database,
        "LOCAL_DATABASE_URL": format!("file:{}", config.local_database_path.display()),
        "LOCAL_DATABASE_SYNC_INTERVAL": interval,
        "ENABLE_OFFLINE_MODE": config.enable_offline_mode,
        "OUTPOST_SCHEMA": config.tables.pg_schema,
        "OUTPOST_TABLES": config.tables.include,
        "OUTPOST_EXCLUDE_TABLES": config.tables.exclude,
        "OUTPOST_STATEMENT_TIMEOUT": ms(config.timeouts.statement),
        "OUTPOST_LOCK_TIMEOUT": ms(config.timeouts.lock),
        "OUTPOST_IDLE_IN_TRANSACTION_TIMEOUT": ms(config.timeouts.idle_in_transaction),
        "OUTPOST_REQUEST_TIMEOUT": ms(config.timeouts.request),
        "OUTPOST_CHECK_INTERVAL": ms(config.timeouts.check_interval),
        "OUTPOST_CHECK_TIMEOUT": ms(config.timeouts.check_timeout),
        "PRISMA_SCHEMA": config.prisma_schema,
    });
    // Shown only for a node in gateway topology; the token never.
    let mut value = value;
    if let (Some(g), Some(o)) = (&config.gateway, value.as_object_mut()) {
        o.insert("OUTPOST_GATEWAY_URL".into(), json!(g.url));
        match g.token_file() {
            Some(file) => {
                o.insert("OUTPOST_GATEWAY_TOKEN_FILE".into(), json!(file));
            }
            None => {
                o.insert("OUTPOST_GATEWAY_TOKEN".into(), json!("***"));
            }
        }
    }
    print(json_mode, value.clone(), || {
        value
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        let shown = match v {
                            serde_json::Value::String(s) => s.clone(),
                            // Unset: say what that means, not `null`.
                            serde_json::Value::Null => match k.as_str() {
                                "DATABASE_URL" => "(not set)".into(),
                                "OUTPOST_TABLES" => "(all tables with a primary key)".into(),
                                "PRISMA_SCHEMA" => format!(
                                    "(not set: {} when present)",
                                    outpost_core::config::DEFAULT_PRISMA_SCHEMA
                                ),
                                _ => "(not set)".into(),
                            },
                            serde_json::Value::Array(items) => items
                                .iter()
                                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                                .collect::<Vec<_>>()
                                .join(","),
                            other => other.to_string(),
                        };
                        format!("{k}={shown}")
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    });
}
