//! The bootstrap snapshot: one `REPEATABLE READ` read-only transaction,
//! the cursor the feed starts from, and every table streamed with binary
//! `COPY` in key order.

use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use outpost_core::schema::Table;
use outpost_core::sync::Cursor;
use outpost_core::types::Value;
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::scope::{self, TableScope};
use super::sql;
use super::support::{db, value_err};
use crate::codec::PgValue;
use crate::error::RemoteError;
use crate::session;

/// One consistent snapshot of the server for a bootstrap: a `REPEATABLE
/// READ` read-only transaction and the cursor it starts the feed from.
pub struct Bootstrap<'a> {
    tx: Transaction<'a>,
    /// The feed position the snapshot covers: every change of a transaction
    /// below the snapshot's xmin is in it; later ones are pulled (again) from
    /// here, which is harmless.
    pub cursor: Cursor,
}

impl<'a> Bootstrap<'a> {
    /// Opens the snapshot.
    pub async fn begin(client: &'a mut Client) -> Result<Bootstrap<'a>, RemoteError> {
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db("starting the bootstrap snapshot"))?;
        // Streaming a huge table can outlast any statement limit the
        // session has (the client writes SQLite as it reads, so the COPY runs
        // as long as that takes); the session's lock_timeout still bounds
        // waiting for a table lock.
        tx.batch_execute(session::BOOTSTRAP_SETTINGS)
            .await
            .map_err(db("lifting the statement limit for the bootstrap"))?;
        let row = tx
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8",
                &[],
            )
            .await
            .map_err(db("reading the snapshot's horizon"))?;
        let xmin: i64 = row.get(0);
        Ok(Bootstrap {
            tx,
            cursor: Cursor { txid: xmin, seq: 0 },
        })
    }

    /// The number of rows of a table in the snapshot (for progress).
    pub async fn count(&self, table: &Table) -> Result<i64, RemoteError> {
        let row = self
            .tx
            .query_one(&sql::count_rows(table), &[])
            .await
            .map_err(db(format!("counting the rows of {}", table.name)))?;
        Ok(row.get(0))
    }

    /// The number of rows of a table satisfying `scope`'s condition (the
    /// gateway's sync rules), or all of them without one.
    pub async fn count_in(
        &self,
        pg_schema: &str,
        table: &Table,
        scope: Option<&TableScope>,
    ) -> Result<i64, RemoteError> {
        let Some(scope) = scope else {
            return self.count(table).await;
        };
        let row = self
            .tx
            .query_one(&scope::count_rows(pg_schema, table, scope), &[])
            .await
            .map_err(db(format!(
                "counting the rows of {} in {}",
                table.name, scope.rule
            )))?;
        Ok(row.get(0))
    }

    /// Streams every row of `table` in the snapshot with binary `COPY`,
    /// in primary-key order (SQLite inserts fastest in key order), never
    /// holding the table in memory.
    pub async fn rows(
        &self,
        pg_schema: &str,
        table: &'a Table,
    ) -> Result<impl Stream<Item = Result<Vec<Value>, RemoteError>> + 'a, RemoteError> {
        self.rows_in(pg_schema, table, None, None).await
    }

    /// [`Bootstrap::rows`] of the rows satisfying `scope`'s condition only
    /// (all of them without one), and with `after`, only those after that
    /// key in key order: a copy resumed where an interrupted one stopped
    /// (refused for a table that is not [`sql::resumable`], or a key of
    /// another width).
    pub async fn rows_in(
        &self,
        pg_schema: &str,
        table: &'a Table,
        scope: Option<&TableScope>,
        after: Option<&[Value]>,
    ) -> Result<impl Stream<Item = Result<Vec<Value>, RemoteError>> + 'a, RemoteError> {
        let after_sql = match after {
            None => None,
            Some(key) => {
                let refused = |why: &str| {
                    RemoteError::Query(outpost_query::QueryError::BadArgument {
                        context: format!("resuming the copy of {}", table.name),
                        message: why.to_string(),
                    })
                };
                if key.len() != table.primary_key.len() {
                    return Err(refused(
                        "the key has another number of values than the table's primary key",
                    ));
                }
                let Some(cond) = sql::after_key(
                    table,
                    &format!("{}.", outpost_core::ident::quote(&table.name)),
                ) else {
                    return Err(refused("its key's types cannot resume a copy"));
                };
                let json: Vec<serde_json::Value> = table
                    .pk_columns()
                    .zip(key)
                    .map(|(c, v)| v.to_json(&c.ty))
                    .collect();
                let text = serde_json::Value::Array(json).to_string();
                self.tx
                    .execute(
                        "SELECT set_config($1, $2, true)",
                        &[&sql::RESUME_SETTING, &text],
                    )
                    .await
                    .map_err(db(format!("resuming the copy of {}", table.name)))?;
                Some(cond)
            }
        };
        let probe = self
            .tx
            .prepare(&sql::copy_probe(pg_schema, table))
            .await
            .map_err(db(format!("preparing the copy of {}", table.name)))?;
        let types: Vec<Type> = probe.columns().iter().map(|c| c.type_().clone()).collect();
        let copy = self
            .tx
            .copy_out(&match scope {
                Some(scope) => scope::copy_out(pg_schema, table, scope, after_sql.as_deref()),
                None if after_sql.is_some() => {
                    // The table is its own alias in the condition.
                    scope::copy_out(
                        pg_schema,
                        table,
                        &TableScope {
                            rule: String::new(),
                            condition: "true".into(),
                        },
                        after_sql.as_deref(),
                    )
                }
                None => sql::copy_out(pg_schema, table),
            })
            .await
            .map_err(db(format!("copying {}", table.name)))?;
        let name = table.name.clone();
        let stream = BinaryCopyOutStream::new(copy, &types)
            .map_err(move |e| RemoteError::Db {
                action: format!("copying {name}"),
                source: e,
            })
            .map(move |row| {
                let row = row?;
                (0..table.columns.len())
                    .map(|i| {
                        row.try_get::<PgValue>(i)
                            .map(|v| v.0)
                            .map_err(|e| value_err("copying a row", &table.columns[i].name, e))
                    })
                    .collect::<Result<Vec<Value>, RemoteError>>()
            });
        Ok(stream)
    }

    /// Ends the snapshot.
    pub async fn finish(self) -> Result<(), RemoteError> {
        self.tx
            .commit()
            .await
            .map_err(db("ending the bootstrap snapshot"))
    }
}
