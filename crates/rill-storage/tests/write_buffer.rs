//! The fjall backend's write-buffer budget: memtables are flushed when all partitions together
//! pass it, even when none reaches fjall's own per-partition limit, and what was flushed that
//! way reads back, before and after a restart.

use std::time::{Duration, Instant};

use rill_storage::{Backend, FjallBackend, FjallConfig};

/// The write buffer; memtables get half of it.
const BUDGET: u64 = 4 * 1024 * 1024;
const PARTITIONS: u32 = 8;
const KEYS: u64 = 24_000;

fn config() -> FjallConfig {
    FjallConfig {
        cache_bytes: 8 * 1024 * 1024,
        worker_threads: 1,
        write_buffer_bytes: BUDGET,
        // Far above what any one partition receives here (3 MB each): only the budget can
        // flush them.
        max_memtable_bytes: 64 * 1024 * 1024,
        ..FjallConfig::default()
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("bucket/key-{i:08}").into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("value-{i}-").into_bytes();
    v.resize(1000, (i % 251) as u8);
    v
}

fn read_back(backend: &FjallBackend) {
    for i in (0..KEYS).step_by(97) {
        let store = backend
            .open_partition((i % PARTITIONS as u64) as u32)
            .unwrap();
        assert_eq!(store.get(&key(i)).unwrap().as_deref(), Some(&value(i)[..]));
    }
}

#[test]
fn the_budget_bounds_memtables_below_their_own_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let backend = FjallBackend::open(dir.path(), config()).expect("open");
        for i in 0..KEYS {
            let store = backend
                .open_partition((i % PARTITIONS as u64) as u32)
                .unwrap();
            store.put(&key(i), &value(i)).expect("put");
        }
        // 24 MB were written. Flushes run in the background: wait for them to catch up.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let buffered = backend.stats().write_buffer_bytes;
            if buffered <= BUDGET {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{buffered} bytes still in memtables with a budget of {BUDGET}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        read_back(&backend);
    }
    let backend = FjallBackend::open(dir.path(), config()).expect("reopen");
    read_back(&backend);
}
