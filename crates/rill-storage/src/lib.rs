//! Rill's storage layer: raw, ordered byte stores, one per ring partition.
//!
//! This crate knows nothing of Riak objects. The node layer hands it opaque keys and values;
//! keys of one bucket share a prefix, so key listing is a prefix scan over an ordered store.
//!
//! A node owns one [`Backend`]. The backend hands out one [`PartitionStore`] per partition
//! (vnode) it hosts, plus a separate metadata store for node-local state (bucket types, vnode
//! ids). Writes return once they are applied; how durable they are when they return depends on
//! the backend, and [`Backend::commit`] is the barrier the node awaits before it acknowledges a
//! write to a client. Commits are grouped: many writers waiting at once share one flush/fsync.
//!
//! Two implementations:
//! - [`FjallBackend`]: durable, the default. One fjall (LSM) database per node, one keyspace per
//!   partition, one shared journal, so one fsync covers every partition.
//! - [`MemoryBackend`]: ephemeral, for tests and `dev` clusters.

mod error;
mod fjall_backend;
mod group_commit;
mod limits;
mod memory;
mod scan;
mod write_buffer;
mod writeback;

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

pub use error::{ErrorKind, StorageError};
pub use fjall_backend::{FjallBackend, FjallConfig};
pub use group_commit::CommitStats;
pub use limits::{MAX_KEY_LEN, MAX_VALUE_LEN};
pub use memory::MemoryBackend;

/// Index of a ring partition (a vnode's share of the key space).
pub type PartitionId = u32;

/// An iterator over key/value pairs of a scan, in ascending key order.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<(Bytes, Bytes), StorageError>> + Send + 'a>;

/// An iterator over keys of a scan, in ascending key order.
pub type KeyIter<'a> = Box<dyn Iterator<Item = Result<Bytes, StorageError>> + Send + 'a>;

/// How far a write must have travelled before a commit reports it done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Durability {
    /// The write reached the operating system: it survives a crash or `kill -9` of the process,
    /// but not a power loss or kernel crash.
    #[default]
    Buffered,
    /// The write was fsynced: it survives power loss.
    Synced,
}

/// A node's storage: a set of partition stores sharing one durability domain.
pub trait Backend: Send + Sync + 'static {
    /// Opens (creating if needed) the store of partition `p`. Idempotent: every call for the
    /// same partition returns a handle to the same data.
    fn open_partition(&self, p: PartitionId) -> Result<Arc<dyn PartitionStore>, StorageError>;

    /// Removes partition `p` and all its data (after handoff). Handles still held by others
    /// fail with [`ErrorKind::Closed`] on writes. Dropping an absent partition is not an error.
    fn drop_partition(&self, p: PartitionId) -> Result<(), StorageError>;

    /// The partitions that exist in this backend (on disk, for durable backends), ascending.
    fn partitions(&self) -> Result<Vec<PartitionId>, StorageError>;

    /// A store for node metadata, separate from every partition.
    fn metadata(&self) -> Arc<dyn PartitionStore>;

    /// Stores (or removes) several values, possibly in different partitions, as one atomic
    /// write: either all are applied or none. Costs one journal append where separate puts cost one each —
    /// the node writes all local replicas of an object this way. Partitions must be open.
    /// Unlike [`PartitionStore::put`], the batch is durable only once a later
    /// [`Backend::commit`] resolved (at `Buffered` too), so that concurrent requests' batches
    /// reach the OS in one write: callers acknowledge nothing before that commit.
    fn write_batch(&self, puts: &[BatchWrite<'_>]) -> Result<(), StorageError>;

    /// Group commit: resolves once every write that returned before this call is durable at
    /// `level`. Concurrent callers share one flush/fsync; a failed one fails every commit that
    /// relied on it.
    fn commit(&self, level: Durability) -> BoxFuture<'static, Result<(), StorageError>>;

    /// The durability level this backend was configured to acknowledge writes at; the node
    /// passes it to [`Backend::commit`] unless a request asks for more.
    fn default_durability(&self) -> Durability;

    /// Memory and journal figures for `/stats`: what an operator needs to see that memory
    /// stays within the configured budgets.
    fn stats(&self) -> BackendStats;

    /// A short name for logs and stats ("fjall", "memory").
    fn name(&self) -> &'static str;
}

/// See [`Backend::stats`]; zero where a backend has no such thing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Bytes in memtables (recent writes not yet in tables).
    pub write_buffer_bytes: u64,
    /// Bytes held by the block cache.
    pub block_cache_bytes: u64,
    /// Bytes of journal (write-ahead log) on disk.
    pub journal_bytes: u64,
    /// Synced commits requested, and the fsyncs that served them (grouping ratio).
    pub synced_commits: u64,
    pub fsyncs: u64,
    /// Batches written to the journal's buffer, and the writes of that buffer to the OS that
    /// carried them (grouping ratio of buffered commits).
    pub journal_batches: u64,
    pub journal_flushes: u64,
    /// Shape of the LSM trees, all partitions together: table files, those in level 0 (each
    /// one more place a point read looks), and memtables sealed but not yet flushed.
    pub tables: u64,
    pub l0_tables: u64,
    pub sealed_memtables: u64,
    /// Level-0 tables of the partition that has most: fjall slows a partition's writes at 20
    /// level-0 runs and stops them at 30.
    pub l0_tables_max: u64,
    /// Compactions finished since start, and the time they took (milliseconds).
    pub compactions: u64,
    pub compaction_ms: u64,
}

/// One key of a [`Backend::write_batch`]: the value to store, or `None` to remove the key.
#[derive(Clone, Copy, Debug)]
pub struct BatchWrite<'a> {
    pub partition: PartitionId,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// One partition's ordered key/value store.
pub trait PartitionStore: Send + Sync {
    /// The value stored under `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError>;

    /// Stores `value` under `key`, replacing any previous value. Keys must be 1 to
    /// [`MAX_KEY_LEN`] bytes and values at most [`MAX_VALUE_LEN`] bytes
    /// ([`ErrorKind::InvalidInput`] otherwise).
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError>;

    /// Removes `key`; removing an absent (or unstorable) key is not an error.
    fn delete(&self, key: &[u8]) -> Result<(), StorageError>;

    /// Every pair whose key starts with `prefix`, in ascending key order.
    fn scan_prefix(&self, prefix: &[u8]) -> KvIter<'_> {
        self.scan(prefix, None)
    }

    /// Pairs whose key starts with `prefix`, in ascending order, beginning strictly after
    /// `start_after` when given (for resuming a scan, as a handoff does after a reconnect).
    fn scan(&self, prefix: &[u8], start_after: Option<&[u8]>) -> KvIter<'_>;

    /// Keys that start with `prefix`, in ascending order, beginning strictly after
    /// `start_after` when given (for paging through a key listing).
    fn scan_keys(&self, prefix: &[u8], start_after: Option<&[u8]>) -> KeyIter<'_>;

    /// A cheap estimate of the number of keys (may count overwritten and deleted ones).
    fn approximate_len(&self) -> u64;
}
