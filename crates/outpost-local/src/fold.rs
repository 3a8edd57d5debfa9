//! Folding the capture log: the triggers append every local write to
//! `_outpost_changes`, and this folds the log into `_outpost_rows`, one entry
//! per row, before anything reads the entries (`outpost_core::sqlite`,
//! "Capture triggers and the change log").

use outpost_core::sqlite;
use rusqlite::Connection;

use crate::error::LocalError;
use crate::settings::without_waiting;

/// Folds the capture log into `_outpost_rows` (`outpost_core::sqlite`,
/// "Capture triggers and the change log"); returns how many entries it
/// wrote. Inside a transaction it folds in it; outside, in its own
/// `BEGIN IMMEDIATE` one. Nothing to fold costs one indexed read and
/// takes no write lock.
pub(crate) fn fold(conn: &Connection) -> Result<usize, LocalError> {
    fold_with(conn, true)
}

/// [`fold`] for a read (a status, a listing, a query): when another
/// connection holds the write lock, it does not wait for it and reads
/// without the changes logged since the last fold, rather than block a
/// status page behind an application's long transaction. Decisions (pull,
/// push, resolve) always fold first in their own write transaction.
pub(crate) fn fold_for_read(conn: &Connection) -> Result<usize, LocalError> {
    fold_with(conn, false)
}

/// The last folded and the newest logged change numbers: two index reads.
pub(crate) const UNFOLDED: &str = "SELECT (SELECT seq FROM \"_outpost_local_seq\" WHERE id = 1), \
     (SELECT max(local_seq) FROM \"_outpost_changes\")";

/// Drops the folded log rows but the newest (which keeps the rowid
/// sequence growing): a rowid range.
pub(crate) const DELETE_FOLDED: &str = "DELETE FROM \"_outpost_changes\" WHERE local_seq < ?1";

fn fold_with(conn: &Connection, wait: bool) -> Result<usize, LocalError> {
    let unfolded = |conn: &Connection| -> Result<Option<(i64, i64)>, LocalError> {
        let (folded, newest): (i64, Option<i64>) = conn
            .prepare_cached(UNFOLDED)
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(LocalError::sqlite("reading the change log"))?;
        Ok(newest.filter(|n| *n > folded).map(|n| (folded, n)))
    };
    if unfolded(conn)?.is_none() {
        return Ok(0);
    }
    let own = conn.is_autocommit();
    if own {
        let begun = if wait {
            conn.execute_batch("BEGIN IMMEDIATE")
        } else {
            without_waiting(|| conn.execute_batch("BEGIN IMMEDIATE"))
        };
        match begun.map_err(LocalError::sqlite("starting to fold the change log")) {
            Err(LocalError::Locked { .. }) if !wait => {
                tracing::debug!("replica busy: read without folding the change log");
                return Ok(0);
            }
            other => other?,
        }
    }
    let folded = (|| {
        // Read again: another writer may have appended before the lock.
        let Some((folded, newest)) = unfolded(conn)? else {
            return Ok(0);
        };
        let err = || LocalError::sqlite("folding the change log");
        let n = conn
            .prepare_cached(sqlite::FOLD_CHANGES)
            .and_then(|mut s| s.execute([folded]))
            .map_err(err())?;
        conn.prepare_cached(DELETE_FOLDED)
            .and_then(|mut s| s.execute([newest]))
            .map_err(err())?;
        conn.prepare_cached("UPDATE \"_outpost_local_seq\" SET seq = ?1 WHERE id = 1")
            .and_then(|mut s| s.execute([newest]))
            .map_err(err())?;
        Ok(n)
    })();
    if own {
        match &folded {
            Ok(_) => conn
                .execute_batch("COMMIT")
                .map_err(LocalError::sqlite("committing the folded change log"))?,
            Err(_) => {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
    }
    folded
}
