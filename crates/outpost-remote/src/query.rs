//! The model service on the server: runs an `outpost_query::Plan` on
//! PostgreSQL with the client given, binding every parameter with the
//! binary codec ([`crate::codec::Bind`]) by the type the server reports for
//! it.
//!
//! The statements run on the caller's client as they are: a caller that
//! needs a write of several statements to be all-or-nothing (and the
//! capture trigger to see its `outpost.origin`) passes a
//! `tokio_postgres::Transaction`.

use std::collections::BTreeMap;

use outpost_core::schema::{Schema, Table};
use outpost_core::types::{ColumnType, ScalarType, Value};
use outpost_query::{
    Driver, ExecOptions, Plan, QueryError, QueryOutput, Records, Statement, execute_read,
    execute_scoped,
};
use tokio_postgres::GenericClient;
use tokio_postgres::types::{Kind, ToSql, Type};

use crate::codec::{Bind, row_values};
use crate::error::RemoteError;
use crate::introspect::scalar_type;

/// The element type of a parameter of array type, as outpost knows it.
fn scalar_of(ty: &Type) -> Option<ScalarType> {
    match ty.kind() {
        Kind::Enum(_) => Some(ScalarType::Enum(ty.name().to_string())),
        Kind::Domain(base) => scalar_of(base),
        Kind::Simple => scalar_type(ty.oid(), "b", ty.name()),
        _ => None,
    }
}

/// A parameter as the server's type for it needs it: `json`/`jsonb`
/// values and arrays come from the plan as their JSON text.
fn coerce(v: &Value, ty: &Type, model: &str) -> Result<Value, RemoteError> {
    let bad = |message: String| {
        RemoteError::Query(QueryError::Internal {
            model: model.to_string(),
            message,
        })
    };
    match (v, ty.kind()) {
        (Value::Text(s), Kind::Domain(base)) => coerce(&Value::Text(s.clone()), base, model),
        (Value::Text(s), Kind::Simple) if *ty == Type::JSON || *ty == Type::JSONB => {
            Ok(Value::Json(s.clone()))
        }
        (Value::Text(s), Kind::Array(elem)) => {
            let json: serde_json::Value = serde_json::from_str(s)
                .map_err(|e| bad(format!("array parameter is not JSON text: {e}")))?;
            let scalar = scalar_of(elem)
                .ok_or_else(|| bad(format!("unsupported array parameter type {}", ty.name())))?;
            let column = ColumnType {
                scalar,
                array: true,
                pg_name: ty.name().to_string(),
                domain: None,
            };
            Value::from_json(&json, &column, None).map_err(|e| bad(e.to_string()))
        }
        _ => Ok(v.clone()),
    }
}

struct Remote<'c, C> {
    client: &'c C,
    model: String,
}

impl<C: GenericClient + Sync> Driver for Remote<'_, C> {
    type Error = RemoteError;

    async fn query(&mut self, statement: &Statement) -> Result<Vec<Vec<Value>>, RemoteError> {
        let action = || format!("running a query on {}", self.model);
        let prepared = self
            .client
            .prepare(&statement.sql)
            .await
            .map_err(|e| RemoteError::db(action(), e))?;
        let params = statement
            .params
            .iter()
            .zip(prepared.params())
            .map(|(v, ty)| coerce(v, ty, &self.model))
            .collect::<Result<Vec<_>, _>>()?;
        let binds: Vec<Bind<'_>> = params.iter().map(Bind).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        let rows = self
            .client
            .query(&prepared, &refs)
            .await
            .map_err(|e| RemoteError::db(action(), e))?;
        rows.iter().map(row_values).collect()
    }

    fn fill(
        &mut self,
        table: &Table,
        row: &mut BTreeMap<String, Value>,
    ) -> Result<(), RemoteError> {
        // The server fills its own defaults. A text or uuid key it has no
        // default for gets the id the replica would give it offline.
        for column in &table.columns {
            if !row.contains_key(&column.name) && table.takes_generated_id(column) {
                row.insert(
                    column.name.clone(),
                    Value::Text(uuid::Uuid::now_v7().to_string()),
                );
            }
        }
        Ok(())
    }
}

/// Runs a plan on the server with the client given (the caller may pass a
/// `Transaction` that already did `SET LOCAL outpost.origin`). Writes
/// report every row they touched in [`QueryOutput::written`], for the node
/// to mirror into its replica.
pub async fn run<C: GenericClient + Sync>(
    client: &C,
    schema: &Schema,
    plan: &Plan,
) -> Result<QueryOutput, RemoteError> {
    run_scoped(client, schema, plan, None).await
}

/// [`run`] under row scopes (a gateway's sync rules, [`scopes`]): the
/// request reads, updates and deletes only rows in scope; the caller
/// checks what a write left ([`crate::feed::written_outside`]).
pub async fn run_scoped<C: GenericClient + Sync>(
    client: &C,
    schema: &Schema,
    plan: &Plan,
    scopes: Option<&outpost_query::Scopes>,
) -> Result<QueryOutput, RemoteError> {
    let mut driver = Remote {
        client,
        model: plan.model().to_string(),
    };
    execute_scoped(&mut driver, schema, plan, &ExecOptions::server(), scopes).await
}

/// A feed scope as the query builder takes it: each table's condition.
pub fn scopes(scope: &crate::feed::Scope) -> outpost_query::Scopes {
    scope
        .tables
        .iter()
        .map(|(t, s)| (t.clone(), s.condition.clone()))
        .collect()
}

/// Runs a read plan (`findMany`, `findFirst`, `findUnique`) on the server
/// and returns its rows unassembled ([`outpost_query::Records`]), for the
/// caller to deserialize into its own types without JSON records in
/// between.
pub async fn read<C: GenericClient + Sync>(
    client: &C,
    schema: &Schema,
    plan: &Plan,
) -> Result<Records, RemoteError> {
    let mut driver = Remote {
        client,
        model: plan.model().to_string(),
    };
    execute_read(&mut driver, schema, plan, &ExecOptions::server()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn futures_are_send() {
        // The node runs queries on tokio's multi-threaded runtime.
        fn check(client: &tokio_postgres::Client, schema: &Schema, plan: &Plan) {
            assert_send(&run(client, schema, plan));
            assert_send(&read(client, schema, plan));
        }
        fn check_tx(tx: &tokio_postgres::Transaction<'_>, schema: &Schema, plan: &Plan) {
            assert_send(&run(tx, schema, plan));
        }
        let _ = (check, check_tx);
    }

    #[test]
    fn parameters_take_the_servers_types() {
        let v = coerce(&Value::Text("{\"a\":1}".into()), &Type::JSONB, "T");
        assert_eq!(v.ok(), Some(Value::Json("{\"a\":1}".into())));
        let v = coerce(&Value::Text("[\"x\",null]".into()), &Type::TEXT_ARRAY, "T");
        assert_eq!(
            v.ok(),
            Some(Value::Array(vec![Value::Text("x".into()), Value::Null]))
        );
        let v = coerce(&Value::Text("[1,2]".into()), &Type::INT8_ARRAY, "T");
        assert_eq!(
            v.ok(),
            Some(Value::Array(vec![Value::Int(1), Value::Int(2)]))
        );
        let v = coerce(&Value::Text("x".into()), &Type::TEXT, "T");
        assert_eq!(v.ok(), Some(Value::Text("x".into())));
    }
}
