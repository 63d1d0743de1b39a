//! Durability of the fjall backend across a `kill -9`, and group commit under concurrency.
//!
//! The kill test re-invokes this test binary as a child process (selecting the ignored
//! `kill_9_child_writer` test and handing it a directory through an environment variable).
//! The child writes keys, printing `ACK <i>` after each write's commit resolved, and after the
//! last one blocks without writing anything more; the parent SIGKILLs it there, reopens the
//! database and checks that every acknowledged key is there with its value. This is the
//! contract the node relies on: an acknowledged write survives a process crash.
//!
//! The child stops writing before the kill on purpose: if it kept going, later writes would
//! push earlier ones out of any userspace buffer, and a backend that left acknowledged writes
//! in such a buffer could still pass. (Checked: with fjall's `manual_journal_persist` turned
//! on, this test fails.)

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use futures::executor::block_on;
use rill_storage::{Backend, BatchWrite, Durability, FjallBackend, FjallConfig, PartitionStore};

/// Directory the child writes into; its presence is what makes the child test act.
const CHILD_DIR_ENV: &str = "RILL_STORAGE_KILL_TEST_DIR";
/// The commit level the child uses ("buffered" or "synced").
const CHILD_LEVEL_ENV: &str = "RILL_STORAGE_KILL_TEST_LEVEL";
/// How many writes the child acknowledges before it waits to be killed.
const ACKS_BEFORE_KILL: u64 = 1500;

fn config() -> FjallConfig {
    FjallConfig {
        cache_bytes: 8 * 1024 * 1024,
        worker_threads: 1,
        ..FjallConfig::default()
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("bucket/key-{i:08}").into_bytes()
}

/// A value that differs per key and is large enough that writes span many journal buffers.
fn value(i: u64) -> Vec<u8> {
    let mut v = format!("value-{i}-").into_bytes();
    v.resize(300, (i % 251) as u8);
    v
}

/// Where key `i` lives: spread over two partitions and the metadata store, which all share
/// one journal.
fn store_for(backend: &FjallBackend, i: u64) -> Arc<dyn PartitionStore> {
    match i % 3 {
        0 => backend.open_partition(7).expect("open p7"),
        1 => backend.open_partition(8).expect("open p8"),
        _ => backend.metadata(),
    }
}

#[test]
#[ignore = "runs only as the child process of the kill -9 tests"]
fn kill_9_child_writer() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        eprintln!("{CHILD_DIR_ENV} is not set: this test only acts as a child process");
        return;
    };
    let level = match std::env::var(CHILD_LEVEL_ENV).as_deref() {
        Ok("synced") => Durability::Synced,
        _ => Durability::Buffered,
    };
    let backend = FjallBackend::open(&dir, config()).expect("child opens the database");
    let mut out = std::io::stdout().lock();
    for i in 0..ACKS_BEFORE_KILL {
        let (k, v) = (key(i), value(i));
        match kill_test_partition(i) {
            Some(partition) if i >= ACKS_BEFORE_KILL / 2 => {
                // Opened first: a batch writes only to open partitions.
                backend.open_partition(partition).expect("child opens");
                backend
                    .write_batch(&[BatchWrite {
                        partition,
                        key: &k,
                        value: Some(&v),
                    }])
                    .expect("child batch");
            }
            _ => kill_test_store(&backend, i)
                .put(&k, &v)
                .expect("child write"),
        }
        block_on(backend.commit(level)).expect("child commit");
        writeln!(out, "ACK {i}").expect("parent is reading");
        out.flush().expect("parent is reading");
    }
    // Wait, writing nothing more, until the parent kills us (it never writes to our stdin).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    panic!("the parent should have killed this child");
}

/// Where the kill test's child writes key `i`: the first half with single puts spread over two
/// partitions and the metadata store (`None`), which all share one journal; the second half
/// with batches, as the node writes an object's replicas, over the two partitions. So the last
/// acknowledged writes are batches, and a commit that left a batch in a userspace buffer
/// fails the test. (Checked: with the buffered commit's flush removed, it fails.)
fn kill_test_partition(i: u64) -> Option<u32> {
    match (i >= ACKS_BEFORE_KILL / 2, i % 3) {
        (true, _) => Some(7 + (i % 2) as u32),
        (false, 0) => Some(7),
        (false, 1) => Some(8),
        (false, _) => None,
    }
}

fn kill_test_store(backend: &FjallBackend, i: u64) -> Arc<dyn PartitionStore> {
    match kill_test_partition(i) {
        Some(p) => backend.open_partition(p).expect("open partition"),
        None => backend.metadata(),
    }
}

/// Runs the child writer at `level`, kills it with SIGKILL once it acknowledged
/// `ACKS_BEFORE_KILL` writes, and returns the highest acknowledged index.
fn run_and_kill_child(dir: &Path, level: &str) -> u64 {
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "kill_9_child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_LEVEL_ENV, level)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut last_ack = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        if let Some(i) = line.strip_prefix("ACK ") {
            let i: u64 = i.parse().expect("ACK line carries an index");
            last_ack = Some(i);
            if i + 1 >= ACKS_BEFORE_KILL {
                break;
            }
        }
    }
    // `Child::kill` sends SIGKILL on Unix: no destructors, no flush, no fsync in the child.
    child.kill().expect("kill child");
    let status = child.wait().expect("reap child");
    assert!(
        !status.success(),
        "child was killed, not finished: {status}"
    );
    last_ack.expect("child acknowledged writes before being killed")
}

fn assert_acknowledged_writes_survive(level: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let last_ack = run_and_kill_child(dir.path(), level);
    assert!(
        last_ack + 1 >= ACKS_BEFORE_KILL,
        "child stopped early at {last_ack}"
    );

    let backend = FjallBackend::open(dir.path(), config()).expect("reopen after kill");
    assert_eq!(backend.partitions().expect("list"), vec![7, 8]);
    for i in 0..=last_ack {
        let got = kill_test_store(&backend, i).get(&key(i)).expect("get");
        assert_eq!(
            got.as_deref(),
            Some(value(i).as_slice()),
            "acknowledged key {i} of {last_ack} lost after kill -9 ({level})"
        );
    }
}

#[test]
fn buffered_acknowledged_writes_survive_kill_9() {
    assert_acknowledged_writes_survive("buffered");
}

#[test]
fn synced_acknowledged_writes_survive_kill_9() {
    assert_acknowledged_writes_survive("synced");
}

/// Many threads committing at once share fsyncs, and every commit still succeeds.
#[test]
fn concurrent_synced_commits_are_grouped() {
    const THREADS: u64 = 8;
    const COMMITS_PER_THREAD: u64 = 40;
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Arc::new(FjallBackend::open(dir.path(), config()).expect("open"));
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let backend = backend.clone();
            std::thread::spawn(move || {
                let store = backend.open_partition(t as u32).expect("open");
                for i in 0..COMMITS_PER_THREAD {
                    store.put(&key(i), &value(t * 1000 + i)).expect("put");
                    block_on(backend.commit(Durability::Synced)).expect("commit");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }
    let stats = backend.commit_stats();
    assert_eq!(stats.commits, THREADS * COMMITS_PER_THREAD);
    assert!(
        stats.persists < stats.commits,
        "commits were not grouped: {stats:?}"
    );
    for t in 0..THREADS {
        let store = backend.open_partition(t as u32).expect("open");
        for i in 0..COMMITS_PER_THREAD {
            let got = store.get(&key(i)).expect("get");
            assert_eq!(got.as_deref(), Some(value(t * 1000 + i).as_slice()));
        }
    }
}

/// Data that outgrew the memtables (so part of it was flushed to table files while the rest
/// is replayed from the journal) reads back in full after a restart, by key and by scan.
#[test]
fn flushed_data_survives_restart() {
    const KEYS: u64 = 6000;
    let dir = tempfile::tempdir().expect("temp dir");
    let small_memtables = FjallConfig {
        max_memtable_bytes: 1024 * 1024,
        ..config()
    };
    {
        let backend = FjallBackend::open(dir.path(), small_memtables.clone()).expect("open");
        for i in 0..KEYS {
            let mut big = value(i);
            big.resize(1024, b'x');
            store_for(&backend, i).put(&key(i), &big).expect("put");
        }
        block_on(backend.commit(Durability::Synced)).expect("commit");
    }
    let backend = FjallBackend::open(dir.path(), small_memtables).expect("reopen");
    for i in 0..KEYS {
        let mut big = value(i);
        big.resize(1024, b'x');
        let got = store_for(&backend, i).get(&key(i)).expect("get");
        assert_eq!(got.as_deref(), Some(big.as_slice()), "key {i}");
    }
    let p7 = backend.open_partition(7).expect("open");
    let listed: Vec<_> = p7
        .scan_keys(b"bucket/", None)
        .map(|k| k.expect("scan").to_vec())
        .collect();
    let expected: Vec<_> = (0..KEYS).filter(|i| i % 3 == 0).map(key).collect();
    assert_eq!(listed, expected);
}

/// Buffered commits share writes of the journal's buffer: one commit after several batches
/// writes it once, and a commit with nothing new since the last write writes nothing.
#[test]
fn buffered_commits_share_journal_flushes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = FjallBackend::open(dir.path(), config()).expect("open");
    backend.open_partition(1).expect("open partition");
    let batch = |i: u64| {
        let (k, v) = (key(i), value(i));
        backend
            .write_batch(&[BatchWrite {
                partition: 1,
                key: &k,
                value: Some(&v),
            }])
            .expect("batch");
    };
    for i in 0..5 {
        batch(i);
    }
    let flushes = || {
        let s = backend.stats();
        (s.journal_batches, s.journal_flushes)
    };
    assert_eq!(flushes(), (5, 0));
    block_on(backend.commit(Durability::Buffered)).expect("commit");
    assert_eq!(flushes(), (5, 1));
    block_on(backend.commit(Durability::Buffered)).expect("commit");
    assert_eq!(flushes(), (5, 1), "nothing new to write");
    batch(5);
    block_on(backend.commit(Durability::Buffered)).expect("commit");
    assert_eq!(flushes(), (6, 2));
}
