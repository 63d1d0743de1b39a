//! Coordinator tests on a real node (memory backend): read repair, tombstone reaping, limits,
//! and quorum failures caused by a replica whose stored bytes are corrupt.

use std::time::Duration;

use bytes::Bytes;
use rill_core::bkey::{BKey, Bucket};
use rill_core::object::{Content, LimitError, Metadata, RiakObject};
use rill_core::props::Quorum;
use rill_core::vclock::VClock;
use serde_json::json;

use crate::config::{BackendKind, DeleteMode, NodeConfig};
use crate::error::NodeError;
use crate::node::Node;
use crate::request::{
    DeleteOptions, DeleteOutcome, GetOptions, GetResponse, PutOptions, PutRequest,
};

fn node_with(f: impl FnOnce(&mut NodeConfig)) -> Node {
    let mut config = NodeConfig {
        backend: BackendKind::Memory,
        ring_size: 16,
        ..NodeConfig::default()
    };
    f(&mut config);
    Node::start(config).expect("node starts").0
}

fn bkey(bucket: &str, key: &str) -> BKey {
    BKey::new(
        Bucket::default_type(bucket.to_string()).unwrap(),
        key.to_string(),
    )
    .unwrap()
}

fn write(value: &str, bkey: &BKey, context: VClock) -> PutRequest {
    PutRequest {
        bkey: bkey.clone(),
        context,
        content: Content {
            meta: Metadata::default(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            dot: None,
        },
    }
}

async fn put(node: &Node, bkey: &BKey, value: &str, context: VClock) -> RiakObject {
    let opts = PutOptions {
        return_body: true,
        ..PutOptions::default()
    };
    node.put(write(value, bkey, context), &opts)
        .await
        .unwrap()
        .object
        .unwrap()
}

async fn get(node: &Node, bkey: &BKey) -> GetResponse {
    node.get(bkey, &GetOptions::default()).await.unwrap()
}

/// The replicas (vnodes) of a key, in preference-list order.
fn replicas(node: &Node, bkey: &BKey) -> Vec<std::sync::Arc<crate::vnode::Vnode>> {
    node.preflist(bkey, 3)
        .iter()
        .map(|e| node.vnode(e.partition).unwrap())
        .collect()
}

/// Waits (a few seconds at most) for `check` to hold.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// Whether no replica holds `k` any more, not even as a tombstone.
fn gone(reps: &[std::sync::Arc<crate::vnode::Vnode>], k: &BKey) -> bool {
    reps.iter().all(|v| v.get(k).unwrap().is_none())
}

#[tokio::test]
async fn read_repair_restores_a_missing_replica() {
    let node = node_with(|_| {});
    let k = bkey("b", "k");
    put(&node, &k, "v", VClock::new()).await;
    let third = replicas(&node, &k)[2].clone();
    third.damage(&k, None);
    assert!(third.get(&k).unwrap().is_none());

    let GetResponse::Found(obj) = get(&node, &k).await else {
        panic!("found expected")
    };
    assert_eq!(obj.contents[0].value, "v");
    assert!(
        eventually(|| third.get(&k).unwrap().is_some()).await,
        "replica repaired"
    );
    assert_eq!(*third.get(&k).unwrap().unwrap(), obj);
    assert_eq!(node.stats().read_repairs.get(), 1);
}

#[tokio::test]
async fn read_repair_brings_a_stale_replica_forward() {
    let node = node_with(|_| {});
    let k = bkey("b", "k");
    let v1 = put(&node, &k, "v1", VClock::new()).await;
    let stale = replicas(&node, &k)[1].clone();
    let old_bytes = stale.raw(&k).unwrap();
    let v2 = put(&node, &k, "v2", v1.vclock.clone()).await;
    stale.damage(&k, Some(&old_bytes));
    assert_eq!(
        stale.get(&k).unwrap().unwrap().vclock,
        v1.vclock,
        "stale again"
    );

    let GetResponse::Found(obj) = get(&node, &k).await else {
        panic!("found expected")
    };
    assert_eq!(obj.vclock, v2.vclock, "the newer version wins the read");
    assert!(eventually(|| stale.get(&k).unwrap().unwrap().vclock == v2.vclock).await);
}

#[tokio::test]
async fn a_corrupt_replica_is_an_error_reply_that_quorum_tolerates() {
    let node = node_with(|_| {});
    let k = bkey("b", "k");
    put(&node, &k, "v", VClock::new()).await;
    replicas(&node, &k)[0].damage(&k, Some(b"\xffnot an object"));
    // r = quorum (2 of 3): the two good replicas answer.
    assert!(matches!(get(&node, &k).await, GetResponse::Found(_)));
    // r = all cannot be met: Riak's R-value error names the counts.
    let all = GetOptions {
        r: Some(Quorum::All),
        ..GetOptions::default()
    };
    match node.get(&k, &all).await {
        Err(NodeError::GetQuorum(e)) => {
            assert!(e.to_string().contains("R-value unsatisfied"), "{e}")
        }
        other => panic!("expected a quorum error, got {other:?}"),
    }
    // The corrupt replica coordinates writes to the key: a write fails, saying why.
    let err = node
        .put(write("w", &k, VClock::new()), &PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::Corrupt(_)), "{err:?}");
    // A corrupt replica that does not coordinate only fails a write that needs every replica,
    // and the error names W.
    let other = bkey("b", "other");
    put(&node, &other, "v", VClock::new()).await;
    replicas(&node, &other)[1].damage(&other, Some(b"\xffnot an object"));
    put(&node, &other, "v2", VClock::new()).await;
    let all = PutOptions {
        w: Some(Quorum::All),
        ..PutOptions::default()
    };
    let err = node
        .put(write("w", &other, VClock::new()), &all)
        .await
        .unwrap_err();
    match err {
        NodeError::PutQuorum(e) => assert!(e.to_string().contains("W/DW"), "{e}"),
        other => panic!("expected a quorum error, got {other:?}"),
    }
}

#[tokio::test]
async fn quorum_values_above_n_val_are_refused() {
    let node = node_with(|_| {});
    let k = bkey("b", "k");
    let opts = GetOptions {
        r: Some(Quorum::N(4)),
        ..GetOptions::default()
    };
    assert!(matches!(
        node.get(&k, &opts).await,
        Err(NodeError::InvalidQuorum(_))
    ));
    let opts = PutOptions {
        dw: Some(Quorum::N(9)),
        ..PutOptions::default()
    };
    let err = node
        .put(write("x", &k, VClock::new()), &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::InvalidQuorum(_)), "{err:?}");
}

#[tokio::test]
async fn sibling_and_size_limits_refuse_writes() {
    let node = node_with(|c| c.limits.size_max = 50_000);
    let bucket = Bucket::default_type("many").unwrap();
    node.metadata()
        .set_bucket_props(&bucket, &json!({"allow_mult": true}))
        .unwrap();
    let k = BKey::new(bucket, "k").unwrap();
    for i in 0..100 {
        put(&node, &k, &format!("v{i}"), VClock::new()).await;
    }
    let err = node
        .put(
            write("one too many", &k, VClock::new()),
            &PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NodeError::Limit(LimitError::TooManySiblings { count: 101, .. })
        ),
        "{err:?}"
    );
    let GetResponse::Found(obj) = get(&node, &k).await else {
        panic!()
    };
    assert_eq!(obj.contents.len(), 100, "the refused write stored nothing");

    let big = "x".repeat(60_000);
    let err = node
        .put(
            write(&big, &bkey("b", "big"), VClock::new()),
            &PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, NodeError::Limit(LimitError::TooLarge { .. })),
        "{err:?}"
    );
    assert!(matches!(
        get(&node, &bkey("b", "big")).await,
        GetResponse::NotFound { .. }
    ));
}

#[tokio::test]
async fn immediate_delete_mode_reaps_every_replica() {
    let node = node_with(|c| c.delete_mode = DeleteMode::Immediate);
    let k = bkey("b", "k");
    put(&node, &k, "v", VClock::new()).await;
    assert_eq!(
        node.delete(&k, &DeleteOptions::default()).await.unwrap(),
        DeleteOutcome::Deleted
    );
    let reps = replicas(&node, &k);
    assert!(eventually(|| gone(&reps, &k)).await);
    assert_eq!(node.stats().tombstones_reaped.get(), 3);
    assert_eq!(
        node.delete(&k, &DeleteOptions::default()).await.unwrap(),
        DeleteOutcome::NotFound
    );
}

#[tokio::test]
async fn keep_delete_mode_keeps_tombstones_and_returns_their_clock() {
    let node = node_with(|c| c.delete_mode = DeleteMode::Keep);
    let k = bkey("b", "k");
    put(&node, &k, "v", VClock::new()).await;
    node.delete(&k, &DeleteOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        replicas(&node, &k)
            .iter()
            .all(|v| v.get(&k).unwrap().unwrap().is_tombstone())
    );
    let opts = GetOptions {
        deleted_vclock: true,
        ..GetOptions::default()
    };
    match node.get(&k, &opts).await.unwrap() {
        GetResponse::NotFound {
            tombstone: Some(clock),
        } => assert!(!clock.is_empty()),
        other => panic!("expected a tombstone clock, got {other:?}"),
    }
}

#[tokio::test]
async fn delayed_delete_mode_keeps_the_tombstone_for_the_delay_then_reaps_it() {
    // The default mode is a delay (3 s); a shorter one keeps the test quick.
    assert!(matches!(
        NodeConfig::default().delete_mode,
        DeleteMode::After(d) if d == Duration::from_secs(3)
    ));
    let delay = Duration::from_millis(400);
    let node = node_with(|c| c.delete_mode = DeleteMode::After(delay));
    let k = bkey("b", "k");
    put(&node, &k, "v", VClock::new()).await;
    let deleted_at = tokio::time::Instant::now();
    assert_eq!(
        node.delete(&k, &DeleteOptions::default()).await.unwrap(),
        DeleteOutcome::Deleted
    );
    let reps = replicas(&node, &k);
    let all_tombstones = reps
        .iter()
        .all(|v| v.get(&k).unwrap().is_some_and(|o| o.is_tombstone()));
    // Only meaningful while the delay has not passed (a stalled test machine could overrun it).
    if deleted_at.elapsed() < delay {
        assert!(
            all_tombstones,
            "the tombstone is kept until the delay passes"
        );
        assert_eq!(node.stats().tombstones_reaped.get(), 0);
    }
    assert!(
        eventually(|| gone(&reps, &k)).await,
        "the tombstone is reaped once the delay has passed"
    );
    assert!(deleted_at.elapsed() >= delay, "not before the delay");
    assert_eq!(node.stats().tombstones_reaped.get(), 3);
    assert!(matches!(
        node.get(
            &k,
            &GetOptions {
                deleted_vclock: true,
                ..GetOptions::default()
            }
        )
        .await
        .unwrap(),
        GetResponse::NotFound { tombstone: None }
    ));
}

#[tokio::test]
async fn a_write_racing_the_reaper_survives() {
    let node = node_with(|c| c.delete_mode = DeleteMode::After(Duration::from_millis(100)));
    let k = bkey("b", "k");
    // A key deleted at the same time and left alone: its reap proves the reaper ran.
    let control = bkey("b", "control");
    put(&node, &k, "v", VClock::new()).await;
    put(&node, &control, "v", VClock::new()).await;
    node.delete(&k, &DeleteOptions::default()).await.unwrap();
    node.delete(&control, &DeleteOptions::default())
        .await
        .unwrap();
    // Write again before the reaper runs: the tombstone it saw is gone, so it removes nothing.
    put(&node, &k, "back", VClock::new()).await;
    let control_reps = replicas(&node, &control);
    assert!(
        eventually(|| gone(&control_reps, &control)).await,
        "the reaper ran"
    );
    let GetResponse::Found(obj) = get(&node, &k).await else {
        panic!("resurrected write lost")
    };
    assert_eq!(obj.contents.len(), 1);
    assert_eq!(obj.contents[0].value, "back");
    assert_eq!(
        node.stats().tombstones_reaped.get(),
        3,
        "only the control's three replicas were reaped"
    );
    for v in replicas(&node, &k) {
        assert!(!v.get(&k).unwrap().unwrap().is_tombstone());
    }
}

#[tokio::test]
async fn conditional_writes() {
    let node = node_with(|_| {});
    let k = bkey("b", "k");
    let none_match = PutOptions {
        if_none_match: true,
        ..PutOptions::default()
    };
    node.put(write("first", &k, VClock::new()), &none_match)
        .await
        .unwrap();
    let err = node
        .put(write("second", &k, VClock::new()), &none_match)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::MatchFound));

    let GetResponse::Found(current) = get(&node, &k).await else {
        panic!()
    };
    let not_modified = PutOptions {
        if_not_modified: true,
        ..PutOptions::default()
    };
    let err = node
        .put(write("stale", &k, VClock::new()), &not_modified)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::Modified));
    node.put(write("fresh", &k, current.vclock), &not_modified)
        .await
        .unwrap();
    let GetResponse::Found(obj) = get(&node, &k).await else {
        panic!()
    };
    assert_eq!(obj.contents[0].value, "fresh");
}

async fn drain(mut rx: crate::coord::KeyChunks) -> Vec<Bytes> {
    let mut out = Vec::new();
    while let Some(chunk) = rx.recv().await {
        out.extend(chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn listing_reports_each_key_and_bucket_once() {
    let node = node_with(|_| {});
    for b in ["a", "bb", "c", "\u{ff}"] {
        for i in 0..30 {
            put(&node, &bkey(b, &format!("k{i}")), "v", VClock::new()).await;
        }
    }
    let mut buckets = drain(node.list_buckets("default").unwrap()).await;
    let listed = buckets.len();
    buckets.sort();
    buckets.dedup();
    assert_eq!(listed, buckets.len(), "no duplicates");
    assert_eq!(
        buckets,
        ["a", "bb", "c", "\u{ff}"].map(|s| Bytes::from(s.as_bytes().to_vec()))
    );

    let mut keys = drain(
        node.list_keys(&Bucket::default_type("bb").unwrap())
            .unwrap(),
    )
    .await;
    keys.sort();
    let mut expected: Vec<Bytes> = (0..30).map(|i| Bytes::from(format!("k{i}"))).collect();
    expected.sort();
    assert_eq!(keys, expected);
    assert!(matches!(
        node.list_buckets("nosuchtype"),
        Err(NodeError::UnknownBucketType(_))
    ));
}

/// A write caches what it stores; its read of the replica does not fill the cache first, so a
/// replica write that changes nothing leaves the cache as it was.
#[tokio::test]
async fn a_write_that_changes_nothing_does_not_fill_the_cache() {
    let node = node_with(|c| c.object_cache_bytes = 1 << 20);
    let k = bkey("b", "k");
    let stored = put(&node, &k, "v", VClock::new()).await;
    let full = node.inner.cache.weight();
    let replica = replicas(&node, &k)[0].clone();
    // The same bytes again, behind the cache: only its entry for the key is gone.
    replica.damage(&k, Some(&replica.raw(&k).unwrap()));
    let emptied = node.inner.cache.weight();
    assert!(emptied < full, "{emptied} < {full}");

    let opts = rill_core::merge::MergeOptions {
        allow_mult: true,
        last_write_wins: false,
        dvv_enabled: true,
        datatype: None,
    };
    let after = replica
        .replica_put(&k, &stored, &opts, &Default::default())
        .unwrap();
    assert_eq!(*after, stored, "the replica already held it");
    assert_eq!(node.inner.cache.weight(), emptied);
    // A read fills it again.
    replica.get(&k).unwrap();
    assert_eq!(node.inner.cache.weight(), full);
}

#[tokio::test]
async fn the_object_cache_is_optional_and_changes_no_answer() {
    for cache_bytes in [0, 1 << 20] {
        let node = node_with(|c| {
            c.object_cache_bytes = cache_bytes;
            c.delete_mode = DeleteMode::Immediate;
        });
        let k = bkey("b", "k");
        let v1 = put(&node, &k, "v1", VClock::new()).await;
        put(&node, &k, "v2", v1.vclock).await;
        let GetResponse::Found(obj) = get(&node, &k).await else {
            panic!()
        };
        assert_eq!(obj.contents.len(), 1);
        assert_eq!(obj.contents[0].value, "v2");
        node.delete(&k, &DeleteOptions::default()).await.unwrap();
        let reps = replicas(&node, &k);
        assert!(eventually(|| gone(&reps, &k)).await);
        assert!(matches!(
            get(&node, &k).await,
            GetResponse::NotFound { tombstone: None }
        ));
    }
}
