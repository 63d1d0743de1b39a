//! One multiplexed connection: many concurrent requests, each with an id, a timeout and a reply.
//!
//! Every payload travels in a frame `kind (1 byte) | id (8 bytes, big-endian) | body`. A
//! request's reply carries the request's id; a one-way message (gossip, broadcasts) carries none
//! that matters. Both sides of a connection may send requests, though the node only issues
//! them on the connections it opened.
//!
//! Two tasks serve a connection. The writer drains a bounded queue: a caller whose peer is slow
//! waits to enqueue (backpressure) rather than growing memory, and everything queued while a
//! write was in progress goes out in the next single write — replica messages to one peer are
//! coalesced into as few syscalls as the load allows. The reader dispatches replies to their
//! waiting callers and runs incoming requests on the [`Service`], at most
//! [`MuxConfig::max_inflight`] at once per connection; past that it stops reading, which pushes
//! back on the peer through TCP.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::PeerName;
use crate::frame::{FrameCodec, encode_header};
use crate::handshake::Handshaken;
use crate::net::Conn;
use crate::server::Service;

const REQUEST: u8 = 1;
const REPLY: u8 = 2;
const REPLY_ERROR: u8 = 3;
const ONE_WAY: u8 = 4;
/// Bytes of `kind | id`.
const HEADER: usize = 9;
/// Writes are coalesced up to this many bytes.
const COALESCE: usize = 256 * 1024;
/// Bodies larger than this are written from their own buffer instead of being copied.
const COPY_LIMIT: usize = 64 * 1024;

/// Limits of one connection.
#[derive(Clone, Copy, Debug)]
pub struct MuxConfig {
    /// Largest frame accepted or sent.
    pub max_frame: usize,
    /// Messages queued for the writer before senders wait.
    pub queue: usize,
    /// Incoming requests served at once before the reader stops reading.
    pub max_inflight: usize,
}

impl Default for MuxConfig {
    fn default() -> Self {
        MuxConfig {
            max_frame: 64 * 1024 * 1024,
            queue: 1024,
            max_inflight: 1024,
        }
    }
}

/// Why a call to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The peer could not be reached (no connection, and none could be made now).
    #[error("{peer} is unreachable: {reason}")]
    Unreachable { peer: String, reason: String },
    /// The connection failed while the call was outstanding.
    #[error("connection to {peer} lost")]
    ConnectionLost { peer: String },
    /// No reply within the call's timeout.
    #[error("{peer} did not answer within {ms} ms")]
    Timeout { peer: String, ms: u64 },
    /// The peer answered with an error.
    #[error("{peer}: {message}")]
    Remote { peer: String, message: String },
    /// The message cannot be framed (over the frame limit).
    #[error("message of {len} bytes exceeds the internode frame limit of {max}")]
    TooLarge { len: usize, max: usize },
}

struct Outgoing {
    kind: u8,
    id: u64,
    body: Bytes,
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<Bytes, CallError>>>>;

/// A handle to a live multiplexed connection. Dropping the last handle closes it.
pub struct Mux {
    peer: PeerName,
    tx: mpsc::Sender<Outgoing>,
    pending: Arc<Pending>,
    next_id: AtomicU64,
    closed: CancellationToken,
    max_frame: usize,
}

impl Mux {
    /// Starts serving an authenticated connection; incoming requests go to `service`.
    pub fn start(hs: Handshaken, service: Arc<dyn Service>, config: MuxConfig) -> Arc<Mux> {
        let peer = hs.peer.clone();
        let (r, w) = tokio::io::split(hs.conn);
        let mut reader = FramedRead::new(r, FrameCodec::new(config.max_frame));
        reader.read_buffer_mut().extend_from_slice(&hs.read_buf);
        let (tx, rx) = mpsc::channel(config.queue);
        let pending: Arc<Pending> = Arc::default();
        let closed = CancellationToken::new();
        tokio::spawn(write_loop(w, rx, closed.clone(), config.max_frame));
        tokio::spawn(read_loop(ReadLoop {
            reader,
            pending: pending.clone(),
            closed: closed.clone(),
            serve: Dispatch {
                peer: peer.clone(),
                tx: tx.clone(),
                service,
                inflight: Arc::new(Semaphore::new(config.max_inflight)),
                closed: closed.clone(),
            },
        }));
        Arc::new(Mux {
            peer,
            tx,
            pending,
            next_id: AtomicU64::new(1),
            closed,
            max_frame: config.max_frame,
        })
    }

    /// The authenticated peer at the other end.
    pub fn peer(&self) -> &PeerName {
        &self.peer
    }

    /// Whether the connection has failed or been closed.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves when the connection fails or is closed.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Closes the connection; outstanding calls fail with `ConnectionLost`.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Sends a request and waits up to `timeout` for its reply.
    pub async fn call(&self, body: Bytes, timeout: Duration) -> Result<Bytes, CallError> {
        self.check_size(&body)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, reply) = oneshot::channel();
        self.pending.lock().insert(id, done);
        let exchange = async {
            if self.is_closed() {
                return Err(self.lost());
            }
            let out = Outgoing {
                kind: REQUEST,
                id,
                body,
            };
            self.tx.send(out).await.map_err(|_| self.lost())?;
            reply.await.unwrap_or_else(|_| Err(self.lost()))
        };
        let result = crate::time::timeout(timeout, exchange).await;
        self.pending.lock().remove(&id);
        result.unwrap_or_else(|_| {
            Err(CallError::Timeout {
                peer: self.peer.to_string(),
                ms: timeout.as_millis() as u64,
            })
        })
    }

    /// Sends a one-way message (no reply); waits only for room in the queue.
    pub async fn cast(&self, body: Bytes) -> Result<(), CallError> {
        self.check_size(&body)?;
        if self.is_closed() {
            return Err(self.lost());
        }
        let out = Outgoing {
            kind: ONE_WAY,
            id: 0,
            body,
        };
        self.tx.send(out).await.map_err(|_| self.lost())
    }

    fn check_size(&self, body: &Bytes) -> Result<(), CallError> {
        if body.len() + HEADER > self.max_frame {
            return Err(CallError::TooLarge {
                len: body.len(),
                max: self.max_frame - HEADER,
            });
        }
        Ok(())
    }

    fn lost(&self) -> CallError {
        CallError::ConnectionLost {
            peer: self.peer.to_string(),
        }
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

async fn write_loop(
    mut w: WriteHalf<Box<dyn Conn>>,
    mut rx: mpsc::Receiver<Outgoing>,
    closed: CancellationToken,
    max_frame: usize,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = closed.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        // Everything already queued goes out in this write, up to the coalescing bound.
        while let Some(m) = next.take() {
            if encode(&m, max_frame, &mut buf).is_err() {
                continue; // checked by the sender; unreachable in practice
            }
            if m.body.len() > COPY_LIMIT {
                if w.write_all(&buf).await.is_err() || w.write_all(&m.body).await.is_err() {
                    closed.cancel();
                    return;
                }
                buf.clear();
            }
            if buf.len() < COALESCE {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() && w.write_all(&buf).await.is_err() {
            closed.cancel();
            return;
        }
        buf.clear();
        if buf.capacity() > 4 * COALESCE {
            buf = BytesMut::with_capacity(16 * 1024);
        }
    }
    let _ = w.shutdown().await;
}

/// Appends a frame's header (and, for small bodies, the body) to `buf`.
fn encode(m: &Outgoing, max_frame: usize, buf: &mut BytesMut) -> Result<(), ()> {
    encode_header(HEADER + m.body.len(), max_frame, buf).map_err(|_| ())?;
    buf.put_u8(m.kind);
    buf.put_u64(m.id);
    if m.body.len() <= COPY_LIMIT {
        buf.extend_from_slice(&m.body);
    }
    Ok(())
}

struct ReadLoop {
    reader: FramedRead<ReadHalf<Box<dyn Conn>>, FrameCodec>,
    pending: Arc<Pending>,
    closed: CancellationToken,
    serve: Dispatch,
}

/// What serving the peer's requests needs (apart from the reader, so it can be shared with the
/// tasks that serve them).
struct Dispatch {
    peer: PeerName,
    tx: mpsc::Sender<Outgoing>,
    service: Arc<dyn Service>,
    inflight: Arc<Semaphore>,
    closed: CancellationToken,
}

async fn read_loop(mut rl: ReadLoop) {
    let reason = loop {
        let frame = tokio::select! {
            f = rl.reader.next() => f,
            _ = rl.closed.cancelled() => break None,
        };
        let mut frame = match frame {
            Some(Ok(f)) => f,
            Some(Err(e)) => break Some(e.to_string()),
            None => break None,
        };
        if frame.len() < HEADER {
            break Some(format!("frame of {} bytes has no header", frame.len()));
        }
        let kind = frame.get_u8();
        let id = frame.get_u64();
        match kind {
            REPLY | REPLY_ERROR => {
                let waiter = rl.pending.lock().remove(&id);
                if let Some(w) = waiter {
                    let reply = if kind == REPLY {
                        Ok(frame)
                    } else {
                        Err(CallError::Remote {
                            peer: rl.serve.peer.to_string(),
                            message: String::from_utf8_lossy(&frame).into_owned(),
                        })
                    };
                    let _ = w.send(reply);
                }
            }
            REQUEST => {
                if let Some(result) = rl.serve.service.answer_now(&rl.serve.peer, &frame) {
                    let (kind, body) = match result {
                        Ok(body) => (REPLY, body),
                        Err(message) => (REPLY_ERROR, Bytes::from(message)),
                    };
                    match rl.serve.tx.try_send(Outgoing { kind, id, body }) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(out)) => {
                            // The writer is behind: wait for room on a task, not here, holding
                            // an in-flight slot like any served request, so a peer that stops
                            // reading its replies stops our reading too, never piles them up.
                            let permit = tokio::select! {
                                p = rl.serve.inflight.clone().acquire_owned() => p.expect("never closed"),
                                _ = rl.closed.cancelled() => break None,
                            };
                            let tx = rl.serve.tx.clone();
                            tokio::spawn(async move {
                                let _ = tx.send(out).await;
                                drop(permit);
                            });
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => break None,
                    }
                    continue;
                }
                if !rl.serve.spawn(kind, id, frame).await {
                    break None;
                }
            }
            ONE_WAY => {
                if !rl.serve.spawn(kind, id, frame).await {
                    break None;
                }
            }
            other => break Some(format!("unknown frame kind {other}")),
        }
    };
    if let Some(reason) = reason {
        tracing::warn!(peer = %rl.serve.peer, %reason, "internode connection dropped");
    }
    rl.closed.cancel();
    let lost = CallError::ConnectionLost {
        peer: rl.serve.peer.to_string(),
    };
    for (_, w) in rl.pending.lock().drain() {
        let _ = w.send(Err(lost.clone()));
    }
}

impl Dispatch {
    /// Serves a request on its own task (at most `max_inflight` at once: waiting for a slot
    /// stops the reading, which pushes back on the peer). Returns false once the connection
    /// closed.
    async fn spawn(&self, kind: u8, id: u64, frame: Bytes) -> bool {
        let permit = tokio::select! {
            p = self.inflight.clone().acquire_owned() => p.expect("never closed"),
            _ = self.closed.cancelled() => return false,
        };
        let fut = self.service.request(self.peer.clone(), frame);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = fut.await;
            drop(permit);
            if kind == REQUEST {
                let (kind, body) = match result {
                    Ok(body) => (REPLY, body),
                    Err(message) => (REPLY_ERROR, Bytes::from(message)),
                };
                let _ = tx.send(Outgoing { kind, id, body }).await;
            }
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{self, Auth, Purpose};
    use crate::mem::MemNet;
    use futures::future::BoxFuture;
    use std::net::{IpAddr, SocketAddr};

    /// Echoes requests; "slow" waits a second; "fail" answers an error.
    struct Echo;
    impl Service for Echo {
        fn request(
            &self,
            _peer: PeerName,
            body: Bytes,
        ) -> BoxFuture<'static, Result<Bytes, String>> {
            Box::pin(async move {
                match &body[..] {
                    b"slow" => {
                        crate::time::sleep(Duration::from_secs(1)).await;
                        Ok(body)
                    }
                    b"fail" => Err("refused".into()),
                    _ => Ok(body),
                }
            })
        }
        fn stream(&self, _: PeerName, _: crate::BulkStream) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    async fn connected(net: &MemNet) -> (Arc<Mux>, Arc<Mux>) {
        let (a, b) = (
            net.host(IpAddr::from([10, 0, 0, 1])),
            net.host(IpAddr::from([10, 0, 0, 2])),
        );
        let addr = SocketAddr::from(([10, 0, 0, 2], 7));
        let mut l = b.bind(addr).await.unwrap();
        let c = a.connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        let b2 = b.clone();
        let server = tokio::spawn(async move {
            handshake::accept(s, &*b2, &Auth::none(), "b")
                .await
                .unwrap()
        });
        let hc = handshake::connect(c, &*a, &Auth::none(), "a", Purpose::Mux)
            .await
            .unwrap();
        let hs = server.await.unwrap();
        let cfg = MuxConfig::default();
        (
            Mux::start(hc, Arc::new(Echo), cfg),
            Mux::start(hs, Arc::new(Echo), cfg),
        )
    }

    #[tokio::test]
    async fn concurrent_calls_get_their_own_replies() {
        let net = MemNet::new(1);
        let (client, _server) = connected(&net).await;
        let calls = (0..200u32).map(|i| {
            let c = client.clone();
            async move {
                let body = Bytes::from(i.to_string());
                (i, c.call(body, Duration::from_secs(5)).await.unwrap())
            }
        });
        for (i, reply) in futures::future::join_all(calls).await {
            assert_eq!(reply, Bytes::from(i.to_string()));
        }
        // A large body (past the copy limit) travels whole.
        let big = Bytes::from(vec![7u8; 300 * 1024]);
        assert_eq!(
            client
                .call(big.clone(), Duration::from_secs(5))
                .await
                .unwrap(),
            big
        );
    }

    #[tokio::test]
    async fn remote_errors_come_back_as_errors() {
        let net = MemNet::new(1);
        let (client, _server) = connected(&net).await;
        let err = client
            .call(Bytes::from_static(b"fail"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            CallError::Remote {
                peer: "b".into(),
                message: "refused".into()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reply_times_out_and_later_calls_still_work() {
        let net = MemNet::new(1);
        let (client, _server) = connected(&net).await;
        let err = client
            .call(Bytes::from_static(b"slow"), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Timeout { ms: 100, .. }));
        let ok = client
            .call(Bytes::from_static(b"x"), Duration::from_secs(5))
            .await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"x"));
    }

    #[tokio::test]
    async fn closing_fails_outstanding_and_later_calls() {
        let net = MemNet::new(1);
        let (client, server) = connected(&net).await;
        let c2 = client.clone();
        let outstanding = tokio::spawn(async move {
            c2.call(Bytes::from_static(b"slow"), Duration::from_secs(30))
                .await
        });
        tokio::task::yield_now().await;
        server.close();
        drop(server);
        let err = outstanding.await.unwrap().unwrap_err();
        assert!(matches!(err, CallError::ConnectionLost { .. }), "{err:?}");
        client.closed().await;
        assert!(client.is_closed());
        let err = client
            .call(Bytes::from_static(b"x"), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::ConnectionLost { .. }));
    }

    #[tokio::test]
    async fn oversize_messages_are_refused_before_sending() {
        let net = MemNet::new(1);
        let (client, _server) = connected(&net).await;
        let err = client
            .call(
                Bytes::from(vec![0u8; 65 * 1024 * 1024]),
                Duration::from_secs(1),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::TooLarge { .. }));
    }
}
