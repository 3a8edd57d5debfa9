//! Conflicts: carrying out a settlement decided by
//! `outpost_core::settle::settle` (at pull, at a push answered with a
//! conflict, at a server truncation), the list of rows in conflict, and a
//! person's resolution of one.

use std::collections::HashMap;

use outpost_core::Version;
use outpost_core::conflict::{Policy, Rules};
use outpost_core::schema::Table;
use outpost_core::settle::{BaseVersion, SettleInput, Settlement, settle};
use outpost_core::types::{ScalarType, Value};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::data::{key_of, read_row, table_of, write_row};
use crate::error::LocalError;
use crate::fold::fold_for_read;
use crate::keys::pk_values;
use crate::replica::Replica;
use crate::rows::{RowEntry, mark_conflict, mark_failed, mark_synced, rebase};
use crate::value::row_from_json;

/// How a person resolves a conflict.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Keep the local row (or deletion) and push it over the server's.
    KeepLocal,
    /// Take the server's row (or deletion).
    KeepServer,
    /// This row (all columns, table order), pushed over the server's.
    Merged(Vec<Value>),
}

/// A row in conflict, with both sides and their common ancestor.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictEntry {
    /// The table.
    pub table: String,
    /// The row key (JSON array).
    pub pk: String,
    /// The row before the local change (`None`: it did not exist).
    pub base: Option<Vec<Value>>,
    /// The local row (`None`: deleted locally, or unreadable: see
    /// `local_problem`).
    pub local: Option<Vec<Value>>,
    /// Why the local row cannot be read, when a value in it does not fit
    /// its column (written by another program): the column, its type and
    /// the value. The conflict is still listed and can be resolved; keeping
    /// the local row fails it on push with the same reason.
    pub local_problem: Option<String>,
    /// The server's row (`None`: deleted on the server).
    pub server: Option<Vec<Value>>,
    /// The server's version.
    pub server_version: Option<i64>,
    /// When the local change was made.
    pub changed_at: Option<String>,
}

/// The conflict policy of each model (`manual` where unset).
#[derive(Debug, Clone, Default)]
pub struct Policies(pub HashMap<String, Policy>);

impl Policies {
    /// The policy for `table`.
    pub fn of(&self, table: &str) -> Policy {
        self.0.get(table).copied().unwrap_or_default()
    }
}

/// Columns of `updatedAt` kind: both sides changing them is no conflict.
fn latest_wins(table: &Table) -> Vec<usize> {
    table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            matches!(c.name.as_str(), "updatedAt" | "updated_at")
                && matches!(c.ty.scalar, ScalarType::Timestamptz | ScalarType::Timestamp)
                && !c.ty.array
        })
        .map(|(i, _)| i)
        .collect()
}

/// Generated columns: never compared, the server's value stands.
fn generated(table: &Table) -> Vec<usize> {
    table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.generated)
        .map(|(i, _)| i)
        .collect()
}

/// The server's side of a settlement: its row (`None`: deleted), the
/// version the local row is re-based on or shows in a conflict (`Unknown`
/// after a truncation) and when it changed.
pub(crate) struct ServerSide<'a> {
    /// Primary-key values.
    pub pk: &'a [Value],
    /// The row; `None` when deleted.
    pub values: Option<&'a [Value]>,
    /// Its version.
    pub version: BaseVersion,
    /// When it changed, if known.
    pub changed_at: Option<&'a str>,
}

/// How a settlement ended, for the run's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The server's row was taken.
    Server,
    /// The local row stays and will be pushed (possibly merged).
    Local,
    /// Left in conflict.
    Conflict,
    /// `FAILED`: the local row holds a value that cannot be read for its
    /// column, so it cannot be compared; it keeps its base and waits for a
    /// person. Or the server's row was taken over a local edit that had
    /// values of columns the server no longer has ([`fail_lost_values`]).
    Failed,
}

/// Settles a dirty row (its entry `state`) against a newer server row:
/// asks `outpost_core::settle::settle` and carries the answer out. Capture
/// must be silenced.
pub(crate) fn settle_row(
    conn: &Connection,
    table: &Table,
    pk: &str,
    state: &RowEntry,
    server: &ServerSide<'_>,
    policy: Policy,
) -> Result<Settled, LocalError> {
    let local = match read_row(conn, table, server.pk) {
        Ok(local) => local,
        // Any program may write the file: a value of the wrong kind fails
        // its own row (keeping its base and the local value), never the
        // pull or the push around it.
        Err(LocalError::BadStoredValue {
            column,
            ty,
            message,
        }) => {
            let reason = format!(
                "{} {pk}, column {column}: the local value cannot be read as {ty}: {message}; \
                 the server changed the row since (fix the value to push it, or discard the \
                 local change to take the server's row)",
                table.name
            );
            tracing::warn!(table = %table.name, %pk, %column, "{reason}");
            mark_failed(conn, &table.name, pk, &reason)?;
            return Ok(Settled::Failed);
        }
        Err(e) => return Err(e),
    };
    let base = match &state.base_row {
        Some(json) => Some(row_from_json(table, json)?),
        None => None,
    };
    let ignore = generated(table);
    let latest = latest_wins(table);
    let decision = settle(&SettleInput {
        base: base.as_deref(),
        local: local.as_deref(),
        local_changed_at: state.changed_at.as_deref(),
        server: server.values,
        server_version: match server.version {
            BaseVersion::Known(v) => Some(v),
            BaseVersion::AsOfCursor | BaseVersion::Unknown => None,
        },
        server_changed_at: server.changed_at,
        policy,
        rules: Rules {
            ignore: &ignore,
            latest_wins: &latest,
        },
    });
    Ok(match decision {
        Settlement::TakeServer => {
            write_row(conn, table, server.pk, server.values)?;
            mark_synced(
                conn,
                &table.name,
                pk,
                server.version,
                server.values.is_none(),
            )?;
            if fail_lost_values(conn, &table.name, pk)? {
                Settled::Failed
            } else {
                Settled::Server
            }
        }
        Settlement::Rebase => {
            rebase(conn, table, pk, server.values, server.version)?;
            Settled::Local
        }
        Settlement::Merge(row) => {
            write_row(conn, table, server.pk, Some(&row))?;
            rebase(conn, table, pk, server.values, server.version)?;
            Settled::Local
        }
        Settlement::Conflict(_) => {
            mark_conflict(conn, table, pk, server.values, server.version)?;
            Settled::Conflict
        }
    })
}

impl Replica {
    /// Rows in conflict, with both sides and the base.
    pub fn conflicts(&self) -> Result<Vec<ConflictEntry>, LocalError> {
        fold_for_read(self.connection())?;
        let schema = self.schema();
        let conn = self.connection();
        let mut stmt = conn
            .prepare(
                "SELECT table_name, pk, base_row, conflict_row, conflict_version, changed_at FROM \"_outpost_rows\" \
                 WHERE status = 'CONFLICT' ORDER BY table_name, local_seq",
            )
            .map_err(LocalError::sqlite("reading conflicts"))?;
        let raw = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(LocalError::sqlite("reading conflicts"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(LocalError::sqlite("reading conflicts"))?;
        let mut out = Vec::with_capacity(raw.len());
        for (table, pk, base, server, version, changed_at) in raw {
            let Some(t) = schema.table(&table) else {
                continue;
            };
            let key = pk_values(t, &pk)?;
            // One unreadable row must not hide every other conflict (nor
            // its own: taking the server's row is how it gets fixed).
            let (local, local_problem) = match read_row(conn, t, &key) {
                Ok(row) => (row, None),
                Err(e @ LocalError::BadStoredValue { .. }) => (None, Some(e.to_string())),
                Err(e) => return Err(e),
            };
            out.push(ConflictEntry {
                base: base.map(|j| row_from_json(t, &j)).transpose()?,
                local,
                local_problem,
                server: server.map(|j| row_from_json(t, &j)).transpose()?,
                server_version: version,
                changed_at,
                table,
                pk,
            });
        }
        Ok(out)
    }

    /// Resolves a conflict. Keep local and merged rows are pushed by the next
    /// sync, over the server version the conflict showed.
    pub fn resolve_conflict(
        &mut self,
        table: &str,
        pk: &str,
        resolution: Resolution,
    ) -> Result<(), LocalError> {
        let schema = self.schema().clone();
        let t = table_of(&schema, table)?;
        self.apply_silenced(|tx| {
            let (server_json, version): (Option<String>, Option<i64>) = tx
                .query_row(
                    "SELECT conflict_row, conflict_version FROM \"_outpost_rows\" WHERE table_name = ?1 AND pk = ?2 AND status = 'CONFLICT'",
                    params![table, pk],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(LocalError::sqlite("reading a conflict"))?
                .ok_or_else(|| LocalError::NoConflict {
                    table: table.to_string(),
                    pk: pk.to_string(),
                })?;
            let key = pk_values(t, pk)?;
            let values = server_json.map(|j| row_from_json(t, &j)).transpose()?;
            // A conflict always records the version it shows; one without
            // (written by hand) is taken as version 0.
            let version = match version {
                None => BaseVersion::Known(Version::UNCHANGED),
                stored => BaseVersion::from_stored(stored),
            };
            match resolution {
                Resolution::KeepServer => {
                    write_row(tx, t, &key, values.as_deref())?;
                    mark_synced(tx, table, pk, version, values.is_none())?;
                    fail_lost_values(tx, table, pk)?;
                }
                Resolution::KeepLocal => rebase(tx, t, pk, values.as_deref(), version)?,
                Resolution::Merged(merged) => {
                    if merged.len() != t.columns.len() {
                        return Err(LocalError::BadMergedRow {
                            table: table.to_string(),
                            problem: format!(
                                "needs {} values, got {}",
                                t.columns.len(),
                                merged.len()
                            ),
                        });
                    }
                    if key_of(t, &merged) != key {
                        return Err(LocalError::BadMergedRow {
                            table: table.to_string(),
                            problem: "cannot change its key".into(),
                        });
                    }
                    write_row(tx, t, &key, Some(&merged))?;
                    rebase(tx, t, pk, values.as_deref(), version)?;
                    tx.execute(
                        "UPDATE \"_outpost_rows\" SET deleted = 0 WHERE table_name = ?1 AND pk = ?2",
                        params![table, pk],
                    )
                    .map_err(LocalError::sqlite("resolving a conflict"))?;
                }
            }
            Ok(())
        })
    }
}

/// After the server's row was taken over a local edit (`mark_synced`): an
/// edit `setup` carried into a new definition may hold values of columns
/// the server dropped or renamed (`lost_values`). Taking the server's row
/// must not drop them without a word, nor leave them on a `SYNCED` entry
/// for a later push to report against another edit: the row becomes
/// `FAILED`, its message showing them (as a push that landed without them
/// does). Returns whether it did.
pub(crate) fn fail_lost_values(
    conn: &Connection,
    table: &str,
    pk: &str,
) -> Result<bool, LocalError> {
    let n = conn
        .prepare_cached(
            "UPDATE \"_outpost_rows\" SET status = 'FAILED', error = \
             'the server''s row was taken over this local edit, without the local values of columns the server no longer has (dropped or renamed there): ' \
             || lost_values || '; retry to mark it synced, or edit the row' \
             WHERE table_name = ?1 AND pk = ?2 AND status = 'SYNCED' AND lost_values IS NOT NULL",
        )
        .and_then(|mut s| s.execute(params![table, pk]))
        .map_err(LocalError::sqlite("reporting values of dropped columns"))?;
    Ok(n > 0)
}
