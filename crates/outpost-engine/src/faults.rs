//! Fault points: named places where a test stops a sync run as a crash or
//! a lost reply would. Compiled in only with the `faults` cargo feature
//! (the test crates enable it through their dev-dependencies): a release
//! build has no fault point, ignores `OUTPOST_FAULT` and has no
//! `Engine::arm_fault`.

use std::str::FromStr;

use crate::error::EngineError;

/// A place in a sync run where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultPoint {
    /// After the first chunk of a table's bootstrap copy was written.
    BootstrapMidTable,
    /// Before a push batch is sent.
    PushBeforeSend,
    /// After the server committed a push batch, before the replica
    /// recorded its outcome (a lost reply).
    PushAfterCommit,
    /// Before a sent batch's outcomes are taken into the replica. The push
    /// is pipelined: the next batch is on its way to the server meanwhile,
    /// so a failure here leaves two batches committed and unacknowledged.
    PushBeforeAck,
    /// Before a pulled batch is applied.
    PullBeforeApply,
}

impl FaultPoint {
    /// Every point.
    pub const ALL: [FaultPoint; 5] = [
        FaultPoint::BootstrapMidTable,
        FaultPoint::PushBeforeSend,
        FaultPoint::PushAfterCommit,
        FaultPoint::PushBeforeAck,
        FaultPoint::PullBeforeApply,
    ];

    /// The name used in `OUTPOST_FAULT=crash:<name>`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultPoint::BootstrapMidTable => "bootstrap-mid-table",
            FaultPoint::PushBeforeSend => "push-before-send",
            FaultPoint::PushAfterCommit => "push-after-commit",
            FaultPoint::PushBeforeAck => "push-before-ack",
            FaultPoint::PullBeforeApply => "pull-before-apply",
        }
    }
}

impl FromStr for FaultPoint {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultPoint, String> {
        FaultPoint::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown fault point {s:?}"))
    }
}

/// The armed faults of one engine.
#[cfg(feature = "faults")]
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Points that fail with an error once (consumed).
    fail_once: std::sync::Mutex<std::collections::BTreeSet<FaultPoint>>,
    /// A point where the process aborts (`OUTPOST_FAULT=crash:<point>`).
    crash: Option<FaultPoint>,
}

#[cfg(feature = "faults")]
impl Faults {
    pub(crate) fn from_env() -> Faults {
        Faults::from_var(std::env::var("OUTPOST_FAULT").ok())
    }

    /// From the value of `OUTPOST_FAULT`.
    pub(crate) fn from_var(value: Option<String>) -> Faults {
        let crash = value.and_then(|v| v.strip_prefix("crash:").and_then(|p| p.parse().ok()));
        Faults {
            crash,
            ..Faults::default()
        }
    }

    pub(crate) fn arm(&self, point: FaultPoint) {
        if let Ok(mut s) = self.fail_once.lock() {
            s.insert(point);
        }
    }

    pub(crate) fn hit(&self, point: FaultPoint) -> Result<(), EngineError> {
        if self.crash == Some(point) {
            // As abrupt as kill -9: no destructors, no flushing.
            std::process::abort();
        }
        let fired = self
            .fail_once
            .lock()
            .map(|mut s| s.remove(&point))
            .unwrap_or(false);
        if fired {
            return Err(EngineError::Internal(format!(
                "fault injected at {}",
                point.as_str()
            )));
        }
        Ok(())
    }
}

/// Without the `faults` feature: no state, every point passes.
#[cfg(not(feature = "faults"))]
#[derive(Debug, Default)]
pub(crate) struct Faults;

#[cfg(not(feature = "faults"))]
impl Faults {
    pub(crate) fn from_env() -> Faults {
        Faults::from_var(std::env::var("OUTPOST_FAULT").ok())
    }

    /// `OUTPOST_FAULT` is read and ignored.
    pub(crate) fn from_var(_value: Option<String>) -> Faults {
        Faults
    }

    #[inline(always)]
    pub(crate) fn hit(&self, _point: FaultPoint) -> Result<(), EngineError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_by_name() {
        for p in FaultPoint::ALL {
            assert_eq!(p.as_str().parse::<FaultPoint>(), Ok(p));
        }
        assert!("nowhere".parse::<FaultPoint>().is_err());
    }

    /// A build without the feature (as a release build is) ignores
    /// `OUTPOST_FAULT`: hitting the named point neither aborts this process
    /// nor fails. Runs with `cargo test -p outpost-engine --lib` (no
    /// features; `.ci/run` does).
    #[cfg(not(feature = "faults"))]
    #[test]
    fn a_build_without_the_feature_ignores_outpost_fault() {
        for point in FaultPoint::ALL {
            let faults = Faults::from_var(Some(format!("crash:{}", point.as_str())));
            assert!(faults.hit(point).is_ok());
        }
        let faults = Faults::from_env();
        for p in FaultPoint::ALL {
            assert!(faults.hit(p).is_ok());
        }
        assert_eq!(
            std::mem::size_of::<Faults>(),
            0,
            "no fault state compiled in"
        );
    }
}
