//! What clients may cost the node, shared by its listeners: the request memory budget, each
//! listener's connection limit, and the time a client has to finish sending a request once it
//! has begun. `/stats` reports them.
//!
//! Memory held for requests is then bounded by the budget plus, per open connection, the bytes
//! a request buffer holds free of charge ([`REQUEST_FREE_BYTES`]) and the protocol's own read
//! buffer — whatever the number of clients, whatever they declare and however slowly they send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::budget::RequestBudget;
use crate::connections::ConnectionLimit;

/// The first bytes of each connection's request buffer, held without charge to the budget:
/// small requests (nearly all of them) never wait behind large ones.
pub const REQUEST_FREE_BYTES: usize = 16 * 1024;

/// Default request memory budget: 256 MiB.
pub const DEFAULT_REQUEST_MEMORY: usize = 256 * 1024 * 1024;
/// Default connection limit of each listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default time to finish sending a request once begun.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The limits and their counters. One per node, shared by every listener.
#[derive(Debug)]
pub struct ClientLimits {
    /// Request bytes held in memory, node-wide.
    pub budget: RequestBudget,
    /// Open HTTP connections.
    pub http: ConnectionLimit,
    /// Open Protocol Buffers connections.
    pub pb: ConnectionLimit,
    /// A request whose header or body has not all arrived this long after its first byte is
    /// refused and its connection closed. Idle connections (between requests) may stay open.
    pub read_timeout: Duration,
    read_timeouts: AtomicU64,
}

impl ClientLimits {
    pub fn new(request_memory: usize, max_connections: usize, read_timeout: Duration) -> Self {
        ClientLimits {
            budget: RequestBudget::new(request_memory),
            http: ConnectionLimit::new(max_connections),
            pb: ConnectionLimit::new(max_connections),
            read_timeout,
            read_timeouts: AtomicU64::new(0),
        }
    }

    /// Counts a client closed for not sending its request in time.
    pub fn timed_out(&self) {
        self.read_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// The figures `/stats` shows (open PB connections are Riak's `pbc_active`, which the
    /// node's own statistics report).
    pub fn report(&self, out: &mut Map<String, Value>) {
        let b = self.budget.stats();
        out.insert("request_memory_budget_bytes".into(), b.capacity.into());
        out.insert("request_memory_held_bytes".into(), b.held.into());
        out.insert("request_memory_waits_total".into(), b.waits.into());
        out.insert("request_memory_refusals_total".into(), b.refusals.into());
        out.insert("http_connections_open".into(), self.http.open().into());
        out.insert(
            "http_connections_refused_total".into(),
            self.http.refused().into(),
        );
        out.insert(
            "pbc_connections_refused_total".into(),
            self.pb.refused().into(),
        );
        out.insert(
            "client_read_timeouts_total".into(),
            self.read_timeouts.load(Ordering::Relaxed).into(),
        );
    }
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits::new(
            DEFAULT_REQUEST_MEMORY,
            DEFAULT_MAX_CONNECTIONS,
            DEFAULT_READ_TIMEOUT,
        )
    }
}
