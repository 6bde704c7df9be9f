//! TLS configuration from PEM files: a server config for an HTTPS port (optionally requiring client
//! certificates), a client config for calling one, and the pair a node's peer port needs (mutual TLS).
//!
//! ```text
//!  cert.pem + key.pem [+ ca.pem] ──load (errors name the file)──▶ rustls ServerConfig (ring, explicitly)
//!  ca.pem [+ cert.pem + key.pem] ──────────────────────────────▶ rustls ClientConfig (ring, explicitly)
//! ```
//!
//! Every config is built with `rustls::crypto::ring::default_provider()` passed in, never the process-wide
//! default, so nothing depends on which crate happened to install one. TLS 1.2 and 1.3 are accepted. Errors say
//! which file and what is wrong with it (missing, no certificate in it, no private key in it, a key that does
//! not belong to the certificate), because that is what an operator has to fix.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why a TLS configuration could not be built. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file cannot be read (missing, unreadable).
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// What the file should hold (`certificate`, `private key`, `CA certificate`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no PEM `CERTIFICATE` block.
    #[error("{path} holds no certificate (expected a PEM \"BEGIN CERTIFICATE\" block)")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("{path} holds no private key (expected a PEM \"BEGIN PRIVATE KEY\" block)")]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The file's PEM is malformed.
    #[error("{path} is not valid PEM: {detail}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The private key is not the key of the certificate.
    #[error("the private key {key} does not belong to the certificate {certificate}")]
    KeyMismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A CA certificate cannot be used as a trust anchor.
    #[error("{path} holds a certificate that cannot be trusted as a CA: {detail}")]
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// rustls refused the configuration (a key of an unsupported type, say).
    #[error("cannot use {certificate} with {key}: {detail}")]
    Refused {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// The client verifier could not be built from the CA.
    #[error("cannot verify client certificates with {path}: {detail}")]
    Verifier {
        /// The CA file.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
}

/// A certificate and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifiedKeyFiles {
    /// The certificate chain, leaf first (`n1.pem`).
    pub certificate: PathBuf,
    /// Its private key (`n1-key.pem`).
    pub key: PathBuf,
}

/// What a TLS server presents and whom it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The server's certificate and key.
    pub identity: CertifiedKeyFiles,
    /// When set, every client must present a certificate signed by this CA (mutual TLS); when `None`, clients
    /// are not asked for one.
    pub client_ca: Option<PathBuf>,
}

/// Whom a TLS client trusts and what it presents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The CA that signs the servers' certificates; `None`: the client trusts no server (every HTTPS call
    /// fails verification), which is only useful to present a certificate to nobody.
    pub ca: Option<PathBuf>,
    /// A client certificate to present, when the server asks for one.
    pub identity: Option<CertifiedKeyFiles>,
}

/// The two configs of a mutual-TLS port: a server that requires a certificate signed by the CA, and a client
/// that trusts that CA and presents the same identity. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TlsPair {
    /// Accepts connections: presents the identity, requires a client certificate from the CA.
    pub server: Arc<ServerConfig>,
    /// Makes connections: trusts the CA, presents the identity.
    pub client: Arc<ClientConfig>,
}

/// The crypto provider every config is built with: ring, explicitly (the team's choice: no aws-lc). rustls
/// 0.23.48 deprecated this constructor for lacking post-quantum key exchange, which ring does not offer.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a file, with an error naming it and what it should hold.
fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_path_buf(), source })
}

/// Every certificate in a PEM file, in order (leaf first for a chain).
///
/// # Errors
/// [`TlsError::Read`], [`TlsError::BadPem`], or [`TlsError::NoCertificate`] for a file with none.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, "certificate")?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem { path: path.to_path_buf(), detail: e.to_string() })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certificates)
}

/// The private key in a PEM file (the first, if several).
///
/// # Errors
/// [`TlsError::Read`], or [`TlsError::NoPrivateKey`] for a file with none.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path, "private key")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey { path: path.to_path_buf() },
        other => TlsError::BadPem { path: path.to_path_buf(), detail: other.to_string() },
    })
}

/// The trust anchors in a CA file (every certificate in it).
///
/// # Errors
/// As [`load_certificates`], or [`TlsError::BadCa`] for a certificate that is not a usable anchor.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in load_certificates(path)? {
        roots.add(certificate).map_err(|e| TlsError::BadCa { path: path.to_path_buf(), detail: e.to_string() })?;
    }
    Ok(roots)
}

/// Loads a certificate and its key and checks that they belong together.
fn load_identity(
    files: &CertifiedKeyFiles,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certificates = load_certificates(&files.certificate)?;
    let key = load_private_key(&files.key)?;
    let certified = rustls::sign::CertifiedKey::from_der(certificates.clone(), key.clone_key(), &provider());
    match certified {
        Ok(_) => Ok((certificates, key)),
        Err(rustls::Error::InconsistentKeys(_)) => {
            Err(TlsError::KeyMismatch { certificate: files.certificate.clone(), key: files.key.clone() })
        }
        Err(error) => Err(refused(files, &error)),
    }
}

/// [`TlsError::Refused`] for `files`.
fn refused(files: &CertifiedKeyFiles, error: &rustls::Error) -> TlsError {
    TlsError::Refused { certificate: files.certificate.clone(), key: files.key.clone(), detail: error.to_string() }
}

/// A server config: presents `files.identity`; with `files.client_ca`, requires and verifies client
/// certificates signed by it (a connection without one fails its handshake).
///
/// # Errors
/// See [`TlsError`]; each names the file at fault.
pub fn server_config(files: &ServerTlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let (certificates, key) = load_identity(&files.identity)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| refused(&files.identity, &e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::Verifier { path: ca.clone(), detail: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certificates, key).map_err(|e| refused(&files.identity, &e))?;
    Ok(Arc::new(config))
}

/// A client config: trusts the servers signed by `files.ca`, presents `files.identity` when asked.
///
/// # Errors
/// See [`TlsError`]; each names the file at fault.
pub fn client_config(files: &ClientTlsFiles) -> Result<ClientConfig, TlsError> {
    let roots = match &files.ca {
        Some(ca) => load_roots(ca)?,
        None => RootCertStore::empty(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::BadCa { path: files.ca.clone().unwrap_or_default(), detail: e.to_string() })?
        .with_root_certificates(roots);
    match &files.identity {
        None => Ok(builder.with_no_client_auth()),
        Some(identity) => {
            let (certificates, key) = load_identity(identity)?;
            builder.with_client_auth_cert(certificates, key).map_err(|e| refused(identity, &e))
        }
    }
}

/// The configs of a mutual-TLS port (a node's peer port): the server requires a certificate signed by `ca`,
/// the client trusts `ca`; both present `identity`.
///
/// # Errors
/// See [`TlsError`].
pub fn mutual_pair(identity: &CertifiedKeyFiles, ca: &Path) -> Result<TlsPair, TlsError> {
    let server = server_config(&ServerTlsFiles { identity: identity.clone(), client_ca: Some(ca.to_path_buf()) })?;
    let client = client_config(&ClientTlsFiles { ca: Some(ca.to_path_buf()), identity: Some(identity.clone()) })?;
    Ok(TlsPair { server, client: Arc::new(client) })
}

/// The Common Name of the first (leaf) certificate in a PEM file: a node's id or a user's name (see
/// [`crate::identity`]).
///
/// # Errors
/// As [`load_certificates`]; [`TlsError::BadPem`] when the certificate has no single UTF-8 Common Name.
pub fn certificate_common_name(path: &Path) -> Result<String, TlsError> {
    let certificates = load_certificates(path)?;
    crate::identity::common_name(&certificates[0]).ok_or_else(|| TlsError::BadPem {
        path: path.to_path_buf(),
        detail: "the certificate has no single Common Name (CN)".to_string(),
    })
}

#[cfg(test)]
mod tests;
