//! Settings every connection to the replica file uses. Its own module so
//! that the error type and the file's code both read them without importing
//! each other.

use std::time::Duration;

/// How long a writer waits for another connection's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a waiting writer looks at the lock again.
const BUSY_POLL: Duration = Duration::from_micros(250);

std::thread_local! {
    /// Set while a statement of this thread must not wait for the lock
    /// ([`without_waiting`]); the busy handler runs on the calling thread.
    static NO_WAIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The busy handler of every replica connection ([`wait_when_busy`]).
/// SQLite's own handler backs off to 50 and 100 ms sleeps. Against an
/// application committing in a loop (the lock free for microseconds
/// between its transactions) a sleeper that wakes that rarely almost never
/// finds it free: an acknowledgement of 41 rows waited 780 ms behind a
/// writer's 7,700 commits a second (B11). Looking every 250 µs finds a gap
/// within a few milliseconds, for the same total wait.
/// `started` is when the current wait began (SQLite numbers the attempts
/// of one wait from 0).
fn busy_wait(started: &mut std::time::Instant, attempt: i32) -> bool {
    if NO_WAIT.with(std::cell::Cell::get) {
        return false;
    }
    if attempt == 0 {
        *started = std::time::Instant::now();
    } else if started.elapsed() >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

/// Makes `conn` wait for another connection's lock as [`busy_wait`] does,
/// up to [`BUSY_TIMEOUT`].
pub(crate) fn wait_when_busy(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    let mut started = std::time::Instant::now();
    conn.busy_handler(Some(move |attempt| busy_wait(&mut started, attempt)))
}

/// Runs `f` with this thread's statements giving up at once when the file
/// is locked, instead of waiting.
pub(crate) fn without_waiting<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            NO_WAIT.with(|w| w.set(false));
        }
    }
    NO_WAIT.with(|w| w.set(true));
    let _reset = Reset;
    f()
}
