//! Values the server would have filled for a row created offline (the
//! model service's local writes; see `model.rs`'s module doc): ids from the
//! per-node blocks reserved from the server's sequences, UUIDv7 keys where
//! the server has no default.

use std::collections::BTreeMap;

use outpost_core::schema::Table;
use outpost_core::types::{ScalarType, Value};
use outpost_local::ids::ReservedIds;

/// Whether the column takes its values from a sequence (`serial`,
/// identity), i.e. offline creates need a reserved id.
pub(crate) fn fed_by_sequence(table: &Table, column: &outpost_core::schema::Column) -> bool {
    let _ = table;
    matches!(
        column.ty.scalar,
        ScalarType::Int2 | ScalarType::Int4 | ScalarType::Int8
    ) && !column.ty.array
        && (column.identity.is_some()
            || column
                .default
                .as_deref()
                .is_some_and(|d| d.starts_with("nextval(")))
}

/// Fills what the server would have filled for a row created offline (see
/// the module doc). Runs inside the local write's transaction, whose
/// reserved ids `ids` are.
pub(crate) fn fill_defaults(
    ids: &ReservedIds<'_>,
    table: &Table,
    row: &mut BTreeMap<String, Value>,
) -> Result<(), String> {
    for column in &table.columns {
        if row.contains_key(&column.name) || column.generated {
            continue;
        }
        if fed_by_sequence(table, column) {
            match ids.take(&table.name, &column.name) {
                Ok(Some(id)) => {
                    row.insert(column.name.clone(), Value::Int(id));
                }
                Ok(None) => {
                    return Err(format!(
                        "no reserved ids left for {}.{}: rows created offline take ids from a block reserved from the \
                         server's sequence while online; connect to the server to reserve more, or give {} explicitly",
                        table.name, column.name, column.name
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
            continue;
        }
        if table.takes_generated_id(column) {
            row.insert(
                column.name.clone(),
                Value::Text(uuid::Uuid::now_v7().to_string()),
            );
        }
    }
    Ok(())
}
