//! The node's object cache: decoded objects of recently used keys, shared by all vnodes and
//! bounded in bytes by configuration.
//!
//! Every read of an object — a GET's N replica reads and a PUT's read-merge-write at each
//! replica — would otherwise search the LSM tree's memtables and tables and decode the stored
//! bytes; profiles of both paths showed that search as the largest single cost. Entries also
//! remember that a key is absent, so a write to a new key does not search the tree either.
//!
//! Memory: a cached object owns one compact allocation (it is decoded from its own encoded
//! bytes), never a slice of a larger buffer — a request frame or a storage block — that the
//! cache would otherwise keep alive unaccounted. So the configured size bounds the memory.
//!
//! Coherence: every change to a vnode's stored data goes through the vnode while it holds the
//! key's lock stripe, and updates the cache in the same critical section. A read that misses
//! fills the cache under the same lock, so a fill can never overwrite a newer write with what it
//! read before that write.

use std::sync::Arc;

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use rill_core::object::RiakObject;
use rill_core::ring::PartitionId;

/// Cached state of one key at one vnode: the object, or the knowledge that there is none.
#[derive(Clone)]
pub struct Entry {
    pub object: Option<Arc<RiakObject>>,
    weight: u32,
}

impl Entry {
    /// An entry for an object decoded from `encoded_len` bytes that it owns exclusively (see
    /// the module docs), under a key of `key_len` bytes.
    pub fn new(object: Option<Arc<RiakObject>>, encoded_len: usize, key_len: usize) -> Entry {
        // The object's own allocation plus its vectors, the Arc, the key and the table slot.
        let size = encoded_len + key_len + PER_ENTRY_OVERHEAD;
        Entry {
            object,
            weight: u32::try_from(size).unwrap_or(u32::MAX),
        }
    }
}

type Key = (PartitionId, Bytes);

/// Bytes an entry costs beyond its encoded object and key (vectors, Arc, table slot).
const PER_ENTRY_OVERHEAD: usize = 192;

#[derive(Clone)]
struct ByWeight;

impl Weighter<Key, Entry> for ByWeight {
    fn weight(&self, _key: &Key, entry: &Entry) -> u64 {
        entry.weight as u64
    }
}

/// The cache; cheap to share (`Arc`) between vnodes.
pub struct ObjectCache {
    inner: Option<Cache<Key, Entry, ByWeight>>,
}

impl ObjectCache {
    /// A cache holding up to `capacity_bytes` of objects; zero disables caching.
    pub fn new(capacity_bytes: u64) -> ObjectCache {
        // The estimate only sizes the hash table up front; a few hundred bytes per object is typical.
        let estimated_items = (capacity_bytes / 256).max(16) as usize;
        ObjectCache {
            inner: (capacity_bytes > 0)
                .then(|| Cache::with_weighter(estimated_items, capacity_bytes, ByWeight)),
        }
    }

    pub fn get(&self, partition: PartitionId, skey: &Bytes) -> Option<Entry> {
        self.inner.as_ref()?.get(&(partition, skey.clone()))
    }

    pub fn insert(&self, partition: PartitionId, skey: Bytes, entry: Entry) {
        if let Some(c) = &self.inner {
            c.insert((partition, skey), entry);
        }
    }

    pub fn remove(&self, partition: PartitionId, skey: &Bytes) {
        if let Some(c) = &self.inner {
            c.remove(&(partition, skey.clone()));
        }
    }

    /// Bytes currently held.
    pub fn weight(&self) -> u64 {
        self.inner.as_ref().map_or(0, |c| c.weight())
    }
}
