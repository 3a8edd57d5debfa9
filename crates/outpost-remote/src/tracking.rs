//! Install, upgrade, uninstall and status of the server's tracking schema
//! (`outpost.*` and the triggers on synced tables). The SQL itself is
//! generated and pinned in [`outpost_core::tracking`]; this module runs it.
//!
//! Each operation runs in one transaction under an advisory lock
//! ([`tracking::LOCK_SQL`]), so it happens entirely or not at all and two of
//! them never interleave. Each is idempotent: [`install`] applies only the
//! migrations the server lacks and touches only the triggers that differ from
//! what the schema wants, so running it twice changes nothing the second time
//! (and its report says so); [`uninstall`] on a server without outpost does
//! nothing.
//!
//! ```no_run
//! # async fn demo(client: &mut tokio_postgres::Client) -> Result<(), outpost_remote::RemoteError> {
//! let schema = outpost_remote::introspect(&*client, "public", None, &[]).await?;
//! let report = outpost_remote::tracking::install(client, &schema).await?;
//! println!("tracking schema v{}, changed: {}", report.to_version, report.changed());
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;

use outpost_core::schema::Schema;
use outpost_core::tracking::{self, InstalledTrigger, TriggerPlan};
use tokio_postgres::{Client, GenericClient};

use crate::error::RemoteError;

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// The schema version found (`None`: not installed).
    pub from_version: Option<i32>,
    /// The schema version now installed.
    pub to_version: i32,
    /// The migration steps applied, by version.
    pub migrations_applied: Vec<i32>,
    /// Synced tables whose triggers were created or replaced.
    pub triggers_installed: Vec<String>,
    /// Outpost triggers dropped, as `schema.table.trigger`.
    pub triggers_dropped: Vec<String>,
}

impl InstallReport {
    /// Whether anything on the server changed.
    pub fn changed(&self) -> bool {
        !self.migrations_applied.is_empty()
            || !self.triggers_installed.is_empty()
            || !self.triggers_dropped.is_empty()
    }
}

impl std::fmt::Display for InstallReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.changed() {
            return write!(
                f,
                "version {} installed, up to date; nothing changed",
                self.to_version
            );
        }
        match self.from_version {
            None => write!(f, "version {} installed", self.to_version)?,
            Some(v) if v != self.to_version => {
                write!(f, "upgraded from version {v} to {}", self.to_version)?
            }
            Some(v) => write!(f, "version {v} installed")?,
        }
        if !self.triggers_installed.is_empty() {
            write!(
                f,
                "; triggers installed on {}",
                self.triggers_installed.join(", ")
            )?;
        }
        if !self.triggers_dropped.is_empty() {
            write!(
                f,
                "; triggers dropped: {}",
                self.triggers_dropped.join(", ")
            )?;
        }
        Ok(())
    }
}

/// What [`uninstall`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UninstallReport {
    /// Outpost triggers dropped, as `schema.table.trigger`.
    pub triggers_dropped: Vec<String>,
    /// Whether schema `outpost` existed and was dropped.
    pub schema_dropped: bool,
}

impl UninstallReport {
    /// Whether anything on the server changed.
    pub fn changed(&self) -> bool {
        self.schema_dropped || !self.triggers_dropped.is_empty()
    }
}

/// The tracking schema's state on the server, compared with a [`Schema`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingStatus {
    /// The installed schema version (`None`: not installed).
    pub installed_version: Option<i32>,
    /// The version this build installs.
    pub latest_version: i32,
    /// Synced tables whose triggers are missing or differ.
    pub tables_needing_triggers: Vec<String>,
    /// Outpost triggers that should not be there, as `schema.table.trigger`.
    pub stray_triggers: Vec<String>,
}

impl TrackingStatus {
    /// True when [`install`] would change nothing.
    pub fn up_to_date(&self) -> bool {
        self.installed_version == Some(self.latest_version)
            && self.tables_needing_triggers.is_empty()
            && self.stray_triggers.is_empty()
    }
}

/// The installed tracking schema version, `None` when outpost is not
/// installed.
pub async fn installed_version<C>(client: &C) -> Result<Option<i32>, RemoteError>
where
    C: GenericClient + Sync,
{
    let action = "reading the installed outpost schema version";
    let exists: bool = client
        .query_one(tracking::META_EXISTS_SQL, &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| RemoteError::db(action, e))?;
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(tracking::INSTALLED_VERSION_SQL, &[])
        .await
        .map_err(|e| RemoteError::db(action, e))?;
    let Some(row) = row else {
        return Err(RemoteError::TrackingCorrupt {
            message: "outpost.meta has no schema_version".into(),
        });
    };
    let text: String = row.try_get(0).map_err(|e| RemoteError::db(action, e))?;
    text.trim()
        .parse::<i32>()
        .map(Some)
        .map_err(|_| RemoteError::TrackingCorrupt {
            message: format!("outpost.meta schema_version is {text:?}, not a number"),
        })
}

/// Every trigger on the server whose function lives in schema `outpost`.
pub async fn installed_triggers<C>(client: &C) -> Result<Vec<InstalledTrigger>, RemoteError>
where
    C: GenericClient + Sync,
{
    let action = "listing outpost triggers";
    let rows = client
        .query(tracking::LIST_TRIGGERS_SQL, &[])
        .await
        .map_err(|e| RemoteError::db(action, e))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let get_err = |e| RemoteError::db(action, e);
        let tgtype: i32 = row.try_get("tgtype").map_err(get_err)?;
        let args: Vec<u8> = row.try_get("args").map_err(get_err)?;
        let nargs: i32 = row.try_get("nargs").map_err(get_err)?;
        out.push(InstalledTrigger {
            pg_schema: row.try_get("pg_schema").map_err(get_err)?,
            table: row.try_get("table_name").map_err(get_err)?,
            name: row.try_get("trigger_name").map_err(get_err)?,
            function: row.try_get("function_name").map_err(get_err)?,
            // tgtype is an int2 in the catalogue; the cast keeps it in range.
            tgtype: i16::try_from(tgtype).unwrap_or(-1),
            args: tracking::parse_tgargs(&args, usize::try_from(nargs).unwrap_or(0)),
            enabled: row.try_get("enabled").map_err(get_err)?,
            plain: row.try_get("plain").map_err(get_err)?,
        });
    }
    Ok(out)
}

/// The partitioned tables of `schema`: they keep row-level capture.
async fn partitioned<C>(client: &C, schema: &Schema) -> Result<BTreeSet<String>, RemoteError>
where
    C: GenericClient + Sync,
{
    let rows = client
        .query(tracking::PARTITIONED_TABLES_SQL, &[&schema.pg_schema])
        .await
        .map_err(|e| RemoteError::db("listing partitioned tables", e))?;
    rows.iter()
        .map(|r| {
            r.try_get::<_, String>(0)
                .map_err(|e| RemoteError::db("listing partitioned tables", e))
        })
        .collect()
}

async fn plan<C>(
    client: &C,
    schema: &Schema,
) -> Result<(TriggerPlan, BTreeSet<String>), RemoteError>
where
    C: GenericClient + Sync,
{
    let existing = installed_triggers(client).await?;
    let row_capture = partitioned(client, schema).await?;
    Ok((
        tracking::plan_triggers(&existing, schema, &row_capture),
        row_capture,
    ))
}

fn dropped_names(plan: &TriggerPlan) -> Vec<String> {
    plan.drop
        .iter()
        .map(|(s, t, n)| format!("{s}.{t}.{n}"))
        .collect()
}

/// Compares the server with what [`install`] would make of it, changing
/// nothing.
pub async fn status<C>(client: &C, schema: &Schema) -> Result<TrackingStatus, RemoteError>
where
    C: GenericClient + Sync,
{
    let installed = installed_version(client).await?;
    let (plan, _) = plan(client, schema).await?;
    Ok(TrackingStatus {
        installed_version: installed,
        latest_version: tracking::latest_version(),
        tables_needing_triggers: plan.recreate.clone(),
        stray_triggers: dropped_names(&plan),
    })
}

/// Installs or upgrades the tracking schema and brings the triggers in line
/// with `schema`, in one transaction. Refuses a server whose tracking schema
/// is newer than this build ([`RemoteError::NewerTrackingSchema`]).
#[tracing::instrument(skip_all, fields(pg_schema = %schema.pg_schema, tables = schema.tables.len()))]
pub async fn install(client: &mut Client, schema: &Schema) -> Result<InstallReport, RemoteError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| RemoteError::db("starting the install transaction", e))?;
    tx.batch_execute(tracking::LOCK_SQL)
        .await
        .map_err(|e| RemoteError::db("taking the outpost install lock", e))?;

    let from_version = installed_version(&tx).await?;
    let pending = tracking::pending_migrations(from_version)?;
    let mut migrations_applied = Vec::with_capacity(pending.len());
    for m in pending {
        tx.batch_execute(&tracking::migration_sql(m))
            .await
            .map_err(|e| {
                RemoteError::db(
                    format!(
                        "applying outpost schema migration {} ({})",
                        m.version, m.description
                    ),
                    e,
                )
            })?;
        tracing::info!(
            version = m.version,
            description = m.description,
            "migration applied"
        );
        migrations_applied.push(m.version);
    }

    let (plan, row_capture) = plan(&tx, schema).await?;
    for (pg_schema, table, trigger) in &plan.drop {
        tx.batch_execute(&tracking::drop_trigger_sql(pg_schema, table, trigger))
            .await
            .map_err(|e| {
                RemoteError::db(
                    format!("dropping trigger {trigger:?} from table {pg_schema:?}.{table:?}"),
                    e,
                )
            })?;
    }
    for name in &plan.recreate {
        let Some(table) = schema.table(name) else {
            continue;
        };
        let capture = tracking::capture_of(&row_capture, name);
        tx.batch_execute(&tracking::create_triggers_sql(
            &schema.pg_schema,
            table,
            capture,
        ))
        .await
        .map_err(|e| {
            RemoteError::db(
                format!(
                    "installing the outpost triggers on table {:?}.{name:?}",
                    schema.pg_schema
                ),
                e,
            )
        })?;
    }
    tx.commit()
        .await
        .map_err(|e| RemoteError::db("committing the outpost install", e))?;

    let report = InstallReport {
        from_version,
        to_version: tracking::latest_version(),
        migrations_applied,
        triggers_installed: plan.recreate.clone(),
        triggers_dropped: dropped_names(&plan),
    };
    tracing::info!(
        changed = report.changed(),
        triggers_installed = report.triggers_installed.len(),
        triggers_dropped = report.triggers_dropped.len(),
        "outpost tracking installed"
    );
    Ok(report)
}

/// Removes everything outpost installed: its triggers from every table, then
/// schema `outpost` with the captured changes. User tables and their data are
/// untouched. Doing it on a server without outpost changes nothing.
#[tracing::instrument(skip_all)]
pub async fn uninstall(client: &mut Client) -> Result<UninstallReport, RemoteError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| RemoteError::db("starting the uninstall transaction", e))?;
    tx.batch_execute(tracking::LOCK_SQL)
        .await
        .map_err(|e| RemoteError::db("taking the outpost install lock", e))?;
    let triggers = installed_triggers(&tx).await?;
    let mut triggers_dropped = Vec::with_capacity(triggers.len());
    for t in &triggers {
        tx.batch_execute(&tracking::drop_trigger_sql(&t.pg_schema, &t.table, &t.name))
            .await
            .map_err(|e| {
                RemoteError::db(
                    format!(
                        "dropping trigger {:?} from table {:?}.{:?}",
                        t.name, t.pg_schema, t.table
                    ),
                    e,
                )
            })?;
        triggers_dropped.push(format!("{}.{}.{}", t.pg_schema, t.table, t.name));
    }
    let schema_dropped: bool = tx
        .query_one(tracking::SCHEMA_EXISTS_SQL, &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| RemoteError::db("checking for schema outpost", e))?;
    if schema_dropped {
        tx.batch_execute(tracking::DROP_SCHEMA_SQL)
            .await
            .map_err(|e| RemoteError::db("dropping schema outpost", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| RemoteError::db("committing the outpost uninstall", e))?;
    let report = UninstallReport {
        triggers_dropped,
        schema_dropped,
    };
    tracing::info!(changed = report.changed(), "outpost tracking uninstalled");
    Ok(report)
}
