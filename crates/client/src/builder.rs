//! [`ClientBuilder`]: a [`Client`] with TLS (a CA to trust, a client certificate to present) and a bearer
//! token, on top of the timeouts of [`ClientConfig`].

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use tally_net::tls::{CertifiedKeyFiles, ClientTlsFiles};

use crate::client::{Client, ClientConfig};
use crate::error::ClientError;

/// How long a pooled connection may stay idle before the client drops it: below the server's idle timeout
/// (5 s by default), so the client lets go of a connection before the server closes it under a request.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Builds a [`Client`]: `Client::builder(endpoints).ca_file("ca.pem").token("...").build()`. Its `Debug`
/// output hides the token.
#[derive(Clone)]
pub struct ClientBuilder {
    /// The endpoints, as given.
    endpoints: Vec<String>,
    /// Timeouts and retries.
    config: ClientConfig,
    /// The CA to trust and the certificate to present, as files.
    tls_files: ClientTlsFiles,
    /// A ready TLS config, which wins over `tls_files`.
    tls_config: Option<rustls::ClientConfig>,
    /// The bearer token, if any.
    token: Option<String>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let ClientBuilder { endpoints, config, tls_files, tls_config, token } = self;
        f.debug_struct("ClientBuilder")
            .field("endpoints", endpoints)
            .field("config", config)
            .field("tls_files", tls_files)
            .field("tls_config", &tls_config.as_ref().map(|_| "<rustls config>"))
            .field("token", &token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientBuilder {
    /// A builder for the cluster at `endpoints` (`https://host:port`, `http://host:port`, or `host:port`
    /// for plain HTTP).
    pub fn new(endpoints: Vec<String>) -> ClientBuilder {
        ClientBuilder {
            endpoints,
            config: ClientConfig::default(),
            tls_files: ClientTlsFiles::default(),
            tls_config: None,
            token: None,
        }
    }

    /// Timeouts and the retry budget.
    pub fn config(mut self, config: ClientConfig) -> ClientBuilder {
        self.config = config;
        self
    }

    /// Trusts the nodes whose certificates `ca` (a PEM file) signed: needed for `https://` endpoints.
    pub fn ca_file(mut self, ca: impl Into<PathBuf>) -> ClientBuilder {
        self.tls_files.ca = Some(ca.into());
        self
    }

    /// Presents the client certificate `certificate` with its `key` (PEM files) to nodes that require one.
    pub fn client_certificate(mut self, certificate: impl Into<PathBuf>, key: impl Into<PathBuf>) -> ClientBuilder {
        self.tls_files.identity = Some(CertifiedKeyFiles { certificate: certificate.into(), key: key.into() });
        self
    }

    /// Uses `config` for TLS instead of files (a node's own config, say).
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> ClientBuilder {
        self.tls_config = Some(config);
        self
    }

    /// Sends `Authorization: Bearer TOKEN` with every call.
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(token.into());
        self
    }

    /// The client.
    ///
    /// # Errors
    /// [`ClientError::InvalidEndpoint`] for an empty list or a malformed URL, [`ClientError::Tls`] for a
    /// CA, certificate or key file that cannot be used, [`ClientError::InvalidToken`] for an empty token or one
    /// that cannot be sent in a header.
    pub fn build(self) -> Result<Client, ClientError> {
        let tls = match self.tls_config {
            Some(config) => config,
            None => tally_net::tls::client_config(&self.tls_files)?,
        };
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.token {
            headers.insert(AUTHORIZATION, bearer(token)?);
        }
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .default_headers(headers)
            .timeout(self.config.request_timeout)
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        Client::from_parts(self.endpoints, self.config, http)
    }
}

/// `Bearer TOKEN` as a header value marked sensitive (never logged by the HTTP stack).
///
/// # Errors
/// [`ClientError::InvalidToken`] for an empty token or one that cannot be sent in a header.
pub(crate) fn bearer(token: &str) -> Result<HeaderValue, ClientError> {
    if token.is_empty() {
        return Err(ClientError::InvalidToken { reason: "the token is empty".to_string() });
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ClientError::InvalidToken {
        reason: "the token has characters that cannot be sent in a header".to_string(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_be_sendable_and_are_never_shown() {
        assert!(matches!(bearer(""), Err(ClientError::InvalidToken { .. })));
        assert!(matches!(bearer("line\nbreak"), Err(ClientError::InvalidToken { .. })));
        let value = bearer("s3cret").expect("valid");
        assert!(value.is_sensitive(), "the token is marked sensitive");
        assert!(!format!("{value:?}").contains("s3cret"), "{value:?}");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let error = ClientBuilder::new(vec!["https://127.0.0.1:1".into()]).ca_file("/no/such/ca.pem").build();
        let error = error.err().expect("a missing CA");
        assert!(error.to_string().contains("/no/such/ca.pem"), "{error}");
        let built = ClientBuilder::new(vec!["https://127.0.0.1:1".into()]).token("t").build();
        assert!(built.is_ok(), "HTTPS endpoints without a CA build (and fail at the handshake)");
    }
}
