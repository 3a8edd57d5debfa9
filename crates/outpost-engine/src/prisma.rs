//! The model service through the application's Prisma schema
//! (`PRISMA_SCHEMA`, parsed by [`outpost_core::prisma`]): a request written
//! with Prisma's names and conventions is turned into one in the database's
//! names before it is planned, and its result back, on either database.
//!
//! * **Names.** Model names (`@@map`) choose the table, field names (`@map`)
//!   the columns, compound-key names (`orgId_accountId`) the key, and relation
//!   field names replace the names outpost derives from foreign keys (the
//!   planning schema's relations are renamed; tables and columns are not, so
//!   the SQL is unchanged).
//! * **Client-side defaults.** `cuid()`, `cuid(2)`, `uuid()`, `uuid(7)`,
//!   `nanoid(n)` and `now()` exist only in Prisma's client: a create without
//!   those fields gets the values Prisma would generate, in local and remote
//!   mode alike. `@updatedAt` is set to the request's time on every create and
//!   update that does not set it. `autoincrement()` is the database's
//!   sequence: the server fills it online, and offline creates take ids from
//!   the node's reserved block (`defaults.rs`).
//! * **Values.** A `DateTime` field is accepted as ISO-8601 with any offset
//!   (`new Date().toISOString()`) and returned in UTC with `Z` and
//!   milliseconds (microseconds when the value has them), also on
//!   `timestamp` (without time zone) columns, which Prisma reads as UTC.
//!   Values wrapped the way Prisma's JSON protocol writes them
//!   (`{"$type": "Decimal", "value": "1.50"}`, `BigInt`, `Bytes` as base64,
//!   `DateTime`, `Json` as text) are unwrapped.
//!
//! The binding is made once when the node opens; disagreements between the
//! Prisma schema and the synced tables are either refused (a field whose
//! column does not exist: requests could not work) or reported as notes (a
//! model whose table is not synced).

use std::collections::BTreeMap;
use std::path::Path;

use outpost_core::prisma::{self, Default, FieldKind, PrismaSchema};
use outpost_core::schema::Schema;
use outpost_core::types::{
    ScalarType, format_timestamp, parse_timestamp, parse_timestamptz, timestamp_from_chrono,
};
use outpost_query::Operation;
use serde_json::{Map, Value as Json};

mod ids;
use ids::{cuid, cuid2, nanoid};

/// A scalar field of a bound model.
#[derive(Debug, Clone)]
struct BoundField {
    name: String,
    column: String,
    default: Option<Default>,
    updated_at: bool,
    /// A `DateTime` field: values in and out as ISO-8601 UTC with `Z`.
    datetime: bool,
    /// Its column is `timestamp` (no zone): stored as UTC wall time.
    naive: bool,
    /// Its column is `date` (`@db.Date`): Prisma still sends and reads a
    /// whole ISO-8601 time, at midnight UTC.
    date: bool,
    /// An enum field's values whose label differs (`@map`): name → label.
    labels: Vec<(String, String)>,
}

/// A model of the Prisma schema matched to a synced table.
#[derive(Debug, Clone)]
struct BoundModel {
    name: String,
    table: String,
    fields: Vec<BoundField>,
    /// Relation field name → target table.
    relations: BTreeMap<String, String>,
    /// Compound unique names (`a_b` in field names) → in column names.
    compounds: BTreeMap<String, String>,
}

impl BoundModel {
    fn by_name(&self, name: &str) -> Option<&BoundField> {
        self.fields.iter().find(|f| f.name == name)
    }
    fn by_column(&self, column: &str) -> Option<&BoundField> {
        self.fields.iter().find(|f| f.column == column)
    }
}

/// The Prisma schema bound to the node's schema (module doc).
#[derive(Debug, Clone)]
pub struct PrismaView {
    /// By table name.
    models: BTreeMap<String, BoundModel>,
    /// The node's schema with relations under their Prisma names: what
    /// requests are planned against.
    planning: Schema,
    /// Disagreements that do not stop the node (module doc).
    notes: Vec<String>,
    /// `(table, derived relation name, Prisma's name)` of each renamed
    /// relation: sent with a remote-mode request through a gateway, which
    /// plans against the server's schema.
    relation_names: Vec<(String, String, String)>,
    /// The schema under the application's names, for documents that
    /// describe the model service (the OpenAPI document, generated
    /// TypeScript types): see [`PrismaView::api_schema`].
    api: Schema,
}

/// Reads and binds the configured Prisma schema: `Ok(None)` when none is
/// configured and the default file is absent.
pub fn load(path: &Path, required: bool, schema: &Schema) -> Result<Option<PrismaView>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read the Prisma schema {}: {e}",
                path.display()
            ));
        }
    };
    let parsed = prisma::parse(&text)
        .map_err(|e| format!("the Prisma schema {} cannot be read: {e}", path.display()))?;
    PrismaView::bind(&parsed, schema).map(Some).map_err(|e| {
        format!(
            "the Prisma schema {} does not fit the database: {e}",
            path.display()
        )
    })
}

/// The node's view at open: the configured schema bound to the replica's,
/// its notes logged; a schema that cannot be read or does not fit stops the
/// node with an error saying why.
pub(crate) fn for_node(
    config: &outpost_core::config::Config,
    schema: &Schema,
) -> Result<Option<std::sync::Arc<PrismaView>>, crate::EngineError> {
    let (path, required) = config.prisma_schema_file();
    let view = load(&path, required, schema).map_err(crate::EngineError::Config)?;
    if let Some(v) = &view {
        for note in v.notes() {
            tracing::warn!(schema = %path.display(), "Prisma schema: {note}");
        }
    }
    Ok(view.map(std::sync::Arc::new))
}

/// The schema `outpost generate typescript` describes: under the Prisma
/// schema's names when one is configured ([`PrismaView::api_schema`]),
/// else `schema` itself.
pub fn prisma_api_schema(
    config: &outpost_core::config::Config,
    schema: &Schema,
) -> Result<Schema, String> {
    let (path, required) = config.prisma_schema_file();
    Ok(match load(&path, required, schema)? {
        Some(v) => v.api,
        None => schema.clone(),
    })
}

impl crate::Outpost {
    /// The name the application uses for a table's model: its Prisma model
    /// name (`@@map`), else the table's own.
    pub fn model_name(&self, table: &str) -> String {
        self.inner
            .prisma
            .as_ref()
            .and_then(|p| p.models.get(table))
            .map_or_else(|| table.to_string(), |m| m.name.clone())
    }

    /// The schema the model service speaks: the node's, or under the
    /// application's Prisma names ([`PrismaView::api_schema`]).
    pub fn api_schema(&self) -> std::sync::Arc<Schema> {
        match &self.inner.prisma {
            Some(p) => std::sync::Arc::new(p.api_schema().clone()),
            None => self.inner.engine.schema(),
        }
    }
}

/// Builds [`PrismaView::api_schema`] from the planning schema.
fn api_schema(
    p: &PrismaSchema,
    planning: &Schema,
    models: &BTreeMap<String, BoundModel>,
) -> Schema {
    let model_name = |table: &str| {
        models
            .get(table)
            .map_or_else(|| table.to_string(), |m| m.name.clone())
    };
    let field_name = |table: &str, column: &str| {
        models
            .get(table)
            .and_then(|m| m.by_column(column))
            .map_or_else(|| column.to_string(), |f| f.name.clone())
    };
    let rename = |table: &str, cols: &[String]| -> Vec<String> {
        cols.iter().map(|c| field_name(table, c)).collect()
    };
    let mut api = planning.clone();
    for t in &mut api.tables {
        let table = t.name.clone();
        if let Some(m) = models.get(&table) {
            for c in &mut t.columns {
                let Some(f) = m.by_column(&c.name) else {
                    continue;
                };
                c.name = f.name.clone();
                if f.datetime && f.naive {
                    c.ty.scalar = ScalarType::Timestamptz;
                    c.ty.pg_name = "timestamptz".into();
                }
                let filled = match &f.default {
                    _ if f.updated_at => Some("@updatedAt".to_string()),
                    Some(d) if d.client_side() => Some(match d {
                        Default::Cuid(1) => "cuid()".to_string(),
                        Default::Cuid(v) => format!("cuid({v})"),
                        Default::Uuid(4) => "uuid()".to_string(),
                        Default::Uuid(v) => format!("uuid({v})"),
                        Default::Nanoid(Some(n)) => format!("nanoid({n})"),
                        Default::Nanoid(None) => "nanoid()".to_string(),
                        _ => "now()".to_string(),
                    }),
                    _ => None,
                };
                if filled.is_some() {
                    c.default = filled;
                }
            }
        }
        t.primary_key = rename(&table, &t.primary_key);
        for u in &mut t.uniques {
            *u = rename(&table, u);
        }
        for fk in &mut t.foreign_keys {
            fk.columns = rename(&table, &fk.columns);
            fk.ref_columns = rename(&fk.ref_table, &fk.ref_columns);
            fk.ref_table = model_name(&fk.ref_table);
        }
        for r in &mut t.relations {
            r.local_columns = rename(&table, &r.local_columns);
            r.target_columns = rename(&r.target, &r.target_columns);
            r.target = model_name(&r.target);
        }
        t.name = model_name(&table);
    }
    api.tables.sort_by(|a, b| a.name.cmp(&b.name));
    // Enum values under their Prisma names.
    for e in &mut api.enums {
        if let Some(pe) = p
            .enums
            .iter()
            .find(|x| x.db_name.as_deref().unwrap_or(&x.name) == e.name)
        {
            for label in &mut e.labels {
                if let Some((n, _)) = pe
                    .values
                    .iter()
                    .find(|(_, db)| db.as_deref() == Some(label))
                {
                    *label = n.clone();
                }
            }
        }
    }
    api
}

/// What `outpost setup` reports: `Ok(None)` when no Prisma schema is
/// configured (and the default file is absent), else the file read and the
/// disagreements that do not stop the node; `Err` when the schema cannot be
/// read or does not fit the synced tables.
pub fn check_prisma_schema(
    config: &outpost_core::config::Config,
    schema: &Schema,
) -> Result<Option<(std::path::PathBuf, Vec<String>)>, String> {
    let (path, required) = config.prisma_schema_file();
    Ok(load(&path, required, schema)?.map(|v| (path, v.notes)))
}

impl PrismaView {
    /// Matches the Prisma schema's models to the synced tables (module
    /// doc). Refuses a field whose column is missing.
    pub fn bind(p: &PrismaSchema, schema: &Schema) -> Result<PrismaView, String> {
        let mut models = BTreeMap::new();
        let mut notes = Vec::new();
        let mut problems = Vec::new();
        let mut planning = schema.clone();
        // (table, outpost relation name) → Prisma field name.
        let mut renames: BTreeMap<(String, String), String> = BTreeMap::new();
        for m in &p.models {
            let Some(table) = schema.table(m.table()) else {
                notes.push(format!(
                    "model {} (table {:?}) is not among the synced tables: it is not in the database's schema {:?}, \
                     has no primary key, or is excluded (OUTPOST_TABLES / OUTPOST_EXCLUDE_TABLES)",
                    m.name,
                    m.table(),
                    schema.pg_schema
                ));
                continue;
            };
            let mut bound = BoundModel {
                name: m.name.clone(),
                table: table.name.clone(),
                fields: Vec::new(),
                relations: BTreeMap::new(),
                compounds: BTreeMap::new(),
            };
            for f in &m.fields {
                if f.kind == FieldKind::Object {
                    continue;
                }
                let Some(column) = table.column(f.column()) else {
                    problems.push(format!(
                        "field {}.{} has no column {:?} in table {:?}",
                        m.name,
                        f.name,
                        f.column(),
                        table.name
                    ));
                    continue;
                };
                let naive = column.ty.scalar == ScalarType::Timestamp;
                let datetime = f.ty == "DateTime"
                    && matches!(
                        column.ty.scalar,
                        ScalarType::Timestamp | ScalarType::Timestamptz | ScalarType::Date
                    );
                if f.ty == "DateTime" && !datetime {
                    // `@db.Time`, or a column of another type: its values
                    // keep the column's own form.
                    notes.push(format!(
                        "field {}.{} is a DateTime on column {:?}.{:?} of type {}: its values keep that type's form",
                        m.name, f.name, table.name, column.name, column.ty.pg_name
                    ));
                }
                let labels = p
                    .enums
                    .iter()
                    .find(|e| e.name == f.ty)
                    .map(|e| {
                        e.values
                            .iter()
                            .filter_map(|(n, db)| db.as_ref().map(|db| (n.clone(), db.clone())))
                            .collect()
                    })
                    .unwrap_or_default();
                bound.fields.push(BoundField {
                    name: f.name.clone(),
                    column: column.name.clone(),
                    default: f.default.clone(),
                    updated_at: f.updated_at,
                    datetime,
                    naive,
                    date: column.ty.scalar == ScalarType::Date,
                    labels,
                });
            }
            let col = |name: &str| m.field(name).map(|f| f.column().to_string());
            let mut sets: Vec<Vec<String>> = m.uniques.clone();
            sets.push(m.primary_key.clone());
            for set in sets.into_iter().filter(|s| s.len() > 1) {
                let columns: Option<Vec<String>> = set.iter().map(|n| col(n)).collect();
                if let Some(columns) = columns {
                    bound.compounds.insert(set.join("_"), columns.join("_"));
                }
            }
            // Relations: the owning side names its foreign-key fields; the
            // other side is found through the owning side's field.
            for f in m.fields.iter().filter(|f| f.kind == FieldKind::Object) {
                let owning = f.relation.as_ref().filter(|r| !r.fields.is_empty());
                let found = match owning {
                    Some(r) => {
                        let cols: Option<Vec<String>> = r.fields.iter().map(|n| col(n)).collect();
                        cols.and_then(|cols| {
                            table
                                .relations
                                .iter()
                                .find(|x| x.owns_foreign_key && x.local_columns == cols)
                        })
                    }
                    None => p.opposite(m, f).and_then(|(other, of)| {
                        let r = of.relation.as_ref()?;
                        let cols: Option<Vec<String>> = r
                            .fields
                            .iter()
                            .map(|n| other.field(n).map(|x| x.column().to_string()))
                            .collect();
                        let cols = cols?;
                        let child = schema.table(other.table())?;
                        let fk = child
                            .relations
                            .iter()
                            .find(|x| x.owns_foreign_key && x.local_columns == cols)?;
                        table.relations.iter().find(|x| {
                            !x.owns_foreign_key
                                && x.foreign_key == fk.foreign_key
                                && x.target == child.name
                        })
                    }),
                };
                match found {
                    Some(r) => {
                        renames.insert((table.name.clone(), r.name.clone()), f.name.clone());
                        bound.relations.insert(f.name.clone(), r.target.clone());
                    }
                    None => notes.push(format!(
                        "relation field {}.{} matches no foreign key of the synced tables \
                         (implicit many-to-many relations and relations to unsynced tables are not available)",
                        m.name, f.name
                    )),
                }
            }
            models.insert(table.name.clone(), bound);
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        for t in &mut planning.tables {
            for r in &mut t.relations {
                if let Some(n) = renames.get(&(t.name.clone(), r.name.clone())) {
                    r.name = n.clone();
                }
            }
        }
        for t in &schema.tables {
            if !models.contains_key(&t.name) {
                notes.push(format!(
                    "table {:?} has no model in the Prisma schema: its model service keeps the table's names",
                    t.name
                ));
            }
        }
        let api = api_schema(p, &planning, &models);
        let relation_names = renames
            .into_iter()
            .map(|((table, from), to)| (table, from, to))
            .collect();
        Ok(PrismaView {
            models,
            planning,
            notes,
            relation_names,
            api,
        })
    }

    /// The node's schema as the application sees it: models, fields,
    /// relations and enum values under their Prisma names, fields the model
    /// service fills marked with their default, `DateTime` fields as
    /// `timestamptz` (UTC with `Z`). Describes requests; never planned
    /// against.
    pub fn api_schema(&self) -> &Schema {
        &self.api
    }

    /// Disagreements that do not stop the node, for setup and the log.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The relations the planning schema renames: `(table, derived name,
    /// Prisma's name)`.
    pub fn relation_names(&self) -> &[(String, String, String)] {
        &self.relation_names
    }

    /// The schema requests are planned against.
    pub fn planning(&self) -> &Schema {
        &self.planning
    }

    /// The table of a Prisma model name (or of a table name).
    pub fn table_of(&self, model: &str) -> Option<&str> {
        self.models
            .values()
            .find(|m| m.name == model)
            .map(|m| m.table.as_str())
    }

    /// The request's arguments in the database's names, with client-side
    /// defaults and `@updatedAt` filled (module doc).
    pub fn prepare(&self, table: &str, op: Operation, args: Json) -> Result<Json, String> {
        let Some(model) = self.models.get(table) else {
            return Ok(args);
        };
        let Json::Object(mut args) = args else {
            return Ok(args);
        };
        let now = Now::new();
        let mut out = Map::new();
        for (k, v) in std::mem::take(&mut args) {
            let v = match k.as_str() {
                "where" | "cursor" => self.filter(model, v),
                "select" | "include" => self.shape(model, v),
                "orderBy" => self.order(model, v),
                "distinct" => match v {
                    Json::Array(items) => Json::Array(
                        items
                            .into_iter()
                            .map(|i| self.field_name(model, i))
                            .collect(),
                    ),
                    other => self.field_name(model, other),
                },
                "data" if op == Operation::CreateMany => match v {
                    Json::Array(items) => Json::Array(
                        items
                            .into_iter()
                            .map(|d| self.data(model, d, Some(&now)))
                            .collect(),
                    ),
                    other => self.data(model, other, Some(&now)),
                },
                "data" if op == Operation::Create => self.data(model, v, Some(&now)),
                "create" if op == Operation::Upsert => self.data(model, v, Some(&now)),
                "data" | "update" => self.update(model, v, &now),
                _ => v,
            };
            out.insert(k, v);
        }
        Ok(Json::Object(out))
    }

    /// The result with field names and Prisma's `DateTime` form.
    pub fn finish(&self, table: &str, result: Json) -> Json {
        match result {
            Json::Array(items) => {
                Json::Array(items.into_iter().map(|r| self.record(table, r)).collect())
            }
            other => self.record(table, other),
        }
    }

    fn record(&self, table: &str, record: Json) -> Json {
        let (Some(model), Json::Object(m)) = (self.models.get(table), &record) else {
            return record;
        };
        let mut out = Map::new();
        for (k, v) in m {
            if let Some(f) = model.by_column(k) {
                let v = if f.datetime {
                    datetime_out(v)
                } else {
                    label_out(f, v)
                };
                out.insert(f.name.clone(), v);
            } else if let Some(target) = model.relations.get(k) {
                out.insert(k.clone(), self.finish(target, v.clone()));
            } else {
                out.insert(k.clone(), v.clone());
            }
        }
        Json::Object(out)
    }

    fn field_name(&self, model: &BoundModel, v: Json) -> Json {
        match &v {
            Json::String(s) => model
                .by_name(s)
                .map_or(v.clone(), |f| Json::String(f.column.clone())),
            _ => v,
        }
    }

    /// A `where` (or `cursor`) object.
    fn filter(&self, model: &BoundModel, v: Json) -> Json {
        let Json::Object(m) = v else { return v };
        let mut out = Map::new();
        for (k, v) in m {
            match k.as_str() {
                "AND" | "OR" | "NOT" => {
                    let v = match v {
                        Json::Array(items) => {
                            Json::Array(items.into_iter().map(|i| self.filter(model, i)).collect())
                        }
                        other => self.filter(model, other),
                    };
                    out.insert(k, v);
                }
                _ => {
                    if let Some(f) = model.by_name(&k) {
                        out.insert(f.column.clone(), condition(f, v));
                    } else if let Some(columns) = model.compounds.get(&k) {
                        out.insert(columns.clone(), self.filter(model, v));
                    } else {
                        out.insert(k, v);
                    }
                }
            }
        }
        Json::Object(out)
    }

    /// A `select`/`include` object: relation arguments recurse.
    fn shape(&self, model: &BoundModel, v: Json) -> Json {
        let Json::Object(m) = v else { return v };
        let mut out = Map::new();
        for (k, v) in m {
            if let Some(f) = model.by_name(&k) {
                out.insert(f.column.clone(), v);
            } else if let (Some(target), Json::Object(nested)) = (model.relations.get(&k), &v) {
                let nested = match self.models.get(target) {
                    Some(t) => {
                        let mut o = Map::new();
                        for (nk, nv) in nested {
                            let nv = match nk.as_str() {
                                "where" | "cursor" => self.filter(t, nv.clone()),
                                "select" | "include" => self.shape(t, nv.clone()),
                                "orderBy" => self.order(t, nv.clone()),
                                "distinct" => match nv {
                                    Json::Array(items) => Json::Array(
                                        items
                                            .iter()
                                            .map(|i| self.field_name(t, i.clone()))
                                            .collect(),
                                    ),
                                    other => self.field_name(t, other.clone()),
                                },
                                _ => nv.clone(),
                            };
                            o.insert(nk.clone(), nv);
                        }
                        Json::Object(o)
                    }
                    None => v.clone(),
                };
                out.insert(k, nested);
            } else {
                out.insert(k, v);
            }
        }
        Json::Object(out)
    }

    fn order(&self, model: &BoundModel, v: Json) -> Json {
        match v {
            Json::Array(items) => {
                Json::Array(items.into_iter().map(|i| self.order(model, i)).collect())
            }
            Json::Object(m) => Json::Object(
                m.into_iter()
                    .map(|(k, v)| match model.by_name(&k) {
                        Some(f) => (f.column.clone(), v),
                        None => (k, v),
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    /// A create's `data`: names, values, then the defaults Prisma's client
    /// would fill.
    fn data(&self, model: &BoundModel, v: Json, now: Option<&Now>) -> Json {
        let Json::Object(m) = v else { return v };
        let mut out = Map::new();
        for (k, v) in m {
            match model.by_name(&k) {
                Some(f) => {
                    out.insert(f.column.clone(), value_in(f, v));
                }
                None => {
                    out.insert(k, v);
                }
            }
        }
        if let Some(now) = now {
            for f in &model.fields {
                if out.contains_key(&f.column) {
                    continue;
                }
                let value = match &f.default {
                    _ if f.updated_at => Some(now.value(f)),
                    Some(Default::Now) => Some(now.value(f)),
                    Some(Default::Cuid(2)) => Some(Json::String(cuid2())),
                    Some(Default::Cuid(_)) => Some(Json::String(cuid())),
                    Some(Default::Uuid(7)) => Some(Json::String(uuid::Uuid::now_v7().to_string())),
                    Some(Default::Uuid(_)) => Some(Json::String(uuid::Uuid::new_v4().to_string())),
                    Some(Default::Nanoid(n)) => {
                        Some(Json::String(nanoid(n.unwrap_or(21) as usize)))
                    }
                    _ => None,
                };
                if let Some(value) = value {
                    out.insert(f.column.clone(), value);
                }
            }
        }
        Json::Object(out)
    }

    /// An update's `data`: names, values, and `@updatedAt` unless set.
    fn update(&self, model: &BoundModel, v: Json, now: &Now) -> Json {
        let Json::Object(m) = v else { return v };
        let mut out = Map::new();
        for (k, v) in m {
            match model.by_name(&k) {
                Some(f) => {
                    let v = match v {
                        // `{set: value}` and the arithmetic operators.
                        Json::Object(ops) if is_operator_object(&ops) => Json::Object(
                            ops.into_iter().map(|(o, x)| (o, value_in(f, x))).collect(),
                        ),
                        other => value_in(f, other),
                    };
                    out.insert(f.column.clone(), v);
                }
                None => {
                    out.insert(k, v);
                }
            }
        }
        for f in model.fields.iter().filter(|f| f.updated_at) {
            if !out.contains_key(&f.column) {
                out.insert(f.column.clone(), now.value(f));
            }
        }
        Json::Object(out)
    }
}

fn is_operator_object(m: &Map<String, Json>) -> bool {
    m.len() == 1
        && m.keys().all(|k| {
            matches!(
                k.as_str(),
                "set" | "increment" | "decrement" | "multiply" | "divide"
            )
        })
}

/// A field's condition in a `where`: a value or an operator object.
fn condition(f: &BoundField, v: Json) -> Json {
    match v {
        Json::Object(m) if !is_wrapped(&m) => Json::Object(
            m.into_iter()
                .map(|(op, x)| {
                    let x = match (op.as_str(), x) {
                        ("not", x @ Json::Object(_)) => condition(f, x),
                        ("in" | "notIn", Json::Array(items)) => {
                            Json::Array(items.into_iter().map(|i| value_in(f, i)).collect())
                        }
                        ("mode", x) => x,
                        (_, x) => value_in(f, x),
                    };
                    (op, x)
                })
                .collect(),
        ),
        other => value_in(f, other),
    }
}

/// `{"$type": …, "value": …}`: Prisma's JSON protocol's tagged value.
fn is_wrapped(m: &Map<String, Json>) -> bool {
    m.len() == 2 && m.contains_key("$type") && m.contains_key("value")
}

/// A value sent by the application, in the column's form.
fn value_in(f: &BoundField, v: Json) -> Json {
    let v = match v {
        Json::Object(m) if is_wrapped(&m) => {
            let ty = m
                .get("$type")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            let value = m.get("value").cloned().unwrap_or(Json::Null);
            match (ty.as_str(), value) {
                // Json's value is the document's text.
                ("Json", Json::String(s)) => serde_json::from_str(&s).unwrap_or(Json::String(s)),
                (_, value) => value,
            }
        }
        other => other,
    };
    // An enum value under its Prisma name (`ADMIN @map("admin")`).
    if let Json::String(s) = &v
        && let Some((_, label)) = f.labels.iter().find(|(n, _)| n == s)
    {
        return Json::String(label.clone());
    }
    match (&v, f.datetime && (f.naive || f.date)) {
        // A `timestamp` column holds UTC wall time, as Prisma writes it; a
        // `date` column the UTC day.
        (Json::String(s), true) => parse_timestamptz(s)
            .filter(|us| *us != i64::MAX && *us != i64::MIN)
            .map(|us| {
                let text = format_timestamp(us);
                Json::String(if f.date { text[..10].to_string() } else { text })
            })
            .unwrap_or(v),
        _ => v,
    }
}

/// An enum label under its Prisma name; arrays of enums element by element.
fn label_out(f: &BoundField, v: &Json) -> Json {
    if f.labels.is_empty() {
        return v.clone();
    }
    match v {
        Json::String(s) => Json::String(
            f.labels
                .iter()
                .find(|(_, l)| l == s)
                .map_or_else(|| s.clone(), |(n, _)| n.clone()),
        ),
        Json::Array(items) => Json::Array(items.iter().map(|i| label_out(f, i)).collect()),
        other => other.clone(),
    }
}

/// A `DateTime` value as Prisma returns it: UTC, `Z`, milliseconds unless
/// the value has microseconds.
fn datetime_out(v: &Json) -> Json {
    let Json::String(s) = v else {
        return v.clone();
    };
    let us = parse_timestamptz(s)
        .or_else(|| parse_timestamp(s))
        .or_else(|| parse_timestamp(&format!("{s}T00:00:00")));
    match us {
        Some(us) if us != i64::MAX && us != i64::MIN => {
            let text = format_timestamp(us);
            let text = text
                .strip_suffix("000")
                .filter(|_| us % 1000 == 0)
                .unwrap_or(&text);
            Json::String(format!("{text}Z"))
        }
        _ => v.clone(),
    }
}

/// One clock reading per request, so `createdAt` and `updatedAt` of a
/// create are equal, as with Prisma.
struct Now(i64);

impl Now {
    fn new() -> Now {
        // Microseconds since 2000-01-01 (PostgreSQL's epoch), truncated
        // to milliseconds: Prisma's DateTime has millisecond precision.
        let us = timestamp_from_chrono(chrono::Utc::now().naive_utc()).unwrap_or(0);
        Now(us - us.rem_euclid(1000))
    }

    fn value(&self, f: &BoundField) -> Json {
        let text = format_timestamp(self.0);
        Json::String(if f.date {
            text[..10].to_string()
        } else if f.naive {
            text
        } else {
            format!("{text}Z")
        })
    }
}

#[cfg(test)]
mod tests;
