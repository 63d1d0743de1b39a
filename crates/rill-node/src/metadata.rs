//! Bucket types and bucket properties: cluster-wide metadata, persisted by every node and cached
//! in memory, because every request needs its bucket's effective properties.
//!
//! A bucket's effective properties are its type's properties overlaid with the properties set on
//! the bucket itself. Only the explicitly set ones are stored per bucket (as a JSON patch), so a
//! later change to the type reaches every bucket that did not override that property, and a
//! reset simply drops the patch. The `default` type always exists, is always active, and has
//! Riak's defaults; created types start from Riak's defaults for created types.
//!
//! **Cluster-wide.** Every entry (one per bucket type, one per bucket with its own properties)
//! is a last-writer-wins register stamped with a hybrid logical clock — the wall clock in
//! microseconds, but always past every stamp this node has seen — and the writer's name. A change
//! made here is stored, then announced on the channel the node's gossip worker drains and
//! broadcasts; a change heard from a peer is applied only if its stamp is newer. Nodes also
//! compare a digest of all stamps now and then and exchange entries when they differ, so a node
//! that missed a broadcast (it was down, or partitioned) converges too. A reset is a stamped
//! deletion (a tombstone), so it cannot be undone by an older entry arriving late.
//!
//! Properties no ring could serve (an `n_val` above the partition count, a quorum above the
//! `n_val`; see `BucketProps::check_servable`) are refused whenever they are set here, and a
//! type update that would leave one of its buckets so is refused too. Entries stored before
//! that check existed are loaded all the same and reported in the log, so the node keeps
//! serving and an operator can fix them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use rill_core::bkey::{Bucket, DEFAULT_TYPE};
use rill_core::props::{BucketProps, validate_type_name, validate_type_update};
use rill_core::ring::NodeName;
use rill_net::Net;
use rill_storage::PartitionStore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha1::{Digest, Sha1};
use tokio::sync::mpsc;

use crate::error::{NodeError, NodeResult};

/// A bucket type's definition and status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BucketType {
    /// The JSON patch the type was created and updated with (over Riak's created-type defaults).
    pub patch: Value,
    pub active: bool,
    /// The claimant when the type was created (shown in its properties, as Riak does).
    #[serde(default)]
    pub claimant: Option<NodeName>,
}

/// Status of a bucket type as `bucket-type status` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeStatus {
    Active,
    Created,
}

const TYPE_KEY: &str = "type/";
const BUCKET_KEY: &[u8] = b"bucket/";

/// The stamp of an entry: hybrid-logical microseconds, then the writer (ties are impossible
/// between writers and harmless within one).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub us: u64,
    pub node: NodeName,
}

/// One metadata entry as stored and as sent to peers: its key in the metadata store, its
/// stamp, and its JSON value (`None` for a deleted entry). JSON travels as text because the
/// internode encoding (postcard) is not self-describing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: Bytes,
    pub stamp: Stamp,
    pub value: Option<String>,
}

/// How an entry is kept on disk.
#[derive(Serialize, Deserialize)]
struct Stored {
    stamp: Stamp,
    value: Option<Value>,
}

/// The node's bucket metadata.
pub struct Metadata {
    store: Arc<dyn PartitionStore>,
    /// This node: the writer of local changes, and the claimant named in types created here.
    me: NodeName,
    /// The wall clock (through the node's network seam).
    net: Arc<dyn Net>,
    /// Partitions of the ring (fixed for the cluster's life): the bound on `n_val`.
    ring_size: u32,
    state: RwLock<State>,
    /// Local changes, for the gossip worker to broadcast.
    changes: mpsc::UnboundedSender<Entry>,
}

#[derive(Default)]
struct State {
    types: BTreeMap<String, BucketType>,
    bucket_patches: HashMap<Bucket, Value>,
    /// Every entry's stamp and value, deleted ones included, by key.
    entries: BTreeMap<Bytes, (Stamp, Option<Value>)>,
    /// The largest stamp seen, so new stamps always come after it.
    clock: u64,
    /// Effective props per bucket, computed on first use; cleared on any change.
    cache: HashMap<Bucket, Arc<BucketProps>>,
}

impl Metadata {
    /// Loads every stored type and bucket patch, and logs a warning for each type or bucket
    /// whose properties cannot serve requests on a ring of `ring_size` partitions. Local
    /// changes are announced on `changes`.
    pub fn load(
        store: Arc<dyn PartitionStore>,
        me: NodeName,
        net: Arc<dyn Net>,
        changes: mpsc::UnboundedSender<Entry>,
        ring_size: u32,
    ) -> NodeResult<Self> {
        let mut state = State::default();
        for prefix in [TYPE_KEY.as_bytes(), BUCKET_KEY] {
            for item in store.scan_prefix(prefix) {
                let (k, v) = item?;
                let stored = decode_stored(&k, &v)?;
                state.clock = state.clock.max(stored.stamp.us);
                state.install(k, stored.stamp, stored.value)?;
            }
        }
        let meta = Metadata {
            store,
            me,
            net,
            ring_size,
            state: RwLock::new(state),
            changes,
        };
        for (what, e) in meta.unservable() {
            tracing::warn!(
                "{what} has properties that cannot serve requests on this ring of {ring_size} \
                 partitions ({e}); its requests fail until the properties are fixed"
            );
        }
        Ok(meta)
    }

    /// Every bucket type and bucket whose stored properties cannot serve requests, named as
    /// an operator would look for it, with the reason.
    pub fn unservable(&self) -> Vec<(String, NodeError)> {
        let state = self.state.read();
        let mut out = Vec::new();
        for (name, t) in &state.types {
            if let Err(e) = t.props().and_then(|p| self.check(&p)) {
                out.push((format!("bucket type {name}"), e));
            }
        }
        for bucket in state.bucket_patches.keys() {
            match state.effective(bucket).and_then(|p| self.check(&p)) {
                // A bucket of an unknown or inactive type is not served at all.
                Ok(())
                | Err(NodeError::UnknownBucketType(_) | NodeError::InactiveBucketType(_)) => {}
                Err(e) => out.push((describe(bucket), e)),
            }
        }
        out
    }

    /// Refuses properties no request could be served with on this ring.
    fn check(&self, props: &BucketProps) -> NodeResult<()> {
        Ok(props.check_servable(self.ring_size)?)
    }

    /// The effective properties of a bucket; fails for unknown or inactive types.
    pub fn bucket_props(&self, bucket: &Bucket) -> NodeResult<Arc<BucketProps>> {
        if let Some(p) = self.state.read().cache.get(bucket) {
            return Ok(p.clone());
        }
        let mut state = self.state.write();
        let props = Arc::new(state.effective(bucket)?);
        state.cache.insert(bucket.clone(), props.clone());
        Ok(props)
    }

    /// Sets (some of) a bucket's properties from a `{"props":{...}}`-style inner object.
    pub fn set_bucket_props(&self, bucket: &Bucket, patch: &Value) -> NodeResult<()> {
        let mut state = self.state.write();
        let type_props = state.type_props(&bucket.btype)?;
        let mut merged = state
            .bucket_patches
            .get(bucket)
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        merge_patch(&mut merged, patch)?;
        // Validate the whole result against the type, so immutable props stay put.
        self.check(&with_overrides(&type_props, &merged)?)?;
        self.write(&mut state, bucket_meta_key(bucket), Some(merged))
    }

    /// Drops a bucket's own properties: it goes back to its type's.
    pub fn reset_bucket_props(&self, bucket: &Bucket) -> NodeResult<()> {
        let mut state = self.state.write();
        state.type_props(&bucket.btype)?;
        self.write(&mut state, bucket_meta_key(bucket), None)
    }

    /// The properties of a bucket type itself (any status).
    pub fn type_props(&self, name: &str) -> NodeResult<(BucketProps, TypeStatus)> {
        let state = self.state.read();
        if name == DEFAULT_TYPE {
            return Ok((BucketProps::default(), TypeStatus::Active));
        }
        let t = state
            .types
            .get(name)
            .ok_or_else(|| NodeError::UnknownBucketType(name.to_string()))?;
        Ok((t.props()?, t.status()))
    }

    /// Whether this node knows the bucket type (created or active).
    pub fn has_type(&self, name: &str) -> bool {
        name == DEFAULT_TYPE || self.state.read().types.contains_key(name)
    }

    /// Creates a bucket type (status `created`; it must be activated before use).
    pub fn create_type(&self, name: &str, patch: &Value) -> NodeResult<()> {
        validate_type_name(name)?;
        if name.contains('/') || name.len() > 255 {
            return Err(NodeError::BadRequest(format!(
                "invalid bucket type name: {name:?}"
            )));
        }
        let mut state = self.state.write();
        if state.types.get(name).is_some_and(|t| t.active) {
            return Err(NodeError::BadRequest(format!(
                "Bucket type {name} already exists and is active"
            )));
        }
        self.check(&BucketProps::create_type(patch, self.me.clone())?)?;
        let t = BucketType {
            patch: patch.clone(),
            active: false,
            claimant: Some(self.me.clone()),
        };
        self.write(&mut state, type_key(name), Some(type_json(&t)))
    }

    /// Activates a created bucket type. The node checks first that every member has it.
    pub fn activate_type(&self, name: &str) -> NodeResult<()> {
        let mut state = self.state.write();
        if name == DEFAULT_TYPE {
            return Ok(());
        }
        let mut t = state
            .types
            .get(name)
            .cloned()
            .ok_or_else(|| NodeError::UnknownBucketType(name.to_string()))?;
        t.active = true;
        self.write(&mut state, type_key(name), Some(type_json(&t)))
    }

    /// Updates a bucket type's properties (immutable ones excepted).
    pub fn update_type(&self, name: &str, patch: &Value) -> NodeResult<()> {
        let mut state = self.state.write();
        if name == DEFAULT_TYPE {
            return Err(NodeError::BadRequest(
                "the default bucket type cannot be updated; set bucket properties instead".into(),
            ));
        }
        let mut t = state
            .types
            .get(name)
            .cloned()
            .ok_or_else(|| NodeError::UnknownBucketType(name.to_string()))?;
        let old = t.props()?;
        merge_patch(&mut t.patch, patch)?;
        let new = t.props()?;
        validate_type_update(&old, &new)?;
        self.check(&new)?;
        // Buckets of the type inherit the change: none may be left unable to serve.
        for (bucket, patch) in &state.bucket_patches {
            if bucket.btype.as_ref() == name.as_bytes() {
                with_overrides(&new, patch)
                    .and_then(|p| self.check(&p))
                    .map_err(|e| within(e, &format!("it would break {}", describe(bucket))))?;
            }
        }
        self.write(&mut state, type_key(name), Some(type_json(&t)))
    }

    /// Every bucket type with its status, `default` first.
    pub fn list_types(&self) -> Vec<(String, TypeStatus)> {
        let state = self.state.read();
        let mut out = vec![(DEFAULT_TYPE.to_string(), TypeStatus::Active)];
        out.extend(state.types.iter().map(|(n, t)| (n.clone(), t.status())));
        out
    }

    /// Checks that a bucket type exists and is active (for listing buckets of a type).
    pub fn check_type_active(&self, name: &str) -> NodeResult<()> {
        self.state
            .read()
            .type_props(&Bytes::copy_from_slice(name.as_bytes()))
            .map(|_| ())
    }

    /// Applies an entry heard from a peer if it is newer than ours; returns whether it was.
    pub fn apply_remote(&self, entry: &Entry) -> NodeResult<bool> {
        let value =
            match &entry.value {
                None => None,
                Some(text) => Some(serde_json::from_str::<Value>(text).map_err(|e| {
                    NodeError::BadRequest(format!("metadata entry from a peer: {e}"))
                })?),
            };
        let mut state = self.state.write();
        state.clock = state.clock.max(entry.stamp.us);
        if state
            .entries
            .get(&entry.key)
            .is_some_and(|(s, _)| *s >= entry.stamp)
        {
            return Ok(false);
        }
        let stored = Stored {
            stamp: entry.stamp.clone(),
            value: value.clone(),
        };
        // Check that the entry makes sense before storing anything.
        state.install(entry.key.clone(), entry.stamp.clone(), value)?;
        self.store
            .put(&entry.key, &serde_json::to_vec(&stored).expect("json"))?;
        state.cache.clear();
        Ok(true)
    }

    /// Every entry, for a peer whose digest differs from ours.
    pub fn entries(&self) -> Vec<Entry> {
        self.state
            .read()
            .entries
            .iter()
            .map(|(k, (stamp, value))| Entry {
                key: k.clone(),
                stamp: stamp.clone(),
                value: value.as_ref().map(Value::to_string),
            })
            .collect()
    }

    /// A digest of every entry's key and stamp: equal digests mean equal metadata.
    pub fn digest(&self) -> [u8; 20] {
        let state = self.state.read();
        let mut h = Sha1::new();
        for (k, (stamp, _)) in &state.entries {
            h.update((k.len() as u32).to_be_bytes());
            h.update(k);
            h.update(stamp.us.to_be_bytes());
            h.update(stamp.node.as_str().as_bytes());
            h.update([0]);
        }
        h.finalize().into()
    }

    /// Stores a local change with a fresh stamp and announces it.
    fn write(&self, state: &mut State, key: Bytes, value: Option<Value>) -> NodeResult<()> {
        let stamp = Stamp {
            us: self.net.now_us().max(state.clock + 1),
            node: self.me.clone(),
        };
        state.clock = stamp.us;
        let stored = Stored {
            stamp: stamp.clone(),
            value: value.clone(),
        };
        self.store
            .put(&key, &serde_json::to_vec(&stored).expect("json"))?;
        let announced = Entry {
            key: key.clone(),
            stamp: stamp.clone(),
            value: value.as_ref().map(Value::to_string),
        };
        state.install(key, stamp, value)?;
        state.cache.clear();
        let _ = self.changes.send(announced);
        Ok(())
    }
}

impl BucketType {
    /// The type's properties: Riak's created-type defaults with the type's patch applied.
    fn props(&self) -> NodeResult<BucketProps> {
        let claimant = self
            .claimant
            .clone()
            .unwrap_or_else(|| NodeName::from("unknown"));
        let mut props = BucketProps::create_type(&self.patch, claimant)?;
        props.active = Some(self.active);
        Ok(props)
    }

    fn status(&self) -> TypeStatus {
        if self.active {
            TypeStatus::Active
        } else {
            TypeStatus::Created
        }
    }
}

impl State {
    /// Puts an entry into the in-memory tables (types, bucket patches, stamps).
    fn install(&mut self, key: Bytes, stamp: Stamp, value: Option<Value>) -> NodeResult<()> {
        if let Some(name) = key.strip_prefix(TYPE_KEY.as_bytes()) {
            let name = String::from_utf8_lossy(name).into_owned();
            match &value {
                Some(v) => {
                    let t: BucketType = serde_json::from_value(v.clone())
                        .map_err(|e| NodeError::Corrupt(format!("bucket type {name}: {e}")))?;
                    self.types.insert(name, t);
                }
                None => {
                    self.types.remove(&name);
                }
            }
        } else if let Some(raw) = key.strip_prefix(BUCKET_KEY) {
            let bucket = decode_bucket(raw)?;
            match &value {
                Some(patch) => {
                    self.bucket_patches.insert(bucket, patch.clone());
                }
                None => {
                    self.bucket_patches.remove(&bucket);
                }
            }
        } else {
            return Err(NodeError::Corrupt(format!(
                "metadata key {:?} is neither a type nor a bucket",
                String::from_utf8_lossy(&key)
            )));
        }
        self.entries.insert(key, (stamp, value));
        Ok(())
    }

    /// The properties of an active type, for use by a bucket.
    fn type_props(&self, btype: &Bytes) -> NodeResult<BucketProps> {
        if btype.as_ref() == DEFAULT_TYPE.as_bytes() {
            return Ok(BucketProps::default());
        }
        let name = String::from_utf8_lossy(btype).into_owned();
        match self.types.get(&name) {
            None => Err(NodeError::UnknownBucketType(name)),
            Some(t) if !t.active => Err(NodeError::InactiveBucketType(name)),
            Some(t) => t.props(),
        }
    }

    fn effective(&self, bucket: &Bucket) -> NodeResult<BucketProps> {
        let type_props = self.type_props(&bucket.btype)?;
        match self.bucket_patches.get(bucket) {
            Some(patch) => with_overrides(&type_props, patch),
            None => Ok(type_props),
        }
    }
}

/// An entry as stored: the current form (stamp and value), or the form of Rill versions before
/// clustering (the bare value), which loads with the oldest possible stamp.
fn decode_stored(key: &[u8], raw: &[u8]) -> NodeResult<Stored> {
    let corrupt = |e: serde_json::Error| {
        NodeError::Corrupt(format!(
            "metadata entry {:?}: {e}",
            String::from_utf8_lossy(key)
        ))
    };
    let v: Value = serde_json::from_slice(raw).map_err(corrupt)?;
    if v.get("stamp").is_some() {
        return serde_json::from_value(v).map_err(corrupt);
    }
    Ok(Stored {
        stamp: Stamp {
            us: 0,
            node: NodeName::from(""),
        },
        value: Some(v),
    })
}

fn type_json(t: &BucketType) -> Value {
    serde_json::to_value(t).expect("a bucket type serializes")
}

/// A bucket's effective properties: its type's, overridden by the bucket's own.
fn with_overrides(type_props: &BucketProps, patch: &Value) -> NodeResult<BucketProps> {
    let Value::Object(map) = patch else {
        return Err(NodeError::BadRequest(
            "properties must be a JSON object".into(),
        ));
    };
    Ok(type_props.with_overrides(map)?)
}

/// Merges the top-level fields of `patch` (an object) into `into`.
fn merge_patch(into: &mut Value, patch: &Value) -> NodeResult<()> {
    let (Value::Object(into), Value::Object(patch)) = (into, patch) else {
        return Err(NodeError::BadRequest(
            "properties must be a JSON object".into(),
        ));
    };
    for (k, v) in patch {
        into.insert(k.clone(), v.clone());
    }
    Ok(())
}

/// A refusal of props with `context` before each reason; other errors pass unchanged.
fn within(e: NodeError, context: &str) -> NodeError {
    match e {
        NodeError::InvalidProps(p) => NodeError::InvalidProps(p.within(context)),
        other => other,
    }
}

/// A bucket as an operator finds it: `bucket B` for the default type, else `bucket T/B`.
fn describe(bucket: &Bucket) -> String {
    let name = String::from_utf8_lossy(&bucket.name);
    if bucket.btype.as_ref() == DEFAULT_TYPE.as_bytes() {
        format!("bucket {name}")
    } else {
        format!("bucket {}/{name}", String::from_utf8_lossy(&bucket.btype))
    }
}

fn type_key(name: &str) -> Bytes {
    Bytes::from(format!("{TYPE_KEY}{name}"))
}

fn bucket_meta_key(bucket: &Bucket) -> Bytes {
    let mut k = BUCKET_KEY.to_vec();
    k.extend_from_slice(&bucket.storage_prefix());
    Bytes::from(k)
}

fn decode_bucket(raw: &[u8]) -> NodeResult<Bucket> {
    Bucket::from_storage_prefix(raw)
        .map_err(|e| NodeError::Corrupt(format!("bucket metadata key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_storage::{Backend, MemoryBackend};
    use serde_json::json;

    const RING: u32 = 16;

    fn metadata(store: Arc<dyn PartitionStore>) -> Metadata {
        let (tx, _rx) = mpsc::unbounded_channel();
        Metadata::load(
            store,
            NodeName::from("n@h"),
            Arc::new(rill_net::TokioNet),
            tx,
            RING,
        )
        .unwrap()
    }

    fn refused(result: NodeResult<()>) -> String {
        match result {
            Err(NodeError::InvalidProps(e)) => e.to_string(),
            other => panic!("expected refused properties, got {other:?}"),
        }
    }

    fn bucket(btype: &str, name: &str) -> Bucket {
        Bucket::new(btype.to_string(), name.to_string()).unwrap()
    }

    fn meta(name: &str) -> (Metadata, mpsc::UnboundedReceiver<Entry>) {
        let backend = MemoryBackend::default();
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Metadata::load(
                backend.metadata(),
                NodeName::from(name),
                Arc::new(rill_net::TokioNet),
                tx,
                RING,
            )
            .unwrap(),
            rx,
        )
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Entry>) -> Vec<Entry> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn changes_on_one_node_reach_another_and_converge() {
        let (a, mut ra) = meta("a");
        let (b, _rb) = meta("b");
        a.create_type("t", &json!({"n_val": 2})).unwrap();
        a.activate_type("t").unwrap();
        let bucket = Bucket::new("t", "x").unwrap();
        a.set_bucket_props(&bucket, &json!({"r": 1})).unwrap();
        for e in drain(&mut ra) {
            b.apply_remote(&e).unwrap();
        }
        assert_eq!(b.bucket_props(&bucket).unwrap().n_val, 2);
        assert_eq!(a.digest(), b.digest());
        // The type's claimant is the creator's, on every node.
        assert_eq!(
            a.type_props("t").unwrap().0.claimant,
            b.type_props("t").unwrap().0.claimant
        );
        // A reset is a stamped deletion: the older patch arriving again does not undo it.
        let old = a.entries();
        a.reset_bucket_props(&bucket).unwrap();
        for e in drain(&mut ra) {
            assert!(b.apply_remote(&e).unwrap());
        }
        for e in &old {
            assert!(!b.apply_remote(e).unwrap(), "an older entry must lose");
        }
        assert!(b.bucket_props(&bucket).unwrap().r != rill_core::props::Quorum::N(1));
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn concurrent_changes_resolve_the_same_way_everywhere() {
        let (a, mut ra) = meta("a");
        let (b, mut rb) = meta("b");
        let bucket = Bucket::default_type("x").unwrap();
        a.set_bucket_props(&bucket, &json!({"n_val": 2})).unwrap();
        b.set_bucket_props(&bucket, &json!({"n_val": 1})).unwrap();
        let (from_a, from_b) = (drain(&mut ra), drain(&mut rb));
        for e in &from_a {
            b.apply_remote(e).unwrap();
        }
        for e in &from_b {
            a.apply_remote(e).unwrap();
        }
        assert_eq!(a.digest(), b.digest());
        assert_eq!(
            a.bucket_props(&bucket).unwrap().n_val,
            b.bucket_props(&bucket).unwrap().n_val
        );
    }

    #[test]
    fn a_new_stamp_follows_every_stamp_seen() {
        let (a, _ra) = meta("a");
        let far = Entry {
            key: type_key("t"),
            stamp: Stamp {
                us: u64::MAX / 2,
                node: NodeName::from("z"),
            },
            value: Some(json!({"patch": {}, "active": false}).to_string()),
        };
        assert!(a.apply_remote(&far).unwrap());
        // A local change made with a wall clock far behind still wins.
        a.update_type("t", &json!({"n_val": 2})).unwrap();
        assert_eq!(a.type_props("t").unwrap().0.n_val, 2);
        assert!(a.entries()[0].stamp.us > u64::MAX / 2);
    }

    #[test]
    fn entries_from_peers_are_checked() {
        let (a, _ra) = meta("a");
        let bad = |key: &str, value: &str| Entry {
            key: Bytes::from(key.to_string()),
            stamp: Stamp {
                us: 1,
                node: NodeName::from("z"),
            },
            value: Some(value.to_string()),
        };
        assert!(a.apply_remote(&bad("type/t", "not json")).is_err());
        assert!(a.apply_remote(&bad("type/t", "[1,2]")).is_err());
        assert!(a.apply_remote(&bad("nonsense", "{}")).is_err());
        assert!(a.entries().is_empty());
    }

    #[test]
    fn entries_of_earlier_versions_load() {
        let backend = MemoryBackend::default();
        let store = backend.metadata();
        store
            .put(b"type/old", br#"{"patch":{"n_val":1},"active":true}"#)
            .unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        let m = Metadata::load(
            store,
            NodeName::from("a"),
            Arc::new(rill_net::TokioNet),
            tx,
            RING,
        )
        .unwrap();
        assert_eq!(m.type_props("old").unwrap().0.n_val, 1);
        assert_eq!(m.entries()[0].stamp.us, 0);
    }

    #[test]
    fn props_no_ring_can_serve_are_refused_when_set() {
        let meta = metadata(MemoryBackend::new().metadata());
        let b = bucket(DEFAULT_TYPE, "b");
        let e = refused(meta.set_bucket_props(&b, &json!({"n_val": 17})));
        assert_eq!(
            e,
            "n_val: n_val of 17 is larger than the ring's 16 partitions"
        );
        assert!(meta.set_bucket_props(&b, &json!({"n_val": 16})).is_ok());
        assert_eq!(meta.bucket_props(&b).unwrap().n_val, 16);
        let e = refused(meta.create_type("t", &json!({"n_val": 1000})));
        assert!(e.contains("n_val of 1000"), "{e}");
        assert!(meta.list_types().iter().all(|(n, _)| n != "t"));

        meta.create_type("t", &json!({"n_val": 5})).unwrap();
        meta.activate_type("t").unwrap();
        let e = refused(meta.update_type("t", &json!({"n_val": 64})));
        assert!(e.contains("ring's 16 partitions"), "{e}");
        // A bucket of the type that relies on its n_val: the type cannot pull it below.
        let tb = bucket("t", "five");
        meta.set_bucket_props(&tb, &json!({"w": 5})).unwrap();
        let e = refused(meta.update_type("t", &json!({"n_val": 3})));
        assert_eq!(
            e,
            "w: it would break bucket t/five: w of 5 is larger than n_val (3)"
        );
        assert_eq!(meta.bucket_props(&tb).unwrap().n_val, 5, "nothing changed");
        assert!(meta.unservable().is_empty());
    }

    #[test]
    fn stored_props_that_are_now_refused_load_are_reported_and_can_be_fixed() {
        let store = MemoryBackend::new().metadata();
        // As an older version stored them, before the check existed.
        let b = bucket(DEFAULT_TYPE, "huge");
        store
            .put(&bucket_meta_key(&b), br#"{"n_val":1000000}"#)
            .unwrap();
        let t = BucketType {
            patch: json!({"n_val": 100}),
            active: true,
            claimant: None,
        };
        store
            .put(b"type/wide", &serde_json::to_vec(&t).unwrap())
            .unwrap();
        let meta = metadata(store.clone());
        let mut found: Vec<String> = meta.unservable().into_iter().map(|(w, _)| w).collect();
        found.sort();
        assert_eq!(found, ["bucket huge", "bucket type wide"]);
        // The node serves them as stored (requests then fail their quorum, not the node).
        assert_eq!(meta.bucket_props(&b).unwrap().n_val, 1_000_000);
        // A change that keeps the bad value is refused and says which; a fix is taken.
        let e = refused(meta.set_bucket_props(&b, &json!({"r": 1})));
        assert!(e.starts_with("n_val: n_val of 1000000"), "{e}");
        meta.set_bucket_props(&b, &json!({"n_val": 3})).unwrap();
        meta.update_type("wide", &json!({"n_val": 8})).unwrap();
        assert!(meta.unservable().is_empty());
        // And it stays fixed after a restart.
        assert!(metadata(store).unservable().is_empty());
    }
}
