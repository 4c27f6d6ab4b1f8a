//! The agent's TLS client configuration (rustls with the `ring` provider).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// Builds a client config trusting only `ca`, optionally presenting a client certificate.
pub fn client_config(
    ca: &Path,
    cert_key: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let cas: Vec<CertificateDer> = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect())
        .map_err(|e| format!("ca {}: cannot read PEM certificates ({e})", ca.display()))?;
    if cas.is_empty() {
        return Err(format!("ca {}: holds no PEM certificate", ca.display()));
    }
    for c in cas {
        roots
            .add(c)
            .map_err(|e| format!("ca {}: not a usable CA certificate ({e})", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots);
    let config = match cert_key {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect())
                .map_err(|e| {
                    format!(
                        "cert {}: cannot read PEM certificates ({e})",
                        cert.display()
                    )
                })?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                format!("key {}: cannot read a PEM private key ({e})", key.display())
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("cert/key do not form a usable pair: {e}"))?
        }
    };
    Ok(Arc::new(config))
}
