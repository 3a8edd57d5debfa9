//! The statements the replica builds from the schema at run time (row reads
//! and writes by key, bootstrap copies, truncation), as plain functions
//! pinned by exact-string tests like the DDL and triggers of
//! `outpost_core::sqlite`. Identifiers are quoted; values are always bound
//! (`?n`), except the table name in `delete_synced_rows`, a quoted literal
//! computed from the schema.

use outpost_core::ident::{literal, quote};
use outpost_core::schema::Table;
use outpost_core::sqlite::pk_json;

/// The quoted column names of `table`, in table order, comma-separated.
fn column_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `?1, ?2, …` for every column.
fn marks(table: &Table) -> String {
    (1..=table.columns.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"k1" = ?first AND "k2" = ?first+1 …` over the primary key.
pub(crate) fn pk_where(table: &Table, first: usize) -> String {
    table
        .primary_key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = ?{}", quote(c), first + i))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Every column of the row with the bound key.
pub(crate) fn select_row(table: &Table) -> String {
    format!(
        "SELECT {} FROM {} WHERE {}",
        column_list(table),
        quote(&table.name),
        pk_where(table, 1)
    )
}

/// Every row, every column, in key order.
pub(crate) fn select_all(table: &Table) -> String {
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        column_list(table),
        quote(&table.name),
        table
            .primary_key
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `INSERT OR REPLACE` of every column, in table order.
pub(crate) fn insert_or_replace(table: &Table) -> String {
    format!(
        "INSERT OR REPLACE INTO {} ({}) VALUES ({})",
        quote(&table.name),
        column_list(table),
        marks(table)
    )
}

/// `INSERT OR IGNORE` of every column, in table order (a bootstrap copy: a
/// row already there stays).
pub(crate) fn insert_or_ignore(table: &Table) -> String {
    format!(
        "INSERT OR IGNORE INTO {} ({}) VALUES ({})",
        quote(&table.name),
        column_list(table),
        marks(table)
    )
}

/// The row with the bound key, deleted.
pub(crate) fn delete_row(table: &Table) -> String {
    format!(
        "DELETE FROM {} WHERE {}",
        quote(&table.name),
        pk_where(table, 1)
    )
}

/// `UPDATE … SET <non-key columns> WHERE <key>` with the non-key columns'
/// values first, then the key's, and the positions of those columns in that
/// order; `None` when every column is in the key (or a key column is
/// missing from the columns).
pub(crate) fn update_row(table: &Table) -> Option<(String, Vec<usize>)> {
    let key: Vec<usize> = table.pk_positions().collect();
    let rest: Vec<usize> = (0..table.columns.len())
        .filter(|i| !key.contains(i))
        .collect();
    if rest.is_empty() || key.len() != table.primary_key.len() {
        return None;
    }
    let sql = format!(
        "UPDATE {} SET {} WHERE {}",
        quote(&table.name),
        rest.iter()
            .enumerate()
            .map(|(n, &i)| format!("{} = ?{}", quote(&table.columns[i].name), n + 1))
            .collect::<Vec<_>>()
            .join(", "),
        key.iter()
            .enumerate()
            .map(|(n, &i)| format!(
                "{} = ?{}",
                quote(&table.columns[i].name),
                rest.len() + n + 1
            ))
            .collect::<Vec<_>>()
            .join(" AND ")
    );
    Some((sql, rest.into_iter().chain(key).collect()))
}

/// Deletes the rows of `table` that have no local change not yet on the
/// server (a re-bootstrap's clearing, a server `TRUNCATE`).
pub(crate) fn delete_synced_rows(table: &Table) -> String {
    format!(
        "DELETE FROM {name} WHERE NOT EXISTS (SELECT 1 FROM \"_outpost_rows\" r WHERE r.table_name = {lit} \
         AND r.pk = {key} AND r.status <> 'SYNCED')",
        name = quote(&table.name),
        lit = literal(&table.name),
        key = pk_json(table, &quote(&table.name)),
    )
}

/// Drops a trigger if it exists.
pub(crate) fn drop_trigger(name: &str) -> String {
    format!("DROP TRIGGER IF EXISTS {}", quote(name))
}

/// Drops a table if it exists.
pub(crate) fn drop_table(name: &str) -> String {
    format!("DROP TABLE IF EXISTS {}", quote(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_core::schema::Column;
    use outpost_core::types::{ColumnType, ScalarType};

    fn col(name: &str) -> Column {
        Column {
            name: name.into(),
            ty: ColumnType {
                scalar: ScalarType::Text,
                array: false,
                pg_name: "text".into(),
                domain: None,
            },
            nullable: false,
            default: None,
            identity: None,
            generated: false,
        }
    }

    /// `Order"Line` keyed by `(order, line)`, with one more column.
    fn table(columns: &[&str], key: &[&str]) -> Table {
        Table {
            name: "Order\"Line".into(),
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            columns: columns.iter().map(|c| col(c)).collect(),
            foreign_keys: vec![],
            uniques: vec![],
            relations: vec![],
        }
    }

    #[test]
    fn row_statements_by_key() {
        let t = table(&["order", "line", "qty"], &["order", "line"]);
        assert_eq!(pk_where(&t, 3), "\"order\" = ?3 AND \"line\" = ?4");
        assert_eq!(
            select_row(&t),
            "SELECT \"order\", \"line\", \"qty\" FROM \"Order\"\"Line\" WHERE \"order\" = ?1 AND \"line\" = ?2"
        );
        assert_eq!(
            select_all(&t),
            "SELECT \"order\", \"line\", \"qty\" FROM \"Order\"\"Line\" ORDER BY \"order\", \"line\""
        );
        assert_eq!(
            insert_or_replace(&t),
            "INSERT OR REPLACE INTO \"Order\"\"Line\" (\"order\", \"line\", \"qty\") VALUES (?1, ?2, ?3)"
        );
        assert_eq!(
            insert_or_ignore(&t),
            "INSERT OR IGNORE INTO \"Order\"\"Line\" (\"order\", \"line\", \"qty\") VALUES (?1, ?2, ?3)"
        );
        assert_eq!(
            delete_row(&t),
            "DELETE FROM \"Order\"\"Line\" WHERE \"order\" = ?1 AND \"line\" = ?2"
        );
    }

    #[test]
    fn update_binds_the_other_columns_then_the_key() {
        let t = table(&["qty", "order", "note", "line"], &["order", "line"]);
        assert_eq!(
            update_row(&t),
            Some((
                "UPDATE \"Order\"\"Line\" SET \"qty\" = ?1, \"note\" = ?2 WHERE \"order\" = ?3 AND \"line\" = ?4"
                    .to_string(),
                vec![0, 2, 1, 3]
            ))
        );
        // Every column in the key: nothing to update.
        assert_eq!(update_row(&table(&["a", "b"], &["a", "b"])), None);
        // A key column that is not a column (a broken snapshot): no update.
        assert_eq!(update_row(&table(&["a", "b"], &["a", "z"])), None);
    }

    #[test]
    fn clearing_keeps_rows_with_local_changes() {
        let t = table(&["id", "v"], &["id"]);
        assert_eq!(
            delete_synced_rows(&t),
            "DELETE FROM \"Order\"\"Line\" WHERE NOT EXISTS (SELECT 1 FROM \"_outpost_rows\" r WHERE \
             r.table_name = 'Order\"Line' AND r.pk = json_array(CASE WHEN typeof(\"Order\"\"Line\".\"id\") = 'blob' \
             THEN hex(\"Order\"\"Line\".\"id\") ELSE \"Order\"\"Line\".\"id\" END) AND r.status <> 'SYNCED')"
        );
        assert_eq!(
            drop_trigger("_outpost_ins_T"),
            "DROP TRIGGER IF EXISTS \"_outpost_ins_T\""
        );
        assert_eq!(drop_table("a\"b"), "DROP TABLE IF EXISTS \"a\"\"b\"");
    }
}
