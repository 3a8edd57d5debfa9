//! Push acceptance: whether the server writes a pushed row, reports it as a
//! conflict, or skips it because this node already wrote it (a retry after
//! a lost acknowledgement). One pure function, [`decide`], over what the
//! push read from the server for the row (its current version, the node
//! and `local_seq` that wrote it, whether it exists, and the change that
//! wrote it) and what the node pushes; the push in `outpost-remote` only
//! carries the decision out. The table it implements is in
//! `docs/protocol.md`, "Push acceptance".
//!
//! A conflict here is only the server's side of the question "did the row
//! change since the node's base?": the node then resolves it
//! ([`crate::conflict::resolve`]) and may push again.

use crate::ids::{LocalSeq, NodeId, Version};
use crate::sync::{Cursor, Expected};

/// What the node pushes for one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// The version the change was based on.
    pub expected: Expected,
    /// The replica's `local_seq` of the change.
    pub local_seq: LocalSeq,
    /// The change deletes the row.
    pub delete: bool,
}

/// The server's row as the push found it (locked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnServer {
    /// Its version (0: unchanged since tracking began, or never existed).
    pub version: Version,
    /// The node whose transaction wrote that version, if one did.
    pub origin: Option<NodeId>,
    /// The `local_seq` the node's push recorded with it; `None` for a write
    /// without one (the node's model service in remote mode, or no node).
    pub origin_local_seq: Option<LocalSeq>,
    /// The row exists.
    pub present: bool,
    /// The feed position `(txid, seq)` of the change that wrote the
    /// version; `None` when no change is recorded (version 0, or the change
    /// was pruned).
    pub change: Option<Cursor>,
}

/// The pushing node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pusher {
    /// Its id (written as `origin` by its pushes).
    pub node: NodeId,
    /// How far it has pulled.
    pub cursor: Cursor,
    /// Changes were pruned and the node's cursor is past all of them, so a
    /// version whose change is gone is one the node has seen.
    pub pruned_ok: bool,
}

/// How a row is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Write {
    /// The row is absent: insert it (an insert that meets a key inserted
    /// meanwhile becomes a conflict).
    Insert,
    /// The row exists: update it.
    Update,
    /// The change deletes the row (a delete of an absent row is done too).
    Delete,
}

/// What the server does with a pushed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Acceptance {
    /// This node already wrote this change: nothing is written again.
    AlreadyApplied,
    /// The server's row is the node's base: write it.
    Write(Write),
    /// The server's row changed since the node's base: nothing written; the
    /// node resolves it.
    Conflict,
}

/// Decides one pushed row (the table in `docs/protocol.md`, "Push
/// acceptance"; the rules apply in order):
///
/// 1. the version was written by this node's push at or after this change
///    (`origin_local_seq >= local_seq`): already applied;
/// 2. it was written by an earlier push of this node: it is the node's own
///    base, written;
/// 3. the node expects a version: written if it is the server's, else a
///    conflict;
/// 4. the node expects what its cursor covers: written if the version's
///    change is at or before the cursor, if the version is 0, or if the
///    change was pruned and the node is past everything pruned; else a
///    conflict;
/// 5. the node does not know its base: a conflict (the rows are compared
///    there).
///
/// A version this node wrote without a `local_seq` (its model service in
/// remote mode) is a later write the queued change never saw: rules 3–4
/// compare it like anyone else's.
pub fn decide(row: &Pushed, server: &OnServer, by: &Pusher) -> Acceptance {
    let own_push = server.origin == Some(by.node) && server.origin_local_seq.is_some();
    if own_push && server.origin_local_seq >= Some(row.local_seq) {
        return Acceptance::AlreadyApplied;
    }
    let based_on_current = own_push
        || match row.expected {
            Expected::Version(v) => v == server.version,
            Expected::Unknown => false,
            Expected::AsOfCursor => match server.change {
                Some(change) => change <= by.cursor,
                None => server.version == Version::UNCHANGED || by.pruned_ok,
            },
        };
    if !based_on_current {
        return Acceptance::Conflict;
    }
    Acceptance::Write(if row.delete {
        Write::Delete
    } else if server.present {
        Write::Update
    } else {
        Write::Insert
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    const ME: NodeId = NodeId(Uuid::from_u128(1));
    const OTHER: NodeId = NodeId(Uuid::from_u128(2));
    const CURSOR: Cursor = Cursor { txid: 100, seq: 50 };

    fn by(pruned_ok: bool) -> Pusher {
        Pusher {
            node: ME,
            cursor: CURSOR,
            pruned_ok,
        }
    }

    fn pushed(expected: Expected, local_seq: i64) -> Pushed {
        Pushed {
            expected,
            local_seq: LocalSeq(local_seq),
            delete: false,
        }
    }

    /// A server row at version `version` written by `origin` (with
    /// `origin_local_seq`), its change at `change`.
    fn server(
        version: i64,
        origin: Option<NodeId>,
        origin_local_seq: Option<i64>,
        change: Option<(i64, i64)>,
    ) -> OnServer {
        OnServer {
            version: Version(version),
            origin,
            origin_local_seq: origin_local_seq.map(LocalSeq),
            present: true,
            change: change.map(|(txid, seq)| Cursor { txid, seq }),
        }
    }

    use Acceptance::{AlreadyApplied, Conflict};
    const UPDATE: Acceptance = Acceptance::Write(Write::Update);

    /// Every row of the table in docs/protocol.md ("Push acceptance"), in
    /// its order.
    #[test]
    fn every_row_of_the_table() {
        let v = |n: i64| Expected::Version(Version(n));
        let cursor = Expected::AsOfCursor;
        // (row of the table, pushed, server, pruned_ok, expected)
        let cases: Vec<(&str, Pushed, OnServer, bool, Acceptance)> = vec![
            // 1. Already applied: own push at or after this change.
            (
                "1 own push, same local_seq",
                pushed(v(3), 7),
                server(9, Some(ME), Some(7), Some((90, 9))),
                false,
                AlreadyApplied,
            ),
            (
                "1 own push, later local_seq",
                pushed(v(3), 7),
                server(9, Some(ME), Some(8), Some((200, 9))),
                false,
                AlreadyApplied,
            ),
            (
                "1 own push, cursor base",
                pushed(cursor, 7),
                server(9, Some(ME), Some(7), None),
                false,
                AlreadyApplied,
            ),
            // 2. Own earlier push: its own base, whatever the expected version.
            (
                "2 own earlier push, stale version",
                pushed(v(3), 8),
                server(9, Some(ME), Some(7), Some((200, 9))),
                false,
                UPDATE,
            ),
            (
                "2 own earlier push, change past cursor",
                pushed(cursor, 8),
                server(9, Some(ME), Some(7), Some((200, 9))),
                false,
                UPDATE,
            ),
            // 3. Expected version.
            (
                "3 version matches",
                pushed(v(9), 8),
                server(9, Some(OTHER), Some(1), Some((200, 9))),
                false,
                UPDATE,
            ),
            (
                "3 version moved on",
                pushed(v(3), 8),
                server(9, Some(OTHER), Some(1), Some((90, 9))),
                false,
                Conflict,
            ),
            (
                "3 version 0 expected, still 0",
                pushed(v(0), 8),
                server(0, None, None, None),
                false,
                UPDATE,
            ),
            (
                "3 own remote-mode write, version moved on",
                pushed(v(3), 8),
                server(9, Some(ME), None, Some((90, 9))),
                false,
                Conflict,
            ),
            (
                "3 own remote-mode write, version matches",
                pushed(v(9), 8),
                server(9, Some(ME), None, Some((200, 9))),
                false,
                UPDATE,
            ),
            // 4. As of the cursor.
            (
                "4 change before cursor",
                pushed(cursor, 8),
                server(9, Some(OTHER), None, Some((90, 9))),
                false,
                UPDATE,
            ),
            (
                "4 change at cursor",
                pushed(cursor, 8),
                server(50, Some(OTHER), None, Some((100, 50))),
                false,
                UPDATE,
            ),
            (
                "4 change past cursor",
                pushed(cursor, 8),
                server(51, Some(OTHER), None, Some((100, 51))),
                false,
                Conflict,
            ),
            (
                "4 own remote-mode write past cursor",
                pushed(cursor, 8),
                server(51, Some(ME), None, Some((101, 51))),
                false,
                Conflict,
            ),
            (
                "4 version 0",
                pushed(cursor, 8),
                server(0, None, None, None),
                false,
                UPDATE,
            ),
            (
                "4 change pruned, node past pruning",
                pushed(cursor, 8),
                server(9, None, None, None),
                true,
                UPDATE,
            ),
            (
                "4 change pruned, node not past pruning",
                pushed(cursor, 8),
                server(9, None, None, None),
                false,
                Conflict,
            ),
            // 5. Base unknown: compared as a conflict, even at version 0 or
            // a change before the cursor.
            (
                "5 unknown base, version 0",
                pushed(Expected::Unknown, 8),
                server(0, None, None, None),
                true,
                Conflict,
            ),
            (
                "5 unknown base, change before cursor",
                pushed(Expected::Unknown, 8),
                server(9, Some(OTHER), Some(1), Some((90, 9))),
                true,
                Conflict,
            ),
            (
                "5 unknown base, own push at this change",
                pushed(Expected::Unknown, 8),
                server(9, Some(ME), Some(8), Some((90, 9))),
                false,
                AlreadyApplied,
            ),
        ];
        for (name, row, on_server, pruned_ok, expected) in cases {
            assert_eq!(decide(&row, &on_server, &by(pruned_ok)), expected, "{name}");
        }
    }

    /// The kind of write follows the change and the server's row.
    #[test]
    fn writes_insert_update_or_delete() {
        let mut row = pushed(Expected::Version(Version::UNCHANGED), 1);
        let mut absent = server(0, None, None, None);
        absent.present = false;
        assert_eq!(
            decide(&row, &absent, &by(false)),
            Acceptance::Write(Write::Insert)
        );
        let present = server(0, None, None, None);
        assert_eq!(decide(&row, &present, &by(false)), UPDATE);
        row.delete = true;
        assert_eq!(
            decide(&row, &present, &by(false)),
            Acceptance::Write(Write::Delete)
        );
        // A delete of a row already gone is still written (and done).
        assert_eq!(
            decide(&row, &absent, &by(false)),
            Acceptance::Write(Write::Delete)
        );
    }

    fn expected() -> impl Strategy<Value = Expected> {
        prop_oneof![
            (0i64..20).prop_map(|n| Expected::Version(Version(n))),
            Just(Expected::AsOfCursor),
            Just(Expected::Unknown)
        ]
    }

    fn origin() -> impl Strategy<Value = Option<NodeId>> {
        prop_oneof![Just(None), Just(Some(ME)), Just(Some(OTHER))]
    }

    fn on_server() -> impl Strategy<Value = OnServer> {
        (
            0i64..20,
            origin(),
            proptest::option::of(0i64..20),
            any::<bool>(),
            proptest::option::of((90i64..110, 0i64..100)),
        )
            .prop_map(|(version, origin, ols, present, change)| OnServer {
                version: Version(version),
                origin,
                origin_local_seq: ols.map(LocalSeq),
                present,
                change: change.map(|(txid, seq)| Cursor { txid, seq }),
            })
    }

    fn pushed_any() -> impl Strategy<Value = Pushed> {
        (expected(), 0i64..20, any::<bool>()).prop_map(|(expected, local_seq, delete)| Pushed {
            expected,
            local_seq: LocalSeq(local_seq),
            delete,
        })
    }

    proptest! {
        /// A version one of this node's pushes wrote is never a conflict for
        /// the node, whatever it expected and wherever its cursor is.
        #[test]
        fn a_node_never_conflicts_with_its_own_pushed_write(
            row in pushed_any(),
            mut server in on_server(),
            ols in 0i64..20,
            pruned_ok in any::<bool>(),
            txid in 0i64..200,
            seq in 0i64..100,
        ) {
            server.origin = Some(ME);
            server.origin_local_seq = Some(LocalSeq(ols));
            let pusher = Pusher { node: ME, cursor: Cursor { txid, seq }, pruned_ok };
            prop_assert_ne!(decide(&row, &server, &pusher), Acceptance::Conflict);
        }

        /// Whatever the server had, once a change is written (the version
        /// now names this node and a `local_seq` at or above the change's:
        /// the group's highest), pushing the same change again is already
        /// applied, never written twice.
        #[test]
        fn an_already_applied_retry_is_never_written_twice(
            row in pushed_any(),
            server in on_server(),
            pruned_ok in any::<bool>(),
            group_extra in 0i64..5,
            bump in 1i64..5,
        ) {
            let pusher = by(pruned_ok);
            if let Acceptance::Write(write) = decide(&row, &server, &pusher) {
                let after = OnServer {
                    version: Version(server.version.get() + bump),
                    origin: Some(ME),
                    origin_local_seq: Some(LocalSeq(row.local_seq.get() + group_extra)),
                    present: write != Write::Delete,
                    change: Some(Cursor { txid: 1_000, seq: server.version.get() + bump }),
                };
                prop_assert_eq!(decide(&row, &after, &pusher), Acceptance::AlreadyApplied);
            }
        }

        /// Another node's write, or a write without a `local_seq`, is never
        /// taken as already applied.
        #[test]
        fn only_own_pushes_are_already_applied(
            row in pushed_any(),
            server in on_server(),
            pruned_ok in any::<bool>(),
        ) {
            let decided = decide(&row, &server, &by(pruned_ok));
            if server.origin != Some(ME) || server.origin_local_seq.is_none() {
                prop_assert_ne!(decided, Acceptance::AlreadyApplied);
            }
        }
    }
}
