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
use rill_core::object::{Content, Link, RiakObject};
use rill_core::ring::PartitionId;
use rill_core::vclock::ClockEntry;

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
        // What the entry really occupies: the encoded bytes its fields point into, the decoded
        // structures (object, contents, clock entries, metadata vectors), the key and the
        // table slot. An estimate that left out the structures undercounted by ~1.7x (measured).
        let structures = object.as_deref().map_or(0, |o| {
            size_of::<RiakObject>()
                + ARC_HEADER
                + o.vclock.len() * size_of::<ClockEntry>()
                + o.contents
                    .iter()
                    .map(|c| {
                        size_of::<Content>()
                            + (c.meta.usermeta.len() + c.meta.indexes.len())
                                * size_of::<(Bytes, Bytes)>()
                            + c.meta.links.len() * size_of::<Link>()
                    })
                    .sum::<usize>()
        });
        let size = encoded_len + structures + key_len + SLOT_OVERHEAD;
        Entry {
            object,
            weight: u32::try_from(size).unwrap_or(u32::MAX),
        }
    }
}

type Key = (PartitionId, Bytes);

/// An Arc's reference counts.
const ARC_HEADER: usize = 16;
/// The cache's own cost per entry: the key and entry structs in the table, hashing slack, and
/// the allocator's rounding of the key's and the object's allocations.
const SLOT_OVERHEAD: usize = size_of::<Key>() + size_of::<Entry>() + 64;

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

    /// Forgets every entry of a partition (after it was handed off and dropped here).
    pub fn drop_partition(&self, partition: PartitionId) {
        if let Some(c) = &self.inner {
            c.retain(|(p, _), _| *p != partition);
        }
    }

    /// Bytes currently held.
    pub fn weight(&self) -> u64 {
        self.inner.as_ref().map_or(0, |c| c.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::object::Metadata;
    use rill_core::vclock::{Actor, VClock};

    #[test]
    fn weight_counts_the_decoded_structures_not_just_the_bytes() {
        let mut vclock = VClock::new();
        for a in 0..3u8 {
            vclock.increment(Actor([a; 8]), 1);
        }
        let obj = RiakObject {
            vclock,
            contents: vec![Content::new(
                Bytes::from(vec![b'x'; 100]),
                Metadata::default(),
            )],
        };
        let entry = Entry::new(Some(Arc::new(obj)), 200, 30);
        let floor =
            200 + 30 + size_of::<RiakObject>() + size_of::<Content>() + 3 * size_of::<ClockEntry>();
        assert!(entry.weight as usize > floor, "{} <= {floor}", entry.weight);
        let absent = Entry::new(None, 0, 30);
        assert!(absent.weight < entry.weight);
    }

    #[test]
    fn dropping_a_partition_forgets_only_its_entries() {
        let cache = ObjectCache::new(1024 * 1024);
        let k = Bytes::from_static(b"k");
        cache.insert(1, k.clone(), Entry::new(None, 0, 1));
        cache.insert(2, k.clone(), Entry::new(None, 0, 1));
        cache.drop_partition(1);
        assert!(cache.get(1, &k).is_none());
        assert!(cache.get(2, &k).is_some());
    }

    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        let cache = ObjectCache::new(64 * 1024);
        for i in 0..10_000u32 {
            let key = Bytes::from(format!("key-{i}"));
            cache.insert(0, key.clone(), Entry::new(None, 0, key.len()));
        }
        assert!(cache.weight() <= 64 * 1024, "{}", cache.weight());
        assert!(cache.weight() > 0);
    }
}
