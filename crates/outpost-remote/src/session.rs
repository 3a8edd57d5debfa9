//! Long-lived connections the node keeps, as types that hold their driver:
//! [`Listener`], the monitor's `LISTEN outpost_changes` connection, which is
//! also its probe of the server. The node never holds a driver client
//! itself; every round trip here is bounded by the caller's deadline.

use std::time::Duration;

use futures_util::StreamExt as _;
use outpost_core::config::DatabaseUrl;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client};

use crate::error::RemoteError;

/// The channel the server's change triggers notify (`outpost.notify()`).
pub const CHANGES_CHANNEL: &str = "outpost_changes";

/// A connection listening for change notifications. Dropping it closes the
/// connection and stops its driver task.
pub struct Listener {
    client: Client,
    notes: mpsc::UnboundedReceiver<()>,
    driver: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Connects and runs `LISTEN`, each within `timeout`.
    pub async fn open(url: &DatabaseUrl, timeout: Duration) -> Result<Listener, RemoteError> {
        let (client, mut connection) = crate::connect::connect_raw(url, timeout).await?;
        let (tx, notes) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(msg) = messages.next().await {
                match msg {
                    Ok(AsyncMessage::Notification(_)) => {
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        let listener = Listener {
            client,
            notes,
            driver,
        };
        let sql = format!("LISTEN {CHANGES_CHANNEL}");
        match tokio::time::timeout(timeout, listener.client.batch_execute(&sql)).await {
            Ok(Ok(())) => Ok(listener),
            Ok(Err(e)) => Err(RemoteError::db("listening for changes", e)),
            Err(_) => Err(RemoteError::Unreachable {
                server: url.redacted(),
                reason: format!(
                    "listening for changes: no answer within {} ms",
                    timeout.as_millis()
                ),
            }),
        }
    }

    /// The next notification; `None` when the connection ended.
    pub async fn notified(&mut self) -> Option<()> {
        self.notes.recv().await
    }

    /// Drops the notifications that arrived meanwhile (one sync covers
    /// them all).
    pub fn drain(&mut self) {
        while self.notes.try_recv().is_ok() {}
    }

    /// Whether the server answers a `SELECT 1` on this connection within
    /// `timeout`.
    pub async fn probe(&self, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.client.simple_query("SELECT 1")).await,
            Ok(Ok(_))
        )
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        !self.client.is_closed()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
