//! Rate limits shared between the gateways of one database.
//!
//! Each gateway limits a principal with its own GCRA buckets
//! ([`crate::ops::Limiter`]), checked in memory on every request. Behind a
//! load balancer with N gateways that alone would let a principal reach N
//! times its rate, so every [`crate::Options::rate_share`] (1 s by
//! default) each gateway adds the requests it let through per principal
//! to its rows of `outpost.gateway_usage` (an unlogged table: counts are
//! worth nothing after a server crash) and reads the rows the other
//! gateways changed since, taking what they let through out of its own
//! buckets. A principal's total across gateways is then its rate, give or
//! take what the gateways let through between two exchanges (at most one
//! burst each). The request path never waits for the database; when the
//! database is out of reach the counts wait for the next exchange and
//! each gateway goes on limiting by its own.
//!
//! A gateway's rows carry a random id of the process, so a restarted
//! gateway starts afresh; rows idle for [`FORGET_AFTER`] are deleted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use outpost_remote::RemoteError;

use crate::Gateway;
use crate::pool::Pool;

/// Rows (and the counts remembered of them) idle this long are dropped.
const FORGET_AFTER: Duration = Duration::from_secs(600);

const CREATE: &str = "CREATE UNLOGGED TABLE IF NOT EXISTS \"outpost\".\"gateway_usage\" (\
     gateway text NOT NULL, principal text NOT NULL, used bigint NOT NULL, \
     at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (gateway, principal))";

/// Creates the table (two gateways starting together may race on
/// `IF NOT EXISTS`: the loser's error is taken as done).
async fn prepare(pool: &Pool) -> Result<(), RemoteError> {
    let mut pooled = pool.get().await?;
    let done = pooled.conn().client.batch_execute(CREATE).await;
    match done {
        Ok(()) => {}
        Err(e)
            if e.code().is_some_and(|c| {
                *c == outpost_remote::tokio_postgres::error::SqlState::UNIQUE_VIOLATION
                    || *c == outpost_remote::tokio_postgres::error::SqlState::DUPLICATE_TABLE
            }) => {}
        Err(e) => return Err(RemoteError::db("creating outpost.gateway_usage", e)),
    }
    pooled.release();
    Ok(())
}

/// What this gateway remembers of the others' rows.
#[derive(Default)]
struct Seen {
    /// The count last read per (gateway, principal), and when.
    counts: HashMap<(String, String), (i64, Instant)>,
    /// Whether the first read is done: rows that exist before it are
    /// taken as a baseline, not as requests to take.
    primed: bool,
    exchanges: u64,
}

/// Publishes `used`, then reads the others' rows changed lately; returns
/// what they let through per principal since the last read.
async fn exchange(
    pool: &Pool,
    me: &str,
    used: &HashMap<String, u64>,
    window: Duration,
    seen: &mut Seen,
) -> Result<HashMap<String, u64>, RemoteError> {
    let mut pooled = pool.get().await?;
    let client = &pooled.conn().client;
    if !used.is_empty() {
        let principals: Vec<&str> = used.keys().map(String::as_str).collect();
        let counts: Vec<i64> = used
            .values()
            .map(|n| i64::try_from(*n).unwrap_or(i64::MAX))
            .collect();
        client
            .execute(
                "INSERT INTO \"outpost\".\"gateway_usage\" AS u (gateway, principal, used) \
                 SELECT $1, p, n FROM unnest($2::text[], $3::int8[]) AS t(p, n) \
                 ON CONFLICT (gateway, principal) DO UPDATE SET used = u.used + excluded.used, at = now()",
                &[&me, &principals, &counts],
            )
            .await
            .map_err(|e| RemoteError::db("sharing the rate limits' counts", e))?;
    }
    let rows = client
        .query(
            "SELECT gateway, principal, used FROM \"outpost\".\"gateway_usage\" \
             WHERE gateway <> $1 AND at > now() - make_interval(secs => $2)",
            &[&me, &window.as_secs_f64()],
        )
        .await
        .map_err(|e| RemoteError::db("reading the other gateways' counts", e))?;
    seen.exchanges += 1;
    if seen.exchanges.is_multiple_of(60) {
        client
            .execute(
                "DELETE FROM \"outpost\".\"gateway_usage\" WHERE at < now() - make_interval(secs => $1)",
                &[&FORGET_AFTER.as_secs_f64()],
            )
            .await
            .map_err(|e| RemoteError::db("forgetting idle rate limit counts", e))?;
    }
    pooled.release();
    let now = Instant::now();
    let mut take: HashMap<String, u64> = HashMap::new();
    for row in rows {
        let (gateway, principal, count): (String, String, i64) =
            (row.get(0), row.get(1), row.get(2));
        let last = seen
            .counts
            .insert((gateway, principal.clone()), (count, now))
            .map(|(c, _)| c);
        // A row seen for the first time after the first read counts whole
        // (it was created by the exchange that carried its first
        // requests); a count that went down is a row deleted and created
        // again.
        let delta = match last {
            None if !seen.primed => 0,
            None => count,
            Some(last) if count < last => count,
            Some(last) => count - last,
        };
        if delta > 0 {
            *take.entry(principal).or_default() += delta as u64;
        }
    }
    seen.primed = true;
    seen.counts
        .retain(|_, (_, at)| now.duration_since(*at) < FORGET_AFTER);
    Ok(take)
}

/// The exchange loop, every [`crate::Options::rate_share`] until the
/// gateway shuts down (only with a rate limit).
pub(crate) async fn share(gateway: Gateway) {
    let inner = &gateway.inner;
    let Some(limiter) = &inner.limiter else {
        return;
    };
    let every = inner.options.rate_share;
    // Rows changed within three periods: an exchange that ran late still
    // finds what the others published meanwhile.
    let window = every * 3 + Duration::from_secs(1);
    let me = uuid::Uuid::new_v4().to_string();
    let mut seen = Seen::default();
    let mut prepared = false;
    let mut failing = false;
    loop {
        tokio::select! {
            () = inner.cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if !prepared {
            match prepare(&inner.pool).await {
                Ok(()) => prepared = true,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "rate limits are not shared with other gateways for now: each counts its own");
                        failing = true;
                    }
                    continue;
                }
            }
        }
        let used = limiter.drain_used();
        match exchange(&inner.pool, &me, &used, window, &mut seen).await {
            Ok(others) => {
                if failing {
                    tracing::info!("rate limits are shared with the other gateways again");
                    failing = false;
                }
                for (principal, n) in others {
                    limiter.take(&principal, n);
                }
            }
            Err(e) => {
                limiter.restore_used(used);
                if !failing {
                    tracing::warn!(error = %e, "rate limits are not shared with other gateways for now: each counts its own");
                    failing = true;
                }
            }
        }
    }
}
