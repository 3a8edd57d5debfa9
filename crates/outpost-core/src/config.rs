//! Configuration: the seed's environment variables plus outpost's own, read
//! from one lookup function (the binary layers defaults < `.env` <
//! environment < flags and hands the result here), validated into one
//! [`Config`].
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | none | the PostgreSQL server (`postgres://…` or `key=value` form) |
//! | `ENABLE_LOCAL_DATABASE` | `true` | keep a local replica at all |
//! | `LOCAL_DATABASE_URL` | `file:./local.db` | the replica file, Prisma's `file:` form (a bare path works too) |
//! | `LOCAL_DATABASE_SYNC_INTERVAL` | `300000` | milliseconds between periodic syncs; `0` turns them off |
//! | `ENABLE_OFFLINE_MODE` | `true` | fall back to the replica when the server is unreachable |
//! | `OUTPOST_SCHEMA` | `public` | the PostgreSQL schema whose tables are synced |
//! | `OUTPOST_TABLES` | all with a primary key | comma-separated tables to sync |
//! | `OUTPOST_EXCLUDE_TABLES` | none | comma-separated tables not to sync (`_prisma_migrations` never is) |
//! | `OUTPOST_STATEMENT_TIMEOUT` | `30000` | ms: the server's `statement_timeout` for sync sessions |
//! | `OUTPOST_LOCK_TIMEOUT` | `30000` | ms: the server's `lock_timeout` for sync sessions |
//! | `OUTPOST_IDLE_IN_TRANSACTION_TIMEOUT` | `10000` | ms: the server drops a sync session idle inside a transaction this long (a vanished node's locks) |
//! | `OUTPOST_REQUEST_TIMEOUT` | `10000` | ms: a model-service call's deadline on the server in `auto` mode (past it: outcome unknown, then the replica) |
//! | `OUTPOST_CHECK_INTERVAL` | `2000` | ms between the monitor's probes of the server |
//! | `OUTPOST_CHECK_TIMEOUT` | `2000` | ms a probe may take before the server counts as unreachable |
//! | `PRISMA_SCHEMA` | `./prisma/schema.prisma` when that file exists | the application's Prisma schema: model and field names, client-side defaults (`outpost_core::prisma`) |
//!
//! Timeouts are whole milliseconds, at least 1 and at most a day: every
//! round trip of the node has a bound (none can be turned off). The
//! connection's own `connect_timeout`, `keepalives_idle`, `keepalives_interval`,
//! `keepalives_count` and `tcp_user_timeout` are libpq parameters of
//! `DATABASE_URL` (outpost's defaults apply where the URL has none).
//!
//! Booleans accept `true/false`, `1/0`, `yes/no`, `on/off` in any case. A bad
//! value is refused with an error that names the variable and the value;
//! passwords in `DATABASE_URL` are shown as `***`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod database_url;
pub use database_url::{DatabaseUrl, SslMode, TlsParams, redact};

/// Which tables of the server are synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSelection {
    /// The PostgreSQL schema (`public`).
    pub pg_schema: String,
    /// Only these tables, when set.
    pub include: Option<Vec<String>>,
    /// Never these tables.
    pub exclude: Vec<String>,
}

/// Tables outpost never syncs whatever the selection says.
pub const ALWAYS_EXCLUDED: &[&str] = &["_prisma_migrations"];

impl Default for TableSelection {
    fn default() -> TableSelection {
        TableSelection {
            pg_schema: "public".into(),
            include: None,
            exclude: ALWAYS_EXCLUDED.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// The validated configuration of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The server, if configured (`DATABASE_URL`).
    pub database_url: Option<DatabaseUrl>,
    /// The gateway a node syncs through instead of the server
    /// (`OUTPOST_GATEWAY_URL` and `OUTPOST_GATEWAY_TOKEN`; docs/gateway.md).
    pub gateway: Option<GatewayTarget>,
    /// Keep a local replica (`ENABLE_LOCAL_DATABASE`).
    pub enable_local_database: bool,
    /// The replica file (`LOCAL_DATABASE_URL`).
    pub local_database_path: PathBuf,
    /// Periodic sync interval; `None` when turned off
    /// (`LOCAL_DATABASE_SYNC_INTERVAL=0`).
    pub sync_interval: Option<Duration>,
    /// Fall back to the replica while offline (`ENABLE_OFFLINE_MODE`).
    pub enable_offline_mode: bool,
    /// Which tables are synced.
    pub tables: TableSelection,
    /// The node's bounds on the server.
    pub timeouts: Timeouts,
    /// The application's Prisma schema (`PRISMA_SCHEMA`), when set; see
    /// [`Config::prisma_schema_file`] for the default.
    pub prisma_schema: Option<PathBuf>,
}

/// Where a node in gateway topology syncs: the gateway's base URL and the
/// bearer token it presents. The token is a credential: its `Debug` form is
/// `***`, and it is shown nowhere.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayTarget {
    /// `http://…` or `https://…`, without a trailing `/`.
    pub url: String,
    token: TokenSource,
    /// Certificates (PEM) trusted for an `https://` gateway besides the
    /// usual roots (`OUTPOST_GATEWAY_CA`): a private CA or a self-signed
    /// gateway certificate.
    pub ca: Option<PathBuf>,
}

/// Where the token comes from: `OUTPOST_GATEWAY_TOKEN`, fixed for the
/// process, or `OUTPOST_GATEWAY_TOKEN_FILE`, read again for every request,
/// so a token renewed by the application (an auth provider's tokens last an
/// hour) is presented without a restart.
#[derive(Clone, PartialEq, Eq)]
enum TokenSource {
    Fixed(String),
    File(PathBuf),
}

/// Why a bearer token is not one (empty, or with spaces), or `None`.
fn token_problem(token: &str) -> Option<&'static str> {
    if token.is_empty() {
        Some("holds no token")
    } else if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("expected a bearer token (no spaces)")
    } else {
        None
    }
}

/// `OUTPOST_GATEWAY_URL` checked: `http(s)://host…` without credentials,
/// returned without a trailing `/`.
fn checked_url(url: &str) -> Result<String, ConfigError> {
    let parsed = url::Url::parse(url.trim())
        .map_err(|e| invalid("OUTPOST_GATEWAY_URL", url, format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(
            "OUTPOST_GATEWAY_URL",
            url,
            "expected http://host:port or https://host",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "OUTPOST_GATEWAY_URL",
            "***",
            "credentials go in OUTPOST_GATEWAY_TOKEN, not in the URL",
        ));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

impl GatewayTarget {
    /// The token to present now: the variable's, or what the token file
    /// holds now (trimmed), or why there is none (the file missing, empty,
    /// or not a token; the message names the file, never its contents).
    pub fn token(&self) -> Result<String, String> {
        match &self.token {
            TokenSource::Fixed(t) => Ok(t.clone()),
            TokenSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "OUTPOST_GATEWAY_TOKEN_FILE {}: cannot be read ({e}): write the node's token to it",
                        path.display()
                    )
                })?;
                let token = text.trim();
                match token_problem(token) {
                    None => Ok(token.to_string()),
                    Some(why) => Err(format!(
                        "OUTPOST_GATEWAY_TOKEN_FILE {}: {why}: write the node's token to it",
                        path.display()
                    )),
                }
            }
        }
    }

    /// The token file, when the token is read from one.
    pub fn token_file(&self) -> Option<&Path> {
        match &self.token {
            TokenSource::File(p) => Some(p),
            TokenSource::Fixed(_) => None,
        }
    }

    /// A target whose token is read from `path` for every request
    /// (`OUTPOST_GATEWAY_TOKEN_FILE`). The file need not exist yet: until
    /// it holds a token the node works offline and says why.
    pub fn with_token_file(url: &str, path: &Path) -> Result<GatewayTarget, ConfigError> {
        Ok(GatewayTarget {
            url: checked_url(url)?,
            token: TokenSource::File(path.to_path_buf()),
            ca: None,
        })
    }

    /// The principal the token names: its `sub`, read without verifying
    /// the signature (the gateway verifies; the node only needs to notice
    /// that its user changed). `None` when the token is not a JWT with a
    /// `sub`, or the token file holds none.
    pub fn subject(&self) -> Option<String> {
        use base64::Engine as _;
        let token = self.token().ok()?;
        let payload = token.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        claims
            .get("sub")?
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
    }

    /// A target from a URL and a token (both checked).
    pub fn new(url: &str, token: &str) -> Result<GatewayTarget, ConfigError> {
        let url = checked_url(url)?;
        let token = token.trim();
        if token_problem(token).is_some() {
            return Err(invalid(
                "OUTPOST_GATEWAY_TOKEN",
                "***",
                "expected a bearer token (no spaces)",
            ));
        }
        Ok(GatewayTarget {
            url,
            token: TokenSource::Fixed(token.to_string()),
            ca: None,
        })
    }

    /// The same target, trusting the certificates in the PEM file `ca`
    /// too (`OUTPOST_GATEWAY_CA`; the file must exist).
    pub fn with_ca(mut self, ca: &str) -> Result<GatewayTarget, ConfigError> {
        let path = PathBuf::from(ca.trim());
        if !path.is_file() {
            return Err(invalid(
                "OUTPOST_GATEWAY_CA",
                ca,
                "expected a PEM file of certificates to trust for the gateway",
            ));
        }
        self.ca = Some(path);
        Ok(self)
    }
}

impl fmt::Debug for GatewayTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayTarget")
            .field("url", &self.url)
            .field(
                "token",
                &match &self.token {
                    TokenSource::Fixed(_) => "***".to_string(),
                    TokenSource::File(p) => format!("*** (from {})", p.display()),
                },
            )
            .field("ca", &self.ca)
            .finish()
    }
}

/// The node's bounds on the server (module doc: `OUTPOST_*_TIMEOUT`,
/// `OUTPOST_CHECK_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `statement_timeout` of sync sessions.
    pub statement: Duration,
    /// `lock_timeout` of sync sessions.
    pub lock: Duration,
    /// `idle_in_transaction_session_timeout` of sync sessions.
    pub idle_in_transaction: Duration,
    /// A model-service call's deadline on the server (`auto` mode).
    pub request: Duration,
    /// Between the monitor's probes.
    pub check_interval: Duration,
    /// How long a probe may take.
    pub check_timeout: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            statement: Duration::from_secs(30),
            lock: Duration::from_secs(30),
            idle_in_transaction: Duration::from_secs(10),
            request: Duration::from_secs(10),
            check_interval: Duration::from_secs(2),
            check_timeout: Duration::from_secs(2),
        }
    }
}

impl Timeouts {
    /// The timeouts from a variable lookup; unset ones keep their defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Timeouts, ConfigError> {
        let mut t = Timeouts::default();
        for (variable, field) in [
            ("OUTPOST_STATEMENT_TIMEOUT", &mut t.statement),
            ("OUTPOST_LOCK_TIMEOUT", &mut t.lock),
            (
                "OUTPOST_IDLE_IN_TRANSACTION_TIMEOUT",
                &mut t.idle_in_transaction,
            ),
            ("OUTPOST_REQUEST_TIMEOUT", &mut t.request),
            ("OUTPOST_CHECK_INTERVAL", &mut t.check_interval),
            ("OUTPOST_CHECK_TIMEOUT", &mut t.check_timeout),
        ] {
            if let Some(v) = get(variable) {
                *field = parse_timeout(variable, &v)?;
            }
        }
        Ok(t)
    }
}

/// The longest timeout accepted: a day.
const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;

fn parse_timeout(variable: &str, value: &str) -> Result<Duration, ConfigError> {
    let ms: u64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(variable, value, "expected a whole number of milliseconds"))?;
    if ms == 0 || ms > MAX_TIMEOUT_MS {
        return Err(invalid(
            variable,
            value,
            format!("expected 1 to {MAX_TIMEOUT_MS} milliseconds (every round trip has a bound)"),
        ));
    }
    Ok(Duration::from_millis(ms))
}

/// Where the Prisma schema is looked for when `PRISMA_SCHEMA` is not set.
pub const DEFAULT_PRISMA_SCHEMA: &str = "./prisma/schema.prisma";

/// A configuration value that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable has a value outpost cannot use.
    #[error("{variable}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        variable: String,
        /// The value as given (passwords redacted).
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A variable needed by the command is not set.
    #[error("{variable} is not set: {why}")]
    Missing {
        /// The variable's name.
        variable: String,
        /// What needs it.
        why: String,
    },
}

fn invalid(variable: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        variable: variable.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// Parses a boolean the way `.env` files spell them.
pub fn parse_bool(variable: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(variable, value, "expected true or false")),
    }
}

/// Reads `LOCAL_DATABASE_URL`: `file:./local.db` (Prisma), `file:/abs.db`,
/// or a bare path. Query parameters after `?` (Prisma's
/// `?connection_limit=1`) are ignored.
pub fn parse_local_url(variable: &str, value: &str) -> Result<PathBuf, ConfigError> {
    let v = value.trim();
    let path = if let Some(rest) = v.strip_prefix("file://") {
        rest
    } else if let Some(rest) = v.strip_prefix("file:") {
        rest
    } else if v.contains("://") {
        return Err(invalid(
            variable,
            value,
            "the local database must be a SQLite file, written file:./local.db",
        ));
    } else {
        v
    };
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(invalid(variable, value, "no file path after file:"));
    }
    if path == ":memory:" {
        return Err(invalid(
            variable,
            value,
            "an in-memory database cannot hold a replica",
        ));
    }
    if path.contains('\0') {
        return Err(invalid(variable, value, "the path contains a NUL byte"));
    }
    Ok(PathBuf::from(path))
}

fn parse_tables(variable: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let names: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = names.iter().find(|n| n.contains('\0') || n.len() > 63) {
        return Err(invalid(
            variable,
            value,
            format!("{bad:?} is not a PostgreSQL table name"),
        ));
    }
    Ok(names)
}

impl Config {
    /// Builds the configuration from a variable lookup (environment, `.env`
    /// and flags already layered by the caller). Unset variables take their
    /// defaults (module doc).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let database_url = match get("DATABASE_URL") {
            Some(v) => Some(
                DatabaseUrl::parse(&v)
                    .map_err(|reason| invalid("DATABASE_URL", &redact(&v), reason))?,
            ),
            None => None,
        };
        let token = match (
            get("OUTPOST_GATEWAY_TOKEN"),
            get("OUTPOST_GATEWAY_TOKEN_FILE"),
        ) {
            (Some(_), Some(file)) => {
                return Err(invalid(
                    "OUTPOST_GATEWAY_TOKEN_FILE",
                    &file,
                    "set either OUTPOST_GATEWAY_TOKEN or OUTPOST_GATEWAY_TOKEN_FILE, not both",
                ));
            }
            (Some(token), None) => Some(TokenSource::Fixed(token)),
            (None, Some(file)) => Some(TokenSource::File(PathBuf::from(file))),
            (None, None) => None,
        };
        let gateway = match (get("OUTPOST_GATEWAY_URL"), token) {
            (Some(url), Some(token)) => {
                let target = match token {
                    TokenSource::Fixed(token) => GatewayTarget::new(&url, &token)?,
                    TokenSource::File(file) => GatewayTarget::with_token_file(&url, &file)?,
                };
                Some(match get("OUTPOST_GATEWAY_CA") {
                    Some(ca) => target.with_ca(&ca)?,
                    None => target,
                })
            }
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    variable: "OUTPOST_GATEWAY_TOKEN".into(),
                    why: "a node syncing through OUTPOST_GATEWAY_URL presents a token \
                          (or set OUTPOST_GATEWAY_TOKEN_FILE to a file holding it)"
                        .into(),
                });
            }
            (None, _) => None,
        };
        if gateway.is_some() && database_url.is_some() {
            // Two ways to the same data would make "which one did this
            // write go to" a question; a node has one.
            return Err(invalid(
                "OUTPOST_GATEWAY_URL",
                &gateway.as_ref().map(|g| g.url.clone()).unwrap_or_default(),
                "set either DATABASE_URL (direct) or OUTPOST_GATEWAY_URL (through a gateway), not both",
            ));
        }
        let flag = |k: &str, default: bool| match get(k) {
            Some(v) => parse_bool(k, &v),
            None => Ok(default),
        };
        let local_database_path = match get("LOCAL_DATABASE_URL") {
            Some(v) => parse_local_url("LOCAL_DATABASE_URL", &v)?,
            None => PathBuf::from("./local.db"),
        };
        let sync_interval = match get("LOCAL_DATABASE_SYNC_INTERVAL") {
            Some(v) => {
                let ms: u64 = v.trim().parse().map_err(|_| {
                    invalid(
                        "LOCAL_DATABASE_SYNC_INTERVAL",
                        &v,
                        "expected a whole number of milliseconds",
                    )
                })?;
                (ms > 0).then(|| Duration::from_millis(ms))
            }
            None => Some(Duration::from_millis(300_000)),
        };
        let mut tables = TableSelection::default();
        if let Some(v) = get("OUTPOST_SCHEMA") {
            if v.contains('\0') || v.trim().is_empty() {
                return Err(invalid("OUTPOST_SCHEMA", &v, "not a schema name"));
            }
            tables.pg_schema = v.trim().to_string();
        }
        if let Some(v) = get("OUTPOST_TABLES") {
            let names = parse_tables("OUTPOST_TABLES", &v)?;
            if names.is_empty() {
                return Err(invalid("OUTPOST_TABLES", &v, "names no table"));
            }
            tables.include = Some(names);
        }
        if let Some(v) = get("OUTPOST_EXCLUDE_TABLES") {
            tables
                .exclude
                .extend(parse_tables("OUTPOST_EXCLUDE_TABLES", &v)?);
        }
        Ok(Config {
            database_url,
            gateway,
            enable_local_database: flag("ENABLE_LOCAL_DATABASE", true)?,
            local_database_path,
            sync_interval,
            enable_offline_mode: flag("ENABLE_OFFLINE_MODE", true)?,
            tables,
            timeouts: Timeouts::from_lookup(get)?,
            prisma_schema: get("PRISMA_SCHEMA").map(|v| PathBuf::from(v.trim())),
        })
    }

    /// The Prisma schema file to read and whether it must exist: the one
    /// `PRISMA_SCHEMA` names (it must), else [`DEFAULT_PRISMA_SCHEMA`] (read
    /// only when present, so an application without Prisma needs nothing).
    pub fn prisma_schema_file(&self) -> (PathBuf, bool) {
        match &self.prisma_schema {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_PRISMA_SCHEMA), false),
        }
    }

    /// The server's connection string, or an error saying what needs it
    /// (and, for a node in gateway topology, that it has none by design).
    pub fn require_database_url(&self, why: &str) -> Result<&DatabaseUrl, ConfigError> {
        self.database_url
            .as_ref()
            .ok_or_else(|| ConfigError::Missing {
                variable: "DATABASE_URL".into(),
                why: if self.gateway.is_some() {
                    format!("{why}; this node syncs through OUTPOST_GATEWAY_URL and has no database connection (docs/gateway.md)")
                } else {
                    why.into()
                },
            })
    }
}

#[cfg(test)]
mod tests;
