//! Request and response body wrappers: the body-read deadline, and the in-flight count that keeps a
//! connection with a request (or a streaming answer) from being closed as idle (see [`super::activity`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error a request body yields when its deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body timeout")]
pub(crate) struct BodyTimedOut;

/// A request body that fails with [`BodyTimedOut`] (and raises `timed_out`) if it has not been received
/// completely by `deadline`.
pub(crate) struct TimeoutBody {
    /// The body as hyper reads it.
    inner: hyper::body::Incoming,
    /// When the body must be complete: the body timeout after the request head arrived.
    deadline: Instant,
    /// The timer, made on the first poll that has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Raised when the deadline passed: the request is then answered `408` whatever the handler made of the
    /// error.
    timed_out: Arc<AtomicBool>,
}

impl TimeoutBody {
    /// Wraps `inner`, due by `deadline`.
    pub(crate) fn new(inner: hyper::body::Incoming, deadline: Instant, timed_out: Arc<AtomicBool>) -> TimeoutBody {
        TimeoutBody { inner, deadline, sleep: None, timed_out }
    }
}

impl Body for TimeoutBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts a request in flight on its connection from when its head arrived until its answer has been sent
/// (or dropped): while this is above zero the idle timeout does not apply, only the stall timeout of a blocked
/// write ([`super::activity`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more request in `counter`.
    pub(crate) fn start(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let previous = self.0.fetch_sub(1, Ordering::Relaxed);
        assert!(previous > 0, "a request finished that was never counted in flight");
    }
}

/// An answer's body that holds its request's [`InFlight`] until the body is done and dropped.
pub(crate) struct GuardedBody {
    /// The router's body.
    inner: axum::body::Body,
    /// Released with the body.
    _in_flight: InFlight,
}

impl GuardedBody {
    /// Wraps `inner`.
    pub(crate) fn new(inner: axum::body::Body, in_flight: InFlight) -> GuardedBody {
        GuardedBody { inner, _in_flight: in_flight }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
