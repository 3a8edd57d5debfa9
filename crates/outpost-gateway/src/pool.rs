//! A bounded pool of PostgreSQL connections, each with the pull's prepared
//! statements kept on it.
//!
//! Why not deadpool-postgres: its manager builds connections from a
//! `tokio_postgres::Config` and a TLS connector of its own, and outpost's
//! connections are made in one place, `outpost_remote::connect`, which
//! carries libpq's `sslmode`/`sslrootcert` rules over rustls, the keepalive
//! and `tcp_user_timeout` defaults and the error classes. A semaphore and
//! an idle list over that function keep every one of those rules and add
//! no dependency.
//!
//! A connection goes back to the pool only when the request that held it
//! finished ([`Pooled::release`]); one dropped mid-request (the node went
//! away, an error) is closed, so no half-done transaction or copy is ever
//! handed to the next request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_core::config::DatabaseUrl;
use outpost_remote::RemoteError;
use outpost_remote::feed::PullStatements;
use outpost_remote::tokio_postgres::Client;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One pooled connection.
pub struct Conn {
    /// The driver's client.
    pub client: Client,
    /// The pull's statements prepared on it.
    pub statements: PullStatements,
}

struct Inner {
    url: DatabaseUrl,
    settings: String,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
    size: usize,
}

/// The pool. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// A connection taken from the pool.
pub struct Pooled {
    conn: Conn,
    pool: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    /// A pool of at most `size` connections to `url`, each set up with
    /// `settings` (the session's limits); connecting is bounded by
    /// `timeout`.
    pub fn new(url: DatabaseUrl, size: usize, settings: String, timeout: Duration) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                url,
                settings,
                timeout,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(size.max(1))),
                size: size.max(1),
            }),
        }
    }

    /// The settings every session starts with.
    pub fn settings(&self) -> &str {
        &self.inner.settings
    }

    /// The largest number of connections.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Connections serving a request now (a permit is held while one is
    /// in use, or being opened).
    pub fn in_use(&self) -> usize {
        self.inner
            .size
            .saturating_sub(self.inner.permits.available_permits())
    }

    /// Connections open now (idle plus in use).
    pub fn open(&self) -> usize {
        let idle = self.inner.idle.lock().map(|v| v.len()).unwrap_or(0);
        idle + (self.inner.size - self.inner.permits.available_permits())
    }

    /// A connection: an idle one that is still open, else a new one. Waits
    /// for a free slot at most `timeout`.
    pub async fn get(&self) -> Result<Pooled, RemoteError> {
        let permit = tokio::time::timeout(
            self.inner.timeout,
            self.inner.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| RemoteError::Unreachable {
            server: "the gateway's pool".into(),
            reason: format!(
                "all {} connections busy for {} ms",
                self.inner.size,
                self.inner.timeout.as_millis()
            ),
            auth: false,
        })?
        .map_err(|_| RemoteError::Unreachable {
            server: "the gateway's pool".into(),
            reason: "the pool is closed".into(),
            auth: false,
        })?;
        loop {
            let idle = self.inner.idle.lock().ok().and_then(|mut v| v.pop());
            match idle {
                Some(c) if !c.client.is_closed() => {
                    return Ok(Pooled {
                        conn: c,
                        pool: self.inner.clone(),
                        _permit: permit,
                    });
                }
                Some(_) => continue,
                None => break,
            }
        }
        let client = outpost_remote::connect(&self.inner.url, self.inner.timeout).await?;
        match tokio::time::timeout(
            self.inner.timeout,
            client.batch_execute(&self.inner.settings),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(RemoteError::db("setting the session's limits", e)),
            Err(_) => {
                return Err(RemoteError::Unreachable {
                    server: self.inner.url.redacted(),
                    reason: "setting the session's limits: no answer".into(),
                    auth: false,
                });
            }
        }
        Ok(Pooled {
            conn: Conn {
                client,
                statements: PullStatements::default(),
            },
            pool: self.inner.clone(),
            _permit: permit,
        })
    }
}

impl Pooled {
    /// The connection.
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Returns the connection to the pool: the request finished cleanly.
    /// (Dropping a `Pooled` instead closes its connection.)
    pub fn release(self) {
        let Pooled {
            conn,
            pool,
            _permit,
        } = self;
        if !conn.client.is_closed()
            && let Ok(mut idle) = pool.idle.lock()
        {
            idle.push(conn);
        }
    }
}
