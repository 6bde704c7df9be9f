//! One worker's connection: a keep-alive HTTP/1 connection straight to one node (over TLS for an `https://`
//! URL), on hyper's low-level client. The bench shares the machine with the cluster it measures, so its own
//! cost per request must stay small: no pool, no retries, no URL parsing per request. (The CLI's other
//! commands use `tally-client`.)

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long one request (or connecting) may take before the connection is given up and opened again.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a request failed.
#[derive(Debug)]
pub(super) enum CallError {
    /// The node answered, with something other than `200`: the connection is still good.
    Answer(String),
    /// The connection failed or broke: open a new one.
    Connection(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Answer(message) | CallError::Connection(message) => f.write_str(message),
        }
    }
}

/// How workers open connections: TLS for `https://` URLs, and the token every request carries.
pub(crate) struct Dial {
    /// Connects TLS (trusting `--cacert`, presenting `--cert`).
    tls: tokio_rustls::TlsConnector,
    /// `Bearer TOKEN`, if `--token` was given.
    authorization: Option<hyper::header::HeaderValue>,
}

impl Dial {
    /// Dials with `tls` and, if given, `token`.
    ///
    /// # Errors
    /// A token that cannot be sent in a header.
    pub(crate) fn new(tls: rustls::ClientConfig, token: Option<&str>) -> anyhow::Result<Dial> {
        let authorization = match token {
            Some(token) => {
                let mut value = hyper::header::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| anyhow::anyhow!("--token has characters that cannot be sent in a header"))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Dial { tls: tokio_rustls::TlsConnector::from(Arc::new(tls)), authorization })
    }
}

/// A connection to one node's client port.
pub(super) struct Connection {
    /// Sends requests on the connection.
    sender: SendRequest<Full<Bytes>>,
    /// `host:port`, for the `Host` header.
    authority: String,
    /// `Bearer TOKEN`, if any.
    authorization: Option<hyper::header::HeaderValue>,
}

impl Connection {
    /// Connects to `url` (`http://host:port` or `https://host:port`).
    ///
    /// # Errors
    /// A message if the connection or the TLS handshake fails.
    pub(super) async fn open(url: &str, dial: &Dial) -> Result<Connection, CallError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| CallError::Connection(format!("{what} {url}: {e}"));
        let (tls, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.strip_prefix("http://").unwrap_or(url)),
        };
        let authority = rest.trim_end_matches('/').to_string();
        let connect = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(&authority));
        let stream = connect.await.map_err(|e| fail("connect to", &e))?.map_err(|e| fail("connect to", &e))?;
        stream.set_nodelay(true).map_err(|e| fail("set TCP_NODELAY on", &e))?;
        let sender = if tls {
            let host = authority.rsplit_once(':').map_or(authority.as_str(), |(host, _)| host);
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| fail("bad host in", &e))?;
            let handshake = tokio::time::timeout(REQUEST_TIMEOUT, dial.tls.connect(name, stream));
            let stream =
                handshake.await.map_err(|e| fail("TLS handshake with", &e))?.map_err(|e| fail("TLS with", &e))?;
            start(stream).await.map_err(|e| fail("HTTP handshake with", &e))?
        } else {
            start(stream).await.map_err(|e| fail("HTTP handshake with", &e))?
        };
        Ok(Connection { sender, authority, authorization: dial.authorization.clone() })
    }

    /// `PUT /v1/kv/{key}` with `value`; `Ok` on `200`.
    ///
    /// # Errors
    /// The status and body of any other answer, or the I/O error.
    pub(super) async fn put(&mut self, key: &str, value: &Bytes) -> Result<(), CallError> {
        self.call(Method::PUT, &format!("/v1/kv/{key}"), value.clone()).await.map(drop)
    }

    /// `GET /v1/kv/{key}?consistency=...`; `Ok` on `200`.
    ///
    /// # Errors
    /// The status and body of any other answer (a missing key included), or the I/O error.
    pub(super) async fn get(&mut self, key: &str, consistency: &str) -> Result<(), CallError> {
        self.call(Method::GET, &format!("/v1/kv/{key}?consistency={consistency}"), Bytes::new()).await.map(drop)
    }

    /// `POST /v1/txn?consistency=...` with the transaction `body`; its answer's body on `200`.
    ///
    /// # Errors
    /// The status and body of any other answer, or the I/O error.
    pub(super) async fn txn(&mut self, body: Bytes, consistency: &str) -> Result<Bytes, CallError> {
        self.call(Method::POST, &format!("/v1/txn?consistency={consistency}"), body).await
    }

    /// `PUT /v1/kv/{key}` with `value`; the write's log index (its `X-Tally-Index`) on `200`.
    ///
    /// # Errors
    /// The status and body of any other answer, an answer without the index, or the I/O error.
    pub(super) async fn put_indexed(&mut self, key: &str, value: &Bytes) -> Result<u64, CallError> {
        let (headers, _) = self.exchange(Method::PUT, &format!("/v1/kv/{key}"), value.clone()).await?;
        log_index(&headers)
    }

    /// `GET {path}`; its body on `200` (for `/metrics`).
    ///
    /// # Errors
    /// The status and body of any other answer, or the I/O error.
    pub(super) async fn get_body(&mut self, path: &str) -> Result<Bytes, CallError> {
        self.call(Method::GET, path, Bytes::new()).await
    }

    /// `GET {path}` of a streaming answer (an event stream): on `200`, its `X-Tally-Index` and its body, which
    /// the caller reads frame by frame for as long as it likes (only the head has to come within the timeout).
    ///
    /// # Errors
    /// The status and body of any other answer, an answer without the index, or the I/O error.
    pub(super) async fn open_stream(&mut self, path: &str) -> Result<(u64, Incoming), CallError> {
        let head = tokio::time::timeout(REQUEST_TIMEOUT, self.send(Method::GET, path, Bytes::new()));
        let response = head.await.map_err(|_| no_answer())??;
        let (parts, body) = response.into_parts();
        if parts.status != StatusCode::OK {
            let body = tokio::time::timeout(REQUEST_TIMEOUT, body.collect()).await.map_err(|_| no_answer())?;
            let body = body.map(|collected| collected.to_bytes()).unwrap_or_default();
            return Err(CallError::Answer(format!("{}: {}", parts.status, String::from_utf8_lossy(&body).trim())));
        }
        Ok((log_index(&parts.headers)?, body))
    }

    /// Sends one request and reads the whole answer: its body on `200`.
    async fn call(&mut self, method: Method, path: &str, body: Bytes) -> Result<Bytes, CallError> {
        self.exchange(method, path, body).await.map(|(_, body)| body)
    }

    /// Sends one request and reads the whole answer: its headers and body on `200`.
    async fn exchange(&mut self, method: Method, path: &str, body: Bytes) -> Result<(HeaderMap, Bytes), CallError> {
        let exchange = async {
            let response = self.send(method, path, body).await?;
            let (parts, body) = response.into_parts();
            let broken = |e: hyper::Error| CallError::Connection(format!("answer cut off: {e}"));
            Ok::<_, CallError>((parts, body.collect().await.map_err(broken)?.to_bytes()))
        };
        let (parts, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.map_err(|_| no_answer())??;
        if parts.status == StatusCode::OK {
            Ok((parts.headers, body))
        } else {
            Err(CallError::Answer(format!("{}: {}", parts.status, String::from_utf8_lossy(&body).trim())))
        }
    }

    /// Sends one request; its answer's head (the body still to be read).
    async fn send(&mut self, method: Method, path: &str, body: Bytes) -> Result<Response<Incoming>, CallError> {
        let mut request = Request::builder().method(method).uri(path).header(hyper::header::HOST, &self.authority);
        if let Some(authorization) = &self.authorization {
            request = request.header(hyper::header::AUTHORIZATION, authorization.clone());
        }
        let request = request.body(Full::new(body)).map_err(|e| CallError::Answer(format!("bad request: {e}")))?;
        let broken = |what: &str, e: hyper::Error| CallError::Connection(format!("{what}: {e}"));
        self.sender.ready().await.map_err(|e| broken("connection closed", e))?;
        self.sender.send_request(request).await.map_err(|e| broken("request failed", e))
    }
}

/// The error of a request whose answer did not come in time: the connection is given up.
fn no_answer() -> CallError {
    CallError::Connection(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))
}

/// The `X-Tally-Index` of an answer.
fn log_index(headers: &HeaderMap) -> Result<u64, CallError> {
    let value = headers.get("x-tally-index").and_then(|value| value.to_str().ok());
    value
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| CallError::Answer(format!("the answer's X-Tally-Index is {value:?}, not a log index")))
}

/// The HTTP/1 handshake on `io`; the connection runs in its own task until it closes.
async fn start<I>(io: I) -> Result<SendRequest<Full<Bytes>>, hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        // Ends when the connection closes; the next request then fails and the worker reconnects.
        let _ = connection.await;
    });
    Ok(sender)
}
