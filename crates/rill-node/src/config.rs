//! Node configuration: everything a running node needs to know, with Riak's defaults.
//!
//! The binary fills this from its TOML file, flags and environment; tests build it directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rill_core::object::Limits;

/// Which storage backend holds the vnodes' data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// fjall LSM tree on disk (default): durable.
    Fjall,
    /// In memory: for tests and throwaway nodes; everything is lost at exit.
    Memory,
}

/// What happens to a tombstone after a delete (Riak's `delete_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteMode {
    /// Reap the tombstone this long after the delete, once all N replicas hold it (default 3 s).
    After(Duration),
    /// Keep tombstones forever.
    Keep,
    /// Reap right after the delete succeeded on all N replicas.
    Immediate,
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's name, e.g. `rill@127.0.0.1`.
    pub name: String,
    /// Where the backend keeps its files.
    pub data_dir: PathBuf,
    /// Number of ring partitions (power of two, 8..=1024).
    pub ring_size: u32,
    pub backend: BackendKind,
    /// When true, a write is acknowledged only after fsync (group-committed); otherwise after
    /// it reached the operating system, which survives a process crash but not a power loss.
    pub sync_writes: bool,
    /// Block cache of the storage engine, in bytes.
    pub cache_bytes: u64,
    /// Cache of decoded objects shared by the vnodes, in bytes (0 turns it off).
    pub object_cache_bytes: u64,
    /// Recent writes not yet flushed to tables: what the journal holds; memtables get half.
    pub write_buffer_bytes: u64,
    /// Object size and sibling limits.
    pub limits: Limits,
    pub delete_mode: DeleteMode,
    /// Default timeout of a client request when it names none (Riak: 60 s).
    pub request_timeout: Duration,
    /// The internode address this node listens on and announces to its peers.
    pub internode_addr: SocketAddr,
    /// The secret shared by the nodes of the cluster (none: loopback-only clusters).
    pub cluster_secret: Option<Vec<u8>>,
    /// Ownership transfers this node sends at once (Riak's `transfer-limit`, default 2).
    pub transfer_limit: usize,
    /// Handoff bandwidth per transfer, bytes per second (0: unlimited).
    pub handoff_rate: u64,
    /// Consecutive partitions the claim keeps on distinct nodes when it can (Riak: 4).
    pub target_n_val: u32,
    /// How long a replica request to a peer may take before it counts as failed.
    pub internode_timeout: Duration,
}

impl NodeConfig {
    /// Largest internode frame: an object at the size limit plus its envelope.
    pub fn internode_max_frame(&self) -> usize {
        self.limits.size_max + 2 * 1024 * 1024
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "rill@127.0.0.1".into(),
            data_dir: PathBuf::from("./data"),
            ring_size: 64,
            backend: BackendKind::Fjall,
            sync_writes: false,
            cache_bytes: 64 * 1024 * 1024,
            object_cache_bytes: 128 * 1024 * 1024,
            write_buffer_bytes: 128 * 1024 * 1024,
            limits: Limits::default(),
            delete_mode: DeleteMode::After(Duration::from_secs(3)),
            request_timeout: Duration::from_secs(60),
            internode_addr: SocketAddr::from(([127, 0, 0, 1], 8099)),
            cluster_secret: None,
            transfer_limit: 2,
            handoff_rate: 0,
            target_n_val: 4,
            internode_timeout: Duration::from_secs(10),
        }
    }
}
