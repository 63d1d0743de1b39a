//! The load generator's Riak clients: one connection to one server, over Protocol Buffers
//! ([`pb`]) or HTTP ([`http`]), exposing exactly the operations a benchmark issues: key/value
//! fetches, stores and deletes, data-type updates and fetches, and the setup requests (bucket
//! properties, a bucket type's datatype).
//!
//! A [`Conn`] connects lazily and reconnects after a connection-level failure, so a worker keeps
//! going when a server restarts. Failures come in two kinds: the server answered with an error
//! (the connection stays usable) or the connection itself failed (it is dropped and the next
//! operation reconnects).

pub mod http;
pub mod pb;

use std::fmt;

use bytes::Bytes;

use super::options::{PropsSetup, Protocol};

/// The bucket (and optional bucket type) the run works in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub bucket: Bytes,
    pub bucket_type: Option<Bytes>,
}

/// What a fetch found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Whether the key exists.
    pub found: bool,
    /// The causal context to write back with, in the protocol's own encoding (raw bytes on PB,
    /// the base64 header text on HTTP).
    pub vclock: Option<Bytes>,
}

/// A data-type update, in protocol-neutral form. None asks for the new value back: the point of
/// measuring an update is the update's own cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtUpdate {
    /// Add to a counter.
    Increment(i64),
    /// Add members to a set (one for `set_add`, a batch for the preload).
    AddMembers(Vec<Bytes>),
    /// Increment the map's counter field [`MAP_COUNTER`] by 1 and assign `register` to its
    /// register field [`MAP_REGISTER`]: two fields of different types in one update.
    Map { register: Bytes },
}

/// The counter field `map_update` increments (`visits_counter` in HTTP's JSON).
pub const MAP_COUNTER: &str = "visits";
/// The register field `map_update` assigns (`last_register` in HTTP's JSON).
pub const MAP_REGISTER: &str = "last";

/// What a data-type fetch found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DtFetched {
    /// Whether the key exists.
    pub found: bool,
    /// Members of a set, fields of a map; 0 for a counter.
    pub len: usize,
}

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The server answered with an error; the connection is fine.
    Server(String),
    /// The connection failed or the peer broke the protocol; it must be re-established.
    Connection(String),
}

impl ClientError {
    /// Whether the connection must be dropped.
    pub fn is_connection(&self) -> bool {
        matches!(self, ClientError::Connection(_))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Server(m) => write!(f, "server error: {m}"),
            ClientError::Connection(m) => write!(f, "connection error: {m}"),
        }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Connection(e.to_string())
    }
}

/// An open connection of either protocol.
enum Open {
    Pb(pb::PbConn),
    Http(http::HttpConn),
}

/// A (re)connecting client for one server.
pub struct Conn {
    protocol: Protocol,
    target: String,
    open: Option<Open>,
}

impl Conn {
    /// A client for `target` (`host:port`); it connects on first use or with [`Conn::connect`].
    pub fn new(protocol: Protocol, target: String) -> Conn {
        Conn {
            protocol,
            target,
            open: None,
        }
    }

    /// The server this client talks to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Connects now if not connected.
    pub async fn connect(&mut self) -> Result<(), ClientError> {
        self.open().await.map(|_| ())
    }

    /// Drops the connection (after a failure or timeout left it in an unknown state).
    pub fn reset(&mut self) {
        self.open = None;
    }

    async fn open(&mut self) -> Result<&mut Open, ClientError> {
        let open = match self.open.take() {
            Some(open) => open,
            None => match self.protocol {
                Protocol::Pb => Open::Pb(pb::PbConn::connect(&self.target).await?),
                Protocol::Http => Open::Http(http::HttpConn::connect(&self.target).await?),
            },
        };
        Ok(self.open.insert(open))
    }

    /// Drops the connection when `result` says it is broken or the server is closing it.
    fn settle<T>(&mut self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        let closing = matches!(&self.open, Some(Open::Http(c)) if c.closed());
        if closing || result.as_ref().is_err_and(ClientError::is_connection) {
            self.reset();
        }
        result
    }

    /// Fetches a key.
    pub async fn get(&mut self, ns: &Namespace, key: &Bytes) -> Result<Fetched, ClientError> {
        let result = match self.open().await? {
            Open::Pb(c) => c.get(ns, key).await,
            Open::Http(c) => c.get(ns, key).await,
        };
        self.settle(result)
    }

    /// Stores a value, with the causal context of an earlier fetch if there was one.
    pub async fn put(
        &mut self,
        ns: &Namespace,
        key: &Bytes,
        value: Bytes,
        vclock: Option<Bytes>,
    ) -> Result<(), ClientError> {
        let result = match self.open().await? {
            Open::Pb(c) => c.put(ns, key, value, vclock).await,
            Open::Http(c) => c.put(ns, key, value, vclock).await,
        };
        self.settle(result)
    }

    /// Deletes a key; returns whether it existed (as far as the protocol tells: PB does not).
    pub async fn delete(&mut self, ns: &Namespace, key: &Bytes) -> Result<bool, ClientError> {
        let result = match self.open().await? {
            Open::Pb(c) => c.delete(ns, key).await.map(|()| true),
            Open::Http(c) => c.delete(ns, key).await,
        };
        self.settle(result)
    }

    /// Applies a data-type update.
    pub async fn dt_update(
        &mut self,
        ns: &Namespace,
        key: &Bytes,
        update: &DtUpdate,
    ) -> Result<(), ClientError> {
        let result = match self.open().await? {
            Open::Pb(c) => c.dt_update(ns, key, update).await,
            Open::Http(c) => c.dt_update(ns, key, update).await,
        };
        self.settle(result)
    }

    /// Fetches a data type's whole value.
    pub async fn dt_fetch(
        &mut self,
        ns: &Namespace,
        key: &Bytes,
    ) -> Result<DtFetched, ClientError> {
        let result = match self.open().await? {
            Open::Pb(c) => c.dt_fetch(ns, key).await,
            Open::Http(c) => c.dt_fetch(ns, key).await,
        };
        self.settle(result)
    }

    /// The `datatype` property of bucket type `name` (`None` if it has none); an error if the
    /// server does not know the type.
    pub async fn type_datatype(&mut self, name: &str) -> Result<Option<String>, ClientError> {
        let result = match self.open().await? {
            Open::Pb(c) => c.type_datatype(name).await,
            Open::Http(c) => c.type_datatype(name).await,
        };
        self.settle(result)
    }

    /// Sets the bucket properties given in `props`.
    pub async fn set_bucket_props(
        &mut self,
        ns: &Namespace,
        props: &PropsSetup,
    ) -> Result<(), ClientError> {
        let result = match self.open().await? {
            Open::Pb(c) => c.set_bucket_props(ns, props).await,
            Open::Http(c) => c.set_bucket_props(ns, props).await,
        };
        self.settle(result)
    }
}
