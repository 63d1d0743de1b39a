//! The in-memory backend: ordered maps behind locks, gone when the process exits.
//!
//! It has the same observable semantics as the fjall backend (the shared conformance tests run
//! against both), so node-level tests and `dev` clusters can use it without touching disk.
//! There is nothing to flush, so commits resolve at once.
//!
//! Scans never hold a lock while the caller consumes them: they copy the range out in bounded
//! chunks, so a caller may write to the store it is scanning, and a slow consumer never blocks
//! writers. Like an LSM iterator, a scan may or may not see writes made while it runs.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};

use crate::limits::{check_put, storable_key};
use crate::scan::{KeyBounds, resume_after, scan_bounds};
use crate::{
    Backend, BackendStats, BatchWrite, Durability, KeyIter, KvIter, PartitionId, PartitionStore,
    StorageError,
};

/// How many entries a scan copies out per lock acquisition.
const SCAN_CHUNK: usize = 256;

/// A backend that keeps everything in memory.
pub struct MemoryBackend {
    partitions: Mutex<BTreeMap<PartitionId, Arc<MemoryPartition>>>,
    meta: Arc<MemoryPartition>,
    durability: Durability,
}

impl MemoryBackend {
    /// An empty backend whose default durability is [`Durability::Buffered`].
    pub fn new() -> Self {
        Self::with_durability(Durability::default())
    }

    /// An empty backend reporting `durability` as its default (commits resolve at once anyway).
    pub fn with_durability(durability: Durability) -> Self {
        MemoryBackend {
            partitions: Mutex::new(BTreeMap::new()),
            meta: Arc::new(MemoryPartition::default()),
            durability,
        }
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl Backend for MemoryBackend {
    fn open_partition(&self, p: PartitionId) -> Result<Arc<dyn PartitionStore>, StorageError> {
        let store = self.partitions.lock().entry(p).or_default().clone();
        Ok(store)
    }

    fn drop_partition(&self, p: PartitionId) -> Result<(), StorageError> {
        if let Some(store) = self.partitions.lock().remove(&p) {
            store.close();
        }
        Ok(())
    }

    fn partitions(&self) -> Result<Vec<PartitionId>, StorageError> {
        Ok(self.partitions.lock().keys().copied().collect())
    }

    fn metadata(&self) -> Arc<dyn PartitionStore> {
        self.meta.clone()
    }

    fn write_batch(&self, writes: &[BatchWrite<'_>]) -> Result<(), StorageError> {
        // Check everything first so that a refused batch stores nothing.
        let partitions = self.partitions.lock();
        let mut targets = Vec::with_capacity(writes.len());
        for w in writes {
            if let Some(value) = w.value {
                check_put(w.key, value)?;
            }
            let store = partitions
                .get(&w.partition)
                .ok_or_else(|| StorageError::closed("partition"))?;
            store.check_open()?;
            targets.push(store.clone());
        }
        for (w, store) in writes.iter().zip(targets) {
            let mut map = store.map.write();
            match w.value {
                Some(value) => {
                    map.insert(Bytes::copy_from_slice(w.key), Bytes::copy_from_slice(value));
                }
                None => {
                    map.remove(w.key);
                }
            }
        }
        Ok(())
    }

    fn commit(&self, _level: Durability) -> BoxFuture<'static, Result<(), StorageError>> {
        futures::future::ready(Ok(())).boxed()
    }

    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }

    fn default_durability(&self) -> Durability {
        self.durability
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// One partition's data.
#[derive(Default)]
struct MemoryPartition {
    map: RwLock<BTreeMap<Bytes, Bytes>>,
    /// Set when the partition is dropped: later writes through old handles fail.
    closed: AtomicBool,
}

impl MemoryPartition {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.map.write().clear();
    }

    fn check_open(&self) -> Result<(), StorageError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::closed("partition"));
        }
        Ok(())
    }

    /// Copies up to `SCAN_CHUNK` entries within `bounds` out of the map.
    fn chunk(&self, bounds: &KeyBounds) -> VecDeque<(Bytes, Bytes)> {
        let bounds = (as_slice_bound(&bounds.0), as_slice_bound(&bounds.1));
        self.map
            .read()
            .range::<[u8], _>(bounds)
            .take(SCAN_CHUNK)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn chunked(&self, prefix: &[u8], start_after: Option<&[u8]>) -> ChunkedScan<'_> {
        ChunkedScan {
            store: self,
            next: scan_bounds(prefix, start_after),
            buffered: VecDeque::new(),
        }
    }
}

fn as_slice_bound(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    bound.as_ref().map(Vec::as_slice)
}

impl PartitionStore for MemoryPartition {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self.map.read().get(key).cloned())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        check_put(key, value)?;
        self.check_open()?;
        self.map
            .write()
            .insert(Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), StorageError> {
        if !storable_key(key) {
            return Ok(());
        }
        self.check_open()?;
        self.map.write().remove(key);
        Ok(())
    }

    fn scan(&self, prefix: &[u8], start_after: Option<&[u8]>) -> KvIter<'_> {
        Box::new(self.chunked(prefix, start_after).map(Ok))
    }

    fn scan_keys(&self, prefix: &[u8], start_after: Option<&[u8]>) -> KeyIter<'_> {
        Box::new(self.chunked(prefix, start_after).map(|(k, _)| Ok(k)))
    }

    fn approximate_len(&self) -> u64 {
        self.map.read().len() as u64
    }
}

/// A scan that copies the map out chunk by chunk, taking the read lock once per chunk.
struct ChunkedScan<'a> {
    store: &'a MemoryPartition,
    /// Bounds of the part not yet copied out; `None` once the range is exhausted.
    next: Option<KeyBounds>,
    buffered: VecDeque<(Bytes, Bytes)>,
}

impl Iterator for ChunkedScan<'_> {
    type Item = (Bytes, Bytes);

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty() {
            let bounds = self.next.take()?;
            self.buffered = self.store.chunk(&bounds);
            if self.buffered.len() == SCAN_CHUNK
                && let Some((last, _)) = self.buffered.back()
            {
                self.next = Some(resume_after(last, &bounds.1));
            }
        }
        self.buffered.pop_front()
    }
}
