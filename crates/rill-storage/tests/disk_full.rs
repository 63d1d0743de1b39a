//! A full disk is reported as [`ErrorKind::NoSpace`], never a panic or a hang.
//!
//! The test mounts a 2 MiB tmpfs in a temporary directory (tests run as root), opens the fjall
//! backend on it and writes until the filesystem is full. Where mounting is not permitted the
//! test fails saying so (see `support/tmpfs.rs`).

#[path = "support/tmpfs.rs"]
mod tmpfs;

use futures::executor::block_on;
use rill_storage::{Backend, Durability, ErrorKind, FjallBackend, FjallConfig};
use tmpfs::Tmpfs;

#[test]
fn a_full_disk_is_reported_as_no_space() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _tmpfs = Tmpfs::mount(dir.path(), "2m");
    let config = FjallConfig {
        cache_bytes: 1024 * 1024,
        worker_threads: 1,
        ..FjallConfig::default()
    };
    let backend = FjallBackend::open(dir.path().join("db"), config).expect("open on tmpfs");
    let store = backend.open_partition(0).expect("open partition");

    // Incompressible-enough 1 KiB values: 2 MiB fills within a few thousand writes.
    let value = |i: u32| -> Vec<u8> {
        (0..1024u32)
            .map(|j| (i.wrapping_mul(31) ^ j) as u8)
            .collect()
    };
    let mut written = 0;
    let first_error = loop {
        assert!(
            written < 10_000,
            "10 MiB written to a 2 MiB tmpfs without an error"
        );
        match store.put(format!("key-{written:06}").as_bytes(), &value(written)) {
            Ok(()) => written += 1,
            Err(err) => break err,
        }
    };
    assert!(
        written > 0,
        "the disk filled before any write: {first_error}"
    );
    assert_eq!(first_error.kind(), ErrorKind::NoSpace, "{first_error}");

    // fjall refuses further writes after a failed one; they keep reporting the cause.
    let again = store
        .put(b"one-more", b"v")
        .expect_err("disk is still full");
    assert_eq!(again.kind(), ErrorKind::NoSpace, "{again}");
    let commit = block_on(backend.commit(Durability::Synced)).expect_err("cannot sync");
    assert_eq!(commit.kind(), ErrorKind::NoSpace, "{commit}");

    // The failed write is not visible; what was written before the disk filled still is.
    assert_eq!(
        store
            .get(format!("key-{written:06}").as_bytes())
            .expect("read"),
        None
    );
    assert_eq!(
        store.get(b"key-000000").expect("read").as_deref(),
        Some(value(0).as_slice())
    );
    // Dropping the backend (which tries a final fsync) must not panic or hang.
    drop(store);
    drop(backend);
}
