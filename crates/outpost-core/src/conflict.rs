//! Sync conflicts: the one pure function, [`resolve`], that decides every
//! case, at push (the server's row moved since the node's base) and at pull
//! (a server change meets a row with unpushed local edits).
//!
//! Three versions of a row meet: `base` (the server version the local edits
//! started from; `None` if the row did not exist then), `local` and `server`
//! (`None` = deleted). Rows are values in table column order. "Equal" is
//! [`Value`]'s `==` (NaN equals NaN, JSON compares documents), skipping the
//! [`Rules::ignore`] columns. First, for every policy, if local equals server
//! the sides have converged: [`Outcome::TakeServer`], nothing to push; and
//! if a known base equals server, only the node changed the row:
//! [`Outcome::KeepLocal`] (a push reports such a row as a conflict when the
//! node's base is known only as of a cursor that lags the copy the row
//! came with). Then:
//!
//! | policy | outcome |
//! |---|---|
//! | `manual` (default) | the three-way merge below |
//! | `server-wins` | `TakeServer` |
//! | `client-wins` | `KeepLocal` (the caller re-bases it on the server version) |
//! | `last-write-wins` | `KeepLocal` if local's `changed_at` is strictly later than the server's, else `TakeServer` |
//!
//! `last-write-wins` trusts every node's clock: a node whose clock runs fast
//! wins changes that happened after its own. Ties, and a side whose change
//! time is unknown, go to the server.
//!
//! `manual`, first matching case:
//!
//! | case | outcome |
//! |---|---|
//! | base equals server (server untouched; includes a local insert) | `KeepLocal`: push the local row or deletion |
//! | base equals local (nothing changed locally; includes a server insert) | `TakeServer` |
//! | base, local and server rows | field by field: each column from the side that changed it; columns both sides changed to different values make a `BothChanged` conflict on those fields |
//! | no base, both sides inserted | the same merge with every column changed on both sides: `BothInserted` on the differing fields |
//! | deleted locally, changed on the server | conflict `DeletedLocallyChangedOnServer` |
//! | changed locally, deleted on the server | conflict `ChangedLocallyDeletedOnServer` |
//!
//! In the merge, [`Rules::ignore`] columns (generated ones) never conflict and
//! take the server's value; [`Rules::latest_wins`] columns (`@updatedAt`)
//! changed on both sides take the later value instead of conflicting (a Null
//! loses). A merged row equal to the server's is `TakeServer`, one equal to the
//! local row `KeepLocal`, so every outcome has one spelling.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::types::Value;

/// Per-model conflict policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Merge fields changed on one side; mark real clashes as conflicts.
    #[default]
    Manual,
    /// The server's row always wins.
    ServerWins,
    /// The local row always wins.
    ClientWins,
    /// The side changed later wins (node clocks are trusted).
    LastWriteWins,
}

impl Policy {
    /// Every policy, in declaration order.
    pub const ALL: [Policy; 4] = [
        Policy::Manual,
        Policy::ServerWins,
        Policy::ClientWins,
        Policy::LastWriteWins,
    ];

    /// The policy's name as configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Manual => "manual",
            Policy::ServerWins => "server-wins",
            Policy::ClientWins => "client-wins",
            Policy::LastWriteWins => "last-write-wins",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A conflict policy name that is not one of [`Policy::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown conflict policy {0:?}: expected manual, server-wins, client-wins or last-write-wins"
)]
pub struct UnknownPolicy(pub String);

impl FromStr for Policy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Policy, UnknownPolicy> {
        Policy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPolicy(s.to_string()))
    }
}

/// One side of a conflict: the row (None = deleted / absent) and when it last
/// changed (canonical UTC timestamptz text `YYYY-MM-DDTHH:MM:SS.ffffffZ` or
/// shorter ISO text), if known.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Side<'a> {
    /// The row in table column order; `None` when deleted or absent.
    pub row: Option<&'a [Value]>,
    /// When this side last changed the row, if known.
    pub changed_at: Option<&'a str>,
}

/// Why [`resolve`] could not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictKind {
    /// Both sides changed the same fields to different values.
    BothChanged,
    /// Both sides inserted a row with the same key and different values.
    BothInserted,
    /// Deleted locally while the server changed it.
    DeletedLocallyChangedOnServer,
    /// Changed locally while the server deleted it.
    ChangedLocallyDeletedOnServer,
}

/// What to do with a row whose local and server versions disagree.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Take the server's row (or its deletion) locally; nothing to push.
    TakeServer,
    /// Keep the local row (or deletion) and push it over the server's version.
    KeepLocal,
    /// Both sides changed different fields: this row (column order) combines
    /// them; write it locally and push it.
    Merged(Vec<Value>),
    /// Cannot be decided by the policy: keep both versions for a person.
    Conflict {
        /// What clashed.
        kind: ConflictKind,
        /// Indexes of columns changed on both sides to different values
        /// (for `BothInserted`, the differing columns; empty for deletes).
        fields: Vec<usize>,
    },
}

impl Outcome {
    /// True for [`Outcome::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, Outcome::Conflict { .. })
    }
}

/// Options that refine `Manual` (and the merge step of every policy that merges).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    /// Columns to ignore when comparing (e.g. generated columns): never cause
    /// a conflict; merged value = server's.
    pub ignore: &'a [usize],
    /// Columns holding a "last updated" timestamp (Prisma's `@updatedAt`):
    /// when both sides changed them, take the later value (a Null loses)
    /// instead of conflicting.
    pub latest_wins: &'a [usize],
}

/// Decides a conflict between `local` and `server` given their common `base`
/// (module doc). Total: never panics, whatever the row lengths.
pub fn resolve(
    base: Option<&[Value]>,
    local: Side<'_>,
    server: Side<'_>,
    policy: Policy,
    rules: &Rules<'_>,
) -> Outcome {
    let same = |a: Option<&[Value]>, b: Option<&[Value]>| rows_equal(a, b, rules.ignore);
    if same(local.row, server.row) {
        return Outcome::TakeServer;
    }
    // The server's row is still the base: only the node changed it, so no
    // policy has anything to choose. A push can report such a row as a
    // conflict when the node's base is known only "as of the cursor" and
    // the cursor lags the copy the row came with; `server-wins` must not
    // drop the local edit for it. (Without a base, "absent on both sides"
    // may hide a server delete, which the policies below judge.)
    if base.is_some() && same(base, server.row) {
        return Outcome::KeepLocal;
    }
    match policy {
        Policy::ServerWins => return Outcome::TakeServer,
        Policy::ClientWins => return Outcome::KeepLocal,
        Policy::LastWriteWins => {
            return match (local.changed_at, server.changed_at) {
                (Some(l), Some(s)) if time_cmp(l, s) == Ordering::Greater => Outcome::KeepLocal,
                _ => Outcome::TakeServer,
            };
        }
        Policy::Manual => {}
    }
    if same(base, server.row) {
        return Outcome::KeepLocal;
    }
    if same(base, local.row) {
        return Outcome::TakeServer;
    }
    // Past the checks above a missing side implies an existing base.
    let conflict = |kind| Outcome::Conflict {
        kind,
        fields: Vec::new(),
    };
    match (local.row, server.row) {
        (Some(l), Some(s)) => merge(base, l, s, rules),
        (None, _) => conflict(ConflictKind::DeletedLocallyChangedOnServer),
        (_, None) => conflict(ConflictKind::ChangedLocallyDeletedOnServer),
    }
}

/// The row a person chose field by field: column `i` from `local` where
/// `take_local[i]`, else from `server`. Missing choices take the server's
/// value; a column only one row has (rows are meant to be equally long) comes
/// from that row.
pub fn merge_choice(local: &[Value], server: &[Value], take_local: &[bool]) -> Vec<Value> {
    (0..local.len().max(server.len()))
        .filter_map(|i| {
            let (l, s) = (local.get(i), server.get(i));
            if take_local.get(i) == Some(&true) {
                l.or(s)
            } else {
                s.or(l)
            }
            .cloned()
        })
        .collect()
}

static NULL: Value = Value::Null;

/// Column `i` of a row, Null past its end (rows are meant to be equally long).
fn col(row: &[Value], i: usize) -> &Value {
    row.get(i).unwrap_or(&NULL)
}

fn rows_equal(a: Option<&[Value]>, b: Option<&[Value]>, ignore: &[usize]) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            (0..a.len().max(b.len())).all(|i| ignore.contains(&i) || col(a, i) == col(b, i))
        }
        _ => false,
    }
}

/// The three-way merge of two existing rows; `base` None means both inserted,
/// so every column counts as changed on both sides.
fn merge(base: Option<&[Value]>, local: &[Value], server: &[Value], rules: &Rules<'_>) -> Outcome {
    let width = local
        .len()
        .max(server.len())
        .max(base.map_or(0, <[Value]>::len));
    let mut row = Vec::with_capacity(width);
    let mut fields = Vec::new();
    for i in 0..width {
        let (l, s) = (col(local, i), col(server, i));
        let (local_changed, server_changed) =
            base.map_or((true, true), |b| (l != col(b, i), s != col(b, i)));
        let take_local = if rules.ignore.contains(&i) {
            false
        } else if local_changed && server_changed && l != s {
            if rules.latest_wins.contains(&i) {
                later(l, s)
            } else {
                fields.push(i);
                false
            }
        } else {
            local_changed
        };
        row.push(if take_local { l } else { s }.clone());
    }
    let kind = if base.is_some() {
        ConflictKind::BothChanged
    } else {
        ConflictKind::BothInserted
    };
    if !fields.is_empty() {
        Outcome::Conflict { kind, fields }
    } else if rows_equal(Some(&row), Some(server), rules.ignore) {
        Outcome::TakeServer
    } else if rows_equal(Some(&row), Some(local), rules.ignore) {
        Outcome::KeepLocal
    } else {
        Outcome::Merged(row)
    }
}

/// Whether the local value of a `latest_wins` column is strictly later than
/// the server's. A Null loses; ties and incomparable values go to the server.
fn later(local: &Value, server: &Value) -> bool {
    match (local, server) {
        (Value::Null, _) => false,
        (_, Value::Null) => true,
        (Value::Text(l), Value::Text(s)) => time_cmp(l, s) == Ordering::Greater,
        (Value::Int(l), Value::Int(s)) => l > s,
        (Value::Float(l), Value::Float(s)) => l > s,
        _ => false,
    }
}

/// Orders two timestamps: as instants when both parse (RFC 3339, or both
/// without a zone), so `…:00Z` sorts before `…:00.5Z`; else as text, which is
/// time order for outpost's canonical forms (and `-infinity`/`infinity`).
fn time_cmp(a: &str, b: &str) -> Ordering {
    if let (Ok(x), Ok(y)) = (
        DateTime::parse_from_rfc3339(a),
        DateTime::parse_from_rfc3339(b),
    ) {
        return x.cmp(&y);
    }
    let naive = |t: &str| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f");
    match (naive(a), naive(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConflictKind::*;
    use Outcome::{KeepLocal, Merged, TakeServer};
    use proptest::prelude::*;

    /// A row from words: integers become `Int`, `null` `Null`, others `Text`.
    fn row(words: &str) -> Vec<Value> {
        let value = |w: &str| match w.parse() {
            Ok(n) => Value::Int(n),
            Err(_) if w == "null" => Value::Null,
            Err(_) => Value::Text(w.into()),
        };
        words.split_whitespace().map(value).collect()
    }

    fn side(row: Option<&[Value]>) -> Side<'_> {
        side_at(row, None)
    }

    fn side_at<'a>(row: Option<&'a [Value]>, changed_at: Option<&'a str>) -> Side<'a> {
        Side { row, changed_at }
    }

    /// Resolves rows given as words (None = absent), without change times.
    fn decide(b: Option<&str>, l: Option<&str>, s: Option<&str>, p: Policy, r: Rules) -> Outcome {
        let (b, l, s) = (b.map(row), l.map(row), s.map(row));
        resolve(b.as_deref(), side(l.as_deref()), side(s.as_deref()), p, &r)
    }

    fn manual(b: Option<&str>, l: Option<&str>, s: Option<&str>) -> Outcome {
        decide(b, l, s, Policy::Manual, Rules::default())
    }

    fn conflict(kind: ConflictKind, fields: &[usize]) -> Outcome {
        let fields = fields.to_vec();
        Outcome::Conflict { kind, fields }
    }

    #[test]
    fn converged_takes_server_for_every_policy() {
        let l = [Value::Float(f64::NAN), Value::Json(r#"{"a": 1}"#.into())];
        let s = [Value::Float(f64::NAN), Value::Json(r#"{"a":1}"#.into())];
        let b = [Value::Float(0.0), Value::Null];
        for p in Policy::ALL {
            let r = Rules::default();
            assert_eq!(
                resolve(Some(&b), side(Some(&l)), side(Some(&s)), p, &r),
                TakeServer
            );
            assert_eq!(resolve(Some(&b), side(None), side(None), p, &r), TakeServer);
        }
    }

    #[test]
    fn server_wins_and_client_wins() {
        let r = Rules::default();
        let (b, l, s) = (Some("a"), Some("l"), Some("s"));
        assert_eq!(decide(b, l, s, Policy::ServerWins, r), TakeServer);
        assert_eq!(decide(b, None, s, Policy::ServerWins, r), TakeServer);
        assert_eq!(decide(b, l, s, Policy::ClientWins, r), KeepLocal);
        assert_eq!(decide(b, l, None, Policy::ClientWins, r), KeepLocal);
    }

    /// A server row that is still the base was changed by no one but the
    /// node: every policy keeps the local edit (a push's conflict against
    /// an unchanged row, when the node's base was only "as of the cursor").
    /// Without a base, "absent on both sides" stays the policy's call.
    #[test]
    fn an_unchanged_server_row_keeps_the_local_edit_under_every_policy() {
        let r = Rules::default();
        for p in Policy::ALL {
            assert_eq!(
                decide(Some("a"), Some("l"), Some("a"), p, r),
                KeepLocal,
                "{p:?}"
            );
            assert_eq!(decide(Some("a"), None, Some("a"), p, r), KeepLocal, "{p:?}");
        }
        assert_eq!(
            decide(None, Some("l"), None, Policy::ServerWins, r),
            TakeServer
        );
    }

    #[test]
    fn last_write_wins_strictly_newer_local_else_server() {
        let (l, s) = (row("l"), row("s"));
        let lww = |lt, st| {
            let (local, server) = (side_at(Some(&l), lt), side_at(Some(&s), st));
            resolve(
                None,
                local,
                server,
                Policy::LastWriteWins,
                &Rules::default(),
            )
        };
        let (early, late) = (
            Some("2024-05-01T10:00:00.000000Z"),
            Some("2024-05-01T10:00:00.000001Z"),
        );
        assert_eq!(lww(late, early), KeepLocal);
        assert_eq!(lww(early, late), TakeServer);
        assert_eq!(lww(late, late), TakeServer, "a tie goes to the server");
        assert_eq!(lww(late, None), TakeServer);
        assert_eq!(lww(None, early), TakeServer);
        // Shorter ISO text compares as time, not as text ('Z' > '.').
        assert_eq!(
            lww(Some("2024-05-01T10:00:00.5Z"), Some("2024-05-01T10:00:00Z")),
            KeepLocal
        );
        assert_eq!(
            lww(Some("2024-05-01T10:00:00Z"), Some("2024-05-01T10:00:00.5Z")),
            TakeServer
        );
    }

    #[test]
    fn one_side_untouched_loses() {
        let (b, x) = (Some("a b"), Some("x b"));
        assert_eq!(manual(b, x, b), KeepLocal);
        assert_eq!(manual(b, None, b), KeepLocal, "a local delete is pushed");
        assert_eq!(manual(b, b, x), TakeServer);
        assert_eq!(manual(b, b, None), TakeServer, "a server delete is taken");
        assert_eq!(manual(None, None, x), TakeServer, "a server insert");
        assert_eq!(manual(None, x, None), KeepLocal, "a local insert");
    }

    #[test]
    fn field_disjoint_edits_merge() {
        let (b, l, s) = (
            Some("1 title body"),
            Some("1 new body"),
            Some("1 title fresh"),
        );
        assert_eq!(manual(b, l, s), Merged(row("1 new fresh")));
        // One side's edits contain the other's: the canonical outcome, not Merged.
        assert_eq!(manual(b, l, Some("1 new fresh")), TakeServer);
        assert_eq!(manual(b, Some("1 new fresh"), s), KeepLocal);
    }

    #[test]
    fn same_field_edits_conflict() {
        assert_eq!(
            manual(Some("a b c"), Some("L b L"), Some("S S S")),
            conflict(BothChanged, &[0, 2])
        );
        assert_eq!(
            manual(Some("a b c"), Some("X b L"), Some("X S c")),
            Merged(row("X S L"))
        );
    }

    #[test]
    fn both_inserted_conflicts_on_differing_fields() {
        assert_eq!(
            manual(None, Some("7 l x"), Some("7 s x")),
            conflict(BothInserted, &[1])
        );
    }

    #[test]
    fn delete_vs_edit_conflicts() {
        assert_eq!(
            manual(Some("a"), None, Some("s")),
            conflict(DeletedLocallyChangedOnServer, &[])
        );
    }

    #[test]
    fn edit_vs_delete_conflicts() {
        assert_eq!(
            manual(Some("a"), Some("l"), None),
            conflict(ChangedLocallyDeletedOnServer, &[])
        );
    }

    #[test]
    fn latest_wins_takes_the_later_timestamp() {
        let r = Rules {
            ignore: &[],
            latest_wins: &[1],
        };
        let b = Some("a 2024-01-01 c");
        let l = Some("L 2024-01-02 c");
        let out = decide(b, l, Some("S 2024-01-03 c"), Policy::Manual, r);
        assert_eq!(
            out,
            conflict(BothChanged, &[0]),
            "only the timestamp is forgiven"
        );
        assert_eq!(
            decide(b, l, Some("a 2024-01-03 S"), Policy::Manual, r),
            Merged(row("L 2024-01-03 S"))
        );
        assert_eq!(
            decide(b, l, Some("a null S"), Policy::Manual, r),
            Merged(row("L 2024-01-02 S")),
            "a Null loses"
        );
        // Both inserted, differing only in the timestamp: the later row.
        assert_eq!(
            decide(None, l, Some("L 2024-01-01 c"), Policy::Manual, r),
            KeepLocal
        );
    }

    #[test]
    fn ignored_columns_never_conflict_and_take_the_server_value() {
        let r = Rules {
            ignore: &[1],
            latest_wins: &[],
        };
        let (b, l) = (Some("a 0 c"), Some("L 1 c"));
        assert_eq!(
            decide(b, l, Some("a 2 S"), Policy::Manual, r),
            Merged(row("L 2 S"))
        );
        assert_eq!(
            decide(b, l, Some("L 9 c"), Policy::ClientWins, r),
            TakeServer,
            "converged"
        );
        assert_eq!(
            decide(b, l, Some("a 9 c"), Policy::Manual, r),
            KeepLocal,
            "server untouched"
        );
    }

    #[test]
    fn merge_choice_takes_chosen_fields_and_defaults_to_server() {
        let (l, s) = (row("l0 l1 l2"), row("s0 s1 s2"));
        assert_eq!(merge_choice(&l, &s, &[true, false, true]), row("l0 s1 l2"));
        assert_eq!(merge_choice(&l, &s, &[false, true]), row("s0 l1 s2"));
        assert_eq!(merge_choice(&l, &s[..1], &[false, true]), row("s0 l1 l2"));
    }

    #[test]
    fn policy_names_round_trip() {
        for p in Policy::ALL {
            assert_eq!(p.to_string().parse::<Policy>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        assert_eq!(Policy::default(), Policy::Manual);
        let err = "SERVER_WINS".parse::<Policy>().unwrap_err();
        assert!(err.to_string().contains("last-write-wins"), "{err}");
    }

    /// A base row and two edits of it (each column changed with p = 0.4 to a
    /// small value, so equal edits happen), each row possibly absent.
    #[derive(Debug, Clone)]
    struct Case {
        rows: [Option<Vec<Value>>; 3],
        times: (Option<&'static str>, Option<&'static str>),
        latest_wins: Vec<usize>,
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            (0i64..3).prop_map(Value::Int),
            prop::sample::select(vec!["a", "b"]).prop_map(|s| Value::Text(s.into()))
        ]
    }

    fn edit(base: Vec<Value>) -> impl Strategy<Value = Option<Vec<Value>>> {
        let edited = prop::collection::vec(prop::option::weighted(0.4, value()), base.len())
            .prop_map(move |e| {
                base.iter()
                    .zip(e)
                    .map(|(b, e)| e.unwrap_or_else(|| b.clone()))
                    .collect()
            });
        prop::option::weighted(0.85, edited)
    }

    fn case() -> impl Strategy<Value = Case> {
        let time = || {
            prop::option::of(prop::sample::select(vec![
                "2024-01-01T00:00:00Z",
                "2024-01-01T00:00:00.5Z",
            ]))
        };
        let base = (3usize..=6).prop_flat_map(|n| prop::collection::vec(value(), n));
        base.prop_flat_map(move |b| {
            let cols: Vec<usize> = (0..b.len()).collect();
            let rows = (
                prop::option::weighted(0.85, Just(b.clone())),
                edit(b.clone()),
                edit(b),
            );
            let latest = prop::sample::subsequence(cols, 0..=1);
            (rows, (time(), time()), latest).prop_map(|((b, l, s), times, latest_wins)| Case {
                rows: [b, l, s],
                times,
                latest_wins,
            })
        })
    }

    /// Resolves the case's base against the given local and server rows.
    fn run(c: &Case, local: Option<&[Value]>, server: Option<&[Value]>, p: Policy) -> Outcome {
        let rules = Rules {
            ignore: &[],
            latest_wins: &c.latest_wins,
        };
        let (l, s) = (side_at(local, c.times.0), side_at(server, c.times.1));
        resolve(c.rows[0].as_deref(), l, s, p, &rules)
    }

    proptest! {
        #[test]
        fn resolve_is_total_and_equal_sides_take_server(c in case()) {
            let [_, l, s] = &c.rows;
            for p in Policy::ALL {
                let _ = run(&c, l.as_deref(), s.as_deref(), p);
                prop_assert_eq!(run(&c, l.as_deref(), l.as_deref(), p), TakeServer);
            }
        }

        #[test]
        fn manual_merges_and_conflicts_exactly(c in case()) {
            let out = run(&c, c.rows[1].as_deref(), c.rows[2].as_deref(), Policy::Manual);
            let [Some(b), Some(l), Some(s)] = &c.rows else { return Ok(()) };
            let (lc, sc) = (|i: usize| l[i] != b[i], |i: usize| s[i] != b[i]);
            let clashes: Vec<usize> =
                (0..b.len()).filter(|&i| lc(i) && sc(i) && l[i] != s[i] && !c.latest_wins.contains(&i)).collect();
            match &out {
                Outcome::Conflict { kind, fields } => {
                    prop_assert_eq!(*kind, BothChanged);
                    prop_assert_eq!(fields, &clashes);
                }
                other => prop_assert!(clashes.is_empty(), "{:?} despite clashes {:?}", other, clashes),
            }
            if let Merged(m) = out {
                for i in 0..b.len() {
                    prop_assert!(m[i] == l[i] || m[i] == s[i]);
                    if !c.latest_wins.contains(&i) {
                        prop_assert!((!lc(i) || m[i] == l[i]) && (!sc(i) || m[i] == s[i]));
                    }
                }
            }
        }

        #[test]
        fn untouched_side_loses(c in case()) {
            let [b, l, s] = &c.rows;
            let keep = if b == l { TakeServer } else { KeepLocal };
            prop_assert_eq!(run(&c, l.as_deref(), b.as_deref(), Policy::Manual), keep);
            prop_assert_eq!(run(&c, b.as_deref(), s.as_deref(), Policy::Manual), TakeServer);
        }
    }
}
