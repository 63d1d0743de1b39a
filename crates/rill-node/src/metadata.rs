//! Bucket types and bucket properties: the node's metadata, persisted in the backend's metadata
//! store and cached in memory, because every request needs its bucket's effective properties.
//!
//! A bucket's effective properties are its type's properties overlaid with the properties set on
//! the bucket itself. Only the explicitly set ones are stored per bucket (as a JSON patch), so a
//! later change to the type reaches every bucket that did not override that property, and a
//! reset simply drops the patch. The `default` type always exists, is always active, and has
//! Riak's defaults; created types start from Riak's defaults for created types.
//!
//! Properties no ring could serve (an `n_val` above the partition count, a quorum above the
//! `n_val`; see `BucketProps::check_servable`) are refused whenever they are set, and a type
//! update that would leave one of its buckets so is refused too. Entries stored before that
//! check existed are loaded all the same and reported in the log, so the node keeps serving
//! and an operator can fix them.
//!
//! Clustering will gossip this state; the API here (read effective props, apply a change) stays.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use rill_core::bkey::{Bucket, DEFAULT_TYPE};
use rill_core::props::{BucketProps, validate_type_name, validate_type_update};
use rill_core::ring::NodeName;
use rill_storage::PartitionStore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{NodeError, NodeResult};

/// A bucket type's definition and status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BucketType {
    /// The JSON patch the type was created and updated with (over Riak's created-type defaults).
    pub patch: Value,
    pub active: bool,
}

/// Status of a bucket type as `bucket-type status` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeStatus {
    Active,
    Created,
}

const TYPE_KEY: &str = "type/";
const BUCKET_KEY: &[u8] = b"bucket/";

/// The node's bucket metadata.
pub struct Metadata {
    store: Arc<dyn PartitionStore>,
    /// The node that creates types here (Riak's claimant; a cluster will gossip it).
    claimant: NodeName,
    /// Partitions of the ring (fixed for the cluster's life): the bound on `n_val`.
    ring_size: u32,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    types: BTreeMap<String, BucketType>,
    bucket_patches: HashMap<Bucket, Value>,
    /// Effective props per bucket, computed on first use; cleared on any change.
    cache: HashMap<Bucket, Arc<BucketProps>>,
}

impl Metadata {
    /// Loads every stored type and bucket patch, and logs a warning for each type or bucket
    /// whose properties cannot serve requests on a ring of `ring_size` partitions.
    pub fn load(
        store: Arc<dyn PartitionStore>,
        claimant: NodeName,
        ring_size: u32,
    ) -> NodeResult<Self> {
        let mut state = State::default();
        for item in store.scan_prefix(TYPE_KEY.as_bytes()) {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k[TYPE_KEY.len()..]).into_owned();
            let t: BucketType = serde_json::from_slice(&v)
                .map_err(|e| NodeError::Corrupt(format!("bucket type {name}: {e}")))?;
            state.types.insert(name, t);
        }
        for item in store.scan_prefix(BUCKET_KEY) {
            let (k, v) = item?;
            let bucket = decode_bucket(&k[BUCKET_KEY.len()..])?;
            let patch: Value = serde_json::from_slice(&v)
                .map_err(|e| NodeError::Corrupt(format!("bucket props: {e}")))?;
            state.bucket_patches.insert(bucket, patch);
        }
        let meta = Metadata {
            store,
            claimant,
            ring_size,
            state: RwLock::new(state),
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
            if let Err(e) = t.props(&self.claimant).and_then(|p| self.check(&p)) {
                out.push((format!("bucket type {name}"), e));
            }
        }
        for bucket in state.bucket_patches.keys() {
            match state
                .effective(bucket, &self.claimant)
                .and_then(|p| self.check(&p))
            {
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
        let props = Arc::new(state.effective(bucket, &self.claimant)?);
        state.cache.insert(bucket.clone(), props.clone());
        Ok(props)
    }

    /// Sets (some of) a bucket's properties from a `{"props":{...}}`-style inner object.
    pub fn set_bucket_props(&self, bucket: &Bucket, patch: &Value) -> NodeResult<()> {
        let mut state = self.state.write();
        let type_props = state.type_props(&bucket.btype, &self.claimant)?;
        let mut merged = state
            .bucket_patches
            .get(bucket)
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        merge_patch(&mut merged, patch)?;
        // Validate the whole result against the type, so immutable props stay put.
        self.check(&with_overrides(&type_props, &merged)?)?;
        self.store.put(
            &bucket_meta_key(bucket),
            &serde_json::to_vec(&merged).expect("json"),
        )?;
        state.bucket_patches.insert(bucket.clone(), merged);
        state.cache.remove(bucket);
        Ok(())
    }

    /// Drops a bucket's own properties: it goes back to its type's.
    pub fn reset_bucket_props(&self, bucket: &Bucket) -> NodeResult<()> {
        let mut state = self.state.write();
        state.type_props(&bucket.btype, &self.claimant)?;
        self.store.delete(&bucket_meta_key(bucket))?;
        state.bucket_patches.remove(bucket);
        state.cache.remove(bucket);
        Ok(())
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
        let status = if t.active {
            TypeStatus::Active
        } else {
            TypeStatus::Created
        };
        Ok((t.props(&self.claimant)?, status))
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
        self.check(&BucketProps::create_type(patch, self.claimant.clone())?)?;
        let t = BucketType {
            patch: patch.clone(),
            active: false,
        };
        self.persist_type(name, &t)?;
        state.types.insert(name.to_string(), t);
        Ok(())
    }

    /// Activates a created bucket type.
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
        self.persist_type(name, &t)?;
        state.types.insert(name.to_string(), t);
        state.cache.clear();
        Ok(())
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
        let old = t.props(&self.claimant)?;
        merge_patch(&mut t.patch, patch)?;
        let new = t.props(&self.claimant)?;
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
        self.persist_type(name, &t)?;
        state.types.insert(name.to_string(), t);
        state.cache.clear();
        Ok(())
    }

    /// Every bucket type with its status, `default` first.
    pub fn list_types(&self) -> Vec<(String, TypeStatus)> {
        let state = self.state.read();
        let mut out = vec![(DEFAULT_TYPE.to_string(), TypeStatus::Active)];
        out.extend(state.types.iter().map(|(n, t)| {
            let s = if t.active {
                TypeStatus::Active
            } else {
                TypeStatus::Created
            };
            (n.clone(), s)
        }));
        out
    }

    /// Checks that a bucket type exists and is active (for listing buckets of a type).
    pub fn check_type_active(&self, name: &str) -> NodeResult<()> {
        self.state
            .read()
            .type_props(&Bytes::copy_from_slice(name.as_bytes()), &self.claimant)
            .map(|_| ())
    }

    fn persist_type(&self, name: &str, t: &BucketType) -> NodeResult<()> {
        let key = format!("{TYPE_KEY}{name}");
        self.store
            .put(key.as_bytes(), &serde_json::to_vec(t).expect("json"))?;
        Ok(())
    }
}

impl BucketType {
    /// The type's properties: Riak's created-type defaults with the type's patch applied.
    fn props(&self, claimant: &NodeName) -> NodeResult<BucketProps> {
        let mut props = BucketProps::create_type(&self.patch, claimant.clone())?;
        props.active = Some(self.active);
        Ok(props)
    }
}

impl State {
    /// The properties of an active type, for use by a bucket.
    fn type_props(&self, btype: &Bytes, claimant: &NodeName) -> NodeResult<BucketProps> {
        if btype.as_ref() == DEFAULT_TYPE.as_bytes() {
            return Ok(BucketProps::default());
        }
        let name = String::from_utf8_lossy(btype).into_owned();
        match self.types.get(&name) {
            None => Err(NodeError::UnknownBucketType(name)),
            Some(t) if !t.active => Err(NodeError::InactiveBucketType(name)),
            Some(t) => t.props(claimant),
        }
    }

    fn effective(&self, bucket: &Bucket, claimant: &NodeName) -> NodeResult<BucketProps> {
        let type_props = self.type_props(&bucket.btype, claimant)?;
        match self.bucket_patches.get(bucket) {
            Some(patch) => with_overrides(&type_props, patch),
            None => Ok(type_props),
        }
    }
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

fn bucket_meta_key(bucket: &Bucket) -> Vec<u8> {
    let mut k = BUCKET_KEY.to_vec();
    k.extend_from_slice(&bucket.storage_prefix());
    k
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
        Metadata::load(store, NodeName::from("n@h"), RING).unwrap()
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
