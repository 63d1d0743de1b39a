//! Serving one HTTP connection with hyper, and the clock that closes clients that start a
//! request and stall (slowloris).
//!
//! A request's clock starts when its first byte arrives on an idle connection; its header and
//! body must then all arrive within the read timeout. The socket is wrapped in [`ClockedIo`],
//! which starts the clock and fails the read once the deadline has passed, so hyper drops a
//! connection whose header is not complete in time; the body reader enforces the same deadline
//! while it waits for body bytes or for the request memory budget. When the request has been
//! read the clock stops, and an idle keep-alive connection may then wait for its next request
//! as long as the client likes (hyper's own header timeout would close idle connections too, so
//! it is off).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rill_net::Conn;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::Api;
use crate::client_limits::ClientLimits;

/// hyper's read buffer per connection: the largest request header accepted, and the most of a
/// body hyper holds before the body reader takes it (and charges it to the budget).
const MAX_BUF: usize = 32 * 1024;

/// When the request being read on a connection began; shared by the connection's socket and
/// its request handling.
#[derive(Debug)]
pub(crate) struct RequestClock {
    base: Instant,
    /// Microseconds after `base` (plus one) when the request under way began; 0 while idle.
    started: AtomicU64,
    /// Whether the request under way has been found past its deadline (counted once).
    expired: AtomicBool,
    clients: Arc<ClientLimits>,
}

impl RequestClock {
    fn new(clients: Arc<ClientLimits>) -> Self {
        RequestClock {
            base: Instant::now(),
            started: AtomicU64::new(0),
            expired: AtomicBool::new(false),
            clients,
        }
    }

    fn started_raw(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }

    fn begin(&self) {
        let since = self.base.elapsed().as_micros() as u64 + 1;
        if self
            .started
            .compare_exchange(0, since, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.expired.store(false, Ordering::Release);
        }
    }

    fn deadline_of(&self, raw: u64) -> Instant {
        self.base + Duration::from_micros(raw - 1) + self.clients.read_timeout
    }

    /// When the request under way must have arrived whole.
    pub(crate) fn deadline(&self) -> Instant {
        match self.started_raw() {
            0 => Instant::now() + self.clients.read_timeout,
            raw => self.deadline_of(raw),
        }
    }

    /// The request under way is past its deadline: counted the first time it is noticed
    /// (by the socket or by the body reader, whichever comes first).
    pub(crate) fn expire(&self) {
        if !self.expired.swap(true, Ordering::AcqRel) {
            self.clients.timed_out();
        }
    }

    /// Whether the request under way was found past its deadline.
    pub(crate) fn expired(&self) -> bool {
        self.expired.load(Ordering::Acquire)
    }

    /// The request has been read: the connection is idle until the next one begins.
    pub(crate) fn finished(&self) {
        self.started.store(0, Ordering::Release);
    }
}

/// A socket whose reads fail with `TimedOut` once the request under way is past its deadline.
struct ClockedIo {
    inner: Box<dyn Conn>,
    clock: Arc<RequestClock>,
    /// The deadline's timer, and the request start it was armed for.
    timer: Option<(u64, Pin<Box<Sleep>>)>,
}

impl AsyncRead for ClockedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let started = this.clock.started_raw();
        if started == 0 {
            this.timer = None;
        } else {
            if this
                .timer
                .as_ref()
                .is_none_or(|(armed, _)| *armed != started)
            {
                let deadline = this.clock.deadline_of(started);
                this.timer = Some((started, Box::pin(tokio::time::sleep_until(deadline))));
            }
            if let Some((_, timer)) = &mut this.timer
                && timer.as_mut().poll(cx).is_ready()
            {
                this.clock.expire();
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request not received in time",
                )));
            }
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if started == 0 && buf.filled().len() > before {
            // The first bytes of a request: its clock starts (the timer is armed on the
            // next read, which hyper makes as long as the request is incomplete).
            this.clock.begin();
        }
        result
    }
}

impl AsyncWrite for ClockedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves HTTP/1.1 on `stream` until the client closes it, it times out, or `stop` turns true
/// (then in-flight requests finish and the connection closes).
pub(crate) async fn serve_connection(
    api: Arc<Api>,
    stream: Box<dyn Conn>,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let clock = Arc::new(RequestClock::new(api.config.clients.clone()));
    let io = ClockedIo {
        inner: stream,
        clock: clock.clone(),
        timer: None,
    };
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        let api = api.clone();
        let clock = clock.clone();
        async move {
            if hyper::body::Body::is_end_stream(req.body()) {
                clock.finished();
            }
            req.extensions_mut().insert(clock.clone());
            let resp = super::handle(&api, peer, req.map(Body::new)).await;
            clock.finished();
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .header_read_timeout(None)
        .max_buf_size(MAX_BUF)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}
