//! The backend conformance suite: the same behavioural tests run against every backend, so
//! the memory backend used in node tests behaves exactly like the durable one.
//!
//! Each test takes a [`Harness`], which can also restart its backend from storage (fjall) or
//! report that it cannot (memory), so restart behaviour is checked where it exists.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::executor::block_on;
use proptest::prelude::*;
use rill_storage::{
    Backend, Durability, ErrorKind, FjallBackend, FjallConfig, MAX_KEY_LEN, MemoryBackend,
    PartitionStore,
};
use tempfile::TempDir;

/// A backend under test.
trait Harness {
    fn backend(&self) -> &dyn Backend;
    /// Closes the backend and opens it again from its storage. Returns `false` when the
    /// backend keeps nothing across a restart (then nothing happened).
    fn restart(&mut self) -> bool;
}

struct Fjall {
    // Dropped after the backend: fields drop in declaration order.
    backend: Option<FjallBackend>,
    dir: TempDir,
}

fn fjall_config() -> FjallConfig {
    FjallConfig {
        cache_bytes: 8 * 1024 * 1024,
        worker_threads: 1,
        ..FjallConfig::default()
    }
}

fn fjall() -> Fjall {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = FjallBackend::open(dir.path(), fjall_config()).expect("open fjall");
    Fjall {
        backend: Some(backend),
        dir,
    }
}

impl Harness for Fjall {
    fn backend(&self) -> &dyn Backend {
        self.backend.as_ref().expect("backend is open")
    }

    fn restart(&mut self) -> bool {
        drop(self.backend.take());
        self.backend = Some(FjallBackend::open(self.dir.path(), fjall_config()).expect("reopen"));
        true
    }
}

struct Memory(MemoryBackend);

fn memory() -> Memory {
    Memory(MemoryBackend::new())
}

impl Harness for Memory {
    fn backend(&self) -> &dyn Backend {
        &self.0
    }

    fn restart(&mut self) -> bool {
        false
    }
}

/// Runs every listed test function against both backends.
macro_rules! conformance_suite {
    ($($test:ident),* $(,)?) => {
        mod fjall_backend {
            $(#[test] fn $test() { super::$test(&mut super::fjall()); })*
        }
        mod memory_backend {
            $(#[test] fn $test() { super::$test(&mut super::memory()); })*
        }
    };
}

conformance_suite!(
    get_put_delete,
    invalid_input_is_an_error_not_a_panic,
    scan_prefix_is_ordered_and_isolated,
    partitions_and_metadata_are_isolated,
    start_after_pages_through_keys,
    open_partition_is_idempotent,
    drop_partition_removes_everything,
    partitions_and_data_survive_restart,
    commits_resolve,
    scans_do_not_block_writes_to_the_same_store,
    approximate_len_counts_fresh_keys,
    write_batch_stores_all_or_nothing,
);

fn keys_of(store: &dyn PartitionStore, prefix: &[u8], after: Option<&[u8]>) -> Vec<Vec<u8>> {
    store
        .scan_keys(prefix, after)
        .map(|k| k.expect("scan").to_vec())
        .collect()
}

fn pairs_of(store: &dyn PartitionStore, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .scan_prefix(prefix)
        .map(|kv| {
            let (k, v) = kv.expect("scan");
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

fn get_put_delete(h: &mut dyn Harness) {
    let store = h.backend().open_partition(1).expect("open");
    assert_eq!(store.get(b"k").expect("get"), None);
    store.put(b"k", b"v1").expect("put");
    assert_eq!(store.get(b"k").expect("get").as_deref(), Some(&b"v1"[..]));
    store.put(b"k", b"v2").expect("overwrite");
    assert_eq!(store.get(b"k").expect("get").as_deref(), Some(&b"v2"[..]));
    store.put(b"empty", b"").expect("empty value");
    assert_eq!(store.get(b"empty").expect("get").as_deref(), Some(&b""[..]));
    store.delete(b"k").expect("delete");
    assert_eq!(store.get(b"k").expect("get"), None);
    store
        .delete(b"never-there")
        .expect("deleting an absent key is fine");
    store.put(b"k", b"v3").expect("put after delete");
    assert_eq!(store.get(b"k").expect("get").as_deref(), Some(&b"v3"[..]));
}

fn invalid_input_is_an_error_not_a_panic(h: &mut dyn Harness) {
    let store = h.backend().open_partition(1).expect("open");
    let kind = |r: Result<(), rill_storage::StorageError>| r.map_err(|e| e.kind());
    assert_eq!(kind(store.put(b"", b"v")), Err(ErrorKind::InvalidInput));
    let too_long = vec![b'x'; MAX_KEY_LEN + 1];
    assert_eq!(
        kind(store.put(&too_long, b"v")),
        Err(ErrorKind::InvalidInput)
    );
    assert_eq!(store.get(b"").expect("get"), None);
    assert_eq!(store.get(&too_long).expect("get"), None);
    store.delete(b"").expect("delete of an unstorable key");
    store
        .delete(&too_long)
        .expect("delete of an unstorable key");

    // The longest storable key works, and over-long prefixes and cursors do not panic.
    let longest = vec![b'x'; MAX_KEY_LEN];
    store.put(&longest, b"v").expect("longest key");
    store.put(b"xa", b"v").expect("put");
    store.put(b"xy", b"v").expect("put");
    assert_eq!(keys_of(&*store, &too_long, None), Vec::<Vec<u8>>::new());
    // "xa" < "xxx…" < "xy": only "xy" sorts after the over-long cursor.
    assert_eq!(
        keys_of(&*store, b"x", Some(&too_long)),
        vec![b"xy".to_vec()]
    );
    assert_eq!(
        keys_of(&*store, b"x", Some(&longest[..10])),
        vec![longest.clone(), b"xy".to_vec()]
    );
    assert_eq!(keys_of(&*store, b"x", Some(&longest)), vec![b"xy".to_vec()]);
}

fn scan_prefix_is_ordered_and_isolated(h: &mut dyn Harness) {
    let store = h.backend().open_partition(2).expect("open");
    let keys: [&[u8]; 9] = [
        b"b1/z",
        b"b1/a",
        b"b1",
        b"b2/a",
        b"b1/\xff\xff",
        b"b0/\xff",
        b"a",
        b"b1\xff",
        b"c",
    ];
    for (i, key) in keys.iter().enumerate() {
        store.put(key, format!("v{i}").as_bytes()).expect("put");
    }
    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| k.starts_with(b"b1/"))
        .map(|(i, k)| (k.to_vec(), format!("v{i}").into_bytes()))
        .collect();
    expected.sort();
    assert_eq!(pairs_of(&*store, b"b1/"), expected);

    let mut all: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    all.sort();
    assert_eq!(keys_of(&*store, b"", None), all);
    let b1: Vec<Vec<u8>> = all
        .iter()
        .filter(|k| k.starts_with(b"b1"))
        .cloned()
        .collect();
    assert_eq!(b1.len(), 5);
    assert_eq!(keys_of(&*store, b"b1", None), b1);
    assert!(pairs_of(&*store, b"nothing").is_empty());
}

fn partitions_and_metadata_are_isolated(h: &mut dyn Harness) {
    let backend = h.backend();
    let p1 = backend.open_partition(1).expect("open");
    let p2 = backend.open_partition(2).expect("open");
    let meta = backend.metadata();
    p1.put(b"k", b"one").expect("put");
    p2.put(b"k", b"two").expect("put");
    meta.put(b"k", b"meta").expect("put");
    assert_eq!(p1.get(b"k").expect("get").as_deref(), Some(&b"one"[..]));
    assert_eq!(p2.get(b"k").expect("get").as_deref(), Some(&b"two"[..]));
    assert_eq!(meta.get(b"k").expect("get").as_deref(), Some(&b"meta"[..]));
    p1.delete(b"k").expect("delete");
    assert_eq!(p2.get(b"k").expect("get").as_deref(), Some(&b"two"[..]));
    assert_eq!(keys_of(&*meta, b"", None), vec![b"k".to_vec()]);
    assert_eq!(backend.partitions().expect("list"), vec![1, 2]);
}

fn start_after_pages_through_keys(h: &mut dyn Harness) {
    let store = h.backend().open_partition(3).expect("open");
    let mut expected = Vec::new();
    for i in 0..50u32 {
        let key = format!("bucket/{i:03}").into_bytes();
        store.put(&key, b"v").expect("put");
        expected.push(key);
    }
    store.put(b"bucket0", b"other bucket").expect("put");
    store.put(b"bucke", b"before").expect("put");

    let mut paged = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let page: Vec<Vec<u8>> = store
            .scan_keys(b"bucket/", cursor.as_deref())
            .take(7)
            .map(|k| k.expect("scan").to_vec())
            .collect();
        let Some(last) = page.last() else { break };
        cursor = Some(last.clone());
        paged.extend(page);
    }
    assert_eq!(paged, expected);

    // A cursor between keys, before the prefix, and past it.
    assert_eq!(
        keys_of(&*store, b"bucket/", Some(b"bucket/0455")),
        expected[46..].to_vec()
    );
    assert_eq!(keys_of(&*store, b"bucket/", Some(b"a")), expected);
    assert!(keys_of(&*store, b"bucket/", Some(b"bucket0")).is_empty());
}

fn write_batch_stores_all_or_nothing(h: &mut dyn Harness) {
    let backend = h.backend();
    let a = backend.open_partition(1).expect("open");
    let b = backend.open_partition(2).expect("open");
    let put = |partition, key: &'static [u8], value: &'static [u8]| rill_storage::BatchWrite {
        partition,
        key,
        value: Some(value),
    };
    backend
        .write_batch(&[
            put(1, b"k", b"one"),
            put(2, b"k", b"two"),
            put(1, b"j", b"three"),
        ])
        .expect("batch");
    assert_eq!(a.get(b"k").expect("get").as_deref(), Some(&b"one"[..]));
    assert_eq!(a.get(b"j").expect("get").as_deref(), Some(&b"three"[..]));
    assert_eq!(b.get(b"k").expect("get").as_deref(), Some(&b"two"[..]));
    // An unstorable entry or an unopened partition refuses the whole batch.
    let err = backend
        .write_batch(&[put(1, b"x", b"1"), put(2, b"", b"2")])
        .expect_err("empty key");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        backend
            .write_batch(&[put(1, b"y", b"1"), put(77, b"y", b"2")])
            .is_err()
    );
    assert_eq!(a.get(b"x").expect("get"), None);
    assert_eq!(a.get(b"y").expect("get"), None);
    // Removals ride in the same batch; removing an absent key is no error.
    let remove = |partition, key: &'static [u8]| rill_storage::BatchWrite {
        partition,
        key,
        value: None,
    };
    backend
        .write_batch(&[remove(1, b"k"), put(2, b"k", b"new"), remove(2, b"absent")])
        .expect("batch with removals");
    assert_eq!(a.get(b"k").expect("get"), None);
    assert_eq!(a.get(b"j").expect("get").as_deref(), Some(&b"three"[..]));
    assert_eq!(b.get(b"k").expect("get").as_deref(), Some(&b"new"[..]));
}

fn open_partition_is_idempotent(h: &mut dyn Harness) {
    let backend = h.backend();
    let first = backend.open_partition(9).expect("open");
    let second = backend.open_partition(9).expect("open again");
    first.put(b"k", b"v").expect("put");
    assert_eq!(second.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
    assert_eq!(backend.partitions().expect("list"), vec![9]);
}

fn drop_partition_removes_everything(h: &mut dyn Harness) {
    let backend = h.backend();
    let doomed = backend.open_partition(5).expect("open");
    let kept = backend.open_partition(6).expect("open");
    for i in 0..100u32 {
        doomed.put(&i.to_be_bytes(), b"v").expect("put");
        kept.put(&i.to_be_bytes(), b"v").expect("put");
    }
    backend.drop_partition(5).expect("drop");
    assert_eq!(backend.partitions().expect("list"), vec![6]);
    let err = doomed
        .put(b"late", b"v")
        .expect_err("write to a dropped partition");
    assert_eq!(err.kind(), ErrorKind::Closed);

    let reopened = backend.open_partition(5).expect("recreate");
    assert_eq!(reopened.get(&0u32.to_be_bytes()).expect("get"), None);
    assert!(keys_of(&*reopened, b"", None).is_empty());
    assert_eq!(keys_of(&*kept, b"", None).len(), 100);

    backend.drop_partition(5).expect("drop again");
    backend
        .drop_partition(77)
        .expect("dropping an absent partition is fine");
    assert_eq!(backend.partitions().expect("list"), vec![6]);
}

/// Partitions 1, 2 and 3 with their values and the metadata entry, as
/// `partitions_and_data_survive_restart` leaves them.
fn assert_partitions_and_data(backend: &dyn Backend, when: &str) {
    assert_eq!(backend.partitions().expect("list"), vec![1, 2, 3], "{when}");
    for p in [1, 2, 3] {
        let store = backend.open_partition(p).expect("open");
        let expected = format!("p{p}");
        assert_eq!(
            store.get(b"k").expect("get").as_deref(),
            Some(expected.as_bytes()),
            "partition {p} {when}"
        );
    }
    assert_eq!(
        backend.metadata().get(b"vnode-id").expect("get").as_deref(),
        Some(&b"42"[..]),
        "{when}"
    );
}

/// What was committed is there before a restart and, for a backend that keeps data, after it.
fn partitions_and_data_survive_restart(h: &mut dyn Harness) {
    {
        let backend = h.backend();
        for p in [3, 1, 2, 4] {
            let store = backend.open_partition(p).expect("open");
            store.put(b"k", format!("p{p}").as_bytes()).expect("put");
        }
        backend
            .metadata()
            .put(b"vnode-id", b"42")
            .expect("put meta");
        backend.drop_partition(4).expect("drop");
        block_on(backend.commit(Durability::Synced)).expect("commit");
        assert_partitions_and_data(backend, "before the restart");
    }
    if h.restart() {
        assert_partitions_and_data(h.backend(), "after the restart");
    }
}

fn commits_resolve(h: &mut dyn Harness) {
    let backend = h.backend();
    let store = backend.open_partition(1).expect("open");
    store.put(b"k", b"v").expect("put");
    block_on(backend.commit(Durability::Buffered)).expect("buffered");
    block_on(backend.commit(Durability::Synced)).expect("synced");
    block_on(backend.commit(backend.default_durability())).expect("default");
    assert_eq!(backend.default_durability(), Durability::Buffered);
    assert!(!backend.name().is_empty());
}

fn scans_do_not_block_writes_to_the_same_store(h: &mut dyn Harness) {
    let store: Arc<dyn PartitionStore> = h.backend().open_partition(1).expect("open");
    for i in 0..1000u32 {
        store
            .put(format!("a/{i:04}").as_bytes(), b"v")
            .expect("put");
    }
    let mut seen = 0;
    for key in store.scan_keys(b"a/", None) {
        let key = key.expect("scan");
        // Writing (elsewhere in the key space) while the scan is open must not deadlock.
        store
            .put(&[b"b/", &key[..]].concat(), b"copy")
            .expect("put");
        seen += 1;
    }
    assert_eq!(seen, 1000);
    assert_eq!(keys_of(&*store, b"b/", None).len(), 1000);
}

fn approximate_len_counts_fresh_keys(h: &mut dyn Harness) {
    let store = h.backend().open_partition(1).expect("open");
    assert_eq!(store.approximate_len(), 0);
    for i in 0..10u32 {
        store.put(&i.to_be_bytes(), b"v").expect("put");
    }
    assert_eq!(store.approximate_len(), 10);
}

/// One step of the model-based property test.
#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Get(Vec<u8>),
    ScanKeys(Vec<u8>, Option<Vec<u8>>),
    ScanPrefix(Vec<u8>),
    Restart,
}

/// Keys over a tiny alphabet, so operations collide and prefixes overlap.
fn small_key(min_len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0xff)], min_len..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (small_key(1), proptest::collection::vec(any::<u8>(), 0..8)).prop_map(|(k, v)| Op::Put(k, v)),
        2 => small_key(0).prop_map(Op::Delete),
        2 => small_key(0).prop_map(Op::Get),
        2 => (small_key(0), proptest::option::of(small_key(0))).prop_map(|(p, a)| Op::ScanKeys(p, a)),
        1 => small_key(0).prop_map(Op::ScanPrefix),
        1 => Just(Op::Restart),
    ]
}

/// Applies `ops` to partition 0 of `h` and to a `BTreeMap` model, comparing every answer.
fn check_against_model(h: &mut dyn Harness, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut store = h.backend().open_partition(0).expect("open");
    for op in ops {
        match op {
            Op::Put(k, v) => {
                store.put(k, v).expect("put");
                model.insert(k.clone(), v.clone());
            }
            Op::Delete(k) => {
                store.delete(k).expect("delete");
                model.remove(k);
            }
            Op::Get(k) => {
                let got = store.get(k).expect("get").map(|v| v.to_vec());
                prop_assert_eq!(got, model.get(k).cloned());
            }
            Op::ScanKeys(prefix, after) => {
                let expected: Vec<Vec<u8>> = model
                    .keys()
                    .filter(|k| k.starts_with(prefix) && after.as_ref().is_none_or(|a| *k > a))
                    .cloned()
                    .collect();
                prop_assert_eq!(keys_of(&*store, prefix, after.as_deref()), expected);
            }
            Op::ScanPrefix(prefix) => {
                let expected: Vec<(Vec<u8>, Vec<u8>)> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(pairs_of(&*store, prefix), expected);
            }
            Op::Restart => {
                drop(store);
                h.restart();
                store = h.backend().open_partition(0).expect("reopen");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn memory_backend_matches_a_btreemap(ops in proptest::collection::vec(op(), 0..60)) {
        check_against_model(&mut memory(), &ops)?;
    }
}

proptest! {
    // Each case opens a database on disk (and restarts reopen it), so fewer cases.
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn fjall_backend_matches_a_btreemap(ops in proptest::collection::vec(op(), 0..60)) {
        check_against_model(&mut fjall(), &ops)?;
    }
}

/// Dropping a partition deletes its files once the last handle to it is gone, so handed-off
/// data does not linger on disk.
#[test]
fn fjall_drop_partition_deletes_its_files() {
    let h = fjall();
    let keyspace_dirs = || {
        std::fs::read_dir(h.dir.path().join("keyspaces"))
            .expect("fjall keeps keyspaces in `keyspaces/`")
            .count()
    };
    let backend = h.backend();
    let store = backend.open_partition(1).expect("open");
    backend.open_partition(2).expect("open");
    for i in 0..1000u32 {
        store.put(&i.to_be_bytes(), &[7; 100]).expect("put");
    }
    let before = keyspace_dirs();
    backend.drop_partition(1).expect("drop");
    assert_eq!(keyspace_dirs(), before, "a live handle keeps the files");
    drop(store);
    assert_eq!(keyspace_dirs(), before - 1);
}
