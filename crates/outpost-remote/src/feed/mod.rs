//! The server side of a sync: the change feed read under the cursor rule
//! ([`pull`]), the bootstrap snapshot streamed with binary `COPY`
//! ([`Bootstrap`]), the push with its version check and failure isolation
//! ([`push`]), the node registry and changelog retention.
//!
//! One module per concern, mirrored on the replica's side; every item is
//! used through this module (`outpost_remote::feed::push`):
//!
//! | module | what |
//! |---|---|
//! | `registry` | [`register_node`], [`record_cursor`], [`claim_incarnation`] |
//! | `retention` | [`feed_position`], [`probe`], [`prune`], [`horizon_age`] |
//! | `bootstrap` | [`Bootstrap`]: the snapshot streamed with `COPY` |
//! | `pull` | [`pull`], [`PullStatements`], typed keys |
//! | `push` | [`push`] (groups, writes under savepoints, refused parents), [`versions_of`] |
//! | `ids` | [`reserve_ids`] |
//! | `scope` | [`Scope`]: the gateway's sync rules, applied by bootstrap, pull and push; [`outside_scope`] |
//! | `verify` | [`VerifySnapshot`]: per-bucket row digests for `outpost verify` |
//! | `inspect` | [`row_count`], [`all_rows`]: reads for tests and tools |
//! | `sql` | the statements' text, pinned by exact-string tests |
//! | `support` | what they share: the statement cache, row decoding |
//!
//! Which pushed row is written, a conflict or already applied is decided by
//! [`outpost_core::accept`]; the push carries the decision out. Session
//! settings come from [`crate::session`].
//!
//! Every key crosses as typed values bound with the binary codec; the
//! server computes its `jsonb` row keys itself (`jsonb_build_array`), in
//! sessions with the capture function's settings (`TimeZone=UTC`,
//! `IntervalStyle=postgres`, `extra_float_digits=1`) so the text matches.
//! A push sends a group's rows as one typed array per column (`unnest`), so
//! its statements have the same text for every group and are prepared once
//! per push; tables with array columns keep `VALUES` lists.
//!
//! # `origin_local_seq`
//!
//! A push group's writes run with `outpost.local_seq` set to the highest
//! `local_seq` of the group's rows, and the capture trigger stores it as
//! `row_versions.origin_local_seq` of every version the group's statements
//! write: each statement names its table (`outpost.push_table`, set with
//! its savepoint), so rows written by foreign-key actions into other tables
//! or by the application's triggers get none (tracking schema version 6);
//! for a table whose own foreign keys act on it, the push clears the
//! number on rows of the table it did not write (`push::unstamp`). A retry skips
//! a row whose version has this node as origin and an `origin_local_seq` at
//! or above the row's own `local_seq`. The group's highest is as good as the
//! row's own for that test: a row's pushed change is its latest when the
//! push was planned, and any later change of the row is numbered above
//! every change that existed then, so above the group's highest as well.
//! One value per group lets the capture write it in the statement that
//! writes the version, instead of a second update of every version.

mod bootstrap;
mod ids;
mod inspect;
mod pull;
mod push;
mod registry;
mod retention;
mod scope;
mod sql;
mod support;
mod verify;

pub use bootstrap::Bootstrap;
pub use ids::reserve_ids;
pub use inspect::{all_rows, row_count};
pub use pull::{PullStatements, pull, pull_scoped};
pub use push::{push, push_scoped, versions_of};
pub use registry::{Claim, claim_incarnation, record_cursor, register_node};
pub use retention::{FeedPosition, feed_position, horizon_age, probe, prune};
pub use scope::{Scope, TableScope, outside_scope, written_outside};
pub use sql::resumable;
pub use verify::{
    BucketDigest, RowDigest, TableDigest, ValueVerify, VerifySnapshot, value_buckets, value_digest,
    verify_by_values,
};
