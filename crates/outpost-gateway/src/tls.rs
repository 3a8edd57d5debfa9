//! The gateway's own TLS (`OUTPOST_GATEWAY_TLS_CERT` and
//! `OUTPOST_GATEWAY_TLS_KEY`, PEM files): rustls with ring, the stack the
//! nodes already use for PostgreSQL. Without them the gateway speaks plain
//! HTTP, for a terminating proxy in front of it (docs/gateway.md, "TLS").
//!
//! The files are read at start and again every
//! `OUTPOST_GATEWAY_TLS_RELOAD` ms ([`CertFiles::reload`]), so a renewed
//! certificate (an ACME client rewriting both files) is served to new
//! connections without a restart. A pair that cannot be read, or whose key
//! does not match its certificate (a renewal caught half written), changes
//! nothing: the pair read last stays, and the gateway logs why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate and key files, and the pair read from them last: the
/// certificate every new connection is served.
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for CertFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl CertFiles {
    /// Reads both files again and, when they hold a certificate chain and
    /// its matching key, serves them to new connections from then on. On
    /// an error (naming the file) the pair read last stays. Whether the
    /// pair changed.
    pub fn reload(&self) -> Result<bool, String> {
        let fresh = read_pair(&self.cert, &self.key, &self.provider)?;
        let same = self
            .current
            .read()
            .map(|c| c.cert == fresh.cert)
            .unwrap_or(false);
        if same {
            return Ok(false);
        }
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(fresh),
        }
        Ok(true)
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match self.current.read() {
            Ok(c) => Some(c.clone()),
            Err(poisoned) => Some(poisoned.into_inner().clone()),
        }
    }
}

/// A certificate chain and its private key (PKCS#8, PKCS#1 or SEC1), both
/// PEM, checked to belong together. Errors name the file and what is
/// wrong with it.
fn read_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
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
    CertifiedKey::from_der(chain, private, provider).map_err(|e| {
        format!(
            "OUTPOST_GATEWAY_TLS_CERT {} and OUTPOST_GATEWAY_TLS_KEY {}: {e}",
            cert.display(),
            key.display()
        )
    })
}

/// The server configuration serving the pair in `cert` and `key`, and the
/// files, to [`CertFiles::reload`] them.
pub fn server_config(
    cert: &Path,
    key: &Path,
) -> Result<(Arc<ServerConfig>, Arc<CertFiles>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pair = read_pair(cert, key, &provider)?;
    let files = Arc::new(CertFiles {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        provider: provider.clone(),
        current: RwLock::new(Arc::new(pair)),
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(files.clone());
    Ok((Arc::new(config), files))
}
