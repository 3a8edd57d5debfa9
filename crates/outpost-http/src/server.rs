//! Serving the router over TCP with bounds on clients that are slow or gone.
//!
//! `axum::serve` sets no timer on its connections, so a client that sends
//! its headers a byte at a time, or a keep-alive connection whose peer has
//! vanished (a half-open socket), holds a connection and a task for ever.
//! Here each connection is served by hyper's HTTP/1 server with:
//!
//! * a header read timeout ([`HEADER_READ_TIMEOUT`]): the whole request head
//!   must arrive within it. Hyper starts that clock when it waits for a
//!   request, so it is also the idle timeout of a keep-alive connection;
//! * TCP keepalive probes ([`TCP_KEEPALIVE`]), which close a socket whose
//!   peer stopped answering while a long request (a sync) runs;
//! * a body read deadline ([`crate::BODY_READ_TIMEOUT`], in the JSON
//!   extractor) for bodies that trickle.
//!
//! Shutdown is graceful as with `axum::serve`: the listener closes, idle
//! connections close, requests under way are answered.
//!
//! [`serve_tls`] does the same behind a TLS handshake (rustls), which must
//! finish within the header read timeout too.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How long a client has to send a request's head (and how long a
/// keep-alive connection may sit idle).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle time before the first TCP keepalive probe; probes then go every
/// 10 s and the socket closes after the system's count of unanswered ones.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` completes, then waits for
/// the requests under way.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_tls(listener, app, None, shutdown).await
}

/// [`serve`], with every connection behind a TLS handshake when `tls` is
/// given. A client that does not complete the handshake within
/// [`HEADER_READ_TIMEOUT`] (plain HTTP, a stalled peer) is dropped.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(TCP_KEEPALIVE)
            .with_interval(Duration::from_secs(10));
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
            tracing::debug!(error = %e, "cannot set TCP keepalive");
        }
        let service = TowerToHyperService::new(app.clone());
        match &tls {
            None => {
                // No upgrades: the API has no WebSocket or CONNECT routes.
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                });
            }
            Some(acceptor) => {
                // The handshake runs in the connection's task, so a slow
                // client never holds the accept loop.
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
