//! A running Rill node: the vnodes that hold this node's partitions, the coordinators that take
//! client requests through quorums, the bucket metadata, and the statistics.
//!
//! Protocol layers (`rill-api`) call [`Node`]; the node calls the pure decision code of
//! `rill-core` and the storage of `rill-storage`. Nothing here knows HTTP or Protocol Buffers.

pub mod cluster;
pub mod config;
pub mod coord;
pub mod error;
pub mod handoff;
pub mod metadata;
pub mod node;
pub mod object_cache;
pub mod proto;
mod remote;
pub mod request;
mod service;
pub mod stats;
pub mod vnode;

pub use config::{BackendKind, DeleteMode, NodeConfig};
pub use error::{NodeError, NodeResult};
pub use node::{Node, StartupReport};
