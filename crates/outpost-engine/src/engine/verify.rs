//! `verify` and `resync`: comparing the replica with the server table by
//! table, and copying one table again.
//!
//! Verify narrows by digests (`outpost_remote::feed::VerifySnapshot`): the
//! table's row count and hash sum first, then buckets of rows by the first
//! hex digits of their key's hash (two more digits per round, only under
//! buckets that differ) until a differing bucket holds few rows; only those
//! rows cross the network, and they are compared value by value (the
//! digests only say where to look, so a type whose two forms disagree costs
//! time, never a false report). The server side is read in one
//! `REPEATABLE READ` snapshot; no sync runs meanwhile. Rows with local
//! changes (`PENDING`, `FAILED`, `CONFLICT`) are listed apart and never
//! counted as differences; rows the server changed after the replica's last
//! pull are differences until the next pull brings them.
//!
//! Resync puts the replica in `BOOTSTRAPPING` with every other table
//! recorded as copied (`Replica::resync_begin`) and runs a pull-only sync,
//! whose bootstrap copies that table alone and keeps its rows with local
//! changes.

use std::collections::{BTreeMap, BTreeSet};

use outpost_core::schema::Table;
use outpost_core::sync::{Direction, Trigger};
use outpost_core::types::Value;
use outpost_local::verify::LocalChange;
use outpost_remote::feed::{BucketDigest, TableDigest, VerifySnapshot};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::engine::{Engine, SyncOptions, SyncReport};
use crate::error::EngineError;

/// A key's local and server rows (either may be missing).
type Sides<'a> = (Option<&'a Vec<Value>>, Option<&'a Vec<Value>>);

/// A bucket with at most this many rows on either side is compared row by
/// row.
const LEAF_ROWS: i64 = 64;

/// The deadline of one digest or row query: each is a full scan of the
/// table on the server (no statement limit in the snapshot), so the sync's
/// round-trip deadline would cut a large table short. A dead connection is
/// still noticed sooner by its TCP keepalives.
const SCAN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Hex digits of a key hash (SHA-256).
const HASH_DIGITS: usize = 64;

/// The result of [`Engine::verify`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// No table differs (local changes not yet pushed do not count).
    pub consistent: bool,
    /// Differing rows over all tables.
    pub differences: usize,
    /// Rows with local changes over all tables.
    pub pending: usize,
    /// Per model, in schema order.
    pub models: Vec<ModelVerify>,
}

/// One table's comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelVerify {
    /// The model (table).
    pub model: String,
    /// Rows in the replica.
    pub local_rows: i64,
    /// Rows on the server.
    pub server_rows: i64,
    /// Rows that differ (local changes excluded), key order of discovery.
    pub differences: Vec<RowDifference>,
    /// Rows with local changes not yet settled with the server.
    pub pending: Vec<PendingRow>,
    /// Server rows read to compare (the rest was compared by digest).
    pub rows_compared: usize,
    /// Narrowing rounds (digest queries) on the server.
    pub rounds: usize,
    /// Buckets that differ but whose rows were not compared: through a
    /// gateway, whose answer carries at most 10,000 server rows a table
    /// (always 0 directly). The table is not consistent while it is not 0.
    pub unexamined_buckets: usize,
}

/// A row that differs between the replica and the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowDifference {
    /// The key, `{column: value}` in the JSON forms.
    pub key: Json,
    /// The replica's row (`null`: missing in the replica).
    pub local: Option<Json>,
    /// The server's row (`null`: missing on the server).
    pub server: Option<Json>,
    /// Columns whose values differ (every column when a side is missing).
    pub columns: Vec<String>,
}

/// A row with a local change (reported apart from differences).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRow {
    /// The key, `{column: value}`.
    pub key: Json,
    /// `PENDING`, `FAILED` or `CONFLICT`.
    pub status: String,
    /// The local change deletes the row.
    pub deleted: bool,
}

/// `{column: value}` of `values` (table order) restricted to `columns`.
fn object<'a>(
    table: &Table,
    names: impl Iterator<Item = &'a String>,
    values: impl Iterator<Item = &'a Value>,
) -> Json {
    let mut m = Map::new();
    for (name, v) in names.zip(values) {
        let json = match table.column(name) {
            Some(c) => v.to_json(&c.ty),
            None => Json::Null,
        };
        m.insert(name.clone(), json);
    }
    Json::Object(m)
}

fn row_json(table: &Table, row: &[Value]) -> Json {
    object(table, table.columns.iter().map(|c| &c.name), row.iter())
}

fn key_json(table: &Table, key: &[Value]) -> Json {
    object(table, table.primary_key.iter(), key.iter())
}

/// Digest sums of the local rows under `prefixes` (each `parent` digits
/// long), by bucket of `depth` digits.
fn local_buckets(
    digests: &[(String, u64)],
    depth: usize,
    parent: usize,
    prefixes: &BTreeSet<String>,
) -> BTreeMap<String, BucketDigest> {
    let mut out: BTreeMap<String, BucketDigest> = BTreeMap::new();
    for (kh, w) in digests {
        if !prefixes.contains(&kh[..parent]) {
            continue;
        }
        let b = out.entry(kh[..depth].to_string()).or_default();
        b.rows += 1;
        b.sum += u128::from(*w);
    }
    out
}

/// The report of per-table comparisons.
fn report(models: Vec<ModelVerify>) -> VerifyReport {
    let differences = models.iter().map(|m| m.differences.len()).sum();
    let pending = models.iter().map(|m| m.pending.len()).sum();
    VerifyReport {
        consistent: differences == 0 && models.iter().all(|m| m.unexamined_buckets == 0),
        differences,
        pending,
        models,
    }
}

/// The rows with local changes, as reported.
fn pending_rows(table: &Table, changes: &[LocalChange]) -> Vec<PendingRow> {
    changes
        .iter()
        .map(|c| PendingRow {
            key: key_json(table, &c.key),
            status: c.status.as_str().to_string(),
            deleted: c.deleted,
        })
        .collect()
}

/// The differences between the local and server rows of the same buckets
/// (each row with its key hash), value by value; rows with local changes
/// are left out (they are listed apart).
fn compare<'a>(
    table: &Table,
    local: impl Iterator<Item = (String, &'a Vec<Value>)>,
    server: impl Iterator<Item = (String, &'a Vec<Value>)>,
    changes: &[LocalChange],
    key_of: impl Fn(&[Value]) -> Vec<Value>,
) -> Vec<RowDifference> {
    let mut by_key: BTreeMap<String, Sides<'a>> = BTreeMap::new();
    for (kh, row) in local {
        by_key.entry(kh).or_default().0 = Some(row);
    }
    for (kh, row) in server {
        by_key.entry(kh).or_default().1 = Some(row);
    }
    let mut differences = Vec::new();
    for (local, server) in by_key.into_values() {
        let columns: Vec<String> = match (local, server) {
            (Some(l), Some(s)) => table
                .columns
                .iter()
                .zip(l.iter().zip(s))
                .filter(|(_, (a, b))| a != b)
                .map(|(c, _)| c.name.clone())
                .collect(),
            _ => table.columns.iter().map(|c| c.name.clone()).collect(),
        };
        if columns.is_empty() {
            continue;
        }
        let Some(any) = local.or(server) else {
            continue;
        };
        let key = key_of(any);
        if changes.iter().any(|c| c.key == key) {
            continue;
        }
        differences.push(RowDifference {
            key: key_json(table, &key),
            local: local.map(|r| row_json(table, r)),
            server: server.map(|r| row_json(table, r)),
            columns,
        });
    }
    differences
}

/// Runs one full-scan query under [`SCAN_DEADLINE`].
async fn scan<T>(
    what: &str,
    work: impl std::future::Future<Output = Result<T, outpost_remote::RemoteError>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(SCAN_DEADLINE, work).await {
        Ok(r) => r.map_err(EngineError::from),
        Err(_) => Err(super::stalled(what, SCAN_DEADLINE)),
    }
}

impl Engine {
    /// Compares the replica with the server, for `models` (every model when
    /// `None`); see the module doc. Needs the server; changes nothing.
    pub async fn verify(&self, models: Option<Vec<String>>) -> Result<VerifyReport, EngineError> {
        if let Some(models) = &models {
            for m in models {
                self.check_model(m)?;
            }
        }
        let schema = self.schema().clone();
        let tables: Vec<Table> = schema
            .tables
            .iter()
            .filter(|t| models.as_ref().is_none_or(|m| m.contains(&t.name)))
            .cloned()
            .collect();
        // No sync may change the replica between its read and the server's.
        let _running = self.inner.running.lock().await;
        if let (Some(target), None) = (&self.inner.config.gateway, &self.inner.config.database_url)
        {
            let conn = outpost_remote::gateway::GatewayConnection::new(
                target,
                outpost_remote::CONNECT_TIMEOUT.min(self.timeouts().round_trip),
            )?;
            let mut out = Vec::with_capacity(tables.len());
            for table in &tables {
                out.push(self.verify_through(&conn, &schema, table).await?);
            }
            return Ok(report(out));
        }
        let mut conn = self.connect_direct().await?;
        let snapshot = self
            .bounded("starting the verification snapshot", conn.verify_snapshot())
            .await?;
        let mut out = Vec::with_capacity(tables.len());
        for table in &tables {
            out.push(
                self.verify_table(&snapshot, &schema.pg_schema, table)
                    .await?,
            );
        }
        self.bounded("ending the verification snapshot", snapshot.finish())
            .await?;
        Ok(report(out))
    }

    /// One table's comparison through a gateway (`POST /v1/verify`): the
    /// node's bucket digests over its values, answered from one server
    /// snapshot with the rows of the buckets that differ. One round; the
    /// depth gives about 8 local rows a bucket (at most 4 hex digits, so a
    /// replica past 500,000 rows holds more a bucket).
    async fn verify_through(
        &self,
        conn: &outpost_remote::gateway::GatewayConnection,
        schema: &outpost_core::schema::Schema,
        table: &Table,
    ) -> Result<ModelVerify, EngineError> {
        let t = table.clone();
        let digests: Vec<outpost_remote::feed::RowDigest> = self
            .with_replica(move |r| {
                let mut out = Vec::new();
                r.scan_rows(&t.name, |row| {
                    out.push(outpost_remote::feed::value_digest(&t, row));
                    false
                })?;
                Ok(out)
            })
            .await?;
        let mut depth = 1;
        while depth < 4 && (16usize.pow(depth as u32) * 8) < digests.len() {
            depth += 1;
        }
        let buckets = outpost_remote::feed::value_buckets(&digests, depth);
        let server = scan(
            "verifying a table",
            conn.verify(schema, table, depth, &buckets),
        )
        .await?;
        let wanted: BTreeSet<String> = server.compared.iter().cloned().collect();
        let (name, t) = (table.name.clone(), table.clone());
        let (local_rows, changes): (Vec<Vec<Value>>, Vec<LocalChange>) = self
            .with_replica(move |r| {
                r.scan_rows(&name, |row| {
                    wanted.contains(&outpost_remote::feed::value_digest(&t, row).kh[..depth])
                })
            })
            .await?;
        let kh = |r: &Vec<Value>| outpost_remote::feed::value_digest(table, r).kh;
        let key_of = |r: &[Value]| -> Vec<Value> {
            table
                .pk_positions()
                .filter_map(|i| r.get(i).cloned())
                .collect()
        };
        let differences = compare(
            table,
            local_rows.iter().map(|r| (kh(r), r)),
            server.rows.iter().map(|r| (kh(r), r)),
            &changes,
            key_of,
        );
        Ok(ModelVerify {
            model: table.name.clone(),
            local_rows: digests.len() as i64,
            server_rows: server.server_rows,
            differences,
            pending: pending_rows(table, &changes),
            rows_compared: server.rows.len(),
            rounds: 1,
            unexamined_buckets: server.unexamined,
        })
    }

    async fn verify_table(
        &self,
        snapshot: &VerifySnapshot<'_>,
        pg_schema: &str,
        table: &Table,
    ) -> Result<ModelVerify, EngineError> {
        let td: TableDigest = self
            .bounded("describing a table", snapshot.table(pg_schema, table))
            .await?;
        // Pass 1 over the replica: only each row's digest is kept.
        let (name, digest) = (table.name.clone(), td.clone());
        let digests: Vec<(String, u64)> = self
            .with_replica(move |r| {
                let mut out = Vec::new();
                r.scan_rows(&name, |row| {
                    let d = digest.row(row);
                    out.push((d.kh, d.w));
                    false
                })?;
                Ok(out)
            })
            .await?;

        // Narrow: buckets that differ, two hex digits deeper per round.
        let mut rounds = 0;
        let mut server_rows = 0;
        let (mut depth, mut parent) = (0usize, 0usize);
        let mut prefixes: BTreeSet<String> = BTreeSet::from([String::new()]);
        let mut leaves: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        loop {
            let list: Vec<String> = prefixes.iter().cloned().collect();
            let server = scan(
                "hashing a table",
                snapshot.buckets(&td, depth, parent, &list),
            )
            .await?;
            rounds += 1;
            if depth == 0 {
                server_rows = server.values().map(|b| b.rows).sum();
            }
            let local = local_buckets(&digests, depth, parent, &prefixes);
            let mut next = BTreeSet::new();
            let keys: BTreeSet<&String> = server.keys().chain(local.keys()).collect();
            for b in keys {
                let (s, l) = (
                    server.get(b).copied().unwrap_or_default(),
                    local.get(b).copied().unwrap_or_default(),
                );
                if s == l {
                    continue;
                }
                if s.rows.max(l.rows) <= LEAF_ROWS || depth + 2 > HASH_DIGITS {
                    leaves.entry(depth).or_default().push(b.clone());
                } else {
                    next.insert(b.clone());
                }
            }
            if next.is_empty() {
                break;
            }
            parent = depth;
            depth += 2;
            prefixes = next;
        }

        // Pass 2 over the replica: the rows of the differing buckets, and
        // the rows with local changes (read last, so a row the application
        // changed meanwhile is among them).
        let (name, digest) = (table.name.clone(), td.clone());
        let wanted: Vec<(usize, BTreeSet<String>)> = leaves
            .iter()
            .map(|(d, b)| (*d, b.iter().cloned().collect()))
            .collect();
        let (local_rows, changes): (Vec<Vec<Value>>, Vec<LocalChange>) = if wanted.is_empty() {
            let name = name.clone();
            self.with_replica(move |r| r.scan_rows(&name, |_| false))
                .await?
        } else {
            self.with_replica(move |r| {
                r.scan_rows(&name, |row| {
                    let kh = digest.row(row).kh;
                    wanted.iter().any(|(d, b)| b.contains(&kh[..*d]))
                })
            })
            .await?
        };
        let local_digests: Vec<String> = local_rows.iter().map(|r| td.row(r).kh).collect();

        // Compare the rows of the differing buckets value by value.
        let mut differences = Vec::new();
        let mut rows_compared = 0;
        for (depth, buckets) in &leaves {
            let server = scan(
                "reading rows to compare",
                snapshot.rows(&td, *depth, buckets),
            )
            .await?;
            rows_compared += server.len();
            let wanted: BTreeSet<&str> = buckets.iter().map(String::as_str).collect();
            let local = local_rows
                .iter()
                .zip(&local_digests)
                .filter(|(_, kh)| wanted.contains(&kh[..*depth]))
                .map(|(row, kh)| (kh.clone(), row));
            differences.extend(compare(
                table,
                local,
                server.iter().map(|row| (td.row(row).kh, row)),
                &changes,
                |r| td.key_of(r),
            ));
        }
        let pending = pending_rows(table, &changes);
        Ok(ModelVerify {
            model: table.name.clone(),
            local_rows: digests.len() as i64,
            server_rows,
            differences,
            pending,
            rows_compared,
            rounds,
            unexamined_buckets: 0,
        })
    }

    /// Starts a re-bootstrap of one model (`Replica::resync_begin`); the
    /// next sync that pulls copies it. Refused (unreachable) while the
    /// server does not answer. When the replica is not `READY` a
    /// bootstrap is due anyway and nothing changes.
    pub async fn begin_resync(&self, model: &str) -> Result<(), EngineError> {
        self.check_model(model)?;
        // Not while the server is away: the replica would stay
        // BOOTSTRAPPING (and its local writes unpushed) until it answers.
        let link = self.connect().await?;
        // A gateway client connects per request: ask it once.
        self.bounded("probing the server", link.probe()).await?;
        drop(link);
        let _running = self.inner.running.lock().await;
        let m = model.to_string();
        self.with_replica(move |r| r.resync_begin(&m)).await?;
        Ok(())
    }

    /// Copies one model again from the server, keeping its rows with local
    /// changes (see the module doc): [`Engine::begin_resync`], then a
    /// pull-only sync.
    pub async fn resync(&self, model: &str) -> Result<SyncReport, EngineError> {
        self.begin_resync(model).await?;
        self.sync(SyncOptions::new(Direction::FromServer, Trigger::Manual))
            .await
    }
}
