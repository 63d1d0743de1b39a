//! A vnode: the keeper of one ring partition's data on this node.
//!
//! A vnode serialises writes per key (a read-merge-write must not interleave with another on the
//! same key), applies the causal merge of `rill_core::merge`, and files objects in its partition's
//! store under their order-preserving storage keys. It has its own actor id, persisted in the node
//! metadata, so that clock entries name the replica that made an event (Riak's vnode vclocks).
//!
//! Everything here is synchronous and short: a few microseconds of encoding plus one point read and
//! one write into the LSM memtable. Durability (journal flush or fsync) is awaited by the caller,
//! once per request, through the backend's group commit.
//!
//! Sets are stored in the split layout of `rill_core::crdt::split` (a head under the key, one
//! record per member beside it): [`sets`] holds that part.
//!
//! Fault-injection points (`vnode-get`, `vnode-coordinate-put`, `vnode-replica-put`,
//! `vnode-fold-keys`; compiled in
//! with the `failpoints` feature) make a replica fail as a broken disk would, so quorum failures
//! can be tested end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use parking_lot::Mutex;
use rill_core::bkey::{BKey, Bucket};
use rill_core::codec;
use rill_core::crdt::object::UpdateError;
use rill_core::crdt::{Op, VersionVector, split};
use rill_core::merge::{self, MergeOptions, ReplicaMerge};
use rill_core::object::{Content, Limits, RiakObject};
use rill_core::props::Datatype;
use rill_core::ring::{NodeName, PartitionId};
use rill_core::vclock::{Actor, PruneLimits, VClock};
use rill_storage::{Backend, BatchWrite, KvIter, PartitionStore};

use crate::error::{NodeError, NodeResult};
use crate::node::RESERVED_PREFIX;
use crate::object_cache::{Entry, ObjectCache};

mod sets;

pub use sets::{SetUpdate, Shared};

/// Lock stripes per vnode: enough that unrelated keys rarely share one.
const STRIPES: usize = 64;
/// Storage keys of objects start with this byte (the high byte of the type's length).
const OBJECT_PREFIX: &[u8] = &[0];
/// Marks a key written while the partition was being handed off (see `crate::handoff`).
const DIRTY_PREFIX: &[u8] = &[RESERVED_PREFIX, b'D'];

pub struct Vnode {
    partition: PartitionId,
    actor: Actor,
    store: Arc<dyn PartitionStore>,
    /// For writes of several keys at once (a split set's head and member records).
    backend: Arc<dyn Backend>,
    cache: Arc<ObjectCache>,
    stripes: Box<[Mutex<()>]>,
    /// While a transfer of this partition is pending, every write also leaves a durable
    /// "dirty" mark, so the sender can resend what changed behind its fold, even after a
    /// restart.
    handing_off: AtomicBool,
    /// Once handed off: the new owner, to which every request is passed.
    forward_to: ArcSwapOption<NodeName>,
    /// Whether `forward_to` was ever set: every request asks, and this is the cheap answer.
    frozen: AtomicBool,
}

/// A key locked for a read-merge-write (see [`Vnode::lock_key`]).
pub struct KeyLock<'a> {
    skey: Bytes,
    _guard: parking_lot::MutexGuard<'a, ()>,
}

impl KeyLock<'_> {
    /// The storage key locked.
    pub fn storage_key(&self) -> &[u8] {
        &self.skey
    }
}

/// A replica's merged object, ready to store.
pub struct Staged {
    /// The object the replica holds after the write: for the request's answer and the other
    /// nodes' replicas, then dropped. It may point into the request's buffers; what outlives the
    /// request (the object cache) keeps `encoded` instead.
    pub object: Arc<RiakObject>,
    /// The bytes to store; `None` when the replica already had (a descendant of) the object.
    pub encoded: Option<Bytes>,
    /// A split set's member records to write beside it (storage key, record or `None` to
    /// remove it), in the same batch.
    pub records: Vec<(Vec<u8>, Option<Bytes>)>,
    /// A coordinated update of a split set: what the other replicas apply instead of merging
    /// the whole object.
    pub update: Option<Arc<SetUpdate>>,
}

impl Staged {
    fn changed(obj: RiakObject) -> Staged {
        Staged {
            encoded: Some(Bytes::from(codec::encode(&obj))),
            object: Arc::new(obj),
            records: Vec::new(),
            update: None,
        }
    }

    fn unchanged(object: Arc<RiakObject>) -> Staged {
        Staged {
            object,
            encoded: None,
            records: Vec::new(),
            update: None,
        }
    }

    /// Every key this replica writes: the object under `skey`, then the member records.
    pub fn writes<'a>(
        &'a self,
        partition: PartitionId,
        skey: &'a [u8],
    ) -> impl Iterator<Item = BatchWrite<'a>> + 'a {
        let object = self.encoded.as_deref().map(|value| BatchWrite {
            partition,
            key: skey,
            value: Some(value),
        });
        let records = self.records.iter().map(move |(key, value)| BatchWrite {
            partition,
            key,
            value: value.as_deref(),
        });
        object.into_iter().chain(records)
    }
}

/// A data-type update as the coordinating replica applies it.
pub struct DatatypeWrite<'a> {
    pub datatype: Datatype,
    pub op: &'a Op,
    /// The client's context (what it had fetched), needed by removes.
    pub context: Option<&'a VersionVector>,
    /// The bucket's `hll_precision` (HLLs are reduced to it).
    pub hll_precision: u8,
}

/// What a coordinated write needs besides the object: the bucket's merge rules and limits.
pub struct WriteRules<'a> {
    pub merge: MergeOptions,
    pub prune: PruneLimits,
    pub limits: &'a Limits,
    pub now_us: u64,
}

impl Vnode {
    /// Opens the vnode for `partition`, reading its actor id from `meta` or creating one.
    pub fn open(
        partition: PartitionId,
        store: Arc<dyn PartitionStore>,
        backend: Arc<dyn Backend>,
        cache: Arc<ObjectCache>,
        meta: &dyn PartitionStore,
        new_actor: impl FnOnce() -> [u8; 8],
    ) -> NodeResult<Self> {
        let key = format!("vnode/{partition}/actor");
        let actor = match meta.get(key.as_bytes())? {
            Some(raw) => Actor(
                raw.as_ref()
                    .try_into()
                    .map_err(|_| NodeError::Corrupt(format!("vnode {partition} actor id")))?,
            ),
            None => {
                let id = new_actor();
                meta.put(key.as_bytes(), &id)?;
                Actor(id)
            }
        };
        Ok(Vnode {
            partition,
            actor,
            store,
            backend,
            cache,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            handing_off: AtomicBool::new(false),
            forward_to: ArcSwapOption::empty(),
            frozen: AtomicBool::new(false),
        })
    }

    /// Turns tracking of writes for a pending handoff on or off.
    pub fn set_handing_off(&self, on: bool) {
        self.handing_off.store(on, Ordering::Release);
    }

    /// The node that now serves this partition, once it has been handed off.
    pub fn forwarding(&self) -> Option<NodeName> {
        if !self.frozen.load(Ordering::Acquire) {
            return None;
        }
        self.forward_to.load().as_deref().cloned()
    }

    /// Stops local writes and passes every later request to `to`. Waits for writes in
    /// progress (it takes every lock stripe), so none can slip in behind the final resend.
    pub fn freeze(&self, to: NodeName) {
        let _all: Vec<_> = self.stripes.iter().map(|s| s.lock()).collect();
        self.forward_to.store(Some(Arc::new(to)));
        self.frozen.store(true, Ordering::Release);
    }

    /// The dirty mark of a storage key, when writes are being tracked.
    pub fn dirty_mark(&self, skey: &[u8]) -> Option<Vec<u8>> {
        self.handing_off
            .load(Ordering::Acquire)
            .then(|| [DIRTY_PREFIX, skey].concat())
    }

    /// Objects (storage key, encoded object) in key order, after `after` when given.
    pub fn scan_objects(&self, after: Option<&[u8]>) -> KvIter<'_> {
        self.store.scan(OBJECT_PREFIX, after)
    }

    /// Storage keys marked dirty, in order.
    pub fn dirty_keys(&self) -> NodeResult<Vec<Bytes>> {
        self.store
            .scan_keys(DIRTY_PREFIX, None)
            .map(|k| Ok(k?.slice(DIRTY_PREFIX.len()..)))
            .collect()
    }

    /// Clears a dirty mark once the key was resent.
    pub fn clear_dirty(&self, skey: &[u8]) -> NodeResult<()> {
        Ok(self.store.delete(&[DIRTY_PREFIX, skey].concat())?)
    }

    /// The stored bytes of a key (for resending it).
    pub fn raw_get(&self, skey: &[u8]) -> NodeResult<Option<Bytes>> {
        Ok(self.store.get(skey)?)
    }

    /// The partition's store, for the handoff receiver's bookkeeping.
    pub fn store(&self) -> &Arc<dyn PartitionStore> {
        &self.store
    }

    /// Keys stored, approximately.
    pub fn approximate_len(&self) -> u64 {
        self.store.approximate_len()
    }

    fn check_not_moved(&self) -> NodeResult<()> {
        match self.forwarding() {
            Some(to) => Err(NodeError::Unreachable(format!(
                "partition {} has moved to {to}",
                self.partition
            ))),
            None => Ok(()),
        }
    }

    /// Replaces (or, with `None`, removes) a key's stored bytes behind the vnode's back, as a
    /// failing disk or a lost write would: for tests of read repair and corruption.
    #[cfg(test)]
    pub(crate) fn damage(&self, bkey: &BKey, raw: Option<&[u8]>) {
        let skey = Bytes::from(bkey.storage_key());
        match raw {
            Some(raw) => self.store.put(&skey, raw).expect("store write"),
            None => self.store.delete(&skey).expect("store delete"),
        }
        self.cache.remove(self.partition, &skey);
    }

    /// The raw stored bytes of a key (tests).
    #[cfg(test)]
    pub(crate) fn raw(&self, bkey: &BKey) -> Option<Bytes> {
        self.store.get(&bkey.storage_key()).expect("store read")
    }

    pub fn partition(&self) -> PartitionId {
        self.partition
    }

    /// Reads the stored object, tombstones included (a split set made whole).
    pub fn get(&self, bkey: &BKey) -> NodeResult<Option<Arc<RiakObject>>> {
        self.get_shared(bkey, &mut None)
    }

    /// [`Vnode::get`], where a split set whose head equals the one in `shared` (another
    /// replica's, read just before) is answered with that replica's whole object instead of
    /// being assembled again: replicas in step hold the same set, and assembling a big one is
    /// most of a fetch's cost.
    pub fn get_shared(
        &self,
        bkey: &BKey,
        shared: &mut Option<Shared>,
    ) -> NodeResult<Option<Arc<RiakObject>>> {
        fail::fail_point!("vnode-get", |_| Err(injected("vnode-get")));
        let skey = Bytes::from(bkey.storage_key());
        let stored = match self.cache.get(self.partition, &skey) {
            Some(entry) => cached_object(&entry)?,
            None => {
                let _guard = self.lock(&skey);
                self.read(&skey)?
            }
        };
        match stored {
            Some(obj) if sets::is_split(&obj) => self.assemble_shared(&skey, &obj, shared),
            other => Ok(other),
        }
    }

    /// Locks a key for a read-merge-write. The lock is a stripe shared with other keys;
    /// callers locking keys at several vnodes take them in partition order.
    pub fn lock_key(&self, bkey: &BKey) -> KeyLock<'_> {
        let skey = Bytes::from(bkey.storage_key());
        let guard = self.lock(&skey);
        KeyLock {
            skey,
            _guard: guard,
        }
    }

    /// The coordinating replica's part of a write: advance the clock with this vnode's actor,
    /// merge with what is stored, check limits. Nothing is stored yet: the caller writes every
    /// replica's staged object in one batch, then calls [`Vnode::written`].
    pub fn stage_coordinated(
        &self,
        lock: &KeyLock<'_>,
        bkey: &BKey,
        context: &VClock,
        content: Content,
        rules: &WriteRules<'_>,
    ) -> NodeResult<Staged> {
        fail::fail_point!("vnode-coordinate-put", |_| Err(injected(
            "vnode-coordinate-put"
        )));
        self.check_not_moved()?;
        let local = self.read_whole(&lock.skey)?;
        let mut obj = merge::coordinate_put(
            local.object.as_deref(),
            context,
            content,
            self.actor,
            rules.now_us,
            &rules.merge,
        );
        obj.vclock.prune(rules.now_us / 1_000_000, &rules.prune);
        check_limits(bkey, &obj, rules.limits)?;
        self.stage_object(&lock.skey, &local, obj, rules.merge.datatype)
    }

    /// The coordinating replica's part of a data-type update: apply the operation to the
    /// stored state as a new event of this vnode's actor. The resulting object is what the
    /// other replicas merge ([`Vnode::stage_replica`]); staged like
    /// [`Vnode::stage_coordinated`]. Data-type clocks are not pruned: their entries are the
    /// state's actors, and forgetting one could reuse its event counters.
    pub fn stage_datatype(
        &self,
        lock: &KeyLock<'_>,
        bkey: &BKey,
        write: &DatatypeWrite<'_>,
        rules: &WriteRules<'_>,
    ) -> NodeResult<Staged> {
        fail::fail_point!("vnode-coordinate-put", |_| Err(injected(
            "vnode-coordinate-put"
        )));
        let local = self.read_to_write(&lock.skey)?;
        // Sets past the size where splitting pays are updated in the split layout (and split
        // by this update if stored whole); the update of a smaller one rewrites it whole.
        if let Op::Set(op) = write.op
            && write.datatype == Datatype::Set
            && local
                .as_deref()
                .is_some_and(|o| sets::is_split(o) || split::worth_splitting(o))
        {
            return self.stage_set_update(lock, op, write.context, rules.now_us);
        }
        let (obj, _) = rill_core::crdt::object::coordinate(
            local.as_deref(),
            write.datatype,
            write.op,
            write.context,
            self.actor,
            rules.now_us,
            write.hll_precision,
        )
        .map_err(|e| match e {
            UpdateError::Op(e) => NodeError::Datatype(e),
            UpdateError::Corrupt(e) => NodeError::Corrupt(e),
        })?;
        check_limits(bkey, &obj, rules.limits)?;
        Ok(Staged::changed(obj))
    }

    /// A replica's part of a write coordinated elsewhere (also read repair and handoff): merge
    /// the incoming object with what is stored. Staged like [`Vnode::stage_coordinated`].
    pub fn stage_replica(
        &self,
        lock: &KeyLock<'_>,
        bkey: &BKey,
        incoming: &RiakObject,
        opts: &MergeOptions,
        limits: &Limits,
    ) -> NodeResult<Staged> {
        fail::fail_point!("vnode-replica-put", |_| Err(injected("vnode-replica-put")));
        self.check_not_moved()?;
        let local = self.read_whole(&lock.skey)?;
        match merge::replica_merge(local.object.as_deref(), incoming, opts) {
            ReplicaMerge::Unchanged => Ok(Staged::unchanged(
                local.object.unwrap_or_else(|| Arc::new(incoming.clone())),
            )),
            ReplicaMerge::Store(obj) => {
                check_limits(bkey, &obj, limits)?;
                self.stage_object(&lock.skey, &local, obj, opts.datatype)
            }
        }
    }

    /// After the batch holding `staged` was written (`ok`) or failed: cache the stored object,
    /// or forget the key, whose stored state is then unknown.
    pub fn written(&self, lock: &KeyLock<'_>, staged: &Staged, ok: bool) {
        let Some(encoded) = &staged.encoded else {
            if !ok && !staged.records.is_empty() {
                self.cache.remove(self.partition, &lock.skey);
            }
            return;
        };
        if ok {
            let entry = Entry::stored(encoded.clone(), lock.skey.len());
            self.cache.insert(self.partition, lock.skey.clone(), entry);
        } else {
            self.cache.remove(self.partition, &lock.skey);
        }
    }

    /// A replica write on its own (read repair): stage, store, cache.
    pub fn replica_put(
        &self,
        bkey: &BKey,
        incoming: &RiakObject,
        opts: &MergeOptions,
        limits: &Limits,
    ) -> NodeResult<Arc<RiakObject>> {
        let lock = self.lock_key(bkey);
        let staged = self.stage_replica(&lock, bkey, incoming, opts, limits)?;
        self.store_staged(&lock, &staged)?;
        Ok(staged.object)
    }

    /// Stores what one replica staged, with its dirty mark, as one batch; then caches it.
    fn store_staged(&self, lock: &KeyLock<'_>, staged: &Staged) -> NodeResult<()> {
        if staged.encoded.is_none() && staged.records.is_empty() {
            return Ok(());
        }
        let mark = self.dirty_mark(&lock.skey);
        let mut writes: Vec<BatchWrite<'_>> = staged.writes(self.partition, &lock.skey).collect();
        if let Some(mark) = &mark {
            writes.push(BatchWrite {
                partition: self.partition,
                key: mark,
                value: Some(b""),
            });
        }
        let result = match writes.as_slice() {
            [
                BatchWrite {
                    key,
                    value: Some(value),
                    ..
                },
            ] => self.store.put(key, value),
            _ => self.backend.write_batch(&writes),
        };
        self.written(lock, staged, result.is_ok());
        Ok(result?)
    }

    /// Removes a tombstone, but only if the stored object is still exactly that tombstone
    /// (a write that raced the reaper must survive). Returns whether it was removed.
    pub fn reap(&self, bkey: &BKey, tombstone_clock: &VClock) -> NodeResult<bool> {
        let skey = Bytes::from(bkey.storage_key());
        let _guard = self.lock(&skey);
        match self.read_to_write(&skey)? {
            Some(obj) if obj.is_tombstone() && obj.vclock == *tombstone_clock => {
                if let Err(e) = self.store.delete(&skey) {
                    self.cache.remove(self.partition, &skey);
                    return Err(e.into());
                }
                self.cache
                    .insert(self.partition, skey.clone(), Entry::absent(skey.len()));
                if let Some(mark) = self.dirty_mark(&skey) {
                    self.store.put(&mark, b"")?;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Calls `f` with every key of `bucket` stored here, in order; stops early when `f` says so.
    pub fn fold_keys(&self, bucket: &Bucket, mut f: impl FnMut(Bytes) -> bool) -> NodeResult<()> {
        let prefix = bucket.storage_prefix();
        for item in self.store.scan_keys(&prefix, None) {
            // A slow scan, for tests of listing timeouts.
            fail::fail_point!("vnode-fold-keys");
            let key = item?;
            if !f(key.slice(prefix.len()..)) {
                break;
            }
        }
        Ok(())
    }

    /// The first bucket of type `btype` stored here that sorts after `after` (in storage
    /// order), found with one seek: listing buckets costs a seek per bucket, not a read per key.
    pub fn next_bucket(&self, btype: &[u8], after: Option<&Bucket>) -> NodeResult<Option<Bucket>> {
        // No stored key equals a bucket prefix's successor (keys are non-empty), so "after" it
        // means "from the next bucket on".
        let start_after = match after {
            None => None,
            Some(b) => match prefix_successor(b.storage_prefix()) {
                past if past.is_empty() => return Ok(None),
                past => Some(past),
            },
        };
        let type_prefix = Bucket::type_prefix(btype);
        let mut iter = self.store.scan_keys(&type_prefix, start_after.as_deref());
        let Some(item) = iter.next() else {
            return Ok(None);
        };
        let key = item?;
        let parts = rill_core::bkey::split_storage_key(&key)
            .map_err(|e| NodeError::Corrupt(e.to_string()))?;
        Bucket::new(
            Bytes::copy_from_slice(parts.btype),
            Bytes::copy_from_slice(parts.name),
        )
        .map(Some)
        .map_err(|e| NodeError::Corrupt(e.to_string()))
    }

    /// The stored object (through the cache), filling the cache on a miss. Callers hold the
    /// key's stripe lock, so no write can slip between the read and the fill.
    fn read(&self, skey: &Bytes) -> NodeResult<Option<Arc<RiakObject>>> {
        if let Some(entry) = self.cache.get(self.partition, skey) {
            return cached_object(&entry);
        }
        let entry = match self.store.get(skey)? {
            None => Entry::absent(skey.len()),
            // An exact-size copy: the engine's buffer may be a whole block (module docs of
            // `object_cache`).
            Some(raw) => Entry::stored(Bytes::copy_from_slice(&raw), skey.len()),
        };
        let object = cached_object(&entry)?;
        self.cache.insert(self.partition, skey.clone(), entry);
        Ok(object)
    }

    /// The stored object for a read-merge-write (or a handoff's read), through the cache but
    /// without filling it on a miss: a write caches what it stores ([`Vnode::written`]), so a
    /// fill would be an allocation, a copy and a cache insert thrown away at once (the insert
    /// alone was 4 % of the node's CPU in the steady-state PUT profile, docs/PERFORMANCE.md).
    /// The object may point into the engine's buffer, so it must not outlive the request.
    fn read_to_write(&self, skey: &Bytes) -> NodeResult<Option<Arc<RiakObject>>> {
        if let Some(entry) = self.cache.get(self.partition, skey) {
            return cached_object(&entry);
        }
        shared(self.store.get(skey)?.map(codec::decode_bytes).transpose())
    }

    fn lock(&self, skey: &[u8]) -> parking_lot::MutexGuard<'_, ()> {
        // FNV-1a over the key: cheap and spreads adjacent keys.
        let h = skey.iter().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x100000001b3)
        });
        self.stripes[(h % STRIPES as u64) as usize].lock()
    }
}

/// The error a fault-injection point produces: an I/O failure of the replica.
#[cfg(feature = "failpoints")]
pub(crate) fn injected(point: &str) -> NodeError {
    NodeError::Storage(rill_storage::StorageError::new(
        rill_storage::ErrorKind::Io,
        format!("injected fault at {point}"),
    ))
}

/// The object a cache entry holds, decoded. An entry's bytes are either decoded once before it
/// is cached (a read) or the encoder's own output (a write), so a failure here is a corrupt
/// entry, reported as corruption like a bad stored object.
fn cached_object(entry: &Entry) -> NodeResult<Option<Arc<RiakObject>>> {
    shared(entry.object())
}

/// A decoded object, shared; a decoding failure is a corrupt stored object.
fn shared(
    decoded: Result<Option<RiakObject>, codec::CodecError>,
) -> NodeResult<Option<Arc<RiakObject>>> {
    match decoded {
        Ok(object) => Ok(object.map(Arc::new)),
        Err(e) => Err(NodeError::Corrupt(e.to_string())),
    }
}

/// Refuses objects over the limits; logs those past the warning thresholds, as Riak does.
fn check_limits(bkey: &BKey, obj: &RiakObject, limits: &Limits) -> NodeResult<()> {
    for warning in obj.check_limits(limits)? {
        tracing::warn!(
            bucket = %String::from_utf8_lossy(&bkey.bucket.name),
            key = %String::from_utf8_lossy(&bkey.key),
            "{warning:?}"
        );
    }
    Ok(())
}

/// The smallest byte string greater than every string that starts with `prefix`
/// (empty when there is none, i.e. the prefix is all 0xFF).
fn prefix_successor(mut prefix: Vec<u8>) -> Vec<u8> {
    while let Some(last) = prefix.pop() {
        if last < 0xFF {
            prefix.push(last + 1);
            return prefix;
        }
    }
    prefix
}
