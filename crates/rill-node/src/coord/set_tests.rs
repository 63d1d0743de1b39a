//! Sets in the split layout on a real node (memory backend, n_val 3): what each replica stores,
//! how a replica that missed updates catches up, read repair, deletes, the conversion of sets
//! stored whole, and handoff's whole objects.

use std::sync::Arc;

use bytes::Bytes;
use rill_core::bkey::{BKey, Bucket};
use rill_core::codec;
use rill_core::crdt::object::{coordinate, fetched};
use rill_core::crdt::split;
use rill_core::crdt::{Context, DtValue, Fetched, Op, SetOp};
use rill_core::props::Datatype;
use rill_core::vclock::Actor;
use serde_json::json;

use crate::config::{BackendKind, DeleteMode, NodeConfig};
use crate::node::Node;
use crate::request::{DeleteOptions, DtFetchOptions, DtUpdateOptions, DtUpdateRequest};
use crate::vnode::Vnode;

/// The storage-key prefix of member records (see `vnode::sets`).
const RECORDS: &[u8] = &[0xFF, b'M'];

fn node() -> Node {
    let config = NodeConfig {
        backend: BackendKind::Memory,
        ring_size: 16,
        delete_mode: DeleteMode::Keep,
        ..NodeConfig::default()
    };
    let node = Node::start(config).expect("node starts").0;
    let meta = &node.inner.metadata;
    meta.create_type("sets", &json!({"datatype": "set"}))
        .unwrap();
    meta.activate_type("sets").unwrap();
    node
}

fn key(k: &str) -> BKey {
    BKey::new(Bucket::new("sets", "b").unwrap(), k.to_string()).unwrap()
}

fn members(names: impl IntoIterator<Item = String>) -> Vec<Bytes> {
    names.into_iter().map(Bytes::from).collect()
}

/// Enough members for a set to be stored split (past `split::SPLIT_ABOVE_BYTES`).
fn big(prefix: &str) -> Vec<Bytes> {
    let n = split::SPLIT_ABOVE_BYTES / 16 + 1;
    members((0..n).map(|i| format!("{prefix}{i:015}")))
}

/// `base` and `more`, sorted as a set's value is.
fn with(base: &[Bytes], more: &[&str]) -> Vec<Bytes> {
    let mut all: Vec<Bytes> = base.to_vec();
    all.extend(more.iter().map(|m| Bytes::copy_from_slice(m.as_bytes())));
    all.sort();
    all
}

async fn update(
    node: &Node,
    k: &BKey,
    adds: Vec<Bytes>,
    removes: Vec<Bytes>,
    ctx: Option<Context>,
) {
    let req = DtUpdateRequest {
        bkey: k.clone(),
        op: Op::Set(SetOp { adds, removes }),
        context: ctx,
    };
    node.dt_update(&req, &DtUpdateOptions::default())
        .await
        .expect("update");
}

async fn fetch(node: &Node, k: &BKey) -> Option<Fetched> {
    node.dt_fetch(k, &DtFetchOptions::default())
        .await
        .expect("fetch")
        .1
}

fn value(state: &Option<Fetched>) -> Vec<Bytes> {
    match state.as_ref().map(Fetched::value) {
        Some(DtValue::Set(v)) => v,
        None => Vec::new(),
        other => panic!("not a set: {other:?}"),
    }
}

fn replicas(node: &Node, k: &BKey) -> Vec<Arc<Vnode>> {
    node.preflist(k, 3)
        .iter()
        .map(|e| node.vnode(e.partition).unwrap())
        .collect()
}

/// A replica's member records of all its sets.
fn records(v: &Vnode) -> Vec<(Bytes, Bytes)> {
    v.store().scan_prefix(RECORDS).map(Result::unwrap).collect()
}

/// What a replica holds of `k`, made whole.
fn replica_set(v: &Vnode, k: &BKey) -> Vec<Bytes> {
    let obj = v.get(k).unwrap().expect("stored");
    value(&fetched(&obj, Datatype::Set).unwrap())
}

fn is_split(v: &Vnode, k: &BKey) -> bool {
    let raw = v.raw(k).expect("stored");
    split::head_content(&codec::decode(&raw).unwrap()).is_some()
}

#[tokio::test]
async fn every_replica_stores_a_head_and_one_record_per_member() {
    let node = node();
    let k = key("s");
    let all = members((0..1000).map(|i| format!("m{i:015}")));
    for chunk in all.chunks(100) {
        update(&node, &k, chunk.to_vec(), vec![], None).await;
    }
    let state = fetch(&node, &k).await;
    assert_eq!(value(&state), all);
    // A remove with the fetched context, and an add of one already present.
    let ctx = state.as_ref().and_then(Fetched::context);
    update(&node, &k, vec![all[7].clone()], vec![all[3].clone()], ctx).await;
    let expected: Vec<Bytes> = all.iter().filter(|m| **m != all[3]).cloned().collect();
    let gone = all[3].clone();
    assert_eq!(value(&fetch(&node, &k).await), expected);
    for v in replicas(&node, &k) {
        assert!(
            is_split(&v, &k),
            "partition {} stores a head",
            v.partition()
        );
        let recs = records(&v);
        assert_eq!(recs.len(), expected.len(), "one record per member");
        assert!(!recs.iter().any(|(rk, _)| rk.ends_with(&gone)));
        assert_eq!(replica_set(&v, &k), expected);
    }
}

#[tokio::test]
async fn a_replica_that_missed_updates_is_sent_the_whole_set() {
    let node = node();
    let k = key("lagging");
    let base = big("a");
    update(&node, &k, base.clone(), vec![], None).await;
    // The write that made it big stored it whole at the coordinator; the next one splits it.
    update(&node, &k, vec![base[0].clone()], vec![], None).await;
    let reps = replicas(&node, &k);
    let third = &reps[2];
    let (old_head, old_records) = (third.raw(&k).unwrap(), records(third));
    update(&node, &k, members(["c".into()]), vec![], None).await;
    update(&node, &k, members(["d".into()]), vec![], None).await;
    // Put the third replica back to what it held after the first update.
    for (rk, _) in records(third) {
        third.store().delete(&rk).unwrap();
    }
    for (rk, rv) in &old_records {
        third.store().put(rk, rv).unwrap();
    }
    third.damage(&k, Some(&old_head));
    assert_eq!(replica_set(third, &k), base);

    // Its clock lacks the coordinator's last two events: it cannot apply the next delta, and
    // merges the coordinator's whole set instead.
    update(&node, &k, members(["e".into()]), vec![], None).await;
    let expected = with(&base, &["c", "d", "e"]);
    for v in &reps {
        assert_eq!(replica_set(v, &k), expected, "partition {}", v.partition());
        assert!(is_split(v, &k));
        assert_eq!(records(v).len(), expected.len());
    }
}

#[tokio::test]
async fn read_repair_restores_a_lost_replica_in_the_split_layout() {
    let node = node();
    let k = key("repaired");
    let base = big("x");
    update(&node, &k, base.clone(), vec![], None).await;
    // The write that made it big stored it whole at the coordinator; the next one splits it.
    update(&node, &k, vec![base[0].clone()], vec![], None).await;
    let reps = replicas(&node, &k);
    for (rk, _) in records(&reps[1]) {
        reps[1].store().delete(&rk).unwrap();
    }
    reps[1].damage(&k, None);
    assert!(reps[1].get(&k).unwrap().is_none());
    assert_eq!(value(&fetch(&node, &k).await), base);
    let start = std::time::Instant::now();
    while reps[1].get(&k).unwrap().is_none() && start.elapsed().as_secs() < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(replica_set(&reps[1], &k), replica_set(&reps[0], &k));
    assert!(is_split(&reps[1], &k));
    assert_eq!(records(&reps[1]).len(), base.len());
}

#[tokio::test]
async fn a_delete_drops_the_member_records_and_the_set_starts_again_empty() {
    let node = node();
    let k = key("deleted");
    update(&node, &k, big("y"), vec![], None).await;
    update(&node, &k, members(["z".into()]), vec![], None).await;
    assert!(replicas(&node, &k).iter().all(|v| is_split(v, &k)));
    node.delete(&k, &DeleteOptions::default())
        .await
        .expect("delete");
    assert!(fetch(&node, &k).await.is_none());
    for v in replicas(&node, &k) {
        assert!(records(&v).is_empty(), "partition {}", v.partition());
        assert!(v.get(&k).unwrap().unwrap().is_tombstone());
    }
    update(&node, &k, members(["again".into()]), vec![], None).await;
    assert_eq!(value(&fetch(&node, &k).await), members(["again".into()]));
}

#[tokio::test]
async fn small_sets_are_stored_whole_and_split_when_they_grow() {
    let node = node();
    let k = key("growing");
    let few = members((0..10).map(|i| format!("f{i}")));
    update(&node, &k, few.clone(), vec![], None).await;
    for v in replicas(&node, &k) {
        assert!(!is_split(&v, &k) && records(&v).is_empty());
        assert_eq!(replica_set(&v, &k), few);
    }
    // The update that takes it past the threshold stores it whole; the next one splits it.
    let more = big("g");
    update(&node, &k, more.clone(), vec![], None).await;
    update(&node, &k, members(["f0".into()]), vec![], None).await;
    let all: Vec<Bytes> = few.iter().chain(&more).cloned().collect();
    for v in replicas(&node, &k) {
        assert!(is_split(&v, &k), "partition {}", v.partition());
        assert_eq!(records(&v).len(), all.len());
        assert_eq!(replica_set(&v, &k), all);
    }
    // Once split, a set stays split even when it shrinks.
    let ctx = fetch(&node, &k).await.as_ref().and_then(Fetched::context);
    update(&node, &k, vec![], more, ctx).await;
    for v in replicas(&node, &k) {
        assert!(is_split(&v, &k));
        assert_eq!(replica_set(&v, &k), few);
        assert_eq!(records(&v).len(), few.len());
    }
}

#[tokio::test]
async fn a_big_set_stored_whole_is_split_by_its_next_update() {
    let node = node();
    let k = key("legacy");
    // What an earlier build stored: the whole state in the object.
    let base = big("p");
    let op = Op::Set(SetOp {
        adds: base.clone(),
        removes: vec![],
    });
    let (whole, _) = coordinate(
        None,
        Datatype::Set,
        &op,
        None,
        Actor([7; 8]),
        1_700_000_000_000_000,
        14,
    )
    .unwrap();
    let raw = codec::encode(&whole);
    let reps = replicas(&node, &k);
    for v in &reps {
        v.damage(&k, Some(&raw));
    }
    assert_eq!(value(&fetch(&node, &k).await), base);
    update(&node, &k, members(["s".into()]), vec![], None).await;
    let expected = with(&base, &["s"]);
    for v in &reps {
        assert!(is_split(v, &k));
        assert_eq!(records(v).len(), expected.len());
        assert_eq!(replica_set(v, &k), expected);
    }
}

#[tokio::test]
async fn handoff_sends_split_sets_whole() {
    let node = node();
    let k = key("moving");
    let base = big("h");
    update(&node, &k, base.clone(), vec![], None).await;
    // The write that made it big stored it whole at the coordinator; the next one splits it.
    update(&node, &k, vec![base[0].clone()], vec![], None).await;
    let v = &replicas(&node, &k)[0];
    assert!(is_split(v, &k));
    let items: Vec<(Bytes, Bytes)> = v.scan_objects(None).map(Result::unwrap).collect();
    let sent = v.whole_objects(items).unwrap();
    assert_eq!(sent.len(), 1);
    let obj = codec::decode(&sent[0].1).unwrap();
    assert!(split::head_content(&obj).is_none(), "the whole set is sent");
    assert_eq!(value(&fetched(&obj, Datatype::Set).unwrap()), base);
}
