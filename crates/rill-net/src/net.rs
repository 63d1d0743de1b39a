//! The seam between a node and the world: listening, connecting, the wall clock and randomness.
//!
//! A node holds one `Arc<dyn Net>` and never calls `tokio::net`, `SystemTime` or a random
//! number generator of its own. [`TokioNet`] is the production implementation; the in-process
//! [`crate::MemNet`] runs many nodes in one test process; a deterministic simulator (seeded
//! message order, loss, partitions) slots in behind the same trait.
//!
//! Streams are boxed trait objects: a connection is opened once and then carries thousands of
//! messages, so the indirection costs nothing measurable while keeping every caller free of a
//! type parameter for the network.

use std::io;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to a peer.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// A bound listening socket.
pub trait Listener: Send + 'static {
    /// Waits for the next connection: the stream and the peer's address.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Conn>, SocketAddr)>>;
    /// The address actually bound (with the port chosen when 0 was asked).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Sockets, wall clock and randomness of one host.
pub trait Net: Send + Sync + 'static {
    /// Binds a listener on exactly `addr` (port 0 picks a free port).
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>>;
    /// Opens a stream to `addr`.
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Conn>>>;
    /// Wall-clock time in microseconds since the Unix epoch.
    fn now_us(&self) -> u64;
    /// A uniformly random 64-bit number (ids, nonces, jitter, peer selection).
    fn random_u64(&self) -> u64;

    /// Fills `out` with random bytes from [`Net::random_u64`].
    fn fill_random(&self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.random_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// The real network, clock and operating-system randomness, on tokio.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Conn>, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            // Requests and replies are small and latency-bound; Nagle would hold them back.
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream) as Box<dyn Conn>, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Net for TokioNet {
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TokioListener(l)) as Box<dyn Listener>)
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Conn>>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream) as Box<dyn Conn>)
        })
    }

    fn now_us(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    }

    fn random_u64(&self) -> u64 {
        rand::random()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn tokio_net_connects_on_loopback() {
        let net = TokioNet;
        let mut l = net.bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        let addr = l.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let client = tokio::spawn(async move {
            let mut c = TokioNet.connect(addr).await.unwrap();
            c.write_all(b"hi").await.unwrap();
        });
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        client.await.unwrap();
    }

    #[test]
    fn fill_random_fills_every_byte_position() {
        // A counter "rng" shows that partial chunks are filled too.
        struct Fixed;
        impl Net for Fixed {
            fn bind(&self, _: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
                unreachable!()
            }
            fn connect(&self, _: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Conn>>> {
                unreachable!()
            }
            fn now_us(&self) -> u64 {
                0
            }
            fn random_u64(&self) -> u64 {
                u64::MAX
            }
        }
        let mut out = [0u8; 13];
        Fixed.fill_random(&mut out);
        assert_eq!(out, [0xFF; 13]);
    }
}
