//! Rill's network seam and internode transport.
//!
//! Two layers, bottom up:
//!
//! - [`net`]: the seam. Every socket a node opens, every wall-clock read and every random
//!   choice goes through a [`Net`] value; timers and monotonic time come from [`time`], which
//!   is tokio's virtualisable clock. Production uses [`TokioNet`] (real sockets); tests use
//!   [`MemNet`], an in-process network of many hosts that can be cut apart, and a deterministic
//!   simulator can implement the same trait without the node noticing.
//! - The transport on top of it: length-prefixed [`frame`]s, an authenticated [`handshake`]
//!   (HMAC challenge–response over a shared cluster secret, which never crosses the wire),
//!   multiplexed request/response connections with request ids, timeouts, bounded queues and
//!   coalesced writes ([`mux`]), a table of peers that connects on demand and backs off when a
//!   peer is away ([`peers`]), dedicated connections for bulk streams such as handoff
//!   ([`stream`]), and the listener that accepts peers ([`server`]).
//!
//! The transport knows bytes and peer names, not objects: what the payloads mean is the node's
//! business (`rill-node` encodes its messages with postcard).

pub mod frame;
pub mod handshake;
pub mod mem;
pub mod mux;
pub mod net;
pub mod peers;
pub mod server;
pub mod stream;
pub mod time;

pub use handshake::{Auth, Purpose};
pub use mem::MemNet;
pub use mux::CallError;
pub use net::{Conn, Listener, Net, TokioNet};
pub use peers::{PeerStatus, Peers, PeersConfig};
pub use server::{Service, serve};
pub use stream::BulkStream;

use std::sync::Arc;

/// A node's name as the transport knows it (`dev1@127.0.0.1`). Cheap to clone.
pub type PeerName = Arc<str>;
