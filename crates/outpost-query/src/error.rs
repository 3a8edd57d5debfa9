//! [`QueryError`]: everything wrong with a model request itself (as opposed to
//! the database that runs it), with the model, field, operator and value
//! named in its fields and message.

/// A model request that cannot be planned or carried out. Messages name the
/// model, the field or relation, and the offending value or operator.
///
/// Serializable, so a gateway can hand a node the same error its own
/// replica would have given (remote mode through a gateway).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueryError {
    /// The model is not a synced table.
    #[error("unknown model {model:?} (models: {})", .models.join(", "))]
    UnknownModel {
        /// The name given.
        model: String,
        /// The models there are.
        models: Vec<String>,
    },

    /// The operation is not one of Prisma's.
    #[error("unknown operation {operation:?} (operations: {})", crate::Operation::NAMES.join(", "))]
    UnknownOperation {
        /// The name given.
        operation: String,
    },

    /// A top-level or nested argument the operation does not take.
    #[error("unknown argument {argument:?} for {context} (arguments: {})", .allowed.join(", "))]
    UnknownArgument {
        /// Where (`Post.findMany`, `Post.findMany include.user`).
        context: String,
        /// The argument given.
        argument: String,
        /// The arguments accepted there.
        allowed: Vec<String>,
    },

    /// A field name that is neither a column nor a relation of the model.
    #[error("unknown field {field:?} on model {model} (fields: {})", .fields.join(", "))]
    UnknownField {
        /// The model.
        model: String,
        /// The name given.
        field: String,
        /// The model's fields (columns, then relations).
        fields: Vec<String>,
    },

    /// A relation name (in `include`) that the model does not have.
    #[error("unknown relation {relation:?} on model {model} (relations: {})", .relations.join(", "))]
    UnknownRelation {
        /// The model.
        model: String,
        /// The name given.
        relation: String,
        /// The model's relations.
        relations: Vec<String>,
    },

    /// A filter or update operator that does not exist or does not apply to
    /// the field's type.
    #[error("unknown operator {operator:?} on {model}.{field}{}", .hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    UnknownOperator {
        /// The model.
        model: String,
        /// The field.
        field: String,
        /// The operator given.
        operator: String,
        /// What is allowed there, when that helps.
        hint: Option<String>,
    },

    /// A value that does not fit its field's type.
    #[error("{model}.{field}: {message} (type {ty})")]
    BadValue {
        /// The model.
        model: String,
        /// The field.
        field: String,
        /// The field's PostgreSQL type.
        ty: String,
        /// What is wrong with the value, including what was expected.
        message: String,
    },

    /// An argument of the wrong shape (`take` that is not an integer, a
    /// `where` that is not an object…).
    #[error("{context}: {message}")]
    BadArgument {
        /// Where (`Post.findMany take`).
        context: String,
        /// What is wrong, naming what was expected and what was given.
        message: String,
    },

    /// Something outpost does not support yet (relation filters, nested
    /// writes, negative `take`…).
    #[error("{what} {} not supported yet: {detail}", if *.plural { "are" } else { "is" })]
    Unsupported {
        /// The feature (`relation filters`).
        what: String,
        /// Whether `what` is plural (for the verb).
        plural: bool,
        /// Where it was used and, when there is one, what to do instead.
        detail: String,
    },

    /// A `where` that had to name one record (`findUnique`, `update`,
    /// `delete`, `upsert`, `cursor`) does not name a primary key or a unique
    /// constraint exactly.
    #[error(
        "{model}.{operation}: where must name exactly the primary key or a unique constraint of {model} ({}); got {{{}}}",
        .keys.iter().map(|k| k.join(", ")).collect::<Vec<_>>().join(" | "),
        .fields.join(", ")
    )]
    NotUnique {
        /// The model.
        model: String,
        /// The operation (or `cursor`).
        operation: String,
        /// The fields the `where` named.
        fields: Vec<String>,
        /// The model's unique keys (primary key first).
        keys: Vec<Vec<String>>,
    },

    /// The arguments nest deeper than outpost follows.
    #[error("{context}: arguments nest more than {limit} levels deep")]
    TooDeep {
        /// Where.
        context: String,
        /// The limit.
        limit: usize,
    },

    /// The record an `update` or `delete` names does not exist.
    #[error("record to {action} not found: {model} where {key}")]
    NotFound {
        /// `update` or `delete`.
        action: String,
        /// The model.
        model: String,
        /// The `where` given, as JSON.
        key: String,
    },

    /// A required field was neither given nor filled by a default.
    #[error("{model}.{operation}: missing required field(s) {}", .fields.join(", "))]
    MissingFields {
        /// The model.
        model: String,
        /// The operation.
        operation: String,
        /// The fields missing.
        fields: Vec<String>,
    },

    /// A write would give two rows the same values in a unique constraint
    /// (checked by the replica, which does not declare the constraints).
    #[error("unique constraint failed on {model}({}): {values} already exists", .fields.join(", "))]
    UniqueViolation {
        /// The model.
        model: String,
        /// The constraint's columns.
        fields: Vec<String>,
        /// The duplicated values, as JSON.
        values: String,
    },

    /// The caller's `fill` refused a row.
    #[error("{model}: row refused: {message}")]
    Refused {
        /// The model.
        model: String,
        /// The caller's reason.
        message: String,
    },

    /// The database answered in a way the plan did not expect (a statement
    /// returned the wrong number of columns, say).
    #[error("{model}: unexpected result: {message}")]
    Internal {
        /// The model.
        model: String,
        /// What was wrong.
        message: String,
    },
}

impl QueryError {
    /// True when the request itself is at fault (bad arguments, unknown
    /// names, unsupported features): the HTTP layer answers 400/422.
    pub fn is_invalid_request(&self) -> bool {
        !matches!(
            self,
            QueryError::NotFound { .. }
                | QueryError::UniqueViolation { .. }
                | QueryError::Refused { .. }
                | QueryError::Internal { .. }
        )
    }

    /// True when the record an `update`/`delete` names does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, QueryError::NotFound { .. })
    }

    /// True for a unique-constraint violation found by the replica.
    pub fn is_conflict(&self) -> bool {
        matches!(self, QueryError::UniqueViolation { .. })
    }
}
