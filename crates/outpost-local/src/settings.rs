//! Settings every connection to the replica file uses. Its own module so
//! that the error type and the file's code both read them without importing
//! each other.

use std::time::Duration;

/// How long a writer waits for another connection's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
