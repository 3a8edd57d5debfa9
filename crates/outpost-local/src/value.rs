//! How a [`Value`] is stored in a replica column, and read back. The forms are
//! documented in `outpost_core::types`; this module is the only place that
//! applies them to SQLite.

use outpost_core::schema::Table;
use outpost_core::types::{ColumnType, ScalarType, Value};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};

use crate::error::LocalError;

/// The SQLite value stored for `value`.
pub fn to_sqlite(value: &Value, ty: &ColumnType) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(*b as i64),
        Value::Int(i) => SqlValue::Integer(*i),
        // SQLite turns a NaN bound as REAL into NULL; keep it as text.
        Value::Float(f) if f.is_nan() => SqlValue::Text("NaN".into()),
        Value::Float(f) => SqlValue::Real(*f),
        Value::Text(s) => SqlValue::Text(s.clone()),
        Value::Bytes(b) => SqlValue::Blob(b.clone()),
        Value::Json(s) => SqlValue::Text(s.clone()),
        Value::Array(_) => SqlValue::Text(value.to_json(ty).to_string()),
    }
}

/// [`to_sqlite`] without copying text and blobs: what a statement binds
/// straight from the value (a pull binds every column of every row).
pub fn to_sqlite_ref<'a>(value: &'a Value, ty: &ColumnType) -> ToSqlOutput<'a> {
    match value {
        Value::Text(s) | Value::Json(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        _ => ToSqlOutput::Owned(to_sqlite(value, ty)),
    }
}

/// Reads the value of a column of type `ty` from its SQLite storage.
/// `column` names the column in the error, should the stored value not fit.
pub fn from_sqlite(raw: ValueRef<'_>, ty: &ColumnType, column: &str) -> Result<Value, LocalError> {
    let mismatch = |found: &str| LocalError::BadStoredValue {
        column: column.to_string(),
        ty: ty.pg_name.clone(),
        message: format!("found {found}: {}", shown(raw)),
    };
    if let ValueRef::Null = raw {
        return Ok(Value::Null);
    }
    if ty.array {
        let ValueRef::Text(text) = raw else {
            return Err(mismatch("a non-text value for an array"));
        };
        let json: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| mismatch(&format!("invalid JSON: {e}")))?;
        return Value::from_json(&json, ty, None).map_err(|e| LocalError::BadStoredValue {
            column: column.to_string(),
            ty: ty.pg_name.clone(),
            message: e.message,
        });
    }
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| mismatch("text that is not UTF-8"))
    };
    match (&ty.scalar, raw) {
        (ScalarType::Bool, ValueRef::Integer(i)) => Ok(Value::Bool(i != 0)),
        (
            ScalarType::Int2 | ScalarType::Int4 | ScalarType::Int8 | ScalarType::Oid,
            ValueRef::Integer(i),
        ) => Ok(Value::Int(i)),
        (ScalarType::Float4 | ScalarType::Float8, ValueRef::Real(f)) => Ok(Value::Float(f)),
        (ScalarType::Float4 | ScalarType::Float8, ValueRef::Integer(i)) => {
            Ok(Value::Float(i as f64))
        }
        (ScalarType::Float4 | ScalarType::Float8, ValueRef::Text(t)) => {
            outpost_core::types::parse_float(&text(t)?)
                .map(Value::Float)
                .ok_or_else(|| mismatch("text that is not a number"))
        }
        (ScalarType::Bytea, ValueRef::Blob(b)) => Ok(Value::Bytes(b.to_vec())),
        (ScalarType::Json | ScalarType::Jsonb, ValueRef::Text(t)) => Ok(Value::Json(text(t)?)),
        (
            ScalarType::Bool
            | ScalarType::Int2
            | ScalarType::Int4
            | ScalarType::Int8
            | ScalarType::Oid
            | ScalarType::Float4
            | ScalarType::Float8
            | ScalarType::Bytea
            | ScalarType::Json
            | ScalarType::Jsonb,
            other,
        ) => Err(mismatch(&format!("a {:?} value", other.data_type()))),
        (_, ValueRef::Text(t)) => Ok(Value::Text(text(t)?)),
        // A numeric written by hand as a number, say: keep its decimal text.
        (ScalarType::Numeric, ValueRef::Integer(i)) => Ok(Value::Text(i.to_string())),
        (_, other) => Err(mismatch(&format!("a {:?} value", other.data_type()))),
    }
}

/// A stored value as a person would recognise it in a message: text
/// quoted, a blob as `x'…'` hex, both cut after 60 characters.
pub fn shown(raw: ValueRef<'_>) -> String {
    fn cut(s: String) -> String {
        match s.char_indices().nth(60) {
            Some((at, _)) => format!("{}…", &s[..at]),
            None => s,
        }
    }
    match raw {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => cut(format!("{:?}", String::from_utf8_lossy(t))),
        ValueRef::Blob(b) => cut(format!("x'{}'", hex::encode_upper(b))),
    }
}

/// Reads a row saved in row-JSON form (a `base_row`; see
/// `outpost_core::sqlite`) back into the table's values, in column order.
/// Columns missing from the JSON (added since it was saved) are `Null`.
pub fn row_from_json(table: &Table, json: &str) -> Result<Vec<Value>, LocalError> {
    let obj: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| LocalError::BadStoredValue {
            column: format!("{}.base_row", table.name),
            ty: "row JSON".into(),
            message: e.to_string(),
        })?;
    table
        .columns
        .iter()
        .map(|c| {
            let stored = match obj.get(&c.name) {
                None | Some(serde_json::Value::Null) => SqlValue::Null,
                Some(j) => stored_from_row_json(j, &c.ty, &c.name)?,
            };
            from_sqlite(ValueRef::from(&stored), &c.ty, &c.name)
        })
        .collect()
}

fn stored_from_row_json(
    json: &serde_json::Value,
    ty: &ColumnType,
    column: &str,
) -> Result<SqlValue, LocalError> {
    let bad = |message: String| LocalError::BadStoredValue {
        column: column.to_string(),
        ty: ty.pg_name.clone(),
        message,
    };
    Ok(match (ty.sqlite_decl(), json) {
        ("BLOB", serde_json::Value::String(hex)) => {
            SqlValue::Blob(hex::decode(hex).map_err(|e| bad(format!("{hex:?} is not hex: {e}")))?)
        }
        ("REAL", serde_json::Value::String(s)) if s == "Infinity" => SqlValue::Real(f64::INFINITY),
        ("REAL", serde_json::Value::String(s)) if s == "-Infinity" => {
            SqlValue::Real(f64::NEG_INFINITY)
        }
        (_, serde_json::Value::String(s)) => SqlValue::Text(s.clone()),
        (_, serde_json::Value::Bool(b)) => SqlValue::Integer(*b as i64),
        (_, serde_json::Value::Number(n)) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(
                n.as_f64()
                    .ok_or_else(|| bad(format!("{n} is not a number")))?,
            ),
        },
        (_, other) => SqlValue::Text(other.to_string()),
    })
}

/// A row in row-JSON form (see `outpost_core::sqlite`), as the triggers write
/// a `base_row`: blobs as uppercase hex, REAL infinities as strings.
pub fn row_to_json(table: &Table, values: &[Value]) -> String {
    let mut obj = serde_json::Map::with_capacity(table.columns.len());
    for (c, v) in table.columns.iter().zip(values) {
        let json = match to_sqlite(v, &c.ty) {
            SqlValue::Null => serde_json::Value::Null,
            SqlValue::Integer(i) => serde_json::Value::from(i),
            SqlValue::Real(f) if f == f64::INFINITY => serde_json::Value::String("Infinity".into()),
            SqlValue::Real(f) if f == f64::NEG_INFINITY => {
                serde_json::Value::String("-Infinity".into())
            }
            SqlValue::Real(f) => serde_json::Number::from_f64(f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            SqlValue::Text(s) => serde_json::Value::String(s),
            SqlValue::Blob(b) => serde_json::Value::String(hex::encode_upper(b)),
        };
        obj.insert(c.name.clone(), json);
    }
    serde_json::Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use outpost_core::types::{ColumnType, ScalarType, Value};
    use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};

    use super::{to_sqlite, to_sqlite_ref};

    /// The borrowed form binds exactly what [`to_sqlite`] stores.
    #[test]
    fn borrowed_binding_matches_the_stored_form() {
        let text = ColumnType::scalar(ScalarType::Text, "text");
        let ints = ColumnType {
            array: true,
            ..ColumnType::scalar(ScalarType::Int4, "integer[]")
        };
        let cases = [
            (Value::Null, &text),
            (Value::Bool(true), &text),
            (Value::Int(-7), &text),
            (Value::Float(1.5), &text),
            (Value::Float(f64::NAN), &text),
            (Value::Text("é \" \\ x".into()), &text),
            (Value::Json("{\"a\": [1, 2]}".into()), &text),
            (Value::Bytes(vec![0, 255, 7]), &text),
            (Value::Array(vec![Value::Int(1), Value::Null]), &ints),
        ];
        for (value, ty) in cases {
            let stored = to_sqlite(&value, ty);
            let bound = match to_sqlite_ref(&value, ty) {
                ToSqlOutput::Borrowed(r) => SqlValue::try_from(r).ok(),
                ToSqlOutput::Owned(v) => Some(v),
                _ => None,
            };
            let stored = Some(stored);
            assert_eq!(bound, stored, "{value:?}");
        }
        assert!(matches!(
            to_sqlite_ref(&Value::Text("x".into()), &text),
            ToSqlOutput::Borrowed(ValueRef::Text(b"x"))
        ));
    }
}
