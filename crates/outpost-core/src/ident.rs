//! Quoting of identifiers. Every table, column, trigger and index name that
//! reaches SQL goes through [`quote`]; values never do (they are bound).

/// Quotes an identifier for PostgreSQL and SQLite alike: wrapped in double
/// quotes, inner double quotes doubled. Both dialects read it back exactly.
///
/// ```
/// assert_eq!(outpost_core::ident::quote("Post"), "\"Post\"");
/// assert_eq!(outpost_core::ident::quote("a\"b"), "\"a\"\"b\"");
/// ```
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a SQL string literal (single quotes doubled). Used only in
/// generated DDL, where SQLite accepts no bind parameters (trigger bodies,
/// defaults); never for user-supplied values at run time.
///
/// ```
/// assert_eq!(outpost_core::ident::literal("it's"), "'it''s'");
/// ```
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Quotes a list of identifiers, comma separated.
pub fn quote_list<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names
        .into_iter()
        .map(|n| quote(n))
        .collect::<Vec<_>>()
        .join(", ")
}
