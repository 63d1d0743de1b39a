//! The node's object cache: the stored bytes of recently used keys, shared by all vnodes and
//! bounded in bytes by configuration.
//!
//! Every read of an object — a GET's N replica reads and a PUT's read-merge-write at each
//! replica — would otherwise search the LSM tree's memtables and tables; profiles of both paths
//! showed that search as the largest single cost. Entries also remember that a key is absent, so
//! a read of a key that was read before and is not stored does not search the tree either.
//!
//! What fills it: reads, and every write with what it stored. A write's own read of the replica
//! does not fill it on a miss, since the write replaces that entry a moment later.
//!
//! What an entry holds: the object's encoding, not the decoded object. Decoding is cheap (about
//! 0.1 µs for a small object, `cargo bench -p rill-core --bench hot_paths`) next to the tree
//! search a miss costs (several µs), while the decoded structures (metadata fields, sibling and
//! clock vectors) take about as much memory again as the bytes: a small object's entry weighed
//! ~700 bytes decoded and weighs ~350 encoded, so the same budget holds twice the objects
//! (measured: with 100 000 keys at n_val 3 on one node, 300 000 entries, the decoded cache
//! missed on GETs enough to cost ~65 % more CPU per GET than one that held them all).
//!
//! Memory: an entry owns one compact allocation (an exact copy of what the engine returned, or
//! the encoding a write produced), never a slice of a larger buffer — a request frame or a
//! storage block — that the cache would otherwise keep alive unaccounted. So the configured size
//! bounds the memory. Objects decoded from an entry point into its bytes and live only as long
//! as the request using them.
//!
//! Coherence: every change to a vnode's stored data goes through the vnode while it holds the
//! key's lock stripe, and updates the cache in the same critical section. A read that misses
//! fills the cache under the same lock, so a fill can never overwrite a newer write with what it
//! read before that write.

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use rill_core::codec::{self, CodecError};
use rill_core::object::RiakObject;
use rill_core::ring::PartitionId;

/// Cached state of one key at one vnode: its stored bytes, or the knowledge that there are none.
#[derive(Clone)]
pub struct Entry {
    encoded: Option<Bytes>,
    weight: u32,
}

impl Entry {
    /// A key stored as `encoded`, which must be a compact allocation of its own (see the module
    /// docs), under a storage key of `key_len` bytes.
    pub fn stored(encoded: Bytes, key_len: usize) -> Entry {
        let size = encoded.len() + BYTES_HEADER + key_len + SLOT_OVERHEAD;
        Entry {
            encoded: Some(encoded),
            weight: u32::try_from(size).unwrap_or(u32::MAX),
        }
    }

    /// A key with nothing stored.
    pub fn absent(key_len: usize) -> Entry {
        Entry {
            encoded: None,
            weight: u32::try_from(key_len + SLOT_OVERHEAD).unwrap_or(u32::MAX),
        }
    }

    /// The cached object, decoded afresh (its fields are slices of the entry's bytes).
    pub fn object(&self) -> Result<Option<RiakObject>, CodecError> {
        self.encoded.clone().map(codec::decode_bytes).transpose()
    }
}

type Key = (PartitionId, Bytes);

/// The shared header `bytes` allocates for a buffer once it is cloned (reference count, original
/// allocation).
const BYTES_HEADER: usize = 32;
/// The cache's own cost per entry: the key and entry structs in the table, hashing slack, the
/// allocator's rounding of the key's and the object's allocations, and the encoder's
/// reservation slack (under 64 bytes per sibling, one sibling being the usual case).
const SLOT_OVERHEAD: usize = size_of::<Key>() + size_of::<Entry>() + 128;

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
    use rill_core::object::{Content, Metadata};
    use rill_core::vclock::{Actor, VClock};

    fn object(value_len: usize) -> RiakObject {
        let mut vclock = VClock::new();
        for a in 0..3u8 {
            vclock.increment(Actor([a; 8]), 1);
        }
        RiakObject {
            vclock,
            contents: vec![Content::new(
                Bytes::from(vec![b'x'; value_len]),
                Metadata::default(),
            )],
        }
    }

    #[test]
    fn an_entry_gives_back_the_object_it_was_made_from() {
        let obj = object(100);
        let entry = Entry::stored(Bytes::from(codec::encode(&obj)), 30);
        assert_eq!(entry.object().unwrap(), Some(obj));
        assert_eq!(Entry::absent(30).object().unwrap(), None);
    }

    #[test]
    fn weight_counts_the_bytes_the_key_and_the_slot() {
        // 200 and 1 200 bytes: lengths whose varints are both two bytes long.
        let encoded = Bytes::from(codec::encode(&object(200)));
        let len = encoded.len();
        let entry = Entry::stored(encoded, 30);
        // At least what is surely allocated: the bytes, the key, the table's key and entry.
        let floor = len + 30 + size_of::<Key>() + size_of::<Entry>();
        assert!(entry.weight as usize > floor, "{} <= {floor}", entry.weight);
        // A larger object weighs more by exactly its extra bytes.
        let bigger = Entry::stored(Bytes::from(codec::encode(&object(1200))), 30);
        assert_eq!(bigger.weight - entry.weight, 1000);
        let absent = Entry::absent(30);
        assert!(absent.weight as usize > 30 + size_of::<Key>() + size_of::<Entry>());
        assert!(absent.weight < entry.weight);
    }

    #[test]
    fn dropping_a_partition_forgets_only_its_entries() {
        let cache = ObjectCache::new(1024 * 1024);
        let k = Bytes::from_static(b"k");
        cache.insert(1, k.clone(), Entry::absent(1));
        cache.insert(2, k.clone(), Entry::absent(1));
        cache.drop_partition(1);
        assert!(cache.get(1, &k).is_none());
        assert!(cache.get(2, &k).is_some());
    }

    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        let cache = ObjectCache::new(64 * 1024);
        for i in 0..10_000u32 {
            let key = Bytes::from(format!("key-{i}"));
            cache.insert(
                0,
                key.clone(),
                Entry::stored(Bytes::from(codec::encode(&object(100))), key.len()),
            );
        }
        assert!(cache.weight() <= 64 * 1024, "{}", cache.weight());
        assert!(cache.weight() > 0);
    }
}
