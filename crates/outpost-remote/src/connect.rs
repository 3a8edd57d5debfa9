//! Connecting to the server with a bounded wait. The connection string is
//! taken as `DatabaseUrl` so it never reaches a message with its password.

use std::time::Duration;

use outpost_core::config::DatabaseUrl;
use tokio_postgres::{Client, NoTls};

use crate::error::{RemoteError, describe};

/// How long to wait for the server before calling it unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens one connection; its driver runs as a background task on the
/// current runtime. The error names the server with its password hidden.
pub async fn connect(url: &DatabaseUrl, timeout: Duration) -> Result<Client, RemoteError> {
    let unreachable = |reason: String| RemoteError::Unreachable {
        server: url.redacted(),
        reason,
    };
    let connecting = tokio_postgres::connect(url.expose(), NoTls);
    let (client, connection) = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(unreachable(describe(&e))),
        Err(_) => {
            return Err(unreachable(format!(
                "no answer within {}s",
                timeout.as_secs()
            )));
        }
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "server connection ended");
        }
    });
    Ok(client)
}
