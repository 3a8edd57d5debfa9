//! Row keys: the text key of `_outpost_rows.pk` (a JSON array, computed as
//! the capture triggers compute it) from key values and back.

use outpost_core::schema::Table;
use outpost_core::sqlite::pk_json_select;
use outpost_core::types::Value;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params_from_iter};

use crate::error::LocalError;
use crate::replica::Replica;
use crate::value::{row_from_json, to_sqlite};

/// The bound values of key `pk`, in key order.
pub(crate) fn pk_sql(table: &Table, pk: &[Value]) -> Vec<SqlValue> {
    table
        .pk_columns()
        .zip(pk)
        .map(|(c, v)| to_sqlite(v, &c.ty))
        .collect()
}

impl Replica {
    /// [`local_pk`] on the replica's connection.
    pub fn local_pk(&self, table: &Table, pk: &[Value]) -> Result<String, LocalError> {
        local_pk(self.connection(), table, pk)
    }
}

/// The `_outpost_rows.pk` of a row with key values `pk`, as the triggers
/// compute it.
pub fn local_pk(conn: &Connection, table: &Table, pk: &[Value]) -> Result<String, LocalError> {
    let mut stmt = conn
        .prepare_cached(&pk_json_select(table))
        .map_err(LocalError::sqlite("computing a row key"))?;
    stmt.query_row(params_from_iter(pk_sql(table, pk)), |r| r.get(0))
        .map_err(LocalError::sqlite("computing a row key"))
}

/// The key values of an `_outpost_rows.pk`.
pub(crate) fn pk_values(table: &Table, pk: &str) -> Result<Vec<Value>, LocalError> {
    let json: Vec<serde_json::Value> =
        serde_json::from_str(pk).map_err(|e| LocalError::BadStoredValue {
            column: format!("{}._outpost_rows.pk", table.name),
            ty: "JSON array".into(),
            message: e.to_string(),
        })?;
    let mut obj = serde_json::Map::new();
    for (c, j) in table.primary_key.iter().zip(json) {
        obj.insert(c.clone(), j);
    }
    let full = row_from_json(table, &serde_json::Value::Object(obj).to_string())?;
    Ok(table.pk_positions().map(|i| full[i].clone()).collect())
}

/// [`local_pk`] without a statement where Rust provably produces the same
/// text as SQLite's `json_array` of the bound values (integers, and text
/// escaped as SQLite's `jsonAppendString` does); anything else (REAL and
/// BLOB columns, other storage) asks SQLite.
pub(crate) fn pull_key(
    conn: &Connection,
    table: &Table,
    pk: &[Value],
) -> Result<String, LocalError> {
    match pk_json_rust(table, pk) {
        Some(key) => Ok(key),
        None => local_pk(conn, table, pk),
    }
}

fn pk_json_rust(table: &Table, pk: &[Value]) -> Option<String> {
    let mut out = String::from("[");
    for (n, (c, v)) in table.pk_columns().zip(pk).enumerate() {
        if !c.ty.array && matches!(c.ty.sqlite_decl(), "REAL" | "BLOB") {
            return None;
        }
        if n > 0 {
            out.push(',');
        }
        match to_sqlite(v, &c.ty) {
            SqlValue::Integer(i) => out.push_str(&i.to_string()),
            SqlValue::Text(s) => json_string(&mut out, &s),
            _ => return None,
        }
    }
    out.push(']');
    Some(out)
}

/// Appends `s` as a JSON string exactly as SQLite's `json_array` writes
/// text: `"` and `\` escaped with a backslash, `\b \t \n \f \r` by name,
/// other bytes below 0x20 as `\u00xx` (lowercase hex), everything else as is.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod pull_key_tests {
    //! The Rust row key of a pull must be byte for byte the key SQLite's
    //! `json_array` computes (and the triggers store), or a pulled row would
    //! miss its entry.

    use super::*;
    use outpost_core::schema::Column;
    use outpost_core::types::{ColumnType, ScalarType};
    use proptest::prelude::*;

    fn col(name: &str, scalar: ScalarType, array: bool) -> Column {
        Column {
            name: name.into(),
            ty: ColumnType {
                scalar,
                array,
                pg_name: name.into(),
                domain: None,
            },
            nullable: false,
            default: None,
            identity: None,
            generated: false,
        }
    }

    fn table(key: Vec<Column>) -> Table {
        Table {
            name: "T".into(),
            primary_key: key.iter().map(|c| c.name.clone()).collect(),
            columns: key,
            foreign_keys: vec![],
            uniques: vec![],
            relations: vec![],
        }
    }

    /// Asserts the Rust key equals SQLite's (when Rust gives one) and that
    /// Rust gives one exactly when `rust_expected`.
    fn same(conn: &Connection, t: &Table, pk: &[Value], rust_expected: bool) {
        let sqlite = local_pk(conn, t, pk).expect("sqlite key");
        match pk_json_rust(t, pk) {
            Some(rust) => {
                assert!(rust_expected, "{pk:?} should have gone to SQLite");
                assert_eq!(rust, sqlite, "key of {pk:?}");
            }
            None => assert!(!rust_expected, "{pk:?} should be computed in Rust"),
        }
        assert_eq!(pull_key(conn, t, pk).expect("key"), sqlite);
    }

    fn tricky_strings() -> Vec<String> {
        let mut out: Vec<String> = (0u32..0x80)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        out.extend(
            [
                "",
                "\0",
                "\"",
                "\\",
                "\\\"",
                "'",
                "it's",
                "\u{7f}",
                "\u{80}",
                "é",
                "\u{2028}\u{2029}",
                "😀",
                "\u{feff}x",
                "{\"json\": [1, 2]}",
                "[\"a\"]",
                "1.50",
                "2026-11-25T05:00:00.000000Z",
                "0b7e3c1e-5f43-4a77-9c2b-2e9f4f9f1b1d",
                "\t\n\r\u{8}\u{c}\u{1}\u{1f}",
            ]
            .map(str::to_string),
        );
        out
    }

    #[test]
    fn text_integer_and_composite_keys_match_sqlite() {
        let conn = Connection::open_in_memory().expect("open");
        let text = table(vec![col("id", ScalarType::Text, false)]);
        let uuid = table(vec![col("id", ScalarType::Uuid, false)]);
        let numeric = table(vec![col("id", ScalarType::Numeric, false)]);
        let enum_ = table(vec![col("id", ScalarType::Enum("Role".into()), false)]);
        let int = table(vec![col("id", ScalarType::Int8, false)]);
        let boolean = table(vec![col("id", ScalarType::Bool, false)]);
        let pair = table(vec![
            col("a", ScalarType::Int4, false),
            col("b", ScalarType::Text, false),
        ]);
        for s in tricky_strings() {
            same(&conn, &text, &[Value::Text(s.clone())], true);
            same(&conn, &uuid, &[Value::Text(s.clone())], true);
            same(&conn, &numeric, &[Value::Text(s.clone())], true);
            same(&conn, &enum_, &[Value::Text(s.clone())], true);
            same(&conn, &pair, &[Value::Int(-7), Value::Text(s)], true);
        }
        for i in [i64::MIN, -1, 0, 1, 9_007_199_254_740_993, i64::MAX] {
            same(&conn, &int, &[Value::Int(i)], true);
            same(
                &conn,
                &pair,
                &[Value::Int(i), Value::Text("x".into())],
                true,
            );
        }
        same(&conn, &boolean, &[Value::Bool(true)], true);
        same(&conn, &boolean, &[Value::Bool(false)], true);
    }

    #[test]
    fn real_blob_and_odd_storage_go_to_sqlite() {
        let conn = Connection::open_in_memory().expect("open");
        let real = table(vec![col("id", ScalarType::Float8, false)]);
        for f in [0.1, -0.0, 1e300, f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            same(&conn, &real, &[Value::Float(f)], false);
        }
        let blob = table(vec![col("id", ScalarType::Bytea, false)]);
        same(&conn, &blob, &[Value::Bytes(vec![0, 0xab, 0xff])], false);
        // A float in a text key is stored as REAL: SQLite formats it.
        let text = table(vec![col("id", ScalarType::Text, false)]);
        same(&conn, &text, &[Value::Float(2.5)], false);
        same(&conn, &text, &[Value::Null], false);
        // An array key is text (its JSON), which Rust escapes itself.
        let array = table(vec![col("id", ScalarType::Text, true)]);
        same(
            &conn,
            &array,
            &[Value::Array(vec![
                Value::Text("a\"b".into()),
                Value::Text("\n".into()),
            ])],
            true,
        );
    }

    proptest! {
        #[test]
        fn any_text_and_integer_key_matches_sqlite(s in any::<String>(), i in any::<i64>()) {
            let conn = Connection::open_in_memory().expect("open");
            let text = table(vec![col("id", ScalarType::Text, false)]);
            same(&conn, &text, &[Value::Text(s.clone())], true);
            let pair = table(vec![
                col("a", ScalarType::Int8, false),
                col("b", ScalarType::Varchar, false),
            ]);
            same(&conn, &pair, &[Value::Int(i), Value::Text(s)], true);
        }
    }
}
