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
//!
//! Booleans accept `true/false`, `1/0`, `yes/no`, `on/off` in any case. A bad
//! value is refused with an error that names the variable and the value;
//! passwords in `DATABASE_URL` are shown as `***`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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

/// A server connection string that never shows its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Checks the form of a connection string: a `postgres://` or
    /// `postgresql://` URL with a host, or libpq `key=value` pairs.
    pub fn parse(raw: &str) -> Result<DatabaseUrl, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("it is empty".into());
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            let url = url::Url::parse(raw).map_err(|e| format!("not a valid URL: {e}"))?;
            if url.host_str().is_none_or(str::is_empty) && !raw.contains("host=") {
                return Err("the URL has no host".into());
            }
            return Ok(DatabaseUrl(raw.to_string()));
        }
        if raw.contains("://") {
            let scheme = raw.split("://").next().unwrap_or_default();
            return Err(format!(
                "scheme {scheme:?} is not PostgreSQL (use postgres:// or postgresql://)"
            ));
        }
        if raw.split_whitespace().all(|kv| kv.contains('=')) {
            return Ok(DatabaseUrl(raw.to_string()));
        }
        Err("expected postgres://user@host/db or key=value pairs".into())
    }

    /// The connection string itself, password included: hand it to the
    /// driver, never to a log or a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The connection string with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Replaces the password of a connection string (URL or key=value) by `***`.
pub fn redact(raw: &str) -> String {
    if let Some(scheme_end) = raw.find("://") {
        let rest = &raw[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &raw[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        // A password may also come as a query parameter.
        return redact_pairs(raw, '&');
    }
    redact_pairs(raw, ' ')
}

fn redact_pairs(raw: &str, sep: char) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find("password=") {
        let at_boundary = i == 0 || matches!(rest.as_bytes()[i - 1], b' ' | b'&' | b'?');
        out.push_str(&rest[..i + "password=".len()]);
        rest = &rest[i + "password=".len()..];
        if at_boundary {
            let end = rest.find(sep).unwrap_or(rest.len());
            out.push_str("***");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// The validated configuration of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The server, if configured (`DATABASE_URL`).
    pub database_url: Option<DatabaseUrl>,
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
}

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
            enable_local_database: flag("ENABLE_LOCAL_DATABASE", true)?,
            local_database_path,
            sync_interval,
            enable_offline_mode: flag("ENABLE_OFFLINE_MODE", true)?,
            tables,
        })
    }

    /// The server's connection string, or an error saying what needs it.
    pub fn require_database_url(&self, why: &str) -> Result<&DatabaseUrl, ConfigError> {
        self.database_url
            .as_ref()
            .ok_or_else(|| ConfigError::Missing {
                variable: "DATABASE_URL".into(),
                why: why.into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_seed() {
        let c = config(&[]).expect("defaults");
        assert!(c.enable_local_database && c.enable_offline_mode);
        assert_eq!(c.local_database_path, PathBuf::from("./local.db"));
        assert_eq!(c.sync_interval, Some(Duration::from_millis(300_000)));
        assert_eq!(c.tables, TableSelection::default());
        assert!(c.database_url.is_none());
    }

    #[test]
    fn seed_values_are_read() {
        let c = config(&[
            ("ENABLE_LOCAL_DATABASE", "TRUE"),
            (
                "LOCAL_DATABASE_URL",
                "file:./data/dev.db?connection_limit=1",
            ),
            ("LOCAL_DATABASE_SYNC_INTERVAL", "1500"),
            ("ENABLE_OFFLINE_MODE", "off"),
            ("DATABASE_URL", "postgresql://app:s3cret@db.local:5432/app"),
            ("OUTPOST_TABLES", "User, Post"),
            ("OUTPOST_EXCLUDE_TABLES", "Audit"),
        ])
        .expect("valid");
        assert_eq!(c.local_database_path, PathBuf::from("./data/dev.db"));
        assert_eq!(c.sync_interval, Some(Duration::from_millis(1500)));
        assert!(!c.enable_offline_mode);
        assert_eq!(
            c.tables.include,
            Some(vec!["User".to_string(), "Post".to_string()])
        );
        assert_eq!(c.tables.exclude, vec!["_prisma_migrations", "Audit"]);
        let url = c.database_url.expect("url");
        assert_eq!(url.to_string(), "postgresql://app:***@db.local:5432/app");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(
            config(&[("LOCAL_DATABASE_SYNC_INTERVAL", "0")]).map(|c| c.sync_interval),
            Ok(None)
        );
    }

    #[test]
    fn bad_values_name_variable_and_value() {
        let e = config(&[("LOCAL_DATABASE_SYNC_INTERVAL", "5 minutes")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LOCAL_DATABASE_SYNC_INTERVAL=\"5 minutes\" is invalid: expected a whole number of milliseconds"
        );
        let e = config(&[("ENABLE_OFFLINE_MODE", "maybe")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ENABLE_OFFLINE_MODE=\"maybe\" is invalid: expected true or false"
        );
        let e = config(&[("LOCAL_DATABASE_URL", "postgres://x/y")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("LOCAL_DATABASE_URL=\"postgres://x/y\"")
        );
        let e = config(&[("LOCAL_DATABASE_URL", "file:")]).unwrap_err();
        assert!(e.to_string().contains("no file path"));
        let e = config(&[("DATABASE_URL", "mysql://root:hunter2@h/db")]).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("DATABASE_URL="), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let e = config(&[("DATABASE_URL", "postgres://u:pw@[bad/db")]).unwrap_err();
        assert!(!e.to_string().contains("pw@"), "{e}");
        let e = config(&[("LOCAL_DATABASE_SYNC_INTERVAL", "-1")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("LOCAL_DATABASE_SYNC_INTERVAL=\"-1\"")
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:p@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("host=h password=secret user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact("postgres://h/db?user=u&password=secret&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
    }
}
