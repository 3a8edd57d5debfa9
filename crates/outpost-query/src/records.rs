//! Typed reads: the rows of a read kept as the databases returned them
//! ([`Records`]) and handed to serde directly, instead of being built into
//! `serde_json::Value` records first (`assemble`).
//!
//! [`Records::deserialize`] gives, for any `T: DeserializeOwned`, what
//! `serde_json::from_value::<T>` gives for each JSON record of the same
//! read: the same field names in the same order (scalar fields,
//! `syncStatus`, relations; a repeated name keeps its first position and
//! its last value, as inserting into a map does), each value in its JSON
//! form (`Value::to_json`: integers past 2^53, `numeric`, timestamps,
//! `bytea` as base64… as strings; `json`/`jsonb` as the document), a to-one
//! relation as a record or `null`, a to-many relation as a sequence. The
//! deserializer visits exactly what the JSON value would visit (a
//! non-negative integer as `u64`, a negative one as `i64`), and
//! `json`/`jsonb` documents go through `serde_json::Value` itself, so even
//! self-describing targets (`serde_json::Value`, `#[serde(flatten)]`,
//! untagged enums) see the same thing.
//!
//! `Records` also implements `Serialize`: Prisma's result shape (an array,
//! or one record or `null` for `findFirst`/`findUnique`) with the same JSON
//! text as serializing the JSON records, for response bodies.
//!
//! Cost: no map or key is built. Text moves from the row into the target
//! on a row's last visit; a row several parents include (a user of many
//! posts) is copied for the others, as the JSON records clone it.
//!
//! A value that does not fit is an error naming where it is
//! (`[3].user.email: invalid type: null, expected a string`), never a
//! panic.

use std::borrow::Cow;
use std::fmt;

use outpost_core::schema::RelationKind;
use outpost_core::types::{ColumnType, ScalarType, Value};
use serde::de::value::SeqDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer, forward_to_deserialize_any};
use serde_json::Value as Json;

use crate::assemble::{Level, Links, Row, Template, link};

/// A read's rows, not yet turned into records: deserialize them into the
/// caller's types with [`Records::deserialize`].
pub struct Records {
    shapes: Vec<Shape>,
    levels: Vec<LevelRows>,
    /// A `findFirst`/`findUnique`: serialized as one record or `null`.
    single: bool,
}

impl fmt::Debug for Records {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records")
            .field("records", &self.len())
            .field("levels", &self.levels.len())
            .finish()
    }
}

/// What one level's records hold.
struct Shape {
    /// The output fields in order, each with what fills it.
    entries: Vec<(String, Slot)>,
    relations: Vec<Rel>,
}

#[derive(Clone, Copy)]
enum Slot {
    /// A column, by index in the row.
    Field(usize),
    Status,
    /// A relation, by index in `Shape::relations`.
    Relation(usize),
}

struct Rel {
    to_many: bool,
    child: usize,
    links: Links,
}

struct LevelRows {
    rows: Vec<Row>,
    /// How many more times each row will be visited: its values move out
    /// on the last visit and are copied before.
    left: Vec<u64>,
}

/// A value the read's records cannot be deserialized into, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    path: String,
    message: String,
}

impl ReadError {
    fn at(mut self, part: impl fmt::Display) -> ReadError {
        self.path = format!("{part}{}", self.path);
        self
    }

    fn json(e: serde_json::Error) -> ReadError {
        de::Error::custom(e)
    }

    /// Where in the result the value is (`[3].user.email`).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ReadError {}

impl de::Error for ReadError {
    fn custom<T: fmt::Display>(msg: T) -> ReadError {
        ReadError {
            path: String::new(),
            message: msg.to_string(),
        }
    }

    // JSON has no unit: say `null`, as serde_json does.
    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> ReadError {
        match unexp {
            Unexpected::Unit => {
                de::Error::custom(format_args!("invalid type: null, expected {exp}"))
            }
            u => de::Error::custom(format_args!("invalid type: {u}, expected {exp}")),
        }
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> ReadError {
        match unexp {
            Unexpected::Unit => {
                de::Error::custom(format_args!("invalid value: null, expected {exp}"))
            }
            u => de::Error::custom(format_args!("invalid value: {u}, expected {exp}")),
        }
    }
}

impl Records {
    /// The records of `levels` (as `assemble::records` takes them);
    /// `status`: the rows carry their sync status.
    pub(crate) fn new(levels: Vec<Level<'_>>, status: bool, single: bool) -> Records {
        let mut shapes = Vec::with_capacity(levels.len());
        for level in &levels {
            let query = level.query;
            let shape = &query.shape;
            let names = Template::of(query, status).names;
            let slots = shape
                .fields
                .iter()
                .map(|&i| Slot::Field(i))
                .chain(status.then_some(Slot::Status))
                .chain((0..shape.relations.len()).map(Slot::Relation));
            let mut entries: Vec<(String, Slot)> = Vec::with_capacity(names.len());
            for (name, slot) in names.into_iter().zip(slots) {
                match entries.iter_mut().find(|(n, _)| *n == name) {
                    Some(e) => e.1 = slot,
                    None => entries.push((name, slot)),
                }
            }
            let mut relations = Vec::with_capacity(level.children.len());
            for (load, &c) in shape.relations.iter().zip(&level.children) {
                let mut uses = vec![0; levels[c].rows.len()];
                relations.push(Rel {
                    to_many: load.relation.kind == RelationKind::ToMany,
                    child: c,
                    links: link(level, &levels[c], load, &mut uses),
                });
            }
            shapes.push(Shape { entries, relations });
        }
        // Visits: each root row once; each child row as often as the rows
        // that include it are visited (parents come before children).
        let mut left: Vec<Vec<u64>> = levels.iter().map(|l| vec![0; l.rows.len()]).collect();
        if let Some(root) = left.first_mut() {
            root.fill(1);
        }
        for (n, shape) in shapes.iter().enumerate() {
            for rel in &shape.relations {
                for r in 0..left[n].len() {
                    let visits = left[n][r];
                    for &cr in rel.links.of(r) {
                        let v = &mut left[rel.child][cr as usize];
                        *v = v.saturating_add(visits);
                    }
                }
            }
        }
        let levels = levels
            .into_iter()
            .zip(left)
            .map(|(l, left)| LevelRows { rows: l.rows, left })
            .collect();
        Records {
            shapes,
            levels,
            single,
        }
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, |l| l.rows.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every record as a `T` (module doc).
    pub fn deserialize<T: DeserializeOwned>(mut self) -> Result<Vec<T>, ReadError> {
        let n = self.len();
        let mut out = Vec::with_capacity(n);
        for row in 0..n {
            let record = RecordDe {
                shapes: &self.shapes,
                levels: &mut self.levels,
                level: 0,
                row,
            };
            out.push(T::deserialize(record).map_err(|e| e.at(format_args!("[{row}]")))?);
        }
        Ok(out)
    }
}

/// One record.
struct RecordDe<'a> {
    shapes: &'a [Shape],
    levels: &'a mut [LevelRows],
    level: usize,
    row: usize,
}

impl<'a> RecordDe<'a> {
    fn access(self) -> RecordAccess<'a> {
        let left = &mut self.levels[self.level].left[self.row];
        let owned = *left == 1;
        // A count that saturated is never reached: such rows are copied.
        if *left != u64::MAX {
            *left = left.saturating_sub(1);
        }
        RecordAccess {
            shapes: self.shapes,
            levels: self.levels,
            level: self.level,
            row: self.row,
            next: 0,
            owned,
        }
    }
}

impl<'de> Deserializer<'de> for RecordDe<'_> {
    type Error = ReadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_map(self.access())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        Err(de::Error::invalid_type(Unexpected::Map, &visitor))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

struct RecordAccess<'a> {
    shapes: &'a [Shape],
    levels: &'a mut [LevelRows],
    level: usize,
    row: usize,
    next: usize,
    /// This is the row's last visit: values move out of it.
    owned: bool,
}

impl<'de> MapAccess<'de> for RecordAccess<'_> {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ReadError> {
        match self.shapes[self.level].entries.get(self.next) {
            Some((name, _)) => seed
                .deserialize(name.as_str().into_deserializer())
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ReadError> {
        let shapes = self.shapes;
        let shape = &shapes[self.level];
        let Some((name, slot)) = shape.entries.get(self.next) else {
            return Err(de::Error::custom(
                "a value was asked for past the last field",
            ));
        };
        self.next += 1;
        let result = match *slot {
            Slot::Field(col) => {
                let v = &mut self.levels[self.level].rows[self.row].values[col];
                let value = if self.owned {
                    Cow::Owned(std::mem::replace(v, Value::Null))
                } else {
                    Cow::Borrowed(&*v)
                };
                seed.deserialize(ValueDe {
                    value: Src::Value(value),
                    in_array: false,
                })
            }
            Slot::Status => {
                let status = &mut self.levels[self.level].rows[self.row].status;
                let text = match status {
                    Some(s) if self.owned => Cow::Owned(std::mem::take(s)),
                    Some(s) => Cow::Borrowed(s.as_str()),
                    None => Cow::Borrowed("SYNCED"),
                };
                seed.deserialize(ValueDe {
                    value: Src::Str(text),
                    in_array: false,
                })
            }
            Slot::Relation(e) => {
                let rel = &shape.relations[e];
                let matched = rel.links.of(self.row);
                if rel.to_many {
                    seed.deserialize(ManyDe {
                        shapes,
                        levels: &mut *self.levels,
                        level: rel.child,
                        matched,
                    })
                } else {
                    seed.deserialize(OneDe(matched.first().map(|&cr| RecordDe {
                        shapes,
                        levels: &mut *self.levels,
                        level: rel.child,
                        row: cr as usize,
                    })))
                }
            }
        };
        result.map_err(|e| e.at(format_args!(".{name}")))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.shapes[self.level].entries.len() - self.next)
    }
}

/// A to-one relation: its record, or `null`.
struct OneDe<'a>(Option<RecordDe<'a>>);

impl OneDe<'_> {
    fn null() -> ValueDe<'static> {
        ValueDe {
            value: Src::Value(Cow::Owned(Value::Null)),
            in_array: false,
        }
    }
}

impl<'de> Deserializer<'de> for OneDe<'_> {
    type Error = ReadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0 {
            Some(r) => r.deserialize_any(visitor),
            None => visitor.visit_unit(),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0 {
            Some(r) => visitor.visit_some(r),
            None => visitor.visit_none(),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        match self.0 {
            Some(r) => r.deserialize_newtype_struct(name, visitor),
            None => Self::null().deserialize_newtype_struct(name, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        match self.0 {
            Some(r) => r.deserialize_enum(name, variants, visitor),
            None => Self::null().deserialize_enum(name, variants, visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// A to-many relation: its records in order.
struct ManyDe<'a> {
    shapes: &'a [Shape],
    levels: &'a mut [LevelRows],
    level: usize,
    matched: &'a [u32],
}

impl<'de> Deserializer<'de> for ManyDe<'_> {
    type Error = ReadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_seq(ManyAccess { de: self, next: 0 })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        Err(de::Error::invalid_type(Unexpected::Seq, &visitor))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

struct ManyAccess<'a> {
    de: ManyDe<'a>,
    next: usize,
}

impl<'de> SeqAccess<'de> for ManyAccess<'_> {
    type Error = ReadError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ReadError> {
        let Some(&row) = self.de.matched.get(self.next) else {
            return Ok(None);
        };
        let i = self.next;
        self.next += 1;
        seed.deserialize(RecordDe {
            shapes: self.de.shapes,
            levels: &mut *self.de.levels,
            level: self.de.level,
            row: row as usize,
        })
        .map(Some)
        .map_err(|e| e.at(format_args!("[{i}]")))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.de.matched.len() - self.next)
    }
}

/// A column type for `Value::to_json` where the type does not matter (it
/// only picks the element type of arrays, and elements are scalars).
const ANY: ColumnType = ColumnType {
    scalar: ScalarType::Text,
    array: false,
    pg_name: String::new(),
    domain: None,
};

/// One value, moved or borrowed from its row.
struct ValueDe<'a> {
    value: Src<'a>,
    /// An array element: a `json` element is its text, not the document.
    in_array: bool,
}

impl<'de> IntoDeserializer<'de, ReadError> for ValueDe<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// Where a value comes from.
enum Src<'a> {
    Value(Cow<'a, Value>),
    /// Text that is no column's value (`syncStatus`).
    Str(Cow<'a, str>),
}

/// What a value looks like as JSON.
enum Form<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Seq(Cow<'a, [Value]>),
    /// A `json`/`jsonb` document (or its text as a string when it is not
    /// JSON, as `Value::to_json` has it).
    Doc(Json),
}

impl<'a> ValueDe<'a> {
    fn form(self) -> Form<'a> {
        let text = |v: &Value| match v.to_json(&ANY) {
            Json::String(s) => s,
            other => other.to_string(),
        };
        let value = match self.value {
            Src::Value(v) => v,
            Src::Str(s) => return Form::Str(s),
        };
        match value {
            Cow::Owned(Value::Text(s)) => Form::Str(Cow::Owned(s)),
            Cow::Borrowed(Value::Text(s)) => Form::Str(Cow::Borrowed(s)),
            Cow::Owned(Value::Json(s)) if self.in_array => Form::Str(Cow::Owned(s)),
            Cow::Borrowed(Value::Json(s)) if self.in_array => Form::Str(Cow::Borrowed(s)),
            Cow::Owned(Value::Json(s)) => {
                Form::Doc(serde_json::from_str(&s).unwrap_or(Json::String(s)))
            }
            Cow::Borrowed(Value::Json(s)) => {
                Form::Doc(serde_json::from_str(s).unwrap_or_else(|_| Json::String(s.clone())))
            }
            Cow::Owned(Value::Array(items)) => Form::Seq(Cow::Owned(items)),
            Cow::Borrowed(Value::Array(items)) => Form::Seq(Cow::Borrowed(items)),
            value => match &*value {
                Value::Null => Form::Null,
                Value::Bool(b) => Form::Bool(*b),
                Value::Int(i)
                    if i.unsigned_abs() > outpost_core::types::MAX_SAFE_JSON_INT as u64 =>
                {
                    Form::Str(Cow::Owned(i.to_string()))
                }
                Value::Int(i) => match u64::try_from(*i) {
                    Ok(u) => Form::U64(u),
                    Err(_) => Form::I64(*i),
                },
                Value::Float(f) if f.is_finite() => Form::F64(*f),
                other => Form::Str(Cow::Owned(text(other))),
            },
        }
    }
}

fn elements<'de, V: Visitor<'de>>(
    items: Cow<'_, [Value]>,
    visitor: V,
) -> Result<V::Value, ReadError> {
    match items {
        Cow::Owned(items) => SeqDeserializer::new(items.into_iter().map(|v| ValueDe {
            value: Src::Value(Cow::Owned(v)),
            in_array: true,
        }))
        .deserialize_any(visitor),
        Cow::Borrowed(items) => SeqDeserializer::new(items.iter().map(|v| ValueDe {
            value: Src::Value(Cow::Borrowed(v)),
            in_array: true,
        }))
        .deserialize_any(visitor),
    }
}

impl<'de> Deserializer<'de> for ValueDe<'_> {
    type Error = ReadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.form() {
            Form::Null => visitor.visit_unit(),
            Form::Bool(b) => visitor.visit_bool(b),
            Form::U64(u) => visitor.visit_u64(u),
            Form::I64(i) => visitor.visit_i64(i),
            Form::F64(f) => visitor.visit_f64(f),
            Form::Str(Cow::Owned(s)) => visitor.visit_string(s),
            Form::Str(Cow::Borrowed(s)) => visitor.visit_str(s),
            Form::Seq(items) => elements(items, visitor),
            Form::Doc(json) => json.deserialize_any(visitor).map_err(ReadError::json),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match &self.value {
            Src::Value(v) if v.is_null() => visitor.visit_none(),
            // A document may be JSON `null`.
            Src::Value(v) if matches!(**v, Value::Json(_)) && !self.in_array => match self.form() {
                Form::Doc(json) => json.deserialize_option(visitor).map_err(ReadError::json),
                _ => Err(de::Error::custom("a json value read as another kind")),
            },
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        // A label (an enum column, a string) is a unit variant.
        match self.form() {
            Form::Str(Cow::Owned(s)) => visitor.visit_enum(s.into_deserializer()),
            Form::Str(Cow::Borrowed(s)) => visitor.visit_enum(s.into_deserializer()),
            Form::Doc(json) => json
                .deserialize_enum(name, variants, visitor)
                .map_err(ReadError::json),
            Form::Null => Err(de::Error::invalid_type(Unexpected::Unit, &visitor)),
            Form::Bool(b) => Err(de::Error::invalid_type(Unexpected::Bool(b), &visitor)),
            Form::U64(u) => Err(de::Error::invalid_type(Unexpected::Unsigned(u), &visitor)),
            Form::I64(i) => Err(de::Error::invalid_type(Unexpected::Signed(i), &visitor)),
            Form::F64(f) => Err(de::Error::invalid_type(Unexpected::Float(f), &visitor)),
            Form::Seq(_) => Err(de::Error::invalid_type(Unexpected::Seq, &visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// The read's result in Prisma's shape, written straight from the rows:
/// the same JSON text as serializing the JSON records (`assemble`), for a
/// response body without `serde_json::Value`s in between.
impl Serialize for Records {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let record = |row: usize| RecordSer {
            records: self,
            level: 0,
            row,
        };
        if self.single {
            return match self.len() {
                0 => serializer.serialize_unit(),
                _ => record(0).serialize(serializer),
            };
        }
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for row in 0..self.len() {
            seq.serialize_element(&record(row))?;
        }
        seq.end()
    }
}

struct RecordSer<'a> {
    records: &'a Records,
    level: usize,
    row: usize,
}

impl Serialize for RecordSer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let shape = &self.records.shapes[self.level];
        let row = &self.records.levels[self.level].rows[self.row];
        let mut map = serializer.serialize_map(Some(shape.entries.len()))?;
        for (name, slot) in &shape.entries {
            match *slot {
                Slot::Field(col) => {
                    map.serialize_entry(name, &ValueSer(&row.values[col], false))?
                }
                Slot::Status => {
                    map.serialize_entry(name, row.status.as_deref().unwrap_or("SYNCED"))?
                }
                Slot::Relation(e) => {
                    let rel = &shape.relations[e];
                    let child = |&cr: &u32| RecordSer {
                        records: self.records,
                        level: rel.child,
                        row: cr as usize,
                    };
                    let matched = rel.links.of(self.row);
                    if rel.to_many {
                        map.serialize_entry(name, &ManySer(matched.iter().map(child).collect()))?;
                    } else {
                        map.serialize_entry(name, &matched.first().map(child))?;
                    }
                }
            }
        }
        map.end()
    }
}

struct ManySer<'a>(Vec<RecordSer<'a>>);

impl Serialize for ManySer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.0)
    }
}

/// A value in its JSON form; `.1`: an array element.
struct ValueSer<'a>(&'a Value, bool);

impl Serialize for ValueSer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) if i.unsigned_abs() > outpost_core::types::MAX_SAFE_JSON_INT as u64 => {
                serializer.collect_str(i)
            }
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => serializer.serialize_f64(*f),
            Value::Text(s) => serializer.serialize_str(s),
            Value::Json(s) if self.1 => serializer.serialize_str(s),
            Value::Json(s) => match serde_json::from_str::<Json>(s) {
                Ok(doc) => doc.serialize(serializer),
                Err(_) => serializer.serialize_str(s),
            },
            Value::Array(items) => serializer.collect_seq(items.iter().map(|v| ValueSer(v, true))),
            other => other.to_json(&ANY).serialize(serializer),
        }
    }
}
