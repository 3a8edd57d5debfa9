//! Configuration in layers: defaults < `.env` < environment < flags. The
//! layers are merged into one variable lookup and validated by
//! `outpost_core::config::Config::from_lookup`, so every surface refuses the
//! same bad values with the same message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Args;
use outpost_core::config::Config;

/// Flags that override the environment. Each names the variable it
/// overrides.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigFlags {
    /// The `.env` file to read (default: `./.env` if present).
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// PostgreSQL server [overrides DATABASE_URL].
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Replica file, `file:./local.db` [overrides LOCAL_DATABASE_URL].
    #[arg(long, global = true, value_name = "URL")]
    pub local_database_url: Option<String>,
    /// Milliseconds between periodic syncs, 0 for none [overrides LOCAL_DATABASE_SYNC_INTERVAL].
    #[arg(long, global = true, value_name = "MS")]
    pub sync_interval: Option<String>,
    /// Keep a local replica [overrides ENABLE_LOCAL_DATABASE].
    #[arg(long, global = true, value_name = "BOOL")]
    pub local_database: Option<String>,
    /// Fall back to the replica when the server is unreachable [overrides ENABLE_OFFLINE_MODE].
    #[arg(long, global = true, value_name = "BOOL")]
    pub offline_mode: Option<String>,
    /// PostgreSQL schema whose tables are synced [overrides OUTPOST_SCHEMA].
    #[arg(long, global = true, value_name = "NAME")]
    pub schema: Option<String>,
    /// Comma-separated tables to sync [overrides OUTPOST_TABLES].
    #[arg(long, global = true, value_name = "LIST")]
    pub tables: Option<String>,
    /// Comma-separated tables not to sync [overrides OUTPOST_EXCLUDE_TABLES].
    #[arg(long, global = true, value_name = "LIST")]
    pub exclude_tables: Option<String>,
    /// The application's Prisma schema, default ./prisma/schema.prisma when present [overrides PRISMA_SCHEMA].
    #[arg(long, global = true, value_name = "PATH")]
    pub prisma_schema: Option<String>,
}

impl ConfigFlags {
    fn overrides(&self) -> HashMap<&'static str, String> {
        let pairs = [
            ("DATABASE_URL", &self.database_url),
            ("LOCAL_DATABASE_URL", &self.local_database_url),
            ("LOCAL_DATABASE_SYNC_INTERVAL", &self.sync_interval),
            ("ENABLE_LOCAL_DATABASE", &self.local_database),
            ("ENABLE_OFFLINE_MODE", &self.offline_mode),
            ("OUTPOST_SCHEMA", &self.schema),
            ("OUTPOST_TABLES", &self.tables),
            ("OUTPOST_EXCLUDE_TABLES", &self.exclude_tables),
            ("PRISMA_SCHEMA", &self.prisma_schema),
        ];
        pairs
            .into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
            .collect()
    }
}

/// A `.env` file that cannot be read or parsed: invalid configuration,
/// like a bad value (exit status 2).
#[derive(Debug)]
pub struct EnvFileError(String);

impl std::fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EnvFileError {}

/// Reads a `.env` file into a map without touching the process environment.
fn read_env_file(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let iter = dotenvy::from_path_iter(path)
        .map_err(|e| EnvFileError(format!("cannot read {}: {e}", path.display())))?;
    let mut out = HashMap::new();
    for item in iter {
        let (k, v) = item.map_err(|e| {
            // dotenvy gives the offending text; find its line for the message.
            // The text is not repeated: it may hold a password.
            let line = match &e {
                dotenvy::Error::LineParse(text, _) => std::fs::read_to_string(path)
                    .ok()
                    .and_then(|all| {
                        let first = text.lines().next().unwrap_or_default().to_string();
                        all.lines().position(|l| l.trim() == first.trim())
                    })
                    .map(|i| format!(" at line {}", i + 1))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            EnvFileError(format!(
                "{}: malformed{line}: expected KEY=value (quote values with spaces; close every quote)",
                path.display()
            ))
        })?;
        out.insert(k, v);
    }
    Ok(out)
}

/// Builds the validated configuration from the layers.
pub fn load(flags: &ConfigFlags) -> anyhow::Result<Config> {
    let lookup = lookup(flags)?;
    Ok(Config::from_lookup(lookup)?)
}

/// The layers as one variable lookup (flags < environment < `.env`
/// precedence as in [`load`]), for settings beyond [`Config`]'s (the
/// gateway's).
pub fn lookup(flags: &ConfigFlags) -> anyhow::Result<impl Fn(&str) -> Option<String>> {
    let dotenv = match &flags.env_file {
        Some(p) => read_env_file(p)?,
        None if Path::new(".env").exists() => read_env_file(Path::new(".env"))?,
        None => HashMap::new(),
    };
    let overrides = flags.overrides();
    // An empty variable counts as unset (a `.env` convention), but an empty
    // flag was typed on purpose: refuse it rather than use the default.
    if let Some((k, _)) = overrides.iter().find(|(_, v)| v.trim().is_empty()) {
        return Err(outpost_core::config::ConfigError::Invalid {
            variable: (*k).to_string(),
            value: String::new(),
            reason: "the flag was given an empty value; give a value or leave the flag out".into(),
        }
        .into());
    }
    Ok(move |key: &str| {
        overrides
            .get(key)
            .cloned()
            .or_else(|| std::env::var(key).ok())
            .or_else(|| dotenv.get(key).cloned())
    })
}
