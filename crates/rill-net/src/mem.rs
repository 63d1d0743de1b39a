//! An in-process network: many hosts in one process, connected by in-memory pipes.
//!
//! Each host gets its own [`Net`] view (`MemNet::host(ip)`) with its own addresses; a
//! connection is a pair of `tokio::io::duplex` pipes. The network can be cut between two
//! hosts: new connections across the cut never complete (as packets to a partitioned host
//! vanish) and existing ones fail on their next read or write, so failure detection, timeouts
//! and reconnection can be tested without real sockets. Randomness is seeded and the wall clock
//! follows tokio's (virtualisable) clock, so a test under `tokio::time::pause` is repeatable.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;

use crate::net::{Conn, Listener, Net};
use crate::time::Instant;

/// Bytes a pipe buffers in each direction before the writer waits.
const PIPE_BYTES: usize = 256 * 1024;

/// The whole in-process network. Cloning shares it.
#[derive(Clone)]
pub struct MemNet {
    state: Arc<Mutex<State>>,
}

struct State {
    listeners: HashMap<SocketAddr, mpsc::UnboundedSender<(MemConn, SocketAddr)>>,
    /// Host pairs that cannot reach each other, stored with the smaller address first.
    cut: HashSet<(IpAddr, IpAddr)>,
    next_port: u16,
    rng: u64,
    started: Instant,
    epoch_us: u64,
}

impl MemNet {
    /// A network whose random numbers follow `seed`.
    pub fn new(seed: u64) -> MemNet {
        MemNet {
            state: Arc::new(Mutex::new(State {
                listeners: HashMap::new(),
                cut: HashSet::new(),
                next_port: 40000,
                rng: seed,
                started: Instant::now(),
                // 2026-01-01T00:00:00Z: a fixed, plausible wall clock for objects' timestamps.
                epoch_us: 1_767_225_600_000_000,
            })),
        }
    }

    /// The view of the network from host `ip`.
    pub fn host(&self, ip: IpAddr) -> Arc<dyn Net> {
        Arc::new(MemHost {
            ip,
            net: self.clone(),
        })
    }

    /// Cuts the network between two hosts, both ways.
    pub fn partition(&self, a: IpAddr, b: IpAddr) {
        self.state.lock().cut.insert(pair(a, b));
    }

    /// Restores the network between two hosts.
    pub fn heal(&self, a: IpAddr, b: IpAddr) {
        self.state.lock().cut.remove(&pair(a, b));
    }

    fn is_cut(&self, a: IpAddr, b: IpAddr) -> bool {
        self.state.lock().cut.contains(&pair(a, b))
    }
}

fn pair(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

/// One splitmix64 step: a small, well-mixed, seedable generator.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct MemHost {
    ip: IpAddr,
    net: MemNet,
}

impl Net for MemHost {
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let result = (|| {
            if !addr.ip().is_unspecified() && addr.ip() != self.ip {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("{} is not an address of host {}", addr.ip(), self.ip),
                ));
            }
            let mut st = self.net.state.lock();
            let mut local = SocketAddr::new(self.ip, addr.port());
            if addr.port() == 0 {
                while st
                    .listeners
                    .contains_key(&SocketAddr::new(self.ip, st.next_port))
                {
                    st.next_port = st.next_port.wrapping_add(1).max(1024);
                }
                local.set_port(st.next_port);
                st.next_port = st.next_port.wrapping_add(1).max(1024);
            }
            if st.listeners.contains_key(&local) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{local} is in use"),
                ));
            }
            let (tx, rx) = mpsc::unbounded_channel();
            st.listeners.insert(local, tx);
            Ok(Box::new(MemListener {
                addr: local,
                rx,
                net: self.net.clone(),
            }) as Box<dyn Listener>)
        })();
        Box::pin(async move { result })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Conn>>> {
        let net = self.net.clone();
        let ip = self.ip;
        Box::pin(async move {
            if net.is_cut(ip, addr.ip()) {
                // Packets to a partitioned host vanish: the attempt never completes, and the
                // caller's timeout decides, as with a real network.
                futures::future::pending::<()>().await;
            }
            let accept = net.state.lock().listeners.get(&addr).cloned();
            let Some(accept) = accept else {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("nothing listens on {addr}"),
                ));
            };
            let (a, b) = tokio::io::duplex(PIPE_BYTES);
            let local = {
                let mut st = net.state.lock();
                let port = 1024 + (splitmix(&mut st.rng) % 60000) as u16;
                SocketAddr::new(ip, port)
            };
            let server_side = MemConn {
                pipe: b,
                link: (addr.ip(), ip),
                net: net.clone(),
            };
            accept
                .send((server_side, local))
                .map_err(|_| io::Error::new(io::ErrorKind::ConnectionRefused, "listener closed"))?;
            Ok(Box::new(MemConn {
                pipe: a,
                link: (ip, addr.ip()),
                net,
            }) as Box<dyn Conn>)
        })
    }

    fn now_us(&self) -> u64 {
        let st = self.net.state.lock();
        st.epoch_us + st.started.elapsed().as_micros() as u64
    }

    fn random_u64(&self) -> u64 {
        splitmix(&mut self.net.state.lock().rng)
    }
}

struct MemListener {
    addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<(MemConn, SocketAddr)>,
    net: MemNet,
}

impl Listener for MemListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Conn>, SocketAddr)>> {
        Box::pin(async move {
            match self.rx.recv().await {
                Some((conn, peer)) => Ok((Box::new(conn) as Box<dyn Conn>, peer)),
                None => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "listener closed",
                )),
            }
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        self.net.state.lock().listeners.remove(&self.addr);
    }
}

/// One end of an in-memory connection; fails once its hosts are cut apart.
struct MemConn {
    pipe: DuplexStream,
    link: (IpAddr, IpAddr),
    net: MemNet,
}

impl MemConn {
    fn check(&self) -> io::Result<()> {
        if self.net.is_cut(self.link.0, self.link.1) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "network partitioned",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for MemConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl AsyncWrite for MemConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[tokio::test]
    async fn hosts_connect_and_exchange_bytes() {
        let net = MemNet::new(7);
        let (a, b) = (net.host(ip(1)), net.host(ip(2)));
        let mut l = b.bind(SocketAddr::new(ip(2), 9000)).await.unwrap();
        let mut c = a.connect(SocketAddr::new(ip(2), 9000)).await.unwrap();
        let (mut s, peer) = l.accept().await.unwrap();
        assert_eq!(peer.ip(), ip(1));
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[tokio::test]
    async fn binding_checks_the_host_and_the_port() {
        let net = MemNet::new(1);
        let a = net.host(ip(1));
        assert!(a.bind(SocketAddr::new(ip(2), 1)).await.is_err());
        let l = a.bind(SocketAddr::new(ip(1), 5)).await.unwrap();
        assert_eq!(
            a.bind(SocketAddr::new(ip(1), 5))
                .await
                .err()
                .unwrap()
                .kind(),
            io::ErrorKind::AddrInUse
        );
        drop(l);
        assert!(a.bind(SocketAddr::new(ip(1), 5)).await.is_ok());
        let any = a.bind(SocketAddr::new(ip(1), 0)).await.unwrap();
        assert_ne!(any.local_addr().unwrap().port(), 0);
    }

    #[tokio::test]
    async fn connecting_to_nothing_is_refused() {
        let net = MemNet::new(1);
        let err = net
            .host(ip(1))
            .connect(SocketAddr::new(ip(2), 1))
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_breaks_connections_and_blocks_new_ones_until_healed() {
        let net = MemNet::new(3);
        let (a, b) = (net.host(ip(1)), net.host(ip(2)));
        let addr = SocketAddr::new(ip(2), 9000);
        let mut l = b.bind(addr).await.unwrap();
        let mut c = a.connect(addr).await.unwrap();
        let _s = l.accept().await.unwrap();
        net.partition(ip(2), ip(1));
        assert!(c.write_all(b"x").await.is_err());
        let attempt = crate::time::timeout(std::time::Duration::from_secs(5), a.connect(addr));
        assert!(
            attempt.await.is_err(),
            "a connect across a cut must not complete"
        );
        net.heal(ip(1), ip(2));
        assert!(a.connect(addr).await.is_ok());
    }

    #[test]
    fn randomness_follows_the_seed() {
        let draw = |seed| {
            let n = MemNet::new(seed).host(ip(1));
            (0..4).map(|_| n.random_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }
}
