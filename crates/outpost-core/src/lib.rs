//! # outpost-core
//!
//! The vocabulary every other outpost crate speaks, with no I/O: the schema
//! model ([`schema`]), column types and the exact value mapping between
//! PostgreSQL, SQLite and JSON ([`types`]), identifier quoting ([`ident`]),
//! the SQL outpost generates for the replica ([`sqlite`]) and for the server's
//! tracking schema ([`tracking`]), the application's Prisma schema
//! ([`prisma`]), and configuration ([`config`]).
//!
//! Everything here is a plain function over plain data, tested without a
//! database.

pub mod accept;
pub mod config;
pub mod conflict;
pub mod forms;
pub mod ident;
pub mod ids;
pub mod prisma;
pub mod schema;
pub mod settle;
pub mod sqlite;
pub mod sync;
pub mod tracking;
pub mod types;
pub mod wire;

pub use ids::{LocalSeq, NodeId, ReplicaState, RowStatus, Version};
pub use schema::{Column, ForeignKey, Relation, RelationKind, Schema, Table};
pub use types::{ColumnType, ScalarType, Value, ValueError};
