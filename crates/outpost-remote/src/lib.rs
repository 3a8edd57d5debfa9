//! # outpost-remote
//!
//! outpost's PostgreSQL side; the only crate that talks to the server's
//! driver. It owns:
//!
//! * [`introspect()`] (module [`mod@introspect`]): reading the tables selected for sync from `pg_catalog`
//!   into the [`outpost_core::Schema`] model, refusing what cannot be
//!   replicated (a table without a primary key, an unsupported column type);
//! * [`tracking`]: installing, upgrading, checking and removing the server's
//!   change-capture schema `outpost` and the triggers on synced tables (the
//!   SQL comes from [`outpost_core::tracking`]);
//! * [`codec`]: PostgreSQL's binary wire format to and from
//!   [`outpost_core::Value`], exactly, for every supported type;
//! * [`connect()`](connect::connect): a connection with the `sslmode` of the URL (rustls);
//! * [`cluster`]: a throwaway PostgreSQL cluster from the installed binaries
//!   (`outpost demo`, the tests);
//! * [`RemoteError`], the crate's error, with its [`ErrorClass`]
//!   ([`RemoteError::is_unreachable`], [`RemoteError::is_auth`],
//!   [`RemoteError::is_refused`], [`RemoteError::is_transient`]);
//! * [`feed`]: the server side of a sync, one module per concern (node
//!   registry, retention, bootstrap, pull, push, id blocks);
//! * [`session`]: the settings outpost's transactions run with.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut client, conn) =
//!     tokio_postgres::connect("host=127.0.0.1 user=postgres", tokio_postgres::NoTls).await?;
//! tokio::spawn(conn);
//! let schema = outpost_remote::introspect(&client, "public", None, &[]).await?;
//! outpost_remote::tracking::install(&mut client, &schema).await?;
//! let rows = client.query("SELECT * FROM \"Post\"", &[]).await?;
//! for row in &rows {
//!     let values = outpost_remote::codec::row_values(row)?;
//!     println!("{values:?}");
//! }
//! # Ok(()) }
//! ```

pub use tokio_postgres;

pub mod cluster;
pub mod codec;
pub mod connect;
pub mod connections;
pub mod error;
pub mod feed;
pub mod gateway;
pub mod introspect;
pub mod query;
pub mod session;
pub mod tracking;

pub use codec::{Bind, PgValue, row_values};
pub use connect::{CONNECT_TIMEOUT, connect, connect_raw};
pub use error::{Cause, ErrorClass, RemoteError};
pub use introspect::introspect;
pub use tracking::{InstallReport, UninstallReport, install, installed_version, uninstall};
