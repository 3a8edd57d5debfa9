//! The binary value codec: PostgreSQL's binary wire format to and from
//! outpost's [`Value`], exactly (see the mapping table in
//! [`outpost_core::types`]).
//!
//! * [`PgValue`] implements [`FromSql`]: read any supported column as a
//!   `Value` (`row.try_get::<_, PgValue>(i)`, or [`row_values`] for a whole
//!   row).
//! * [`Bind`] implements [`ToSql`]: send a `Value` as a parameter of the type
//!   the server expects (`&Bind(&value)`, or [`binds`] for a slice).
//!
//! Decoding goes by the type's OID for built-in scalars, by its kind for
//! enums, arrays, ranges and domains. The types kept as text beyond the
//! basic ones are written in the canonical forms of
//! [`outpost_core::forms`] and parsed back to the same binary value;
//! `tsvector` and `tsquery` (and arrays of them) are sent to the server in
//! text form ([`Bind`]'s `encode_format`), which its input function parses. `numeric` is converted between its binary form
//! (base-10000 digits) and the decimal text PostgreSQL prints, by
//! [`numeric_from_binary`] and [`numeric_to_binary`]; dates and times between
//! microsecond counts and outpost's canonical text by the helpers of
//! [`outpost_core::types`]. Nothing here panics on bad input: a malformed
//! buffer or a value that does not fit its type is a [`CodecError`] naming the
//! type and the problem.
//!
//! ```no_run
//! # async fn demo(client: &tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use outpost_core::Value;
//! use outpost_remote::codec::{Bind, PgValue};
//!
//! let price = Value::Text("12.50".into());
//! let row = client.query_one("SELECT $1::numeric(12,2)", &[&Bind(&price)]).await?;
//! let PgValue(back) = row.try_get(0)?;
//! assert_eq!(back, price);
//! # Ok(()) }
//! ```

use std::error::Error as StdError;

use bytes::BytesMut;
use outpost_core::Value;
use postgres_types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

use crate::error::RemoteError;

/// Type OIDs of the built-in types outpost replicates.
pub mod oid {
    /// `boolean`
    pub const BOOL: u32 = 16;
    /// `bytea`
    pub const BYTEA: u32 = 17;
    /// `bigint`
    pub const INT8: u32 = 20;
    /// `smallint`
    pub const INT2: u32 = 21;
    /// `integer`
    pub const INT4: u32 = 23;
    /// `text`
    pub const TEXT: u32 = 25;
    /// `json`
    pub const JSON: u32 = 114;
    /// `real`
    pub const FLOAT4: u32 = 700;
    /// `double precision`
    pub const FLOAT8: u32 = 701;
    /// `character` (blank-padded)
    pub const BPCHAR: u32 = 1042;
    /// `character varying`
    pub const VARCHAR: u32 = 1043;
    /// `date`
    pub const DATE: u32 = 1082;
    /// `time without time zone`
    pub const TIME: u32 = 1083;
    /// `timestamp without time zone`
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamp with time zone`
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `interval`
    pub const INTERVAL: u32 = 1186;
    /// `numeric`
    pub const NUMERIC: u32 = 1700;
    /// `uuid`
    pub const UUID: u32 = 2950;
    /// `jsonb`
    pub const JSONB: u32 = 3802;
    /// `oid`
    pub const OID: u32 = 26;
    /// `xml`
    pub const XML: u32 = 142;
    /// `point`
    pub const POINT: u32 = 600;
    /// `lseg`
    pub const LSEG: u32 = 601;
    /// `path`
    pub const PATH: u32 = 602;
    /// `box`
    pub const BOX: u32 = 603;
    /// `polygon`
    pub const POLYGON: u32 = 604;
    /// `line`
    pub const LINE: u32 = 628;
    /// `cidr`
    pub const CIDR: u32 = 650;
    /// `circle`
    pub const CIRCLE: u32 = 718;
    /// `macaddr8`
    pub const MACADDR8: u32 = 774;
    /// `money`
    pub const MONEY: u32 = 790;
    /// `macaddr`
    pub const MACADDR: u32 = 829;
    /// `inet`
    pub const INET: u32 = 869;
    /// `time with time zone`
    pub const TIMETZ: u32 = 1266;
    /// `bit`
    pub const BIT: u32 = 1560;
    /// `bit varying`
    pub const VARBIT: u32 = 1562;
    /// `tsvector`
    pub const TSVECTOR: u32 = 3614;
    /// `tsquery`
    pub const TSQUERY: u32 = 3615;
    /// `int4range`
    pub const INT4RANGE: u32 = 3904;
    /// `numrange`
    pub const NUMRANGE: u32 = 3906;
    /// `tsrange`
    pub const TSRANGE: u32 = 3908;
    /// `tstzrange`
    pub const TSTZRANGE: u32 = 3910;
    /// `daterange`
    pub const DATERANGE: u32 = 3912;
    /// `int8range`
    pub const INT8RANGE: u32 = 3926;
    /// `int4multirange`
    pub const INT4MULTIRANGE: u32 = 4451;
    /// `nummultirange`
    pub const NUMMULTIRANGE: u32 = 4532;
    /// `tsmultirange`
    pub const TSMULTIRANGE: u32 = 4533;
    /// `tstzmultirange`
    pub const TSTZMULTIRANGE: u32 = 4534;
    /// `datemultirange`
    pub const DATEMULTIRANGE: u32 = 4535;
    /// `int8multirange`
    pub const INT8MULTIRANGE: u32 = 4536;

    /// Whether `oid` is one of the scalar types above.
    pub fn is_supported_scalar(oid: u32) -> bool {
        matches!(
            oid,
            BOOL | BYTEA
                | INT8
                | INT2
                | INT4
                | TEXT
                | JSON
                | FLOAT4
                | FLOAT8
                | BPCHAR
                | VARCHAR
                | DATE
                | TIME
                | TIMESTAMP
                | TIMESTAMPTZ
                | INTERVAL
                | NUMERIC
                | UUID
                | JSONB
                | OID
                | XML
                | POINT
                | LSEG
                | PATH
                | BOX
                | POLYGON
                | LINE
                | CIDR
                | CIRCLE
                | MACADDR8
                | MONEY
                | MACADDR
                | INET
                | TIMETZ
                | BIT
                | VARBIT
                | TSVECTOR
                | TSQUERY
        )
    }

    /// Whether `oid` is the element type of a built-in range: the ranges
    /// and multiranges outpost replicates.
    pub fn is_range_element(oid: u32) -> bool {
        matches!(oid, INT4 | INT8 | NUMERIC | DATE | TIMESTAMP | TIMESTAMPTZ)
    }
}

/// Why a value could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The type is not one outpost replicates.
    #[error("type {pg_type} is not supported by outpost")]
    Unsupported {
        /// The type's name.
        pg_type: String,
    },
    /// The server sent bytes that are not a valid binary value of the type.
    #[error("malformed binary {pg_type} value: {message}")]
    Malformed {
        /// The type's name.
        pg_type: String,
        /// What is wrong.
        message: String,
    },
    /// A value of this variant cannot be sent as this type.
    #[error("a {variant} value cannot be sent as type {pg_type}")]
    Mismatch {
        /// The parameter's type.
        pg_type: String,
        /// The `Value` variant given (`Text`, `Int`…).
        variant: &'static str,
    },
    /// The value has the right variant but is not valid for the type.
    #[error("{value} is not a valid {pg_type}: {message}")]
    Invalid {
        /// The parameter's type.
        pg_type: String,
        /// The value, shortened for the message.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// A multi-dimensional array value whose sub-arrays differ in length
    /// (PostgreSQL's arrays are rectangular).
    #[error("{pg_type} value is not rectangular: {message}")]
    Ragged {
        /// The array type's name.
        pg_type: String,
        /// Where the lengths differ.
        message: String,
    },
}

fn malformed(ty: &Type, message: impl Into<String>) -> CodecError {
    CodecError::Malformed {
        pg_type: ty.name().to_string(),
        message: message.into(),
    }
}

fn invalid(ty: &Type, value: &str, message: impl Into<String>) -> CodecError {
    let mut shown: String = value.chars().take(64).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    CodecError::Invalid {
        pg_type: ty.name().to_string(),
        value: format!("{shown:?}"),
        message: message.into(),
    }
}

fn mismatch(ty: &Type, value: &Value) -> CodecError {
    CodecError::Mismatch {
        pg_type: ty.name().to_string(),
        variant: variant_name(value),
    }
}

fn variant_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Bool(_) => "Bool",
        Value::Int(_) => "Int",
        Value::Float(_) => "Float",
        Value::Text(_) => "Text",
        Value::Bytes(_) => "Bytes",
        Value::Json(_) => "Json",
        Value::Array(_) => "Array",
    }
}

/// Whether the codec can read and write values of `ty`: the built-in
/// scalars of [`oid`], `citext`, enums, the built-in ranges and
/// multiranges, domains over those, and arrays of them (any number of
/// dimensions).
pub fn supports(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Simple => oid::is_supported_scalar(ty.oid()) || is_citext(ty),
        Kind::Enum(_) => true,
        Kind::Array(elem) => !matches!(elem.kind(), Kind::Array(_)) && supports(elem),
        Kind::Domain(base) => supports(base),
        Kind::Range(elem) | Kind::Multirange(elem) => oid::is_range_element(elem.oid()),
        _ => false,
    }
}

/// The `citext` extension's type: its OID differs per database, its binary
/// form is `text`'s.
fn is_citext(ty: &Type) -> bool {
    matches!(ty.kind(), Kind::Simple) && ty.name() == "citext"
}

/// Whether values of `ty` are sent to the server in text form: the text
/// search types, whose text outpost keeps but does not parse (the server's
/// input function does), and arrays of them.
pub(crate) fn sent_as_text(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Simple => matches!(ty.oid(), oid::TSVECTOR | oid::TSQUERY),
        Kind::Array(elem) | Kind::Domain(elem) => sent_as_text(elem),
        _ => false,
    }
}

mod decode;
mod encode;
mod numeric;

pub use decode::decode;
pub use encode::encode;
pub use numeric::{numeric_from_binary, numeric_to_binary};

// ---- the driver's traits --------------------------------------------------

/// A [`Value`] read from PostgreSQL: `row.try_get::<_, PgValue>(i)`. NULL
/// reads as `Value::Null`.
#[derive(Debug, Clone, PartialEq)]
pub struct PgValue(pub Value);

impl<'a> FromSql<'a> for PgValue {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(PgValue(decode(ty, raw)?))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(PgValue(Value::Null))
    }

    fn accepts(ty: &Type) -> bool {
        supports(ty)
    }
}

/// A [`Value`] bound as a parameter, encoded for the type the server
/// expects: `client.query(sql, &[&Bind(&v)])`.
#[derive(Debug, Clone, Copy)]
pub struct Bind<'a>(pub &'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        Ok(encode(self.0, ty, out)?)
    }

    fn accepts(ty: &Type) -> bool {
        supports(ty)
    }

    fn encode_format(&self, ty: &Type) -> postgres_types::Format {
        if sent_as_text(ty) {
            postgres_types::Format::Text
        } else {
            postgres_types::Format::Binary
        }
    }

    to_sql_checked!();
}

/// Binds a slice of values, for `query(sql, &refs)` where `refs` is
/// `binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect::<Vec<_>>()`.
pub fn binds(values: &[Value]) -> Vec<Bind<'_>> {
    values.iter().map(Bind).collect()
}

/// Every column of `row` as a [`Value`]; the error names the column and its
/// type.
pub fn row_values(row: &tokio_postgres::Row) -> Result<Vec<Value>, RemoteError> {
    (0..row.len())
        .map(|i| {
            row.try_get::<_, PgValue>(i).map(|v| v.0).map_err(|source| {
                let col = &row.columns()[i];
                RemoteError::Value {
                    action: "reading a row".into(),
                    column: col.name().to_string(),
                    pg_type: col.type_().name().to_string(),
                    source,
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
