//! TLS for the connections specter opens: to upstream providers and to an OTLP/HTTP collector.
//! One rustls setup (the `ring` provider, the Mozilla root certificates from `webpki-roots`,
//! plus any extra certificate authorities read from PEM files) behind one HTTPS connector that
//! speaks HTTP/1.1 and HTTP/2 (chosen by ALPN).
//!
//! ```
//! let connector = specter::unstable::tls::https_connector(&[], std::time::Duration::from_secs(5)).unwrap();
//! # let _ = connector;
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

/// The connector of outgoing HTTP(S) connections.
pub type Connector = HttpsConnector<HttpConnector>;

/// Why the TLS setup cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file that cannot be read or holds no PEM certificate.
    #[error("cannot use the CA certificate file {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("cannot set up TLS")]
    Config(#[from] rustls::Error),
}

/// Reads every certificate of a PEM file (a CA bundle or a single certificate): a regular file of
/// at most 4 MiB.
///
/// # Errors
/// When the file cannot be read, is not a regular file, is too large, is not PEM, or holds no
/// certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |message: String| TlsError::CaFile {
        path: path.to_path_buf(),
        message,
    };
    let bytes = crate::files::read_bytes(path, crate::files::MAX_PEM_FILE_BYTES).map_err(|e| {
        let text = e.to_string();
        // The error names the path already.
        let prefix = format!("cannot read {}: ", path.display());
        fail(text.strip_prefix(&prefix).unwrap_or(&text).to_string())
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(fail(
            "no `-----BEGIN CERTIFICATE-----` block in the file".into(),
        ));
    }
    Ok(certs)
}

/// The rustls client configuration: the Mozilla roots plus `extra_roots`.
///
/// # Errors
/// When an extra root is not a valid certificate authority.
pub fn client_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
}

/// An HTTPS-or-HTTP connector with `TCP_NODELAY`, the given connect timeout, and HTTP/1.1 and
/// HTTP/2 offered over TLS.
///
/// # Errors
/// When an extra root is not a valid certificate authority.
pub fn https_connector(
    extra_roots: &[CertificateDer<'static>],
    connect_timeout: Duration,
) -> Result<Connector, TlsError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(extra_roots)?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}
