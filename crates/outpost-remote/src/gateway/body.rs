//! The bodies of the protocol's requests and answers, shared with the
//! gateway so both sides name the same fields.

use super::*;

/// `POST /v1/register`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Register {
    /// The node.
    pub node: Uuid,
    /// Its display name.
    pub name: String,
}
/// The answer to `POST /v1/register`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Registered {
    /// The highest `local_seq` the server applied for the node.
    pub applied_local_seq: i64,
}
/// `POST /v1/claim`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// The node.
    pub node: Uuid,
    /// The file's current incarnation.
    pub current: Uuid,
    /// Every incarnation the file lists.
    pub known: Vec<Uuid>,
}
/// The answer to `POST /v1/claim`: `diverged` is the server's
/// incarnation when the claim was refused.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claimed {
    /// `None`: claimed.
    pub diverged: Option<Uuid>,
}
/// `POST /v1/feed_position` and the cursor of `POST /v1/record_cursor`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AtCursor {
    /// The node (for `record_cursor`).
    pub node: Option<Uuid>,
    /// The cursor.
    pub cursor: Cursor,
}
/// The answer to `POST /v1/feed_position`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Position {
    /// Changes up to here were pruned.
    pub pruned_through: Option<Cursor>,
    /// The node must bootstrap again.
    pub must_rebootstrap: bool,
}
/// The answer to `GET /v1/probe`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Probe {
    /// The tracking schema's version (`None`: not installed).
    pub version: Option<i32>,
    /// The retention mark.
    pub pruned_through: Option<Cursor>,
    /// The protocol version the gateway speaks.
    pub protocol: u32,
}
/// The answer to `GET /v1/horizon_age`.
#[derive(Debug, Serialize, Deserialize)]
pub struct HorizonAge {
    /// Milliseconds the oldest open transaction holds the horizon.
    pub ms: Option<u64>,
}
/// `POST /v1/prune`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Prune {
    /// The retention window in milliseconds.
    pub retention_ms: u64,
}
/// The answer to `POST /v1/prune`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pruned {
    /// Changes deleted.
    pub deleted: u64,
}
/// `POST /v1/push`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Push {
    /// [`Schema::hash`] of the node's schema snapshot.
    pub schema_hash: String,
    /// [`Table::shape_hash`] of each table the rows name: when the
    /// snapshot differs from the gateway's, the rows are still served
    /// if their tables have the same shape on both sides.
    #[serde(default)]
    pub table_hashes: std::collections::BTreeMap<String, String>,
    /// The pushing node.
    pub node: Uuid,
    /// Its cursor.
    pub cursor: Cursor,
    /// The rows.
    pub rows: Vec<PushRow>,
    /// Statement and lock timeouts of the push's transaction, ms.
    pub limits_ms: (u64, u64),
    /// The node keeps row tags: rows of filtered tables carry theirs, and
    /// a deletion there carries only its tag (docs/gateway.md, "What a
    /// node learns outside its scope"). Absent: keys, as before tags.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tags: bool,
}
/// The answer to `POST /v1/push`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pushed {
    /// One outcome per row, in order.
    pub outcomes: Vec<PushOutcome>,
}
/// `POST /v1/query`: a model-service request in remote mode, carried out
/// on the server by the gateway as a direct node's session would.
#[derive(Debug, Serialize, Deserialize)]
pub struct Query {
    /// [`Schema::hash`] of the node's schema snapshot.
    pub schema_hash: String,
    /// [`Table::shape_hash`] of each of the node's tables: with another
    /// snapshot, the request is served when they all have the same shape
    /// on both sides.
    #[serde(default)]
    pub table_hashes: std::collections::BTreeMap<String, String>,
    /// The node (the write's origin).
    pub node: Uuid,
    /// The model (table).
    pub model: String,
    /// The operation's name (`findMany`, `create`, …).
    pub operation: String,
    /// Its arguments, in the database's names.
    pub args: serde_json::Value,
    /// Relation names the node plans with instead of the derived ones (a
    /// Prisma schema's relation fields): `(table, derived name, name)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relation_names: Vec<(String, String, String)>,
    /// Statement and lock timeouts, ms.
    pub limits_ms: (u64, u64),
    /// A write's idle-in-transaction limit, ms.
    pub idle_ms: u64,
    /// A write's id, the same for every attempt of it: the gateway writes
    /// it at most once and gives a later attempt the first one's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Uuid>,
    /// The node keeps row tags: rows of filtered tables carry theirs, and
    /// a deletion there carries only its tag (docs/gateway.md, "What a
    /// node learns outside its scope"). Absent: keys, as before tags.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tags: bool,
}
/// The answer to `POST /v1/query`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Queried {
    /// Prisma's result.
    pub result: serde_json::Value,
    /// For a write: the rows it left, with their versions (what the node
    /// mirrors into its replica).
    #[serde(default)]
    pub written: Vec<crate::connections::WrittenRow>,
}
/// `POST /v1/pull`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pull {
    /// [`Schema::hash`] of the node's schema snapshot.
    pub schema_hash: String,
    /// [`Table::shape_hash`] of every table of the node's snapshot (the
    /// pull then serves those of the same shape on both sides).
    #[serde(default)]
    pub table_hashes: std::collections::BTreeMap<String, String>,
    /// The node's cursor.
    pub cursor: Cursor,
    /// Changes per batch at most.
    pub limit: i64,
    /// Only these tables (`None`: all).
    pub tables: Option<Vec<String>>,
    /// The node's statement and lock timeouts, ms (the gateway applies
    /// them, never above its own).
    #[serde(default)]
    pub limits_ms: Option<(u64, u64)>,
    /// The node keeps row tags: rows of filtered tables carry theirs, and
    /// a deletion there carries only its tag (docs/gateway.md, "What a
    /// node learns outside its scope"). Absent: keys, as before tags.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tags: bool,
}
/// `POST /v1/scope`: which of these rows the node holds has it left
/// the scope of (a parent moved out; docs/gateway.md).
#[derive(Debug, Serialize, Deserialize)]
pub struct ScopeCheck {
    /// [`Schema::hash`] of the node's schema snapshot.
    pub schema_hash: String,
    /// [`Table::shape_hash`] of the table.
    #[serde(default)]
    pub table_hashes: std::collections::BTreeMap<String, String>,
    /// The table.
    pub table: String,
    /// Primary keys, in key order.
    pub keys: Vec<Vec<Value>>,
}
/// The answer to `POST /v1/scope`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Outside {
    /// Indexes into `keys` of the rows that are gone or outside the
    /// node's scope now.
    pub outside: Vec<usize>,
}
/// `POST /v1/verify`: a node's bucket digests of one table, for the
/// gateway to compare with the server's rows in one snapshot
/// (docs/protocol.md, "Verification through a gateway").
#[derive(Debug, Serialize, Deserialize)]
pub struct Verify {
    /// [`Schema::hash`] of the node's schema snapshot.
    pub schema_hash: String,
    /// [`Table::shape_hash`] of the table.
    #[serde(default)]
    pub table_hashes: std::collections::BTreeMap<String, String>,
    /// The table.
    pub table: String,
    /// Hex digits of the key hash that name a bucket (1 to 4).
    pub depth: usize,
    /// The node's non-empty buckets: rows and the sum of their 60-bit row
    /// hashes (decimal text: it outgrows 64 bits).
    pub buckets: std::collections::BTreeMap<String, (i64, String)>,
}
/// The answer to `POST /v1/verify`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Verified {
    /// The table's rows on the server, in the node's scope.
    pub server_rows: i64,
    /// The differing buckets whose server rows are in `rows`.
    pub compared: Vec<String>,
    /// The server's rows of those buckets, in table column order.
    pub rows: Vec<Vec<Value>>,
    /// Differing buckets whose rows were not sent (too many rows).
    pub unexamined: usize,
}
/// `POST /v1/reserve_ids`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReserveIds {
    /// The table.
    pub table: String,
    /// The sequence-fed column.
    pub column: String,
    /// How many ids.
    pub n: i64,
}
/// The answer to `POST /v1/reserve_ids`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reserved {
    /// Ranges of ids, inclusive (`None`: the column has no sequence).
    pub ranges: Option<Vec<(i64, i64)>>,
}
/// The first line of a table's bootstrap stream.
#[derive(Debug, Serialize, Deserialize)]
pub struct CopyHead {
    /// The cursor the table's snapshot covers.
    pub cursor: Cursor,
    /// Its rows in the snapshot.
    pub count: i64,
    /// The digest of the sync rule the copy was filtered by (absent:
    /// the whole table); see [`outpost_core::sync::PullBatch::scopes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Each row line carries the row's tag as one value past its columns
    /// (asked with `tags=true`, for a filtered table).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tags: bool,
}
/// The last line of a table's bootstrap stream: without it the copy is
/// incomplete (a gateway that stopped mid-table), never taken as done.
#[derive(Debug, Serialize, Deserialize)]
pub struct CopyEnd {
    /// Rows sent.
    pub end: u64,
}
/// An error, as every failed request answers, and as a bootstrap stream
/// ends when the copy fails after its head was sent.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}
/// What went wrong.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable code (`token_expired`, `unreachable`, `refused`, …).
    pub code: String,
    /// A message for a person.
    pub message: String,
    /// `unreachable`, `auth`, `refused` or `invalid`.
    pub class: String,
    /// For `table_changed`: the table whose definition differs between
    /// the node's snapshot and the gateway's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// For a remote-mode request the database refused: the server's
    /// SQLSTATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// For a remote-mode request that cannot be carried out as asked (a
    /// record not found, a duplicate key, an unknown field): the model
    /// service's own error, as the node's replica would have given it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<outpost_query::QueryError>,
}
