//! TLS for `--cert/--key`: PEM certificate chain and private key into a rustls server config
//! (ring provider, TLS 1.2 and 1.3, ALPN http/1.1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate {path}: {msg}")]
    Cert { path: PathBuf, msg: String },
    #[error("private key {path}: {msg}")]
    Key { path: PathBuf, msg: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Loads `cert` (PEM chain) and `key` (PEM private key; defaults to the cert file, as in
/// websockify) into a server configuration.
pub fn load(cert: &Path, key: Option<&Path>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_err = |msg: String| TlsError::Cert {
        path: cert.to_owned(),
        msg,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no CERTIFICATE found in PEM file".into()));
    }
    let key_path = key.unwrap_or(cert);
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.to_owned(),
        msg: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
