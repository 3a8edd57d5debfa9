//! What the replica's integration tests share: the schema they lay out
//! (`Item` with every storage kind, `Pair` with a composite key).

use outpost_core::schema::{Column, Schema, Table};
use outpost_core::types::{ColumnType, ScalarType};

fn col(name: &str, scalar: ScalarType, array: bool) -> Column {
    Column {
        name: name.into(),
        ty: ColumnType {
            scalar,
            array,
            pg_name: name.into(),
            domain: None,
        },
        nullable: name != "id",
        default: None,
        identity: None,
        generated: false,
    }
}

pub fn schema() -> Schema {
    let item = Table {
        name: "Item".into(),
        columns: vec![
            col("id", ScalarType::Text, false),
            col("qty", ScalarType::Int4, false),
            col("score", ScalarType::Float8, false),
            col("blob", ScalarType::Bytea, false),
            col("tags", ScalarType::Text, true),
        ],
        primary_key: vec!["id".into()],
        foreign_keys: vec![],
        uniques: vec![],
        relations: vec![],
    };
    let pair = Table {
        name: "Pair".into(),
        columns: vec![
            col("a", ScalarType::Int8, false),
            col("b", ScalarType::Text, false),
            col("v", ScalarType::Text, false),
        ],
        primary_key: vec!["a".into(), "b".into()],
        foreign_keys: vec![],
        uniques: vec![],
        relations: vec![],
    };
    Schema {
        pg_schema: "public".into(),
        tables: vec![item, pair],
        enums: vec![],
    }
    .finish()
}
