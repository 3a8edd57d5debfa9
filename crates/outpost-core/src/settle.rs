//! Pull settlement: what the replica does with one server row that meets the
//! row's sync entry, as two pure decisions over plain data. The replica
//! (`outpost-local`) reads the entry, asks, and carries the answer out; it
//! decides nothing itself.
//!
//! 1. [`decide_pull`]: the entry's state against the pulled version
//!    ([`PullDecision`]). Most rows end here: no local change takes the
//!    server's row, a version the replica already has changes nothing, a
//!    conflict stays a conflict, and this node's own push coming back is a
//!    new base.
//! 2. [`settle`]: a local change against someone else's version (pulled, a
//!    push's conflict answer, or a server `TRUNCATE`): two overrides for a
//!    local insert's key, then [`conflict::resolve`](crate::conflict::resolve)
//!    under the model's policy ([`Settlement`]).
//!
//! The tables are in `docs/protocol.md`, "## Pull"; the tests below have one
//! case per row.

use serde::{Deserialize, Serialize};

use crate::conflict::{ConflictKind, Outcome, Policy, Rules, Side, resolve};
use crate::ids::{LocalSeq, NodeId, RowStatus, Version};
use crate::types::Value;

/// The server version a row's local state is based on
/// (`_outpost_rows.server_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BaseVersion {
    /// The version the replica's cursor covers: the row was not changed on
    /// the server since the replica last saw it (stored as `NULL`).
    AsOfCursor,
    /// This version.
    Known(Version),
    /// Not known: a local change kept through a re-bootstrap, or a row the
    /// server truncated. The next push compares the row with the server's
    /// instead of trusting it (stored as `-1`, below every real version).
    Unknown,
}

impl BaseVersion {
    /// The stored form of [`BaseVersion::Unknown`].
    pub const UNKNOWN_STORED: i64 = -1;

    /// The stored form: `NULL`, the version, or `-1`.
    pub fn to_stored(self) -> Option<i64> {
        match self {
            BaseVersion::AsOfCursor => None,
            BaseVersion::Known(v) => Some(v.get()),
            BaseVersion::Unknown => Some(BaseVersion::UNKNOWN_STORED),
        }
    }

    /// From the stored form (any negative number reads as unknown: versions
    /// are never negative).
    pub fn from_stored(stored: Option<i64>) -> BaseVersion {
        match stored {
            None => BaseVersion::AsOfCursor,
            Some(v) if v < 0 => BaseVersion::Unknown,
            Some(v) => BaseVersion::Known(Version(v)),
        }
    }

    /// Whether this is exactly version `v`.
    pub fn is(self, v: Version) -> bool {
        self == BaseVersion::Known(v)
    }
}

/// A row's sync entry as the pull decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryState {
    /// Its status.
    pub status: RowStatus,
    /// The server version its local state is based on.
    pub base: BaseVersion,
    /// For a `CONFLICT`: the server version the conflict shows.
    pub conflict_version: Option<Version>,
}

/// A pulled server row, as the pull decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    /// Its version.
    pub version: Version,
    /// The node whose push wrote this version, if any.
    pub origin: Option<NodeId>,
    /// That node's local change number for the write (`None` for a write
    /// its model service made on the server in remote mode).
    pub origin_local_seq: Option<LocalSeq>,
    /// Sent as a deletion because the row left this node's sync-rule scope
    /// (it still exists on the server).
    pub left_scope: bool,
}

/// What to do with one pulled row ([`decide_pull`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDecision {
    /// No local change: write the server's row and mark it `SYNCED` at its
    /// version.
    TakeServer,
    /// The replica already holds or is based on this version: nothing to do.
    AlreadyBased,
    /// Still in conflict. With `show_server`, the server moved on since the
    /// conflict was recorded: show its new row and version (and count the
    /// row as a conflict of this run); without, nothing changes.
    KeepConflict {
        /// Update the conflict's server side.
        show_server: bool,
    },
    /// This node's own push came back: its version becomes the base of the
    /// local row, and local edits made since stay. A `FAILED` row stays
    /// `FAILED` with the server's reason (re-basing alone would clear it).
    OwnPush {
        /// The row is `FAILED` and stays so.
        keep_failed: bool,
    },
    /// The row left this node's scope while it has a local change: keep
    /// the local row and re-base it on "no row" at the pulled version. The
    /// server did not delete it, so neither agreeing with a local delete
    /// nor taking a deletion over a local edit would be true; the next push
    /// is refused by the rules (`FAILED`, naming the rule), and a row that
    /// comes back meets the change as any server change does. A `FAILED`
    /// row stays `FAILED` with its reason.
    LeftScope {
        /// The row is `FAILED` and stays so.
        keep_failed: bool,
    },
    /// Someone else's version against a local change: [`settle`] it.
    Settle,
}

/// Decides one pulled row against its entry (`None`: no entry, synced as of
/// the cursor), for this node. First matching row of the table in
/// `docs/protocol.md` "## Pull".
pub fn decide_pull(entry: Option<&EntryState>, pulled: &Pulled, node: NodeId) -> PullDecision {
    let Some(entry) = entry else {
        return PullDecision::TakeServer;
    };
    if entry.base.is(pulled.version) {
        return PullDecision::AlreadyBased;
    }
    match entry.status {
        RowStatus::Synced => PullDecision::TakeServer,
        RowStatus::Conflict => PullDecision::KeepConflict {
            show_server: entry.conflict_version != Some(pulled.version),
        },
        RowStatus::Pending | RowStatus::Failed if pulled.left_scope => PullDecision::LeftScope {
            keep_failed: entry.status == RowStatus::Failed,
        },
        RowStatus::Pending | RowStatus::Failed => {
            // A remote-mode write of this node has no local change number:
            // it is not the base of an older queued edit (docs/protocol.md,
            // "## Push").
            if pulled.origin == Some(node) && pulled.origin_local_seq.is_some() {
                PullDecision::OwnPush {
                    keep_failed: entry.status == RowStatus::Failed,
                }
            } else {
                PullDecision::Settle
            }
        }
    }
}

/// A local change and the server's row, as [`settle`] needs them. Rows are
/// values in table column order; `None` is a deleted or absent row.
#[derive(Debug, Clone, Copy)]
pub struct SettleInput<'a> {
    /// The row before its first local change (`None`: a local insert).
    pub base: Option<&'a [Value]>,
    /// The local row now.
    pub local: Option<&'a [Value]>,
    /// When the local row last changed.
    pub local_changed_at: Option<&'a str>,
    /// The server's row.
    pub server: Option<&'a [Value]>,
    /// The server row's version (`None`: unknown, after a `TRUNCATE`).
    pub server_version: Option<Version>,
    /// When the server row last changed.
    pub server_changed_at: Option<&'a str>,
    /// The model's policy.
    pub policy: Policy,
    /// Columns that never conflict.
    pub rules: Rules<'a>,
}

/// What to do with a local change against a newer server row ([`settle`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// Write the server's row (or delete) and mark the row `SYNCED` at the
    /// server's version: the local change is dropped.
    TakeServer,
    /// Keep the local row and re-base it on the server's version: the next
    /// push sends it over that version.
    Rebase,
    /// Write this row (both sides' changes) and re-base it on the server's
    /// version: the next push sends it.
    Merge(Vec<Value>),
    /// Record a conflict showing the server's row; nothing is pushed until
    /// a person or a policy resolves it.
    Conflict(ConflictKind),
}

/// Decides a local change against a newer server row: the two overrides
/// for a local insert's key under `manual`, then
/// [`resolve`]. First matching row of the table in
/// `docs/protocol.md` "## Pull".
pub fn settle(input: &SettleInput<'_>) -> Settlement {
    let manual = input.policy == Policy::Manual;
    // A local insert (no base) against a key the server has a tombstone
    // for (deleted, version > 0): the key existed there and was deleted,
    // possibly this very insert whose acknowledgement was lost. "Absent on
    // both sides" would read as "the server never saw it" and push it again,
    // resurrecting a deleted row; under `manual` it is a delete against an
    // edit instead.
    let tombstone = input.base.is_none()
        && input.local.is_some()
        && input.server.is_none()
        && input.server_version.is_some_and(|v| v > Version::UNCHANGED);
    if manual && tombstone {
        return Settlement::Conflict(ConflictKind::ChangedLocallyDeletedOnServer);
    }
    // The mirror case: a row inserted here and deleted here, against a key
    // the server has. The insert may have landed (its acknowledgement lost)
    // and been changed there since; "absent in the base and here" would
    // read as an insert and delete the server never saw and take the
    // server's row without a word, losing the delete. Under `manual` it is
    // a delete against an edit.
    let deleted_own_insert =
        input.base.is_none() && input.local.is_none() && input.server.is_some();
    if manual && deleted_own_insert {
        return Settlement::Conflict(ConflictKind::DeletedLocallyChangedOnServer);
    }
    match resolve(
        input.base,
        Side {
            row: input.local,
            changed_at: input.local_changed_at,
        },
        Side {
            row: input.server,
            changed_at: input.server_changed_at,
        },
        input.policy,
        &input.rules,
    ) {
        Outcome::TakeServer => Settlement::TakeServer,
        Outcome::KeepLocal => Settlement::Rebase,
        Outcome::Merged(row) => Settlement::Merge(row),
        Outcome::Conflict { kind, .. } => Settlement::Conflict(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    const ME: NodeId = NodeId(Uuid::from_u128(1));
    const OTHER: NodeId = NodeId(Uuid::from_u128(2));

    fn entry(status: RowStatus, base: BaseVersion, conflict: Option<i64>) -> EntryState {
        EntryState {
            status,
            base,
            conflict_version: conflict.map(Version),
        }
    }

    fn pulled(version: i64, origin: Option<NodeId>, seq: Option<i64>) -> Pulled {
        Pulled {
            version: Version(version),
            origin,
            origin_local_seq: seq.map(LocalSeq),
            left_scope: false,
        }
    }

    /// A row sent as a deletion because it left this node's scope.
    fn left(version: i64, origin: Option<NodeId>, seq: Option<i64>) -> Pulled {
        Pulled {
            left_scope: true,
            ..pulled(version, origin, seq)
        }
    }

    use BaseVersion::{AsOfCursor, Known, Unknown};
    use PullDecision as D;
    use RowStatus::{Conflict, Failed, Pending, Synced};

    /// One case per row of the pull table in docs/protocol.md, in its order.
    #[test]
    fn pull_table() {
        let v = |n| Known(Version(n));
        let cases: &[(&str, Option<EntryState>, Pulled, PullDecision)] = &[
            // 1. no entry
            ("no entry", None, pulled(5, None, None), D::TakeServer),
            (
                "no entry, own push",
                None,
                pulled(5, Some(ME), Some(3)),
                D::TakeServer,
            ),
            // 2. based on this version, any status
            (
                "synced at v",
                Some(entry(Synced, v(5), None)),
                pulled(5, None, None),
                D::AlreadyBased,
            ),
            (
                "pending based on v",
                Some(entry(Pending, v(5), None)),
                pulled(5, Some(OTHER), Some(1)),
                D::AlreadyBased,
            ),
            (
                "failed based on v",
                Some(entry(Failed, v(5), None)),
                pulled(5, None, None),
                D::AlreadyBased,
            ),
            (
                "conflict based on v",
                Some(entry(Conflict, v(5), Some(7))),
                pulled(5, None, None),
                D::AlreadyBased,
            ),
            // 3. synced at another version
            (
                "synced at an older version",
                Some(entry(Synced, v(4), None)),
                pulled(5, None, None),
                D::TakeServer,
            ),
            (
                "synced as of the cursor",
                Some(entry(Synced, AsOfCursor, None)),
                pulled(5, None, None),
                D::TakeServer,
            ),
            // 4. conflict already showing this version
            (
                "conflict showing v",
                Some(entry(Conflict, v(4), Some(5))),
                pulled(5, None, None),
                D::KeepConflict { show_server: false },
            ),
            // 5. conflict, the server moved on
            (
                "conflict showing an older version",
                Some(entry(Conflict, v(4), Some(4))),
                pulled(5, None, None),
                D::KeepConflict { show_server: true },
            ),
            (
                "conflict, own push",
                Some(entry(Conflict, Unknown, None)),
                pulled(5, Some(ME), Some(9)),
                D::KeepConflict { show_server: true },
            ),
            (
                "conflict, the row left the scope",
                Some(entry(Conflict, v(4), Some(4))),
                left(5, None, None),
                D::KeepConflict { show_server: true },
            ),
            // 6. the row left this node's scope
            (
                "pending, the row left the scope",
                Some(entry(Pending, AsOfCursor, None)),
                left(5, Some(OTHER), Some(2)),
                D::LeftScope { keep_failed: false },
            ),
            (
                "failed, the row left the scope",
                Some(entry(Failed, v(4), None)),
                left(5, None, None),
                D::LeftScope { keep_failed: true },
            ),
            (
                "pending, the row left the scope with this node's origin",
                Some(entry(Pending, v(4), None)),
                left(5, Some(ME), Some(9)),
                D::LeftScope { keep_failed: false },
            ),
            (
                "synced, the row left the scope",
                Some(entry(Synced, v(4), None)),
                left(5, None, None),
                D::TakeServer,
            ),
            // 7. own push came back
            (
                "pending, own push",
                Some(entry(Pending, v(4), None)),
                pulled(5, Some(ME), Some(9)),
                D::OwnPush { keep_failed: false },
            ),
            (
                "failed, own push",
                Some(entry(Failed, AsOfCursor, None)),
                pulled(5, Some(ME), Some(9)),
                D::OwnPush { keep_failed: true },
            ),
            // 8. anyone else's version
            (
                "pending, another node",
                Some(entry(Pending, v(4), None)),
                pulled(5, Some(OTHER), Some(9)),
                D::Settle,
            ),
            (
                "pending, a plain writer",
                Some(entry(Pending, Unknown, None)),
                pulled(5, None, None),
                D::Settle,
            ),
            (
                "pending, own remote-mode write",
                Some(entry(Pending, v(4), None)),
                pulled(5, Some(ME), None),
                D::Settle,
            ),
            (
                "failed, another node",
                Some(entry(Failed, AsOfCursor, None)),
                pulled(5, Some(OTHER), Some(1)),
                D::Settle,
            ),
        ];
        for (name, e, p, want) in cases {
            assert_eq!(decide_pull(e.as_ref(), p, ME), *want, "{name}");
        }
    }

    fn row(words: &[i64]) -> Vec<Value> {
        words.iter().map(|&i| Value::Int(i)).collect()
    }

    fn input<'a>(
        base: Option<&'a [Value]>,
        local: Option<&'a [Value]>,
        server: Option<&'a [Value]>,
        server_version: Option<i64>,
        policy: Policy,
    ) -> SettleInput<'a> {
        SettleInput {
            base,
            local,
            local_changed_at: None,
            server,
            server_version: server_version.map(Version),
            server_changed_at: None,
            policy,
            rules: Rules::default(),
        }
    }

    /// One case per row of the settlement table in docs/protocol.md.
    #[test]
    fn settle_table() {
        let base = row(&[1, 10, 20]);
        let local = row(&[1, 11, 20]);
        let server = row(&[1, 10, 21]);
        let clash = row(&[1, 12, 20]);
        let (b, l, s, c) = (
            Some(base.as_slice()),
            Some(local.as_slice()),
            Some(server.as_slice()),
            Some(clash.as_slice()),
        );
        use ConflictKind::*;
        use Policy::*;
        use Settlement as S;
        let cases: Vec<(&str, SettleInput<'_>, Settlement)> = vec![
            // 1. tombstone override
            (
                "local insert, server tombstone, manual",
                input(None, l, None, Some(5), Manual),
                S::Conflict(ChangedLocallyDeletedOnServer),
            ),
            (
                "local insert, server deleted at version 0: resolve pushes it",
                input(None, l, None, Some(0), Manual),
                S::Rebase,
            ),
            (
                "local insert, server truncated (version unknown): resolve pushes it",
                input(None, l, None, None, Manual),
                S::Rebase,
            ),
            (
                "local insert, server tombstone, client-wins: resolve",
                input(None, l, None, Some(5), ClientWins),
                S::Rebase,
            ),
            // 2. deleted own insert override
            (
                "inserted and deleted here, server has the key, manual",
                input(None, None, s, Some(5), Manual),
                S::Conflict(DeletedLocallyChangedOnServer),
            ),
            (
                "inserted and deleted here, server has the key, server-wins",
                input(None, None, s, Some(5), ServerWins),
                S::TakeServer,
            ),
            // 3. resolve
            (
                "both sides equal",
                input(b, l, l, Some(5), Manual),
                S::TakeServer,
            ),
            (
                "server-wins",
                input(b, l, s, Some(5), ServerWins),
                S::TakeServer,
            ),
            (
                "client-wins",
                input(b, l, s, Some(5), ClientWins),
                S::Rebase,
            ),
            (
                "last-write-wins, times unknown",
                input(b, l, s, Some(5), LastWriteWins),
                S::TakeServer,
            ),
            (
                "manual, server untouched",
                input(b, l, b, Some(5), Manual),
                S::Rebase,
            ),
            (
                "manual, nothing changed locally",
                input(b, b, s, Some(5), Manual),
                S::TakeServer,
            ),
            (
                "manual, different fields",
                input(b, l, s, Some(5), Manual),
                S::Merge(row(&[1, 11, 21])),
            ),
            (
                "manual, same field both sides",
                input(b, c, l, Some(5), Manual),
                S::Conflict(BothChanged),
            ),
            (
                "manual, deleted locally, changed on the server",
                input(b, None, s, Some(5), Manual),
                S::Conflict(DeletedLocallyChangedOnServer),
            ),
            (
                "manual, changed locally, deleted on the server",
                input(b, l, None, Some(5), Manual),
                S::Conflict(ChangedLocallyDeletedOnServer),
            ),
            (
                "manual, both inserted differently",
                input(None, l, c, Some(5), Manual),
                S::Conflict(BothInserted),
            ),
        ];
        for (name, i, want) in cases {
            assert_eq!(settle(&i), want, "{name}");
        }
    }

    #[test]
    fn last_write_wins_follows_the_change_times() {
        let (b, l, s) = (row(&[1, 1]), row(&[1, 2]), row(&[1, 3]));
        let mut i = input(Some(&b), Some(&l), Some(&s), Some(5), Policy::LastWriteWins);
        i.local_changed_at = Some("2026-01-01T00:00:02Z");
        i.server_changed_at = Some("2026-01-01T00:00:01Z");
        assert_eq!(settle(&i), Settlement::Rebase);
        i.server_changed_at = Some("2026-01-01T00:00:03Z");
        assert_eq!(settle(&i), Settlement::TakeServer);
    }

    #[test]
    fn base_versions_round_trip_their_stored_form() {
        for b in [AsOfCursor, Unknown, Known(Version(0)), Known(Version(42))] {
            assert_eq!(BaseVersion::from_stored(b.to_stored()), b);
        }
        assert_eq!(Unknown.to_stored(), Some(-1));
        assert_eq!(AsOfCursor.to_stored(), None);
        assert!(Known(Version(3)).is(Version(3)) && !Unknown.is(Version(-1)));
    }

    fn any_status() -> impl Strategy<Value = RowStatus> {
        prop::sample::select(RowStatus::ALL.to_vec())
    }

    fn any_base() -> impl Strategy<Value = BaseVersion> {
        prop_oneof![
            Just(AsOfCursor),
            Just(Unknown),
            (0i64..8).prop_map(|v| Known(Version(v))),
        ]
    }

    fn any_entry() -> impl Strategy<Value = Option<EntryState>> {
        prop::option::of(
            (any_status(), any_base(), prop::option::of(0i64..8)).prop_map(|(s, b, c)| {
                EntryState {
                    status: s,
                    base: b,
                    conflict_version: c.map(Version),
                }
            }),
        )
    }

    fn any_pulled() -> impl Strategy<Value = Pulled> {
        (
            0i64..8,
            prop::option::of(prop::sample::select(vec![ME, OTHER])),
            prop::option::of(0i64..8),
            any::<bool>(),
        )
            .prop_map(|(v, o, s, left_scope)| Pulled {
                left_scope,
                ..pulled(v, o, s)
            })
    }

    /// The entry the replica holds after carrying out `d` (the model of
    /// what `outpost-local` writes), with `settled` the settlement when
    /// `d` is `Settle`.
    fn after(
        e: Option<EntryState>,
        p: &Pulled,
        d: PullDecision,
        settled: &Settlement,
    ) -> Option<EntryState> {
        let synced = Some(entry(Synced, Known(p.version), None));
        let rebased = |status| Some(entry(status, Known(p.version), None));
        match d {
            D::TakeServer => synced,
            D::AlreadyBased | D::KeepConflict { show_server: false } => e,
            D::KeepConflict { show_server: true } => e.map(|e| EntryState {
                conflict_version: Some(p.version),
                ..e
            }),
            D::OwnPush { keep_failed } | D::LeftScope { keep_failed } => {
                rebased(if keep_failed { Failed } else { Pending })
            }
            D::Settle => match settled {
                Settlement::TakeServer => synced,
                Settlement::Rebase | Settlement::Merge(_) => rebased(Pending),
                Settlement::Conflict(_) => e.map(|e| EntryState {
                    status: Conflict,
                    conflict_version: Some(p.version),
                    ..e
                }),
            },
        }
    }

    proptest! {
        /// A node never conflicts with its own pushed write: a pending or
        /// failed row meeting it is re-based, never settled.
        #[test]
        fn own_push_never_settles(e in any_entry(), v in 0i64..8, seq in 0i64..8) {
            let p = pulled(v, Some(ME), Some(seq));
            let d = decide_pull(e.as_ref(), &p, ME);
            prop_assert_ne!(d, D::Settle);
            if let Some(e) = e.filter(|e| matches!(e.status, Pending | Failed) && !e.base.is(p.version)) {
                prop_assert_eq!(d, D::OwnPush { keep_failed: e.status == Failed });
            }
        }

        /// A row leaving the scope never takes a local change away: a
        /// pending or failed row meeting it is kept, with its status.
        #[test]
        fn leaving_the_scope_keeps_local_changes(
            e in any_entry(),
            v in 0i64..8,
            origin in prop::option::of(prop::sample::select(vec![ME, OTHER])),
            seq in prop::option::of(0i64..8),
        ) {
            let p = left(v, origin, seq);
            let d = decide_pull(e.as_ref(), &p, ME);
            if let Some(e) = e.filter(|e| matches!(e.status, Pending | Failed) && !e.base.is(p.version)) {
                prop_assert_eq!(d, D::LeftScope { keep_failed: e.status == Failed });
            } else {
                let kept = matches!(d, D::LeftScope { .. } | D::Settle | D::OwnPush { .. });
                prop_assert!(!kept, "{:?}", d);
            }
        }

        /// Applying the same pulled row twice: the second time changes
        /// nothing, whatever the first did.
        #[test]
        fn settling_twice_is_idempotent(
            e in any_entry(),
            p in any_pulled(),
            outcome in prop::sample::select(vec![0u8, 1, 2, 3]),
        ) {
            let settled = match outcome {
                0 => Settlement::TakeServer,
                1 => Settlement::Rebase,
                2 => Settlement::Merge(Vec::new()),
                _ => Settlement::Conflict(ConflictKind::BothChanged),
            };
            let d = decide_pull(e.as_ref(), &p, ME);
            let again = after(e, &p, d, &settled);
            let d2 = decide_pull(again.as_ref(), &p, ME);
            prop_assert!(
                matches!(d2, D::AlreadyBased | D::KeepConflict { show_server: false }),
                "{:?} then {:?}", d, d2
            );
        }

        /// `settle` is total and agrees with `resolve` outside the two
        /// overrides.
        #[test]
        fn settle_is_resolve_outside_the_overrides(
            base in prop::option::of(prop::collection::vec(0i64..3, 2)),
            local in prop::option::of(prop::collection::vec(0i64..3, 2)),
            server in prop::option::of(prop::collection::vec(0i64..3, 2)),
            version in prop::option::of(0i64..3),
            policy in prop::sample::select(Policy::ALL.to_vec()),
        ) {
            let conv = |r: &Option<Vec<i64>>| r.as_ref().map(|r| row(r));
            let (b, l, s) = (conv(&base), conv(&local), conv(&server));
            let i = input(b.as_deref(), l.as_deref(), s.as_deref(), version, policy);
            let overridden = policy == Policy::Manual
                && b.is_none()
                && ((l.is_some() && s.is_none() && version.is_some_and(|v| v > 0))
                    || (l.is_none() && s.is_some()));
            let got = settle(&i);
            if overridden {
                prop_assert!(matches!(got, Settlement::Conflict(_)));
            } else {
                let want = match resolve(
                    b.as_deref(),
                    Side { row: l.as_deref(), changed_at: None },
                    Side { row: s.as_deref(), changed_at: None },
                    policy,
                    &Rules::default(),
                ) {
                    Outcome::TakeServer => Settlement::TakeServer,
                    Outcome::KeepLocal => Settlement::Rebase,
                    Outcome::Merged(r) => Settlement::Merge(r),
                    Outcome::Conflict { kind, .. } => Settlement::Conflict(kind),
                };
                prop_assert_eq!(got, want);
            }
        }
    }
}
