//! The one TLS configuration every channel uses: rustls on the ring provider, Mozilla's
//! roots (webpki-roots) and, for a private relay or endpoint, extra roots given as PEM.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The extra roots are not PEM certificates.
    #[error("extra root certificates: {0}")]
    Pem(String),
    /// rustls refused a certificate or the protocol versions.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A client configuration trusting Mozilla's roots and every certificate in `extra_root_pem`.
pub(crate) fn client_config(extra_root_pem: Option<&str>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(pem) = extra_root_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| TlsError::Pem(e.to_string()))?;
            roots.add(cert)?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsError::Pem("no `BEGIN CERTIFICATE` block found".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_extra_roots_that_are_not_certificates() {
        assert!(client_config(None).is_ok());
        let err = client_config(Some("not a certificate")).unwrap_err();
        assert!(err.to_string().contains("no `BEGIN CERTIFICATE`"), "{err}");
        let err = client_config(Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")).unwrap_err();
        assert!(err.to_string().starts_with("TLS configuration"), "{err}");
    }
}
