//! One worker's connection: a keep-alive HTTP/1 connection straight to one node, on hyper's low-level
//! client. The bench shares the machine with the cluster it measures, so its own cost per request must stay
//! small: no pool, no retries, no URL parsing per request. (The CLI's other commands use `tally-client`.)

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode};
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

/// A connection to one node's client port.
pub(super) struct Connection {
    /// Sends requests on the connection.
    sender: SendRequest<Full<Bytes>>,
    /// `host:port`, for the `Host` header.
    authority: String,
}

impl Connection {
    /// Connects to `url` (`http://host:port`).
    ///
    /// # Errors
    /// A message if the URL is not `http://host:port` or the connection fails.
    pub(super) async fn open(url: &str) -> Result<Connection, CallError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| CallError::Connection(format!("{what} {url}: {e}"));
        let authority = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/').to_string();
        let connect = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(&authority));
        let stream = connect.await.map_err(|e| fail("connect to", &e))?.map_err(|e| fail("connect to", &e))?;
        stream.set_nodelay(true).map_err(|e| fail("set TCP_NODELAY on", &e))?;
        let (sender, connection) =
            http1::handshake(TokioIo::new(stream)).await.map_err(|e| fail("HTTP handshake with", &e))?;
        tokio::spawn(async move {
            // Ends when the connection closes; the next request then fails and the worker reconnects.
            let _ = connection.await;
        });
        Ok(Connection { sender, authority })
    }

    /// `PUT /v1/kv/{key}` with `value`; `Ok` on `200`.
    ///
    /// # Errors
    /// The status and body of any other answer, or the I/O error.
    pub(super) async fn put(&mut self, key: &str, value: &Bytes) -> Result<(), CallError> {
        self.call(Method::PUT, &format!("/v1/kv/{key}"), value.clone()).await
    }

    /// `GET /v1/kv/{key}?consistency=...`; `Ok` on `200`.
    ///
    /// # Errors
    /// The status and body of any other answer (a missing key included), or the I/O error.
    pub(super) async fn get(&mut self, key: &str, consistency: &str) -> Result<(), CallError> {
        self.call(Method::GET, &format!("/v1/kv/{key}?consistency={consistency}"), Bytes::new()).await
    }

    /// Sends one request and reads the whole answer.
    async fn call(&mut self, method: Method, path: &str, body: Bytes) -> Result<(), CallError> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .body(Full::new(body))
            .map_err(|e| CallError::Answer(format!("bad request: {e}")))?;
        let broken = |what: &str, e: hyper::Error| CallError::Connection(format!("{what}: {e}"));
        let exchange = async {
            self.sender.ready().await.map_err(|e| broken("connection closed", e))?;
            let response = self.sender.send_request(request).await.map_err(|e| broken("request failed", e))?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|e| broken("answer cut off", e))?.to_bytes();
            Ok::<_, CallError>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| CallError::Connection(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))??;
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(CallError::Answer(format!("{status}: {}", String::from_utf8_lossy(&body).trim())))
        }
    }
}
