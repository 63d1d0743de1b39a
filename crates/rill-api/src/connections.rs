//! A listener's limit on open client connections, and the clean refusal of one past it.
//!
//! [`ConnectionLimit::accept`] gives each accepted connection a [`ConnectionPermit`] for as
//! long as it stays open; when none is left it answers the newcomer with the listener's "too
//! many connections" message and closes it instead. Open connections and refusals are counted
//! for `/stats`. Protocol-free, so every listener (HTTP, PB, later the internode one) uses it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rill_net::{Conn, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a refused client gets to read the refusal before its socket is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// At most this many connections open at once on one listener.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    slots: Arc<Semaphore>,
    max: usize,
    refused: AtomicU64,
}

/// One open connection's slot, given back when dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    _slot: OwnedSemaphorePermit,
}

impl ConnectionLimit {
    /// A limit of `max` open connections (at least one).
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionLimit {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(max)),
                max,
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// The next connection on `listener` that the limit admits, with its slot. Connections
    /// past the limit are sent `refusal` and closed; failed accepts (out of descriptors and
    /// the like) are waited out rather than spun on. Cancel-safe.
    pub async fn accept(
        &self,
        listener: &mut dyn Listener,
        refusal: &Bytes,
    ) -> (Box<dyn Conn>, SocketAddr, ConnectionPermit) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => match self.admit() {
                    Some(slot) => return (stream, peer, slot),
                    None => {
                        tracing::debug!(%peer, "connection refused: too many connections");
                        refuse(stream, refusal.clone());
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// A slot for a newly accepted connection, or `None` (counted) when all are taken.
    pub fn admit(&self) -> Option<ConnectionPermit> {
        match self.inner.slots.clone().try_acquire_owned() {
            Ok(slot) => Some(ConnectionPermit { _slot: slot }),
            Err(_) => {
                self.inner.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.max - self.inner.slots.available_permits().min(self.inner.max)
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Resolves once every connection has closed (for a graceful shutdown).
    pub async fn all_closed(&self) {
        let max = u32::try_from(self.inner.max).unwrap_or(u32::MAX);
        // Taking every slot means none is held; the slots go back at once.
        let _all = self.inner.slots.acquire_many(max).await;
    }
}

/// Sends `message` to a client that was not admitted and closes the connection. What the
/// client sends meanwhile is read and thrown away (for a moment), so the close does not reset
/// the connection before the client has read the refusal. Runs in its own task: never blocks
/// the accept loop.
fn refuse(mut stream: Box<dyn Conn>, message: Bytes) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            stream.write_all(&message).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_counted_taken_and_given_back() {
        let limit = ConnectionLimit::new(2);
        let a = limit.admit().unwrap();
        let b = limit.admit().unwrap();
        assert_eq!(limit.open(), 2);
        assert!(limit.admit().is_none());
        assert_eq!(limit.refused(), 1);
        drop(a);
        assert_eq!(limit.open(), 1);
        let _c = limit.admit().unwrap();
        drop(b);
        let waiting = tokio::time::timeout(Duration::from_millis(50), limit.all_closed()).await;
        assert!(waiting.is_err(), "one connection is still open");
    }

    #[tokio::test]
    async fn all_closed_resolves_when_nothing_is_open() {
        let limit = ConnectionLimit::new(3);
        drop(limit.admit());
        tokio::time::timeout(Duration::from_secs(1), limit.all_closed())
            .await
            .expect("no connection is open");
        assert_eq!(limit.open(), 0, "the slots went back");
    }
}
