//! # outpost-gateway
//!
//! `outpost gateway`: a process next to PostgreSQL (it holds
//! `DATABASE_URL`) that serves the sync protocol over HTTP to nodes that
//! hold only a bearer token (docs/gateway.md; the protocol's HTTP form is
//! in docs/protocol.md, "Over HTTP").
//!
//! * [`Gateway::start`]: checks the database, installs or upgrades the
//!   tracking schema for the tables it syncs, starts the one `LISTEN`
//!   connection that feeds every node's change stream, and sizes the
//!   connection [`pool`];
//! * [`router`]: the `/v1/…` endpoints, each verifying the token
//!   ([`auth`]) and answering errors as [`GatewayError`];
//! * [`ops`]: `/metrics`, rate limits per principal, one log line per
//!   request with its principal; `share`: the limits' counts exchanged
//!   with the other gateways of the database;
//! * [`rules`]: the sync rules (`--rules FILE`): which tables are served
//!   and which of their rows each node's claims give it;
//! * [`serve`]: the router on a socket, through `outpost_http::server`'s
//!   loop (bounded header reads, TCP keepalive, graceful shutdown), behind
//!   TLS when [`tls`] has a certificate.
//!
//! The gateway keeps nothing between requests that is not in PostgreSQL
//! (which node belongs to which principal is `outpost.gateway_nodes`), so
//! several gateways serve one database and a node may use any of them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let options = outpost_gateway::Options::from_lookup(|k| std::env::var(k).ok())?;
//! let gateway = outpost_gateway::Gateway::start(options).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4100").await?;
//! outpost_gateway::serve(listener, gateway, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod error;
pub mod ops;
pub mod pool;
mod routes;
pub mod rules;
mod share;
mod tags;
pub mod tls;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use outpost_core::config::{Config, DatabaseUrl, TableSelection};
use outpost_core::schema::Schema;
use outpost_remote::RemoteError;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use error::GatewayError;
pub use routes::router;

use crate::auth::Keys;
use crate::pool::Pool;

/// Default number of PostgreSQL connections a gateway opens at most.
pub const DEFAULT_POOL_SIZE: usize = 10;

/// The default of the shortest changelog retention window a node may ask
/// a gateway for (the engine's default window; `OUTPOST_GATEWAY_MIN_RETENTION`
/// sets another): changes older than the window are deleted whatever the
/// nodes' cursors.
pub const MIN_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A setting in whole milliseconds, at least `least`; `None` when unset.
fn millis(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    least: u64,
) -> Result<Option<Duration>, String> {
    let Some(v) = get(name) else {
        return Ok(None);
    };
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms >= least)
        .map(|ms| Some(Duration::from_millis(ms)))
        .ok_or_else(|| {
            format!(
                "{name}={v:?} is invalid: expected a whole number of milliseconds, at least {least}"
            )
        })
}

/// How often gateways with a rate limit share their counts by default.
pub const RATE_SHARE: Duration = Duration::from_secs(1);

/// How often a gateway reads its TLS certificate and key again by default
/// (a renewed certificate is served within this, without a restart).
pub const TLS_RELOAD: Duration = Duration::from_secs(60);

/// How often a gateway reads its JWKS again by default (a provider's
/// rotation reaches it within this; a token naming a new `kid` makes it
/// read sooner: [`auth::JWKS_REFETCH_AT_MOST_EVERY`]).
pub const JWKS_REFRESH: Duration = Duration::from_secs(300);

/// Largest request body (a push of 5,000 wide rows is a few MB of JSON).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// The gateway's settings: the database and tables (as for a node, from
/// `DATABASE_URL`, `OUTPOST_SCHEMA`, `OUTPOST_TABLES`,
/// `OUTPOST_EXCLUDE_TABLES` and the `OUTPOST_*_TIMEOUT`s), the token keys
/// (`OUTPOST_GATEWAY_SECRET`, `OUTPOST_GATEWAY_PUBLIC_KEY`,
/// `OUTPOST_GATEWAY_JWKS`: at least one), the audience tokens must name
/// (`OUTPOST_GATEWAY_AUDIENCE`, optional), the pool's size
/// (`OUTPOST_GATEWAY_POOL`), the shortest retention window
/// (`OUTPOST_GATEWAY_MIN_RETENTION`, ms) and the sync rules
/// (`OUTPOST_GATEWAY_RULES`, a file; `--rules`), the rate limit per
/// principal (`OUTPOST_GATEWAY_RATE`, `OUTPOST_GATEWAY_BURST`, shared
/// every `OUTPOST_GATEWAY_RATE_SHARE` ms) and the
/// token `/metrics` requires (`OUTPOST_GATEWAY_METRICS_TOKEN`).
#[derive(Debug, Clone)]
pub struct Options {
    /// The database.
    pub database_url: DatabaseUrl,
    /// The tables served.
    pub tables: TableSelection,
    /// Statement, lock and idle-in-transaction limits of its sessions.
    pub timeouts: outpost_core::config::Timeouts,
    /// Token verification.
    pub keys: Keys,
    /// How often the JWKS (`OUTPOST_GATEWAY_JWKS`, a file or a URL) and
    /// the PEM files (`OUTPOST_GATEWAY_PUBLIC_KEY`) are read again
    /// (`OUTPOST_GATEWAY_JWKS_REFRESH`, ms; [`JWKS_REFRESH`] by default).
    pub jwks_refresh: Duration,
    /// PostgreSQL connections at most.
    pub pool_size: usize,
    /// The shortest retention window a prune runs with.
    pub min_retention: Duration,
    /// The sync rules: without them every selected table is served whole.
    pub rules: Option<Arc<rules::Rules>>,
    /// Requests per principal (`OUTPOST_GATEWAY_RATE`,
    /// `OUTPOST_GATEWAY_BURST`); `None`: unlimited.
    pub rate: Option<ops::RateLimit>,
    /// How often gateways with a rate limit share their counts through
    /// the database (`OUTPOST_GATEWAY_RATE_SHARE`, ms; [`RATE_SHARE`] by
    /// default; see `share`).
    pub rate_share: Duration,
    /// The bearer token `/metrics` requires
    /// (`OUTPOST_GATEWAY_METRICS_TOKEN`); `None`: `/metrics` is open.
    pub metrics_token: Option<ops::Secret>,
    /// TLS served by the gateway itself (`OUTPOST_GATEWAY_TLS_CERT` and
    /// `OUTPOST_GATEWAY_TLS_KEY`); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The certificate and key files `tls` serves, read again every
    /// `tls_reload`.
    pub tls_files: Option<Arc<tls::CertFiles>>,
    /// How often the TLS files are read again (`OUTPOST_GATEWAY_TLS_RELOAD`,
    /// ms; [`TLS_RELOAD`] by default).
    pub tls_reload: Duration,
}

impl Options {
    /// The settings from a variable lookup (environment, `.env`, flags).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Options, String> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let config = Config::from_lookup(get).map_err(|e| e.to_string())?;
        let database_url = config
            .require_database_url("the gateway serves the PostgreSQL database it names")
            .map_err(|e| e.to_string())?
            .clone();
        let secret = get("OUTPOST_GATEWAY_SECRET");
        let secret_file =
            get("OUTPOST_GATEWAY_SECRET_FILE").map(|v| std::path::PathBuf::from(v.trim()));
        let public_keys = get("OUTPOST_GATEWAY_PUBLIC_KEY");
        let public_keys: Vec<std::path::PathBuf> = public_keys
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
            .collect();
        let jwks = get("OUTPOST_GATEWAY_JWKS").map(|v| auth::JwksSource::parse(&v));
        let (jwks_file, jwks_url) = match &jwks {
            Some(auth::JwksSource::File(p)) => (Some(p.as_path()), None),
            Some(auth::JwksSource::Url(u)) => (None, Some(u.as_str())),
            None => (None, None),
        };
        let jwks_refresh =
            millis(&get, "OUTPOST_GATEWAY_JWKS_REFRESH", 100)?.unwrap_or(JWKS_REFRESH);
        let audience = get("OUTPOST_GATEWAY_AUDIENCE");
        let keys = Keys::load(&auth::KeySources {
            secret: secret.as_deref(),
            secret_file: secret_file.as_deref(),
            public_keys: public_keys
                .iter()
                .map(std::path::PathBuf::as_path)
                .collect(),
            jwks: jwks_file,
            jwks_url,
            audience: audience.as_deref(),
        })?;
        let pool_size = match get("OUTPOST_GATEWAY_POOL") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    format!("OUTPOST_GATEWAY_POOL={v:?} is invalid: expected 1 to 1000 connections")
                })?,
            None => DEFAULT_POOL_SIZE,
        };
        let min_retention =
            millis(&get, "OUTPOST_GATEWAY_MIN_RETENTION", 1)?.unwrap_or(MIN_RETENTION);
        let rules = match get("OUTPOST_GATEWAY_RULES") {
            Some(path) => Some(Arc::new(rules::Rules::load(std::path::Path::new(
                path.trim(),
            ))?)),
            None => None,
        };
        let rate = ops::RateLimit::parse(
            get("OUTPOST_GATEWAY_RATE").as_deref(),
            get("OUTPOST_GATEWAY_BURST").as_deref(),
        )?;
        let rate_share = millis(&get, "OUTPOST_GATEWAY_RATE_SHARE", 10)?.unwrap_or(RATE_SHARE);
        let metrics_token =
            get("OUTPOST_GATEWAY_METRICS_TOKEN").map(|t| ops::Secret::new(t.trim().to_string()));
        let tls_reload = millis(&get, "OUTPOST_GATEWAY_TLS_RELOAD", 100)?.unwrap_or(TLS_RELOAD);
        let tls = match (
            get("OUTPOST_GATEWAY_TLS_CERT"),
            get("OUTPOST_GATEWAY_TLS_KEY"),
        ) {
            (Some(cert), Some(key)) => Some(tls::server_config(
                std::path::Path::new(cert.trim()),
                std::path::Path::new(key.trim()),
            )?),
            (None, None) => None,
            (Some(_), None) => {
                return Err("OUTPOST_GATEWAY_TLS_CERT is set but OUTPOST_GATEWAY_TLS_KEY is not: TLS needs both files".into());
            }
            (None, Some(_)) => {
                return Err("OUTPOST_GATEWAY_TLS_KEY is set but OUTPOST_GATEWAY_TLS_CERT is not: TLS needs both files".into());
            }
        };
        let (tls, tls_files) = match tls {
            Some((config, files)) => (Some(config), Some(files)),
            None => (None, None),
        };
        Ok(Options {
            tls,
            tls_files,
            tls_reload,
            rate,
            rate_share,
            metrics_token,
            rules,
            min_retention,
            database_url,
            tables: config.tables,
            timeouts: config.timeouts,
            keys,
            jwks_refresh,
            pool_size,
        })
    }
}

/// How often a node's differing snapshot may make the gateway introspect
/// the served tables again.
const REFRESH_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The schema the gateway serves, with its hash (what nodes name in every
/// pull and push, so a node laid out from another schema is refused
/// instead of reading columns in the wrong order).
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub schema: Arc<Schema>,
    pub hash: String,
}

pub(crate) struct Inner {
    pub options: Options,
    pub pool: Pool,
    pub served: RwLock<Served>,
    /// When each differing snapshot a node sent last made the gateway
    /// introspect the served tables: a node that has not run `setup` yet
    /// sends its old snapshot with every request, and each must not cost an
    /// introspection.
    pub refreshed_at: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// The rules' conditions as the feed applies them.
    pub scope: Option<Arc<outpost_remote::feed::Scope>>,
    /// With rules: the database's row-tag secret (`tags`).
    pub tags: Option<tags::TagKey>,
    /// One message per notification of the `LISTEN` connection.
    pub changes: broadcast::Sender<()>,
    pub cancel: CancellationToken,
    pub metrics: ops::Metrics,
    pub limiter: Option<ops::Limiter>,
}

/// A running gateway. Cheap to clone; dropping the last clone does not
/// stop it: [`Gateway::shutdown`] does.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

/// Why a gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database failed or refused the served tables.
    #[error(transparent)]
    Database(#[from] RemoteError),
    /// A sync rule is wrong (the message names the rule).
    #[error("{0}")]
    Rules(String),
    /// The JWKS URL could not be fetched or held no usable key (the
    /// message names the URL).
    #[error("{0}")]
    Keys(String),
}

/// The table binding node ids to principals, and the one recording the
/// answers of remote-mode writes by request id (so a node that lost an
/// answer asks again and gets it, never a second write), created by the
/// gateway (not part of the tracking schema: direct nodes have neither).
const NODES_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS \"outpost\".\"gateway_nodes\" (\
     node_id uuid PRIMARY KEY, principal text NOT NULL, bound_at timestamptz NOT NULL DEFAULT now()); \
     CREATE TABLE IF NOT EXISTS \"outpost\".\"gateway_requests\" (\
     node_id uuid NOT NULL, request_id uuid NOT NULL, answer jsonb, \
     at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (node_id, request_id))";

impl Gateway {
    /// Checks the database, installs the tracking schema for the served
    /// tables (or upgrades it; idempotent), creates the principal table,
    /// and starts the `LISTEN` task.
    ///
    /// With sync rules, only the tables that have a rule are introspected
    /// and served, and each rule is checked first: its table exists in the
    /// served schema and is selected, and its condition prepares (column
    /// names, types, the subqueries' tables); the first wrong rule is the
    /// error, named.
    pub async fn start(options: Options) -> Result<Gateway, StartError> {
        let settings = format!(
            "SET statement_timeout = {}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {};",
            options.timeouts.statement.as_millis(),
            options.timeouts.lock.as_millis(),
            options.timeouts.idle_in_transaction.as_millis()
        );
        // A JWKS URL is fetched before anything is served: without its keys
        // every token would be refused.
        let metrics = ops::Metrics::new();
        match options.keys.jwks_source() {
            Some(auth::JwksSource::Url(_)) => {
                let read = options.keys.refresh_jwks().await;
                metrics.jwks_read(&read);
                read.map_err(StartError::Keys)?;
            }
            // A file, read by `Options::from_lookup`.
            Some(auth::JwksSource::File(_)) => metrics.jwks_read(&Ok(options.keys.jwks_len())),
            None => {}
        }
        let pool = Pool::new(
            options.database_url.clone(),
            options.pool_size,
            settings,
            outpost_remote::CONNECT_TIMEOUT,
        );
        if let Some(rules) = &options.rules {
            check_rules(&pool, &options.tables, rules).await?;
        }
        let served = install(&pool, &served_tables(&options)).await?;
        if let Some(rules) = &options.rules {
            check_conditions(&pool, &served.schema, rules).await?;
        }
        let scope = options.rules.as_ref().map(|r| Arc::new(r.scope()));
        let tags = match &options.rules {
            Some(_) => Some(tags::TagKey::load(&pool).await?),
            None => None,
        };
        let (changes, _) = broadcast::channel(64);
        let limiter = options.rate.map(ops::Limiter::new);
        let gateway = Gateway {
            inner: Arc::new(Inner {
                options,
                pool,
                served: RwLock::new(served),
                scope,
                tags,
                refreshed_at: std::sync::Mutex::new(std::collections::HashMap::new()),
                changes,
                cancel: CancellationToken::new(),
                metrics,
                limiter,
            }),
        };
        tokio::spawn(listen(gateway.clone()));
        if gateway.inner.limiter.is_some() {
            tokio::spawn(forget_idle_principals(gateway.clone()));
            tokio::spawn(share::share(gateway.clone()));
        }
        if gateway.inner.options.keys.jwks_source().is_some()
            || gateway.inner.options.keys.has_files()
        {
            tokio::spawn(refresh_keys(gateway.clone()));
        }
        if gateway.inner.options.tls_files.is_some() {
            tokio::spawn(reload_tls(gateway.clone()));
        }
        Ok(gateway)
    }

    /// Stops the `LISTEN` task and ends every change stream.
    pub fn shutdown(&self) {
        self.inner.cancel.cancel();
    }

    /// The PostgreSQL connections open now (idle and in use).
    pub fn connections(&self) -> usize {
        self.inner.pool.open()
    }

    /// The pool's bound.
    pub fn pool_size(&self) -> usize {
        self.inner.pool.size()
    }

    /// Whether it serves TLS itself (`https://`).
    pub fn tls(&self) -> bool {
        self.inner.options.tls.is_some()
    }

    /// The served schema, introspected again (and the tracking schema
    /// installed for new tables) when `node_hash` is given and differs, so
    /// a node set up after a migration is served at once (at most every
    /// [`REFRESH_AT_MOST_EVERY`]: a node not set up again yet sends its old
    /// snapshot with every request).
    pub(crate) async fn served(&self, node_hash: Option<&str>) -> Result<Served, GatewayError> {
        let current = self
            .inner
            .served
            .read()
            .map(|s| s.clone())
            .map_err(|_| GatewayError::internal("the schema lock was poisoned"))?;
        if node_hash.is_none_or(|h| h == current.hash) {
            return Ok(current);
        }
        let recent = self
            .inner
            .refreshed_at
            .lock()
            .map(|mut seen| {
                // Per snapshot: a node set up after a migration sends a new
                // one and is served at once.
                let recent = seen
                    .get(node_hash.unwrap_or_default())
                    .is_some_and(|t| t.elapsed() < REFRESH_AT_MOST_EVERY);
                if !recent {
                    seen.retain(|_, t| t.elapsed() < REFRESH_AT_MOST_EVERY);
                    seen.insert(
                        node_hash.unwrap_or_default().to_string(),
                        std::time::Instant::now(),
                    );
                }
                recent
            })
            .unwrap_or(false);
        if recent {
            return Ok(current);
        }
        self.refreshed().await
    }

    /// The served schema introspected now, tracking installed for new
    /// tables, and kept for the requests after.
    pub(crate) async fn refreshed(&self) -> Result<Served, GatewayError> {
        let fresh = install(&self.inner.pool, &served_tables(&self.inner.options))
            .await
            .map_err(|e| self.db_error(&e))?;
        if let Ok(mut s) = self.inner.served.write() {
            *s = fresh.clone();
        }
        Ok(fresh)
    }

    pub(crate) fn db_error(&self, e: &RemoteError) -> GatewayError {
        if let Some(table) = e.changed_table() {
            return GatewayError::TableChanged {
                table: table.to_string(),
            };
        }
        let url = &self.inner.options.database_url;
        GatewayError::database(e, |t| url.scrub(t))
    }
}

/// The tables served: the selection, narrowed to the tables with a rule
/// when there are rules (a table without one is not synced to nodes).
fn served_tables(options: &Options) -> TableSelection {
    let mut t = options.tables.clone();
    if let Some(rules) = &options.rules {
        t.include = Some(rules.tables());
    }
    t
}

/// Each rule's table exists in the served PostgreSQL schema and is
/// selected (`OUTPOST_TABLES`, `OUTPOST_EXCLUDE_TABLES`).
async fn check_rules(
    pool: &Pool,
    t: &TableSelection,
    rules: &rules::Rules,
) -> Result<(), StartError> {
    let mut pooled = pool.get().await?;
    let found: Vec<String> = pooled
        .conn()
        .client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
            &[&t.pg_schema, &rules.tables()],
        )
        .await
        .map_err(|e| RemoteError::db("checking the sync rules' tables", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    pooled.release();
    for rule in rules.rules.values() {
        let name = &rule.table;
        if !found.contains(name) {
            return Err(StartError::Rules(format!(
                "{}: {}: there is no table {name:?} in schema {:?} (names are case-sensitive)",
                rules.origin,
                rule.label(),
                t.pg_schema
            )));
        }
        let excluded = t.exclude.contains(name)
            || outpost_core::config::ALWAYS_EXCLUDED.contains(&name.as_str())
            || t.include.as_ref().is_some_and(|i| !i.contains(name));
        if excluded {
            return Err(StartError::Rules(format!(
                "{}: {}: the table is not among the tables the gateway serves (OUTPOST_TABLES, OUTPOST_EXCLUDE_TABLES)",
                rules.origin,
                rule.label()
            )));
        }
    }
    Ok(())
}

/// Each rule's condition prepares as a filter of its table (nothing is
/// run: a condition that needs a claim's value reads it only when run).
async fn check_conditions(
    pool: &Pool,
    schema: &Schema,
    rules: &rules::Rules,
) -> Result<(), StartError> {
    let mut pooled = pool.get().await?;
    for rule in rules.rules.values() {
        let sql = format!(
            "SELECT 1 FROM {}.{} AS {} WHERE (\n{}\n)",
            outpost_core::ident::quote(&schema.pg_schema),
            outpost_core::ident::quote(&rule.table),
            outpost_core::ident::quote(&rule.table),
            rule.sql
        );
        if let Err(e) = pooled.conn().client.prepare(&sql).await {
            let reason = match e.as_db_error() {
                Some(d) => d.message().to_string(),
                None => return Err(RemoteError::db("checking the sync rules", e).into()),
            };
            return Err(StartError::Rules(format!(
                "{}: {}: the condition {:?} is refused by PostgreSQL: {reason}",
                rules.origin,
                rule.label(),
                rule.source
            )));
        }
    }
    pooled.release();
    Ok(())
}

/// Introspects the served tables and installs (or upgrades) tracking for
/// them; creates the principal table.
async fn install(pool: &Pool, t: &TableSelection) -> Result<Served, RemoteError> {
    let mut pooled = pool.get().await?;
    let conn = pooled.conn();
    let schema =
        outpost_remote::introspect(&conn.client, &t.pg_schema, t.include.as_deref(), &t.exclude)
            .await?;
    outpost_core::sqlite::check_schema(&schema).map_err(|reason| RemoteError::ReplicaLimit {
        table: String::new(),
        reason,
    })?;
    outpost_remote::install(&mut conn.client, &schema).await?;
    // Two gateways starting together may both try to create it: the loser
    // of that race sees a unique violation on the catalog and retries.
    for attempt in 0..2 {
        match conn.client.batch_execute(NODES_TABLE_SQL).await {
            Ok(()) => break,
            Err(e) if attempt == 0 && e.as_db_error().is_some() => continue,
            Err(e) => return Err(RemoteError::db("creating outpost.gateway_nodes", e)),
        }
    }
    pooled.release();
    let hash = schema.hash();
    Ok(Served {
        schema: Arc::new(schema),
        hash,
    })
}

/// The one `LISTEN outpost_changes` connection: every notification goes
/// to every connected node's stream. Reconnects after a pause when the
/// connection ends, and then tells every node once (a change may have
/// committed while nobody listened).
async fn listen(gateway: Gateway) {
    let inner = &gateway.inner;
    let mut first = true;
    while !inner.cancel.is_cancelled() {
        let url = &inner.options.database_url;
        match outpost_remote::connections::Listener::open(url, outpost_remote::CONNECT_TIMEOUT)
            .await
        {
            Ok(mut listener) => {
                if !first {
                    let _ = inner.changes.send(());
                }
                first = false;
                tracing::info!("listening for changes");
                loop {
                    tokio::select! {
                        () = inner.cancel.cancelled() => return,
                        note = listener.notified() => match note {
                            Some(()) => {
                                listener.drain();
                                let _ = inner.changes.send(());
                            }
                            None => break,
                        },
                    }
                }
                tracing::warn!("the LISTEN connection ended; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %url.scrub(&e.to_string()), "cannot listen for changes; retrying");
            }
        }
        tokio::select! {
            () = inner.cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Every minute, drops the rate limiter's buckets of principals that are
/// idle again, so its memory follows the principals active now.
async fn forget_idle_principals(gateway: Gateway) {
    loop {
        tokio::select! {
            () = gateway.inner.cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        if let Some(l) = &gateway.inner.limiter {
            l.forget_idle();
        }
    }
}

/// Reads the JWKS and the PEM files again every [`Options::jwks_refresh`]:
/// keys the provider (or the operator, for a file) added verify, keys it
/// removed or replaced stop verifying, without a restart. A failed read
/// keeps the keys read last.
async fn refresh_keys(gateway: Gateway) {
    let every = gateway.inner.options.jwks_refresh;
    let keys = &gateway.inner.options.keys;
    loop {
        tokio::select! {
            () = gateway.inner.cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if keys.jwks_source().is_some() {
            let read = keys.refresh_jwks().await;
            if let Err(e) = &read {
                tracing::warn!(error = %e, "reading the JWKS again failed; the keys read last stay");
            }
            gateway.inner.metrics.jwks_read(&read);
        }
        if keys.has_files() {
            let k = keys.clone();
            match tokio::task::spawn_blocking(move || k.refresh_files()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading the key files again failed; the keys read last stay");
                }
                Err(e) => tracing::warn!(error = %e, "reading the key files again failed"),
            }
        }
    }
}

/// Reads the TLS certificate and key again every
/// [`Options::tls_reload`]: new connections get a renewed certificate
/// without a restart; a pair that cannot be read keeps the one read last.
async fn reload_tls(gateway: Gateway) {
    let Some(files) = gateway.inner.options.tls_files.clone() else {
        return;
    };
    let every = gateway.inner.options.tls_reload;
    loop {
        tokio::select! {
            () = gateway.inner.cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let files = files.clone();
        match tokio::task::spawn_blocking(move || files.reload()).await {
            Ok(Ok(true)) => tracing::info!("TLS certificate reloaded"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the TLS files again failed; the certificate read last stays");
            }
            Err(e) => tracing::warn!(error = %e, "reading the TLS files again failed"),
        }
    }
}

/// Serves the gateway on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(gateway.clone());
    let cancel = gateway.inner.cancel.clone();
    let tls = gateway
        .inner
        .options
        .tls
        .clone()
        .map(tokio_rustls::TlsAcceptor::from);
    let result = outpost_http::server::serve_tls(listener, app, tls, async move {
        shutdown.await;
        // Change streams never end on their own: ending them lets the
        // graceful shutdown finish.
        cancel.cancel();
    })
    .await;
    gateway.shutdown();
    result
}
