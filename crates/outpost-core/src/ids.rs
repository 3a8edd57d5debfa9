//! Newtypes for the numbers and names a sync passes around, so that a
//! version is never mistaken for a sequence number and a row's status is
//! never a string compared with literals.
//!
//! * [`Version`]: a server row's version, the `seq` of its latest change in
//!   `outpost.changes` (0: unchanged since tracking began).
//! * [`LocalSeq`]: a replica's local change number (`_outpost_rows.local_seq`),
//!   increasing with every captured local write.
//! * [`NodeId`]: a node's identity (a UUID stored in its replica file and
//!   written as `origin` by its pushes).
//! * [`RowStatus`]: a replicated row's sync status (`_outpost_rows.status`).
//! * [`ReplicaState`]: where a whole replica stands (bootstrap or ready).
//!
//! Each converts to and from its stored form (`i64`, text) at the storage
//! boundary only; the SQLite and PostgreSQL conversions live in the crates
//! that own those drivers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A server row's version: the `seq` of its latest change (0 for a row not
/// changed since tracking began).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Version(pub i64);

impl Version {
    /// A row never changed since tracking began.
    pub const UNCHANGED: Version = Version(0);

    /// The stored form.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i64> for Version {
    fn from(v: i64) -> Version {
        Version(v)
    }
}

/// A replica's local change number: every captured local write takes the
/// next one, so a higher number is a later edit on that replica.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LocalSeq(pub i64);

impl LocalSeq {
    /// The stored form.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for LocalSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i64> for LocalSeq {
    fn from(v: i64) -> LocalSeq {
        LocalSeq(v)
    }
}

/// A node's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub Uuid);

impl NodeId {
    /// A new random node id.
    pub fn new_random() -> NodeId {
        NodeId(Uuid::new_v4())
    }

    /// The UUID.
    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for NodeId {
    type Err = String;

    fn from_str(s: &str) -> Result<NodeId, String> {
        Uuid::parse_str(s)
            .map(NodeId)
            .map_err(|e| format!("not a node id {s:?}: {e}"))
    }
}

impl From<Uuid> for NodeId {
    fn from(u: Uuid) -> NodeId {
        NodeId(u)
    }
}

/// Defines a string-stored enum: `as_str`, `Display`, `FromStr`, serde as
/// the stored spelling.
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<$name, String> {
                match s {
                    $( $text => Ok($name::$variant), )*
                    other => Err(format!(
                        concat!("unknown ", stringify!($name), " {:?}: expected one of {}"),
                        other,
                        [$($text),*].join(", ")
                    )),
                }
            }
        }
    };
}

stored_enum! {
    /// A replicated row's sync status, as stored in `_outpost_rows.status`
    /// and shown as `syncStatus`. A row with no entry is synced as of the
    /// cursor.
    pub enum RowStatus {
        /// The replica holds the server's version.
        Synced => "SYNCED",
        /// Changed locally, waiting to be pushed.
        Pending => "PENDING",
        /// Changed on both sides; a person or a policy decides. Never pushed
        /// until resolved.
        Conflict => "CONFLICT",
        /// The server refused the change; its message is kept.
        Failed => "FAILED",
    }
}

stored_enum! {
    /// Where a replica stands, as stored in `_outpost_cursor.state`.
    pub enum ReplicaState {
        /// Never bootstrapped.
        Empty => "EMPTY",
        /// A bootstrap started and has not finished: the replica holds no
        /// consistent copy and does not claim to be synced.
        Bootstrapping => "BOOTSTRAPPING",
        /// Bootstrapped; the cursor says how far it has pulled.
        Ready => "READY",
    }
}

impl RowStatus {
    /// Whether a row in this status has a local change not yet on the
    /// server (everything but `SYNCED`).
    pub fn is_dirty(self) -> bool {
        self != RowStatus::Synced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_their_stored_spelling() {
        for s in RowStatus::ALL {
            assert_eq!(s.as_str().parse::<RowStatus>(), Ok(*s));
            assert_eq!(
                serde_json::to_string(s).ok(),
                Some(format!("\"{}\"", s.as_str()))
            );
        }
        for s in ReplicaState::ALL {
            assert_eq!(s.as_str().parse::<ReplicaState>(), Ok(*s));
        }
        assert!("synced".parse::<RowStatus>().is_err());
        assert!(
            "DONE"
                .parse::<ReplicaState>()
                .is_err_and(|e| e.contains("EMPTY, BOOTSTRAPPING, READY"))
        );
    }

    #[test]
    fn numbers_serialize_as_plain_integers() {
        assert_eq!(
            serde_json::to_string(&Version(7)).ok().as_deref(),
            Some("7")
        );
        assert_eq!(
            serde_json::to_string(&LocalSeq(-3)).ok().as_deref(),
            Some("-3")
        );
        assert!(Version(2) > Version(1));
        assert!(RowStatus::Pending.is_dirty() && !RowStatus::Synced.is_dirty());
    }
}
