//! Verification digests: the same per-row hashes computed in SQL on the
//! server and in Rust over the replica's values, so `outpost verify` compares
//! a table without moving it across the network row by row.
//!
//! The canonical form of a value is the hex of its binary send form (what
//! the column type's `typsend` function returns on the server, what
//! [`crate::codec::encode`] writes for the replica's value), `N` for NULL;
//! `tsvector`/`tsquery` (which outpost sends as text) use the hex of their
//! text. A row's form is its columns' forms joined with `,`, its key's form
//! the key columns' forms. Per row: `kh` = hex SHA-256 of the key's form (the
//! row's bucket: buckets are prefixes of `kh`, so both sides agree on them
//! without agreeing on a collation), `w` = the first 60 bits of the SHA-256
//! of the row's form. A bucket's digest is its row count and the sum of `w`
//! (order does not matter). Should a type's forms ever differ between the
//! two sides, its buckets never match and the caller compares the decoded
//! rows themselves: slower, never a wrong answer.

use std::collections::BTreeMap;

use bytes::BytesMut;
use outpost_core::ident::quote;
use outpost_core::schema::Table;
use outpost_core::types::Value;
use sha2::{Digest as _, Sha256};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::sql;
use super::support::db;
use crate::codec::{self, row_values};
use crate::error::RemoteError;
use crate::session;

/// One bucket's digest: rows and the sum of their 60-bit row hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketDigest {
    /// Rows in the bucket.
    pub rows: i64,
    /// Sum of the rows' `w`.
    pub sum: u128,
}

/// A read-only `REPEATABLE READ` snapshot for a verification: every
/// narrowing round sees the same server state.
pub struct VerifySnapshot<'a> {
    tx: Transaction<'a>,
}

impl<'a> VerifySnapshot<'a> {
    /// Opens the snapshot, without a statement limit (hashing a large table
    /// takes a full scan).
    pub async fn begin(client: &'a mut Client) -> Result<VerifySnapshot<'a>, RemoteError> {
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db("starting the verification snapshot"))?;
        tx.batch_execute(session::BOOTSTRAP_SETTINGS)
            .await
            .map_err(db("lifting the statement limit for the verification"))?;
        tx.batch_execute(session::KEY_SETTINGS)
            .await
            .map_err(db("setting the verification's text settings"))?;
        Ok(VerifySnapshot { tx })
    }

    /// The digest plan of a table: its column types and send functions.
    pub async fn table(&self, pg_schema: &str, table: &Table) -> Result<TableDigest, RemoteError> {
        let what = format!("describing {} for verification", table.name);
        let probe = self
            .tx
            .prepare(&sql::copy_probe(pg_schema, table))
            .await
            .map_err(db(what.clone()))?;
        let types: Vec<Type> = probe.columns().iter().map(|c| c.type_().clone()).collect();
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        let rows = self
            .tx
            .query(
                "SELECT a.attname::text, t.typsend::regproc::text \
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                &[&sql::qualified(pg_schema, &table.name)],
            )
            .await
            .map_err(db(what.clone()))?;
        let mut send_of: BTreeMap<String, String> = BTreeMap::new();
        for r in &rows {
            let name: String = r.try_get(0).map_err(db(what.clone()))?;
            let send: String = r.try_get(1).map_err(db(what.clone()))?;
            send_of.insert(name, send);
        }
        let mut forms = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let col = quote(name);
            let as_text = codec::sent_as_text(&types[i]);
            let inner = if as_text {
                format!("convert_to({col}::text, 'UTF8')")
            } else {
                match send_of.get(*name) {
                    // A send function's name as PostgreSQL prints a regproc
                    // (`int4send`, `public.citextsend`): quoted where needed.
                    Some(send) => format!("{send}({col})"),
                    // Not on the server (the prepared probe would have
                    // failed first): a form no replica value has.
                    None => "'\\x3f'::bytea".to_string(),
                }
            };
            forms.push(format!(
                "(CASE WHEN {col} IS NULL THEN 'N' ELSE encode({inner}, 'hex') END)"
            ));
        }
        let key_idx: Vec<usize> = table
            .primary_key
            .iter()
            .filter_map(|k| names.iter().position(|n| n == k))
            .collect();
        let join = |idx: &mut dyn Iterator<Item = usize>| {
            idx.map(|i| forms[i].as_str())
                .collect::<Vec<_>>()
                .join(" || ',' || ")
        };
        let key_form = join(&mut key_idx.iter().copied());
        let row_form = join(&mut (0..forms.len()));
        let from = sql::qualified(pg_schema, &table.name);
        let kh = format!("encode(sha256(convert_to({key_form}, 'UTF8')), 'hex')");
        let buckets_sql = format!(
            "WITH d AS (SELECT {kh} AS kh, \
             ('x' || left(encode(sha256(convert_to({row_form}, 'UTF8')), 'hex'), 15))::bit(60)::int8 AS w \
             FROM {from}) \
             SELECT left(kh, $1::int4), count(*), sum(w)::text FROM d \
             WHERE left(kh, $2::int4) = ANY($3::text[]) GROUP BY 1"
        );
        let rows_sql = format!(
            "SELECT {} FROM {from} WHERE left({kh}, $1::int4) = ANY($2::text[])",
            sql::column_list(table, "")
        );
        Ok(TableDigest {
            name: table.name.clone(),
            types,
            key_idx,
            buckets_sql,
            rows_sql,
        })
    }

    /// The digests of the buckets of `depth` hex digits under `prefixes`
    /// (each `parent` digits long); empty buckets are absent.
    pub async fn buckets(
        &self,
        t: &TableDigest,
        depth: usize,
        parent: usize,
        prefixes: &[String],
    ) -> Result<BTreeMap<String, BucketDigest>, RemoteError> {
        let what = format!("hashing {}", t.name);
        let (d, p) = (depth as i32, parent as i32);
        let rows = self
            .tx
            .query(&t.buckets_sql, &[&d, &p, &prefixes])
            .await
            .map_err(db(what.clone()))?;
        let mut out = BTreeMap::new();
        for r in &rows {
            let bucket: String = r.try_get(0).map_err(db(what.clone()))?;
            let n: i64 = r.try_get(1).map_err(db(what.clone()))?;
            let sum: String = r.try_get(2).map_err(db(what.clone()))?;
            // Never fails for a sum of int8; if it did, the bucket simply
            // never matches and its rows are compared one by one.
            let sum: u128 = sum.parse().unwrap_or(u128::MAX);
            out.insert(bucket, BucketDigest { rows: n, sum });
        }
        Ok(out)
    }

    /// The rows of the buckets `prefixes` (each `depth` hex digits).
    pub async fn rows(
        &self,
        t: &TableDigest,
        depth: usize,
        prefixes: &[String],
    ) -> Result<Vec<Vec<Value>>, RemoteError> {
        let d = depth as i32;
        let rows = self
            .tx
            .query(&t.rows_sql, &[&d, &prefixes])
            .await
            .map_err(db(format!("reading rows of {} to compare", t.name)))?;
        rows.iter().map(row_values).collect()
    }

    /// Ends the snapshot.
    pub async fn finish(self) -> Result<(), RemoteError> {
        self.tx
            .commit()
            .await
            .map_err(db("ending the verification snapshot"))
    }
}

/// How one table is digested: the server's statements and the column types
/// the replica's values are encoded with.
#[derive(Debug, Clone)]
pub struct TableDigest {
    name: String,
    types: Vec<Type>,
    key_idx: Vec<usize>,
    buckets_sql: String,
    rows_sql: String,
}

/// A row's digest: its bucket key `kh` (64 hex digits) and `w`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDigest {
    /// Hex SHA-256 of the key's form.
    pub kh: String,
    /// First 60 bits of the SHA-256 of the row's form.
    pub w: u64,
}

impl TableDigest {
    /// The digest of a row (all columns, in table order) computed in Rust,
    /// as the server computes it. A value that cannot be encoded for its
    /// column gets a form no server value has (its bucket then differs and
    /// the rows are compared).
    pub fn row(&self, values: &[Value]) -> RowDigest {
        let forms: Vec<String> = values
            .iter()
            .zip(&self.types)
            .map(|(v, ty)| {
                let mut buf = BytesMut::new();
                match codec::encode(v, ty, &mut buf) {
                    Ok(tokio_postgres::types::IsNull::Yes) => "N".to_string(),
                    Ok(tokio_postgres::types::IsNull::No) => hex::encode(&buf),
                    Err(_) => "?".to_string(),
                }
            })
            .collect();
        let key: Vec<&str> = self.key_idx.iter().map(|&i| forms[i].as_str()).collect();
        let kh = hex::encode(Sha256::digest(key.join(",").as_bytes()));
        let rh = Sha256::digest(forms.join(",").as_bytes());
        let mut w: u64 = 0;
        for b in &rh[..8] {
            w = (w << 8) | u64::from(*b);
        }
        RowDigest { kh, w: w >> 4 }
    }

    /// The key values of a row.
    pub fn key_of(&self, values: &[Value]) -> Vec<Value> {
        self.key_idx.iter().map(|&i| values[i].clone()).collect()
    }
}

/// A row's digest over its values as outpost carries them (verification
/// through a gateway, which cannot hold one snapshot across a node's
/// narrowing rounds): `kh` = hex SHA-256 of the key values' JSON, `w` =
/// the first 60 bits of the SHA-256 of the row's values' JSON. The node
/// computes it over its replica's values, the gateway over the server's
/// rows decoded as a pull decodes them, so two rows a pull would leave
/// equal have equal digests. A value the two sides decode differently only
/// makes its bucket differ; the rows are then compared value by value.
pub fn value_digest(table: &Table, row: &[Value]) -> RowDigest {
    let key: Vec<&Value> = table.pk_positions().filter_map(|i| row.get(i)).collect();
    let kh = hex::encode(Sha256::digest(serde_json::to_vec(&key).unwrap_or_default()));
    let rh = Sha256::digest(serde_json::to_vec(row).unwrap_or_default());
    let mut w: u64 = 0;
    for b in &rh[..8] {
        w = (w << 8) | u64::from(*b);
    }
    RowDigest { kh, w: w >> 4 }
}

/// The bucket digests of `digests` at `depth` hex digits.
pub fn value_buckets<'a>(
    digests: impl IntoIterator<Item = &'a RowDigest>,
    depth: usize,
) -> BTreeMap<String, BucketDigest> {
    let mut out: BTreeMap<String, BucketDigest> = BTreeMap::new();
    for d in digests {
        let b = out
            .entry(d.kh[..depth.min(d.kh.len())].to_string())
            .or_default();
        b.rows += 1;
        b.sum += u128::from(d.w);
    }
    out
}

/// What the server holds against a node's bucket digests
/// ([`verify_by_values`]).
#[derive(Debug, Clone, Default)]
pub struct ValueVerify {
    /// Rows of the table on the server (in the node's scope).
    pub server_rows: i64,
    /// The differing buckets whose server rows are in `rows`.
    pub compared: Vec<String>,
    /// The server's rows of the `compared` buckets.
    pub rows: Vec<Vec<Value>>,
    /// Differing buckets whose rows were not sent (past `max_rows`).
    pub unexamined: usize,
}

/// Compares the node's bucket digests of `table` (at `depth` hex digits,
/// [`value_digest`]) with the server's rows in one read-only snapshot,
/// only the rows satisfying `scope` when given: the buckets that differ,
/// and the server's rows of as many of them as fit in `max_rows`, whole
/// buckets only. Two passes over the table, holding one digest per bucket
/// and the rows sent.
pub async fn verify_by_values(
    client: &mut Client,
    pg_schema: &str,
    table: &Table,
    scope: Option<&super::scope::TableScope>,
    depth: usize,
    node: &BTreeMap<String, BucketDigest>,
    max_rows: usize,
) -> Result<ValueVerify, RemoteError> {
    use futures_util::{StreamExt as _, pin_mut};
    let snapshot = VerifySnapshot::begin(client).await?;
    let tx = &snapshot.tx;
    let alias = quote(&table.name);
    let text = format!(
        "SELECT {} FROM {} {}",
        sql::column_list(table, &format!("{alias}.")),
        super::scope::aliased(pg_schema, table),
        scope.map_or_else(String::new, |s| format!(
            "WHERE {}",
            super::scope::filter(s)
        )),
    );
    let what = format!("reading {} to verify", table.name);
    let statement = tx.prepare(&text).await.map_err(db(what.clone()))?;
    let no_params: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];

    // Pass 1: the server's buckets.
    let mut server: BTreeMap<String, BucketDigest> = BTreeMap::new();
    let mut server_rows = 0i64;
    {
        let stream = tx
            .query_raw(&statement, no_params.iter().copied())
            .await
            .map_err(db(what.clone()))?;
        pin_mut!(stream);
        while let Some(row) = stream.next().await {
            let row = row.map_err(db(what.clone()))?;
            let d = value_digest(table, &row_values(&row)?);
            let b = server.entry(d.kh[..depth].to_string()).or_default();
            b.rows += 1;
            b.sum += u128::from(d.w);
            server_rows += 1;
        }
    }
    let keys: std::collections::BTreeSet<&String> = server.keys().chain(node.keys()).collect();
    let differing: Vec<String> = keys
        .into_iter()
        .filter(|b| {
            server.get(*b).copied().unwrap_or_default() != node.get(*b).copied().unwrap_or_default()
        })
        .cloned()
        .collect();
    // Whole buckets, as many as fit.
    let (mut compared, mut budget, mut unexamined) = (Vec::new(), max_rows, 0usize);
    for b in differing {
        let n = server.get(&b).map_or(0, |d| d.rows.max(0) as usize);
        if n <= budget {
            budget -= n;
            compared.push(b);
        } else {
            unexamined += 1;
        }
    }

    // Pass 2: the rows of the compared buckets.
    let mut rows = Vec::new();
    let wanted: std::collections::BTreeSet<&str> = compared
        .iter()
        .filter(|b| server.contains_key(*b))
        .map(String::as_str)
        .collect();
    if !wanted.is_empty() {
        let stream = tx
            .query_raw(&statement, no_params.iter().copied())
            .await
            .map_err(db(what.clone()))?;
        pin_mut!(stream);
        while let Some(row) = stream.next().await {
            let row = row_values(&row.map_err(db(what.clone()))?)?;
            if wanted.contains(&value_digest(table, &row).kh[..depth]) {
                rows.push(row);
            }
        }
    }
    snapshot.finish().await?;
    Ok(ValueVerify {
        server_rows,
        compared,
        rows,
        unexamined,
    })
}
