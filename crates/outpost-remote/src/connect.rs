//! Connecting to the server with a bounded wait, encrypted as the
//! connection string's `sslmode` says. The connection string is taken as
//! `DatabaseUrl` so it never reaches a message with its password.
//!
//! TLS is rustls with the ring provider (no OpenSSL, no cmake). The modes
//! follow libpq:
//!
//! | `sslmode` | TLS | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | if the server offers it | no |
//! | `require` | always | no (yes, as `verify-ca`, when `sslrootcert` is given) |
//! | `verify-ca` | always | signed by a trusted CA |
//! | `verify-full` | always | signed by a trusted CA, for the host connected to |
//!
//! Trusted CAs: the PEM file `sslrootcert=/path/ca.crt`; with
//! `sslrootcert=system`, or without `sslrootcert` when
//! `~/.postgresql/root.crt` (libpq's default) does not exist, the Mozilla
//! roots bundled in the binary (`webpki-roots`). Unlike libpq, a missing
//! `root.crt` is therefore not an error: public CAs are trusted instead.

use std::sync::Arc;
use std::time::Duration;

use outpost_core::config::{DatabaseUrl, SslMode, TlsParams};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::Client;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{RemoteError, describe};

/// How long to wait for the server before calling it unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP keepalive idle time and interval on every connection: a path that
/// silently stopped forwarding is noticed by the kernel even while the
/// connection is idle (the kept sync connection, `LISTEN`).
pub const KEEPALIVE: Duration = Duration::from_secs(5);
/// How long sent data may stay unacknowledged before the kernel drops the
/// connection (`TCP_USER_TIMEOUT`).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection's driver half (for LISTEN, which polls it for
/// notifications).
pub type Connection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <MakeRustlsConnect as MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

/// Opens one connection; its driver runs as a background task on the
/// current runtime. The error names the server with its password hidden.
pub async fn connect(url: &DatabaseUrl, timeout: Duration) -> Result<Client, RemoteError> {
    let (client, connection) = connect_raw(url, timeout).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "server connection ended");
        }
    });
    Ok(client)
}

/// Opens one connection and hands back its driver half, which the caller
/// must poll (spawn it, or poll it for notifications).
pub async fn connect_raw(
    url: &DatabaseUrl,
    timeout: Duration,
) -> Result<(Client, Connection), RemoteError> {
    // The driver's messages may quote the connection string (a bad
    // option, say): scrubbed of the password like the server's name.
    let unreachable = |reason: String| RemoteError::Unreachable {
        server: url.redacted(),
        reason: url.scrub(&reason),
        auth: false,
    };
    let conninfo = url.driver_conninfo();
    let mut config: tokio_postgres::Config = conninfo
        .parse()
        .map_err(|e: tokio_postgres::Error| unreachable(describe(&e)))?;
    bound_socket(&mut config, conninfo);
    let tls = tls_connector(url.tls()).map_err(unreachable)?;
    match tokio::time::timeout(timeout, config.connect(tls)).await {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(e))
            if e.code().is_some_and(|c| {
                c.code().starts_with("28")
                    || *c == tokio_postgres::error::SqlState::INVALID_CATALOG_NAME
            }) =>
        {
            Err(RemoteError::LoginRefused {
                server: url.redacted(),
                reason: url.scrub(&describe(&e)),
            })
        }
        Ok(Err(e)) => Err(unreachable(explain(url.tls(), describe(&e)))),
        Err(_) => Err(unreachable(format!(
            "no answer within {}s",
            timeout.as_secs()
        ))),
    }
}

/// Keepalives and a user timeout on the socket, unless the connection
/// string sets them itself (`keepalives=0`, `tcp_user_timeout=…`).
fn bound_socket(config: &mut tokio_postgres::Config, conninfo: &str) {
    if !conninfo.contains("keepalives") {
        config
            .keepalives(true)
            .keepalives_idle(KEEPALIVE)
            .keepalives_interval(KEEPALIVE)
            .keepalives_retries(3);
    }
    if !conninfo.contains("tcp_user_timeout") {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
}

/// Adds what to do to the driver's TLS errors.
fn explain(tls: &TlsParams, reason: String) -> String {
    if reason.contains("server does not support TLS") {
        format!(
            "{reason} (sslmode={}: the server has ssl=off; enable TLS on the server \
             or use sslmode=prefer/disable)",
            mode_name(tls.mode)
        )
    } else if reason.contains("UnknownIssuer") || reason.contains("unknown issuer") {
        format!(
            "{reason} (the server's certificate is not signed by a trusted CA: \
             give the CA's certificate with sslrootcert=/path/to/ca.crt)"
        )
    } else if reason.contains("NotValidForName") || reason.contains("not valid for name") {
        format!(
            "{reason} (the certificate is not for this host name: connect with the name \
             it was issued for, or use sslmode=verify-ca)"
        )
    } else {
        reason
    }
}

fn mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

/// The rustls connector for the mode. For `disable` it is never used (the
/// driver is told `sslmode=disable`), but one connector type keeps one
/// connection type.
fn tls_connector(tls: &TlsParams) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = match tls.mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(root_store(tls.root_cert.as_deref())?);
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("TLS setup: {e}"))?;
            if tls.mode == SslMode::VerifyFull {
                builder.with_webpki_verifier(verifier).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyHostName(verifier)))
                    .with_no_client_auth()
            }
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The trusted CAs (module doc).
fn root_store(root_cert: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let default_file = std::env::var_os("HOME")
        .map(|h| std::path::PathBuf::from(h).join(".postgresql/root.crt"))
        .filter(|p| p.is_file());
    let file = match root_cert {
        Some("system") => None,
        Some(path) => Some(std::path::PathBuf::from(path)),
        None => default_file,
    };
    let Some(file) = file else {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(store);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&file)
        .map_err(|e| format!("sslrootcert={}: cannot read: {e}", file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("sslrootcert={}: not PEM certificates: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "sslrootcert={}: the file holds no certificate",
            file.display()
        ));
    }
    for cert in certs {
        store
            .add(cert)
            .map_err(|e| format!("sslrootcert={}: {e}", file.display()))?;
    }
    Ok(store)
}

/// `prefer` and `require`: encryption without authentication of the server,
/// as libpq does. Signatures are still checked, so the handshake is sound.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the host name is not
/// compared.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
