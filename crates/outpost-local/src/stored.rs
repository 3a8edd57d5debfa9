//! How the sync vocabulary of `outpost_core` (row status, replica state,
//! versions, local change numbers, base versions) is stored in SQLite.
//!
//! The orphan rule keeps rusqlite's `ToSql`/`FromSql` off core's types, so
//! they travel through [`Sql`], a wrapper this crate owns: bind `Sql(x)`,
//! read `r.get::<_, Sql<T>>(i)?.0`. A stored text that is not a known
//! spelling is an error naming the column's value, never a silent default.

use std::str::FromStr;

use outpost_core::settle::BaseVersion;
use outpost_core::{LocalSeq, ReplicaState, RowStatus, Version};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// A core value in its stored form (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sql<T>(pub T);

/// Text-stored enums: their `as_str` spelling.
fn text_from_sql<T: FromStr<Err = String>>(v: ValueRef<'_>) -> FromSqlResult<T> {
    let text = v.as_str()?;
    text.parse::<T>().map_err(|e| FromSqlError::Other(e.into()))
}

impl ToSql for Sql<RowStatus> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.as_str()))
    }
}

impl FromSql for Sql<RowStatus> {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        text_from_sql(v).map(Sql)
    }
}

impl ToSql for Sql<ReplicaState> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.as_str()))
    }
}

impl FromSql for Sql<ReplicaState> {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        text_from_sql(v).map(Sql)
    }
}

impl ToSql for Sql<Version> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.get()))
    }
}

impl FromSql for Sql<Version> {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(v).map(|n| Sql(Version(n)))
    }
}

impl ToSql for Sql<LocalSeq> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.get()))
    }
}

impl FromSql for Sql<LocalSeq> {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(v).map(|n| Sql(LocalSeq(n)))
    }
}

/// `NULL`, the version, or `-1` ([`BaseVersion::to_stored`]).
impl ToSql for Sql<BaseVersion> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0.to_stored() {
            Some(v) => ToSqlOutput::from(v),
            None => ToSqlOutput::from(rusqlite::types::Null),
        })
    }
}

impl FromSql for Sql<BaseVersion> {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        Option::<i64>::column_result(v).map(|n| Sql(BaseVersion::from_stored(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn round_trip<T>(conn: &Connection, x: T) -> T
    where
        Sql<T>: ToSql + FromSql,
    {
        conn.query_row("SELECT ?1", [Sql(x)], |r| r.get::<_, Sql<T>>(0))
            .map(|s| s.0)
            .expect("round trip")
    }

    #[test]
    fn every_value_round_trips_through_sqlite() {
        let conn = Connection::open_in_memory().expect("open");
        for s in RowStatus::ALL {
            assert_eq!(round_trip(&conn, *s), *s);
        }
        for s in ReplicaState::ALL {
            assert_eq!(round_trip(&conn, *s), *s);
        }
        for b in [
            BaseVersion::AsOfCursor,
            BaseVersion::Unknown,
            BaseVersion::Known(Version(0)),
            BaseVersion::Known(Version(i64::MAX)),
        ] {
            assert_eq!(round_trip(&conn, b), b);
        }
        assert_eq!(round_trip(&conn, Version(7)), Version(7));
        assert_eq!(round_trip(&conn, LocalSeq(9)), LocalSeq(9));
    }

    #[test]
    fn stored_forms_are_the_documented_ones() {
        let conn = Connection::open_in_memory().expect("open");
        let stored = |sql: &str, v: &dyn ToSql| -> Option<String> {
            conn.query_row(sql, [v], |r| r.get(0)).expect("query")
        };
        assert_eq!(
            stored("SELECT ?1", &Sql(RowStatus::Pending)).as_deref(),
            Some("PENDING")
        );
        assert_eq!(
            stored("SELECT ?1", &Sql(ReplicaState::Bootstrapping)).as_deref(),
            Some("BOOTSTRAPPING")
        );
        assert_eq!(
            stored("SELECT CAST(?1 AS TEXT)", &Sql(BaseVersion::Unknown)).as_deref(),
            Some("-1")
        );
        assert_eq!(stored("SELECT ?1", &Sql(BaseVersion::AsOfCursor)), None);
    }

    #[test]
    fn an_unknown_spelling_is_an_error_naming_it() {
        let conn = Connection::open_in_memory().expect("open");
        let err = conn
            .query_row("SELECT 'DONE'", [], |r| r.get::<_, Sql<RowStatus>>(0))
            .expect_err("unknown status");
        assert!(err.to_string().contains("\"DONE\""), "{err}");
    }
}
