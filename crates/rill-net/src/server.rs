//! The internode listener: accepts peers, authenticates them, and serves what they send.
//!
//! Each accepted connection must complete the handshake within its timeout; one that fails it
//! (wrong secret, garbage, silence) is logged and closed, never trusted. At most
//! `max_connections` are open at once: past that a new connection is closed at once, so a flood
//! of connections costs a file descriptor each for a moment and nothing more. An authenticated
//! connection then carries either multiplexed requests (served by the [`Service`]) or one bulk
//! stream (handed to [`Service::stream`]).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::Semaphore;

use crate::PeerName;
use crate::handshake::{self, Auth, Purpose};
use crate::mux::{Mux, MuxConfig};
use crate::net::{Listener, Net};
use crate::stream::BulkStream;

/// What a node does with what its peers send.
pub trait Service: Send + Sync + 'static {
    /// A request (or one-way message) from `peer`: the reply's payload, or an error message.
    fn request(&self, peer: PeerName, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>>;
    /// Answers a request on the spot, on the connection's reader, when that is cheap and never
    /// waits (a replica read, a heartbeat); `None` hands it to [`Service::request`] on a task of
    /// its own. Answering the common small requests here saves a task and a wake-up each.
    fn answer_now(&self, _peer: &PeerName, _body: &Bytes) -> Option<Result<Bytes, String>> {
        None
    }
    /// A bulk stream opened by `peer`; runs until the stream is done.
    fn stream(&self, peer: PeerName, stream: BulkStream) -> BoxFuture<'static, ()>;
}

/// Everything the listener needs.
pub struct ServeOptions {
    pub net: Arc<dyn Net>,
    pub auth: Auth,
    /// This node's name, as peers must address it.
    pub me: PeerName,
    pub mux: MuxConfig,
    pub max_connections: usize,
}

/// Accepts and serves peers until the future is dropped.
pub async fn serve(mut listener: Box<dyn Listener>, opts: ServeOptions, service: Arc<dyn Service>) {
    let opts = Arc::new(opts);
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    loop {
        let (conn, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "internode accept failed");
                crate::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, limit = opts.max_connections, "internode connection limit reached; closing");
            continue;
        };
        let opts = opts.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let hs = match handshake::accept(conn, &*opts.net, &opts.auth, &opts.me).await {
                Ok(hs) => hs,
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "refused an internode connection");
                    return;
                }
            };
            match hs.purpose {
                Purpose::Mux => {
                    let mux = Mux::start(hs, service, opts.mux);
                    mux.closed().await;
                }
                Purpose::Stream => {
                    let peer = hs.peer.clone();
                    let stream = BulkStream::new(hs, opts.mux.max_frame);
                    service.stream(peer, stream).await;
                }
            }
        });
    }
}
