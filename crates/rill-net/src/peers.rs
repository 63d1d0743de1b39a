//! The table of peers a node talks to: one multiplexed connection each, opened on first use,
//! reopened after a failure with exponential backoff.
//!
//! A call to a peer that is connected costs a lock-free load of its connection handle. A call
//! to a peer that is not connects first (one attempt at a time per peer; concurrent callers
//! wait for it). After a failed attempt the peer is left alone for a backoff that doubles up to
//! a maximum, and calls during the backoff fail at once with the last error: a coordinator
//! counts the replica as failed immediately instead of waiting for its timeout, and a dead peer
//! costs one connection attempt per backoff period, not one per request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::PeerName;
use crate::handshake::{self, Auth, Purpose};
use crate::mux::{CallError, Mux, MuxConfig};
use crate::net::Net;
use crate::server::Service;
use crate::stream::BulkStream;
use crate::time::Instant;

/// Connection policy.
#[derive(Clone, Copy, Debug)]
pub struct PeersConfig {
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub mux: MuxConfig,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(100),
            // Short enough that a returning node is reconnected within the failure
            // detector's 5 s promise.
            backoff_max: Duration::from_secs(2),
            mux: MuxConfig::default(),
        }
    }
}

/// What `rill admin` and `/stats` show of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub name: PeerName,
    pub addr: SocketAddr,
    pub connected: bool,
    pub last_error: Option<String>,
}

/// A node's peers. Cheap to clone.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

struct Inner {
    me: PeerName,
    net: Arc<dyn Net>,
    auth: Auth,
    service: Arc<dyn Service>,
    config: PeersConfig,
    table: Mutex<HashMap<PeerName, Arc<Peer>>>,
}

struct Peer {
    name: PeerName,
    addr: Mutex<SocketAddr>,
    live: ArcSwapOption<Mux>,
    dial: tokio::sync::Mutex<Dial>,
    last_error: Mutex<Option<String>>,
}

#[derive(Default)]
struct Dial {
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Peers {
    pub fn new(
        me: PeerName,
        net: Arc<dyn Net>,
        auth: Auth,
        service: Arc<dyn Service>,
        config: PeersConfig,
    ) -> Peers {
        Peers {
            inner: Arc::new(Inner {
                me,
                net,
                auth,
                service,
                config,
                table: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Adds a peer, or changes where it is reached (closing a connection to the old address).
    pub fn set_address(&self, name: &PeerName, addr: SocketAddr) {
        let mut table = self.inner.table.lock();
        match table.get(name) {
            Some(p) => {
                let mut current = p.addr.lock();
                if *current != addr {
                    *current = addr;
                    if let Some(old) = p.live.swap(None) {
                        old.close();
                    }
                }
            }
            None => {
                table.insert(
                    name.clone(),
                    Arc::new(Peer {
                        name: name.clone(),
                        addr: Mutex::new(addr),
                        live: ArcSwapOption::empty(),
                        dial: tokio::sync::Mutex::new(Dial::default()),
                        last_error: Mutex::new(None),
                    }),
                );
            }
        }
    }

    /// Forgets a peer and closes its connection.
    pub fn remove(&self, name: &str) {
        if let Some(p) = self.inner.table.lock().remove(name)
            && let Some(m) = p.live.swap(None)
        {
            m.close();
        }
    }

    /// The peers known, with their connection state.
    pub fn status(&self) -> Vec<PeerStatus> {
        let mut out: Vec<PeerStatus> = self
            .inner
            .table
            .lock()
            .values()
            .map(|p| PeerStatus {
                name: p.name.clone(),
                addr: *p.addr.lock(),
                connected: p.live.load().as_ref().is_some_and(|m| !m.is_closed()),
                last_error: p.last_error.lock().clone(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Sends a request to `name` and waits up to `timeout` (connecting included) for the reply.
    pub async fn call(
        &self,
        name: &PeerName,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let started = Instant::now();
        let mux = self.connection(name, timeout).await?;
        let left = timeout.saturating_sub(started.elapsed());
        mux.call(body, left).await
    }

    /// Sends a one-way message to `name`.
    pub async fn cast(&self, name: &PeerName, body: Bytes) -> Result<(), CallError> {
        let mux = self
            .connection(name, self.inner.config.connect_timeout)
            .await?;
        mux.cast(body).await
    }

    /// Opens a dedicated bulk stream to `name` and sends `first` on it.
    pub async fn open_stream(
        &self,
        name: &PeerName,
        first: Bytes,
    ) -> Result<BulkStream, CallError> {
        let addr = self.peer(name)?.addr.lock().to_owned();
        let hs = self.dial(addr, Some(name), Purpose::Stream).await?;
        let mut stream = BulkStream::new(hs, self.inner.config.mux.max_frame);
        stream
            .send(first)
            .await
            .map_err(|e| CallError::Unreachable {
                peer: name.to_string(),
                reason: e.to_string(),
            })?;
        Ok(stream)
    }

    /// Connects to whatever node listens at `addr` (for a join, before its name is known) and
    /// sends it one request. Returns the peer's authenticated name and the reply.
    pub async fn call_address(
        &self,
        addr: SocketAddr,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(PeerName, Bytes), CallError> {
        let started = Instant::now();
        let hs = crate::time::timeout(timeout, self.dial(addr, None, Purpose::Mux))
            .await
            .map_err(|_| CallError::Unreachable {
                peer: addr.to_string(),
                reason: "connection timed out".into(),
            })??;
        let name = hs.peer.clone();
        let mux = Mux::start(hs, self.inner.service.clone(), self.inner.config.mux);
        let reply = mux
            .call(body, timeout.saturating_sub(started.elapsed()))
            .await;
        mux.close();
        Ok((name, reply?))
    }

    fn peer(&self, name: &PeerName) -> Result<Arc<Peer>, CallError> {
        self.inner
            .table
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| CallError::Unreachable {
                peer: name.to_string(),
                reason: "not a known peer".into(),
            })
    }

    /// The live connection to `name`, opening one if needed and allowed.
    async fn connection(&self, name: &PeerName, timeout: Duration) -> Result<Arc<Mux>, CallError> {
        let peer = self.peer(name)?;
        if let Some(m) = peer.live.load_full().filter(|m| !m.is_closed()) {
            return Ok(m);
        }
        let mut dial = peer.dial.lock().await;
        // Someone else may have connected while we waited for the lock.
        if let Some(m) = peer.live.load_full().filter(|m| !m.is_closed()) {
            return Ok(m);
        }
        let unreachable = |reason: String| CallError::Unreachable {
            peer: name.to_string(),
            reason,
        };
        if let Some(at) = dial.retry_at
            && Instant::now() < at
        {
            let reason = peer.last_error.lock().clone().unwrap_or_default();
            return Err(unreachable(reason));
        }
        let addr = *peer.addr.lock();
        let limit = timeout.min(self.inner.config.connect_timeout);
        let attempt = crate::time::timeout(limit, self.dial(addr, Some(name), Purpose::Mux)).await;
        match attempt {
            Ok(Ok(hs)) => {
                let mux = Mux::start(hs, self.inner.service.clone(), self.inner.config.mux);
                peer.live.store(Some(mux.clone()));
                *dial = Dial::default();
                *peer.last_error.lock() = None;
                Ok(mux)
            }
            Ok(Err(e)) => {
                self.back_off(&peer, &mut dial, e.to_string());
                Err(e)
            }
            Err(_) => {
                let reason = format!("connecting to {addr} timed out");
                self.back_off(&peer, &mut dial, reason.clone());
                Err(unreachable(reason))
            }
        }
    }

    fn back_off(&self, peer: &Peer, dial: &mut Dial, reason: String) {
        let c = &self.inner.config;
        dial.backoff = (dial.backoff * 2).clamp(c.backoff_min, c.backoff_max);
        // Up to 25% jitter, so peers that lost a node together do not retry in lockstep.
        let jitter_ms = self.inner.net.random_u64() % (dial.backoff.as_millis() as u64 / 4 + 1);
        dial.retry_at = Some(Instant::now() + dial.backoff + Duration::from_millis(jitter_ms));
        *peer.last_error.lock() = Some(reason);
    }

    /// Connects to `addr` and authenticates, checking the peer's name when one is expected.
    async fn dial(
        &self,
        addr: SocketAddr,
        expect: Option<&PeerName>,
        purpose: Purpose,
    ) -> Result<handshake::Handshaken, CallError> {
        let peer_label = expect.map_or_else(|| addr.to_string(), |n| n.to_string());
        let unreachable = |reason: String| CallError::Unreachable {
            peer: peer_label.clone(),
            reason,
        };
        let conn = self
            .inner
            .net
            .connect(addr)
            .await
            .map_err(|e| unreachable(format!("connecting to {addr}: {e}")))?;
        let hs = handshake::connect(
            conn,
            &*self.inner.net,
            &self.inner.auth,
            &self.inner.me,
            purpose,
        )
        .await
        .map_err(|e| unreachable(e.to_string()))?;
        if let Some(expected) = expect
            && hs.peer != *expected
        {
            return Err(unreachable(format!(
                "{addr} answers as node {}, not {expected}",
                hs.peer
            )));
        }
        Ok(hs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemNet;
    use crate::server::{ServeOptions, serve};
    use futures::future::BoxFuture;
    use std::net::IpAddr;

    struct Named(&'static str);
    impl Service for Named {
        fn request(
            &self,
            _peer: PeerName,
            body: Bytes,
        ) -> BoxFuture<'static, Result<Bytes, String>> {
            let me = self.0;
            Box::pin(async move {
                let mut out = me.as_bytes().to_vec();
                out.extend_from_slice(&body);
                Ok(Bytes::from(out))
            })
        }
        fn stream(&self, _: PeerName, mut s: BulkStream) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                while let Some(Ok(f)) = s.recv().await {
                    if s.send(f).await.is_err() {
                        break;
                    }
                }
            })
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    async fn listen(net: &MemNet, n: u8, name: &'static str, auth: Auth) -> SocketAddr {
        let host = net.host(ip(n));
        let l = host.bind(SocketAddr::new(ip(n), 8099)).await.unwrap();
        let addr = l.local_addr().unwrap();
        let opts = ServeOptions {
            net: host,
            auth,
            me: PeerName::from(name),
            mux: MuxConfig::default(),
            max_connections: 16,
        };
        tokio::spawn(serve(l, opts, Arc::new(Named(name))));
        addr
    }

    fn client(net: &MemNet, auth: Auth) -> Peers {
        Peers::new(
            PeerName::from("a"),
            net.host(ip(1)),
            auth,
            Arc::new(Named("a")),
            PeersConfig::default(),
        )
    }

    #[tokio::test]
    async fn calls_connect_on_demand_and_reuse_the_connection() {
        let net = MemNet::new(2);
        let addr = listen(&net, 2, "b", Auth::new(b"k")).await;
        let peers = client(&net, Auth::new(b"k"));
        let b = PeerName::from("b");
        peers.set_address(&b, addr);
        assert!(!peers.status()[0].connected);
        let reply = peers
            .call(&b, Bytes::from_static(b"!"), Duration::from_secs(5))
            .await;
        assert_eq!(reply.unwrap(), Bytes::from_static(b"b!"));
        assert!(peers.status()[0].connected);
        let mut s = peers
            .open_stream(&b, Bytes::from_static(b"first"))
            .await
            .unwrap();
        assert_eq!(
            s.recv().await.unwrap().unwrap(),
            Bytes::from_static(b"first")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_peer_fails_fast_during_backoff_then_recovers() {
        let net = MemNet::new(2);
        let peers = client(&net, Auth::none());
        let b = PeerName::from("b");
        peers.set_address(&b, SocketAddr::new(ip(2), 8099));
        let first = peers.call(&b, Bytes::new(), Duration::from_secs(5)).await;
        assert!(matches!(first, Err(CallError::Unreachable { .. })));
        // The node comes up, but during the backoff calls fail without trying.
        listen(&net, 2, "b", Auth::none()).await;
        let during = peers.call(&b, Bytes::new(), Duration::from_secs(5)).await;
        assert!(matches!(during, Err(CallError::Unreachable { .. })));
        crate::time::sleep(Duration::from_secs(3)).await;
        let after = peers
            .call(&b, Bytes::from_static(b"x"), Duration::from_secs(5))
            .await;
        assert_eq!(after.unwrap(), Bytes::from_static(b"bx"));
    }

    #[tokio::test]
    async fn a_wrong_secret_or_wrong_name_is_refused() {
        let net = MemNet::new(2);
        let addr = listen(&net, 2, "b", Auth::new(b"right")).await;
        let peers = client(&net, Auth::new(b"wrong"));
        let b = PeerName::from("b");
        peers.set_address(&b, addr);
        let err = peers
            .call(&b, Bytes::new(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("authentication failed"), "{err}");

        let peers = client(&net, Auth::new(b"right"));
        let c = PeerName::from("c");
        peers.set_address(&c, addr);
        let err = peers
            .call(&c, Bytes::new(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("answers as node b"), "{err}");
    }

    #[tokio::test]
    async fn a_call_by_address_learns_the_peer_name() {
        let net = MemNet::new(2);
        let addr = listen(&net, 2, "b", Auth::none()).await;
        let peers = client(&net, Auth::none());
        let (name, reply) = peers
            .call_address(addr, Bytes::from_static(b"?"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(&*name, "b");
        assert_eq!(reply, Bytes::from_static(b"b?"));
    }
}
