//! The load generator's Riak clients: one connection to one server, over Protocol Buffers
//! ([`pb`]) or HTTP ([`http`]), exposing exactly the operations a benchmark issues.
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
