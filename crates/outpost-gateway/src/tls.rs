//! The gateway's own TLS (`OUTPOST_GATEWAY_TLS_CERT` and
//! `OUTPOST_GATEWAY_TLS_KEY`, PEM files): rustls with ring, the stack the
//! nodes already use for PostgreSQL. Without them the gateway speaks plain
//! HTTP, for a terminating proxy in front of it (docs/gateway.md, "TLS").
//! The files are read once at start; a renewed certificate takes a restart
//! (the gateways are stateless, so restart them one at a time).

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The server configuration from a certificate chain and its private key
/// (PKCS#8, PKCS#1 or SEC1), both PEM. Errors name the file and what is
/// wrong with it.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("OUTPOST_GATEWAY_TLS_CERT {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("OUTPOST_GATEWAY_TLS_CERT {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "OUTPOST_GATEWAY_TLS_CERT {}: no PEM certificate in the file",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("OUTPOST_GATEWAY_TLS_KEY {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "OUTPOST_GATEWAY_TLS_CERT {} and OUTPOST_GATEWAY_TLS_KEY {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Arc::new(config))
}
