//! Turning the rows of a read into records in Prisma's shape: the root
//! level's rows and each loaded relation level's rows ([`Level`]s, parents
//! before children) become JSON objects, each relation field holding the
//! matching child records.
//!
//! Built for large reads (`findMany` of thousands of records with
//! `include`), so the work per record is kept to what the output needs:
//!
//! * rows are matched to their parents once, by keys that borrow the row
//!   values ([`Key`]), not by a string built per row;
//! * levels are built bottom-up, each child record once; a parent takes the
//!   child record itself when it is its last user and a clone otherwise (a
//!   user shared by many posts is cloned, never rebuilt);
//! * every record of a level starts as a clone of one template object
//!   holding the level's field names (no hashing or growing per record;
//!   `serde_json` keeps insertion order here, feature `preserve_order`),
//!   and values are moved out of the rows, not copied.
//!
//! The result is the same as building each object by inserting its fields
//! in order; [`Key`] equality is that of the databases' `=` as the executor
//! defines it (`numeric` by value, `char(n)` without trailing spaces).

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use outpost_core::schema::{RelationKind, Table};
use outpost_core::types::{ColumnType, Value};
use serde_json::{Map, Value as Json};

use crate::plan::{Class, Load, Query};
use crate::text::numeric_key;

/// A row read: every column, and its sync status when asked for.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub values: Vec<Value>,
    pub status: Option<String>,
}

/// The rows of one query of a read: the root, or one relation loaded for
/// the rows of the level `children` point back from.
pub(crate) struct Level<'q> {
    pub query: &'q Query,
    pub rows: Vec<Row>,
    /// The level loading each of `query.shape.relations`, in order; always
    /// after this one.
    pub children: Vec<usize>,
}

/// One part of a [`Key`], normalised so that equal parts are the values the
/// databases compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Part<'a> {
    Int(i64),
    Text(Cow<'a, str>),
    /// Any other value, as its JSON text.
    Other(String),
}

/// A row's values in some columns, for matching rows in Rust.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key<'a> {
    One(Part<'a>),
    Many(Vec<Part<'a>>),
}

fn part<'a>(v: &'a Value, ty: &ColumnType) -> Part<'a> {
    match (v, Class::of(ty)) {
        (Value::Text(s), Class::Numeric) => Part::Text(Cow::Owned(numeric_key(s))),
        (Value::Text(s), Class::Char) => Part::Text(Cow::Borrowed(s.trim_end_matches(' '))),
        (Value::Text(s), _) => Part::Text(Cow::Borrowed(s)),
        // Everything else by its JSON form (an integer past JSON's safe
        // range is a string there), so that values of different kinds
        // match exactly when their JSON forms are equal.
        (v, _) => match v.to_json(ty) {
            Json::String(s) => Part::Text(Cow::Owned(s)),
            Json::Number(n) if n.is_i64() => {
                n.as_i64().map_or(Part::Other(n.to_string()), Part::Int)
            }
            other => Part::Other(other.to_string()),
        },
    }
}

/// The key of `values` in columns `cols` of `t`; `None` when a part is NULL
/// (which matches nothing).
pub(crate) fn key<'a>(t: &Table, cols: &[usize], values: &'a [Value]) -> Option<Key<'a>> {
    if let [i] = cols {
        let v = &values[*i];
        if v.is_null() {
            return None;
        }
        return Some(Key::One(part(v, &t.columns[*i].ty)));
    }
    let mut parts = Vec::with_capacity(cols.len());
    for i in cols {
        let v = &values[*i];
        if v.is_null() {
            return None;
        }
        parts.push(part(v, &t.columns[*i].ty));
    }
    Some(Key::Many(parts))
}

/// The indexes of the columns `names` of `t` (unknown names skipped).
pub(crate) fn indexes(t: &Table, names: &[String]) -> Vec<usize> {
    names
        .iter()
        .filter_map(|n| t.columns.iter().position(|c| &c.name == n))
        .collect()
}

/// A value as JSON, moved: what `Value::to_json` gives, without copying
/// text.
fn into_json(v: Value, ty: &ColumnType) -> Json {
    match v {
        Value::Text(s) => Json::String(s),
        Value::Json(text) => match serde_json::from_str(&text) {
            Ok(j) => j,
            Err(_) => Json::String(text),
        },
        v => v.to_json(ty),
    }
}

const NONE: u32 = u32::MAX;

/// The child rows each parent row of one relation gets: parent row `r`'s
/// are `matched[offsets[r]..offsets[r + 1]]`, in the child level's order.
pub(crate) struct Links {
    offsets: Vec<u32>,
    matched: Vec<u32>,
}

impl Links {
    pub(crate) fn of(&self, r: usize) -> &[u32] {
        let (a, b) = (self.offsets[r] as usize, self.offsets[r + 1] as usize);
        &self.matched[a..b]
    }
}

/// Matches the rows of `parent` to the rows of `child` for relation `load`,
/// counting in `uses` how many parents take each child row.
pub(crate) fn link(parent: &Level<'_>, child: &Level<'_>, load: &Load, uses: &mut [u32]) -> Links {
    let pt = &parent.query.table;
    let ct = &child.query.table;
    let local = indexes(pt, &load.relation.local_columns);
    let target = indexes(ct, &load.relation.target_columns);
    // Child rows by key: the first and last of each key, chained in order.
    let mut ends: HashMap<Key<'_>, (u32, u32)> = HashMap::with_capacity(child.rows.len());
    let mut next = vec![NONE; child.rows.len()];
    for (r, row) in child.rows.iter().enumerate() {
        let Some(k) = key(ct, &target, &row.values) else {
            continue;
        };
        let r = r as u32;
        match ends.entry(k) {
            Entry::Occupied(mut e) => {
                let (_, last) = e.get_mut();
                next[*last as usize] = r;
                *last = r;
            }
            Entry::Vacant(e) => {
                e.insert((r, r));
            }
        }
    }
    let (skip, take) = match load.relation.kind {
        RelationKind::ToOne => (0, 1),
        RelationKind::ToMany => (
            usize::try_from(load.query.skip).unwrap_or(usize::MAX),
            load.query
                .take
                .map_or(usize::MAX, |t| usize::try_from(t).unwrap_or(usize::MAX)),
        ),
    };
    let mut offsets = Vec::with_capacity(parent.rows.len() + 1);
    let mut matched = Vec::with_capacity(parent.rows.len());
    for row in &parent.rows {
        offsets.push(matched.len() as u32);
        let Some(&(first, _)) = key(pt, &local, &row.values).and_then(|k| ends.get(&k)) else {
            continue;
        };
        let (mut r, mut seen, mut taken) = (first, 0usize, 0usize);
        while r != NONE && taken < take {
            if seen >= skip {
                matched.push(r);
                uses[r as usize] += 1;
                taken += 1;
            }
            seen += 1;
            r = next[r as usize];
        }
    }
    offsets.push(matched.len() as u32);
    Links { offsets, matched }
}

/// The object every record of a level starts from.
pub(crate) struct Template {
    /// The field names in output order: scalar fields, `syncStatus`,
    /// relations.
    pub(crate) names: Vec<String>,
    /// `names` with `null` values, when the names are distinct.
    map: Option<Map<String, Json>>,
}

impl Template {
    pub(crate) fn of(query: &Query, status: bool) -> Template {
        let t = &query.table;
        let shape = &query.shape;
        let mut names: Vec<String> = shape
            .fields
            .iter()
            .map(|&i| t.columns[i].name.clone())
            .collect();
        if status {
            names.push("syncStatus".into());
        }
        names.extend(shape.relations.iter().map(|l| l.relation.name.clone()));
        let mut map = Map::with_capacity(names.len());
        for n in &names {
            map.insert(n.clone(), Json::Null);
        }
        // A repeated name (a column called syncStatus, say) keeps the last
        // value in the first position, as inserting does: built by inserts.
        let map = (map.len() == names.len()).then_some(map);
        Template { names, map }
    }

    /// A record: `value(slot)` gives the value of each name in order.
    fn record(&self, mut value: impl FnMut(usize) -> Json) -> Json {
        match &self.map {
            Some(map) => {
                let mut m = map.clone();
                for (slot, v) in m.values_mut().enumerate() {
                    *v = value(slot);
                }
                Json::Object(m)
            }
            None => {
                let mut m = Map::with_capacity(self.names.len());
                for (slot, n) in self.names.iter().enumerate() {
                    m.insert(n.clone(), value(slot));
                }
                Json::Object(m)
            }
        }
    }
}

/// The records of the first level's rows, with every relation filled in.
/// `status`: the rows carry their sync status (`syncStatus`).
pub(crate) fn records(mut levels: Vec<Level<'_>>, status: bool) -> Vec<Json> {
    // How many parent rows take each row; which rows each parent takes.
    let mut uses: Vec<Vec<u32>> = levels.iter().map(|l| vec![0; l.rows.len()]).collect();
    let mut links: Vec<Vec<Links>> = Vec::with_capacity(levels.len());
    for n in 0..levels.len() {
        let level = &levels[n];
        let mut mine = Vec::with_capacity(level.children.len());
        for (load, &c) in level.query.shape.relations.iter().zip(&level.children) {
            mine.push(link(level, &levels[c], load, &mut uses[c]));
        }
        links.push(mine);
    }
    // Children before parents: each level's records are complete when a
    // parent level takes them.
    let mut built: Vec<Vec<Json>> = vec![Vec::new(); levels.len()];
    for n in (0..levels.len()).rev() {
        let level = &mut levels[n];
        let query = level.query;
        let t = &query.table;
        let shape = &query.shape;
        let template = Template::of(query, status);
        // Values are moved out of the row unless a field is repeated.
        let moved = template.map.is_some();
        let (nf, ns) = (shape.fields.len(), usize::from(status));
        let rows = std::mem::take(&mut level.rows);
        let mut out = Vec::with_capacity(rows.len());
        let (done, rest) = built.split_at_mut(n + 1);
        for (r, mut row) in rows.into_iter().enumerate() {
            let record = template.record(|slot| {
                if slot < nf {
                    let i = shape.fields[slot];
                    let ty = &t.columns[i].ty;
                    return if moved {
                        into_json(std::mem::replace(&mut row.values[i], Value::Null), ty)
                    } else {
                        row.values[i].to_json(ty)
                    };
                }
                if slot < nf + ns {
                    return Json::String(row.status.take().unwrap_or_else(|| "SYNCED".into()));
                }
                let e = slot - nf - ns;
                let c = level.children[e];
                let children = &mut rest[c - n - 1];
                let uses = &mut uses[c];
                let mut take = |cr: u32| {
                    let cr = cr as usize;
                    if uses[cr] > 1 {
                        uses[cr] -= 1;
                        children[cr].clone()
                    } else {
                        uses[cr] = 0;
                        std::mem::take(&mut children[cr])
                    }
                };
                let matched = links[n][e].of(r);
                match shape.relations[e].relation.kind {
                    RelationKind::ToOne => matched.first().map_or(Json::Null, |&cr| take(cr)),
                    RelationKind::ToMany => {
                        Json::Array(matched.iter().map(|&cr| take(cr)).collect())
                    }
                }
            });
            out.push(record);
        }
        done[n] = out;
        // Children taken by no parent are dropped with `built`.
    }
    built.into_iter().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use outpost_core::schema::Column;
    use outpost_core::types::ScalarType;

    use super::*;
    use crate::exec::key_string;

    fn table(types: &[(ScalarType, &str)]) -> Table {
        Table {
            name: "T".into(),
            columns: types
                .iter()
                .enumerate()
                .map(|(i, (scalar, pg))| Column {
                    name: format!("c{i}"),
                    ty: ColumnType::scalar(scalar.clone(), *pg),
                    nullable: true,
                    default: None,
                    identity: None,
                    generated: false,
                })
                .collect(),
            primary_key: vec![],
            foreign_keys: vec![],
            uniques: vec![],
            relations: vec![],
        }
    }

    #[test]
    fn keys_match_exactly_when_the_executor_keys_do() {
        // One column of each kind, each value compared with every other
        // value in every column: `key` equal exactly when the string keys
        // the write paths use are equal.
        let t = table(&[
            (ScalarType::Text, "text"),
            (ScalarType::Numeric, "numeric"),
            (ScalarType::Char, "character(4)"),
            (ScalarType::Int8, "bigint"),
            (ScalarType::Jsonb, "jsonb"),
            (ScalarType::Float8, "double precision"),
            (ScalarType::Bool, "boolean"),
        ]);
        let values = [
            Value::Null,
            Value::Text("1".into()),
            Value::Text("1.50".into()),
            Value::Text("1.5".into()),
            Value::Text("ab  ".into()),
            Value::Text("ab".into()),
            Value::Int(1),
            Value::Int(9_007_199_254_740_993),
            Value::Text("9007199254740993".into()),
            Value::Json("1".into()),
            Value::Json("\"1\"".into()),
            Value::Json("1.0".into()),
            Value::Json("9007199254740993".into()),
            Value::Float(1.0),
            Value::Bool(true),
        ];
        let mut cases = Vec::new();
        for c in 0..t.columns.len() {
            for v in &values {
                let mut row = vec![Value::Null; t.columns.len()];
                row[c] = v.clone();
                cases.push((c, row));
            }
        }
        for (ca, a) in &cases {
            for (cb, b) in &cases {
                let strings = (key_string(&t, &[*ca], a), key_string(&t, &[*cb], b));
                let keys = (key(&t, &[*ca], a), key(&t, &[*cb], b));
                assert_eq!(strings.0.is_none(), keys.0.is_none());
                if let ((Some(sa), Some(sb)), (Some(ka), Some(kb))) = (strings, keys) {
                    assert_eq!(
                        sa == sb,
                        ka == kb,
                        "{:?} in c{ca} vs {:?} in c{cb}",
                        a[*ca],
                        b[*cb]
                    );
                }
            }
        }
        // Several columns: all parts equal, none NULL.
        let row = |a: &str, b: i64| {
            vec![
                Value::Text(a.into()),
                Value::Null,
                Value::Null,
                Value::Int(b),
            ]
        };
        let (r1, r2, r3) = (row("x", 1), row("x", 1), row("x", 2));
        assert_eq!(key(&t, &[0, 3], &r1), key(&t, &[0, 3], &r2));
        assert_ne!(key(&t, &[0, 3], &r1), key(&t, &[0, 3], &r3));
        assert_eq!(key(&t, &[0, 1], &r1), None);
    }
}
