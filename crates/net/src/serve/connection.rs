//! One connection: the TLS handshake, hyper's HTTP/1 state machine with the header timeout, the body
//! deadline of each request, and the silence rules of [`super::activity`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::activity::{Activity, Ending, Tracked, Watched};
use super::body::{GuardedBody, InFlight, TimeoutBody};
use super::{ConnectionInfo, Limits, Permit, ServeMetrics};

/// What every connection of a port shares.
pub(crate) struct Context {
    /// The service.
    pub(crate) router: axum::Router,
    /// TLS, if the port has it.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// The limits.
    pub(crate) limits: Limits,
    /// The counters.
    pub(crate) metrics: Arc<ServeMetrics>,
}

/// Serves one accepted connection until it ends, times out, or shutdown drains it. `permit` holds its place
/// under the caps until then.
pub(crate) async fn run(
    stream: TcpStream,
    remote_addr: SocketAddr,
    context: Arc<Context>,
    permit: Permit,
    stop: watch::Receiver<bool>,
) {
    let _permit = permit;
    let Some(acceptor) = context.tls.clone() else {
        let info = ConnectionInfo { remote_addr, tls: false, client_common_name: None, client_node_name: None };
        return drive(stream, info, &context, stop).await;
    };
    let handshake = tokio::time::timeout(context.limits.header_timeout, acceptor.accept(stream)).await;
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            context.metrics.count_tls_failure();
            return tracing::debug!(%remote_addr, %error, "TLS handshake failed");
        }
        Err(_) => {
            context.metrics.count_timeout_handshake();
            return tracing::debug!(%remote_addr, "TLS handshake timed out");
        }
    };
    let certificates = stream.get_ref().1.peer_certificates();
    let leaf = certificates.and_then(|c| c.first());
    let client_common_name = leaf.and_then(|c| crate::identity::common_name(c));
    let client_node_name = leaf.and_then(|c| crate::identity::node_name(c));
    let info = ConnectionInfo { remote_addr, tls: true, client_common_name, client_node_name };
    drive(stream, info, &context, stop).await;
}

/// Runs hyper on `io`, watched for silence (see [`super::activity`]), until it ends, is silent too long, or
/// finishes gracefully after `stop` (the accept loop drops it if that takes longer than the drain timeout).
async fn drive<I>(io: I, info: ConnectionInfo, context: &Arc<Context>, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked::new(io, Arc::clone(&activity)));
    let service = {
        let (context, activity) = (Arc::clone(context), Arc::clone(&activity));
        hyper::service::service_fn(move |request| {
            handle(request, Arc::clone(&context), InFlight::start(&activity.in_flight), info.clone())
        })
    };
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(context.limits.header_timeout);
    let connection = builder.serve_connection(io, service);
    let connection = std::pin::pin!(connection);
    let limits = &context.limits;
    // A write blocked this long has a client that stopped reading: without this limit it would hold its slot
    // and its buffered answer for ever. A handler that takes its time, or a stream with nothing to send, blocks
    // no write and is left alone.
    let stall_timeout = limits.body_timeout.max(limits.idle_timeout);
    let mut watched = Watched::new(connection, activity, limits.idle_timeout, stall_timeout);
    let mut stopping = false;
    loop {
        tokio::select! {
            ending = &mut watched => {
                match ending {
                    Ending::Finished(Err(error)) if error.is_timeout() => context.metrics.count_timeout_header(),
                    Ending::Finished(Err(error)) => tracing::debug!(%error, "connection ended with an error"),
                    Ending::Finished(Ok(())) => {}
                    Ending::Silent(silence) => {
                        tracing::debug!(?silence, "connection closed after a silence");
                        context.metrics.count_timeout_idle();
                    }
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                watched.connection().graceful_shutdown();
            }
        }
    }
}

/// One request: the body gets its deadline, the request its connection's identity; an answer made after
/// the body timed out is replaced by `408`.
async fn handle(
    request: Request<Incoming>,
    context: Arc<Context>,
    in_flight: InFlight,
    info: ConnectionInfo,
) -> Result<Response<GuardedBody>, Infallible> {
    let timed_out = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + context.limits.body_timeout;
    let mut request =
        request.map(|incoming| axum::body::Body::new(TimeoutBody::new(incoming, deadline, Arc::clone(&timed_out))));
    request.extensions_mut().insert(axum::extract::ConnectInfo(info.remote_addr));
    request.extensions_mut().insert(info);
    let mut router = context.router.clone();
    let response = match tower_service::Service::call(&mut router, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let response = if timed_out.load(Ordering::Relaxed) {
        context.metrics.count_timeout_body();
        body_timeout_response(context.limits.body_timeout)
    } else {
        response
    };
    Ok(response.map(|body| GuardedBody::new(body, in_flight)))
}

/// `408` in Tally's error format, closing the connection (the rest of the body is not worth waiting for).
fn body_timeout_response(body_timeout: Duration) -> Response<axum::body::Body> {
    let message = format!(
        "the request body did not arrive completely within {} ms (the body timeout); the request was not \
         processed, send it again",
        body_timeout.as_millis()
    );
    let body = format!("{{\"error\":{{\"code\":\"body_timeout\",\"message\":\"{message}\"}}}}");
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
