//! The settings outpost's sessions and transactions on the server run with,
//! built in one place and pinned by exact-string tests: the node's identity
//! for the capture trigger (`outpost.origin`), the key-printing settings, the
//! planner settings of the pull and the push, the bootstrap's lifted limits
//! and a sync session's timeouts.
//!
//! Every setting here is `SET LOCAL` (it ends with the transaction) except
//! [`timeouts`], which a sync connection sets once for its whole session.

use std::time::Duration;

use outpost_core::NodeId;
use outpost_core::tracking::{ORIGIN_SETTING, PUSH_TABLE_SETTING};

/// Session settings that make `jsonb_build_array` print keys exactly as the
/// capture trigger does.
macro_rules! key_settings {
    () => {
        "SET LOCAL TimeZone = 'UTC'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1;"
    };
}

/// Planner settings that leave a statement index lookups only (no
/// sequential or bitmap scans, hash or merge joins, materialized inner
/// sides) and no JIT, which the cost penalty of a disabled node would
/// otherwise set off. Used by the pull and by the push's key lookups:
/// their plans are kept (generic) while the tables grow, so they must not
/// depend on the statistics of their first run.
macro_rules! index_only {
    () => {
        "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; \
         SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; \
         SET LOCAL enable_material = off; SET LOCAL jit = off;"
    };
}

/// The capture function's settings (`TimeZone=UTC`, `IntervalStyle=postgres`,
/// `extra_float_digits=1`), so that keys the server computes with
/// `jsonb_build_array` have the text the capture recorded.
pub const KEY_SETTINGS: &str = key_settings!();

/// Index lookups only, no JIT (the pull's and the push's key lookups; why:
/// [`crate::feed::pull`] and the push's lock and state reads).
pub const INDEX_ONLY: &str = index_only!();

/// The server's own planner settings again after [`INDEX_ONLY`] (`DEFAULT`:
/// what the configuration, role or database sets, not necessarily `on`).
pub const PLANNER_DEFAULTS: &str = "SET LOCAL enable_seqscan = DEFAULT; SET LOCAL enable_bitmapscan = DEFAULT; \
     SET LOCAL enable_hashjoin = DEFAULT; SET LOCAL enable_mergejoin = DEFAULT; \
     SET LOCAL enable_material = DEFAULT; SET LOCAL jit = DEFAULT;";

/// Settings of a pull's read-only transaction: the key settings, index
/// lookups only, no sorts, and generic plans for the statements it keeps
/// prepared.
pub const PULL_SETTINGS: &str = concat!(
    key_settings!(),
    " ",
    index_only!(),
    " SET LOCAL enable_sort = off; SET LOCAL plan_cache_mode = force_generic_plan;"
);

/// A bootstrap snapshot's limits lifted: streaming a huge table can outlast
/// any statement limit the session has (the client writes SQLite as it
/// reads); the session's `lock_timeout` still bounds waiting for a lock.
pub const BOOTSTRAP_SETTINGS: &str =
    "SET LOCAL statement_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0;";

/// Sets `outpost.local_seq` for the rest of the transaction to the
/// parameter `$1` (text); the capture stores it as `origin_local_seq`.
pub const SET_LOCAL_SEQ: &str = "SELECT set_config('outpost.local_seq', $1, true)";

/// `SAVEPOINT <name>; SELECT set_config('outpost.push_table', '<table>',
/// true)`: a push statement about to write `table` marks it, so the capture
/// stamps `outpost.local_seq` on that statement's rows only, not on rows its
/// foreign-key actions or the application's triggers write (tracking
/// schema version 6). Sent with the savepoint: no extra round trip.
pub fn savepoint_for(savepoint: &str, table: &str) -> String {
    format!(
        "SAVEPOINT {savepoint}; SELECT set_config('{PUSH_TABLE_SETTING}', {}, true)",
        outpost_core::ident::literal(table)
    )
}

/// `SET LOCAL outpost.origin = '<node>';`: the capture trigger records the
/// node as the origin of every version the transaction writes. The node id
/// is a UUID, so it needs no escaping.
pub fn origin(node: NodeId) -> String {
    format!("SET LOCAL {ORIGIN_SETTING} = '{node}';")
}

/// The settings of a push transaction: the key settings, the node as origin,
/// the statement and lock limits, and generic plans (a
/// push's statements are prepared once and run for every group; a custom
/// plan would fold each group's arrays into constants and plan them again).
pub fn push(node: NodeId, statement: Duration, lock: Duration) -> String {
    format!(
        "{KEY_SETTINGS} {origin} SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; \
         SET LOCAL plan_cache_mode = force_generic_plan;",
        statement.as_millis(),
        lock.as_millis(),
        origin = origin(node),
    )
}

/// A sync session's statement and lock limits (`SET`, not `SET LOCAL`: for
/// the whole session).
pub fn timeouts(statement: Duration, lock: Duration) -> String {
    format!(
        "SET statement_timeout = {}; SET lock_timeout = {};",
        statement.as_millis(),
        lock.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeId {
        "6f1c3c8e-8a3b-4f7e-9a53-2d0c5e6a1b01"
            .parse()
            .unwrap_or_else(|e: String| panic!("{e}"))
    }

    #[test]
    fn origin_names_the_node() {
        assert_eq!(
            origin(node()),
            "SET LOCAL outpost.origin = '6f1c3c8e-8a3b-4f7e-9a53-2d0c5e6a1b01';"
        );
    }

    #[test]
    fn push_settings_are_exact() {
        assert_eq!(
            push(
                node(),
                Duration::from_millis(30_000),
                Duration::from_millis(1_500)
            ),
            "SET LOCAL TimeZone = 'UTC'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1; \
             SET LOCAL outpost.origin = '6f1c3c8e-8a3b-4f7e-9a53-2d0c5e6a1b01'; \
             SET LOCAL statement_timeout = 30000; SET LOCAL lock_timeout = 1500; \
             SET LOCAL plan_cache_mode = force_generic_plan;"
        );
    }

    #[test]
    fn pull_and_planner_settings_are_exact() {
        assert_eq!(
            PULL_SETTINGS,
            "SET LOCAL TimeZone = 'UTC'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1; \
             SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; \
             SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; \
             SET LOCAL enable_material = off; SET LOCAL jit = off; \
             SET LOCAL enable_sort = off; SET LOCAL plan_cache_mode = force_generic_plan;"
        );
        // Every setting INDEX_ONLY turns off, PLANNER_DEFAULTS gives back.
        let names = |s: &str| -> Vec<String> {
            s.split(';')
                .filter_map(|part| part.trim().strip_prefix("SET LOCAL "))
                .filter_map(|set| set.split(" = ").next().map(str::to_string))
                .collect()
        };
        assert_eq!(names(INDEX_ONLY), names(PLANNER_DEFAULTS));
        assert_eq!(names(INDEX_ONLY).len(), 6);
    }

    #[test]
    fn session_timeouts_are_exact() {
        assert_eq!(
            timeouts(Duration::from_secs(30), Duration::from_millis(2_500)),
            "SET statement_timeout = 30000; SET lock_timeout = 2500;"
        );
    }
}
