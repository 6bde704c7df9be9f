//! What a connection's bytes are doing, and when its silence ends it.
//!
//! [`Tracked`] wraps the connection's I/O and records in [`Activity`] when bytes last moved and since when the
//! server has had bytes it could not write (a `poll_write` or `poll_flush` that returned `Pending`: the socket's
//! send buffer is full). [`Watched`] polls hyper's connection and, after every poll, the deadline that activity
//! gives:
//!
//! ```text
//!  nothing in flight                  last bytes moved  + idle timeout   ──▶ closed (Silence::Idle)
//!  in flight, a write blocked         blocked since     + stall timeout  ──▶ closed (Silence::Stalled)
//!  in flight, no write blocked        no deadline: a handler still computing its answer (a blocking read), or
//!                                     a streaming answer (Server-Sent Events) with nothing to send right now
//! ```
//!
//! A slow request head or body is not judged here: hyper's header timeout and the body's own deadline
//! ([`super::body::TimeoutBody`]) cut those off.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `blocked_since_ms` when no write is blocked.
const NOT_BLOCKED: u64 = u64::MAX;

/// Which silence ended a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Silence {
    /// No request in flight and no bytes moved for the idle timeout.
    Idle,
    /// A request in flight and a write blocked for the stall timeout: the client stopped reading its answer.
    Stalled,
}

/// When a connection last moved bytes, whether a write of it is blocked, and how many of its requests are in
/// flight. Updated from the connection's own task only (by [`Tracked`] and the in-flight guards), so relaxed
/// atomics suffice; they are atomics only because the task's pieces share it through `Arc`s.
///
/// Invariant: when a write is blocked, it was blocked no earlier than the connection started
/// (`blocked_since_ms` is `NOT_BLOCKED` or at most the time elapsed since `base`).
pub(crate) struct Activity {
    /// The connection's start, the origin of the millisecond counts.
    base: Instant,
    /// Milliseconds from `base` to the last read or write that moved bytes.
    last_ms: AtomicU64,
    /// Milliseconds from `base` to the first `Pending` write or flush since the last write that made progress;
    /// [`NOT_BLOCKED`] when the last write or flush completed.
    blocked_since_ms: AtomicU64,
    /// Requests whose answer has not been sent yet.
    pub(crate) in_flight: Arc<AtomicUsize>,
}

impl Activity {
    /// A connection that just started.
    pub(crate) fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            blocked_since_ms: AtomicU64::new(NOT_BLOCKED),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Milliseconds since the connection started.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Records bytes read now.
    fn read(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Records bytes written now: any blocked write made progress.
    fn wrote(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
        self.unblock();
    }

    /// Records a write or flush that could not go on now; the first one since the last progress starts the
    /// stall clock.
    fn block(&self) {
        let now = self.now_ms();
        let _ = self.blocked_since_ms.compare_exchange(NOT_BLOCKED, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Records a write or flush that completed (or failed, which ends the connection anyway).
    fn unblock(&self) {
        self.blocked_since_ms.store(NOT_BLOCKED, Ordering::Relaxed);
    }

    /// When the connection's silence ends it, and which silence that is; `None` while it may stay silent for
    /// as long as it likes (module doc).
    fn silence_deadline(&self, idle_timeout: Duration, stall_timeout: Duration) -> Option<(Instant, Silence)> {
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let last = self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            return Some((last + idle_timeout, Silence::Idle));
        }
        let blocked_since_ms = self.blocked_since_ms.load(Ordering::Relaxed);
        if blocked_since_ms == NOT_BLOCKED {
            return None;
        }
        assert!(blocked_since_ms <= self.now_ms(), "a write blocked at {blocked_since_ms} ms, in the future");
        Some((self.base + Duration::from_millis(blocked_since_ms) + stall_timeout, Silence::Stalled))
    }
}

/// An I/O stream that records in [`Activity`] every read or write that moved bytes, and every write or flush
/// that had to wait for the peer.
pub(crate) struct Tracked<I> {
    /// The stream.
    inner: I,
    /// Where moves are recorded.
    activity: Arc<Activity>,
}

impl<I> Tracked<I> {
    /// Wraps `inner`, recording in `activity`.
    pub(crate) fn new(inner: I, activity: Arc<Activity>) -> Tracked<I> {
        Tracked { inner, activity }
    }

    /// Records the outcome of a write.
    fn record_write(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Pending => self.activity.block(),
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.wrote(),
            Poll::Ready(_) => self.activity.unblock(),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        self.record_write(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, buffers);
        self.record_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        match result {
            Poll::Pending => self.activity.block(),
            Poll::Ready(_) => self.activity.unblock(),
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a [`Watched`] connection ended.
#[derive(Debug)]
pub(crate) enum Ending<T> {
    /// The connection future finished with this output.
    Finished(T),
    /// The connection was silent too long (it is dropped with the `Watched`).
    Silent(Silence),
}

/// A connection future and the silence rules of its [`Activity`] (module doc), checked after every poll of
/// the connection, since only that poll changes the activity.
pub(crate) struct Watched<'a, C> {
    /// hyper's connection.
    connection: Pin<&'a mut C>,
    /// What its bytes are doing.
    activity: Arc<Activity>,
    /// The silence allowed with nothing in flight.
    idle_timeout: Duration,
    /// How long a write may stay blocked with a request in flight.
    stall_timeout: Duration,
    /// The timer, armed at `armed`.
    timer: Pin<Box<Sleep>>,
    /// When the timer fires, if it is armed. It is never later than the deadline in force, but may be earlier
    /// (bytes moved since it was armed): it is then re-armed when it fires, not on every move.
    armed: Option<Instant>,
}

impl<'a, C: Future> Watched<'a, C> {
    /// Watches `connection` with `activity`.
    pub(crate) fn new(
        connection: Pin<&'a mut C>,
        activity: Arc<Activity>,
        idle_timeout: Duration,
        stall_timeout: Duration,
    ) -> Watched<'a, C> {
        let timer = Box::pin(tokio::time::sleep(idle_timeout));
        Watched { connection, activity, idle_timeout, stall_timeout, timer, armed: None }
    }

    /// The connection (to start its graceful shutdown).
    pub(crate) fn connection(&mut self) -> Pin<&mut C> {
        self.connection.as_mut()
    }
}

impl<C: Future> Future for Watched<'_, C> {
    type Output = Ending<C::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(output) = this.connection.as_mut().poll(cx) {
            return Poll::Ready(Ending::Finished(output));
        }
        loop {
            let Some((deadline, silence)) = this.activity.silence_deadline(this.idle_timeout, this.stall_timeout)
            else {
                this.armed = None;
                return Poll::Pending;
            };
            if deadline <= Instant::now() {
                return Poll::Ready(Ending::Silent(silence));
            }
            if this.armed.is_none_or(|armed| deadline < armed) {
                this.timer.as_mut().reset(deadline);
                this.armed = Some(deadline);
            }
            match this.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => this.armed = None,
            }
        }
    }
}
