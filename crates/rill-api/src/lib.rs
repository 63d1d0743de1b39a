//! Riak's client protocols for Rill: the Protocol Buffers API (port 8087) in [`pb`] and the
//! HTTP API (port 8098) in [`http`]. Both translate wire requests into the node's
//! protocol-neutral requests (`rill_node::request`) and the node's answers back into Riak's
//! messages, status codes and headers.
//!
//! What any client may cost the node is bounded in one place for both listeners
//! ([`client_limits`]): a node-wide budget for request bytes held in memory ([`budget`]), a
//! connection limit per listener ([`connections`]), and a deadline for a request that has
//! begun to finish arriving.

pub mod budget;
pub mod client_limits;
pub mod connections;
pub mod http;
pub mod pb;

/// The Riak KV API level Rill implements, reported where clients look for Riak's version
/// (`RpbGetServerInfoResp.server_version`, `/stats` `riak_kv_version`). The Basho clients
/// enable bucket types, data types and preflists only for a plain `X.Y.Z` of at least 2.1.0.
pub const RIAK_API_VERSION: &str = "3.2.3";

/// Rill's own version, reported beside the Riak API level.
pub const RILL_VERSION: &str = env!("CARGO_PKG_VERSION");
