//! The fjall backend's background threads (flushes, compaction) run at a lower priority than
//! the threads that open it and serve requests, so on a busy machine they take idle cores
//! rather than a request's.

use rill_storage::{FjallBackend, FjallConfig};

/// Nice values (field 19 of `/proc/self/task/TID/stat`) of this process's threads named `name`.
fn nice_of_threads(name: &str) -> Vec<i32> {
    let mut nices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("task").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).expect("stat");
        // The command name (field 2) may hold spaces: count fields after its closing paren.
        let after = &stat[stat.rfind(')').expect("comm in stat") + 2..];
        let nice = after.split(' ').nth(16).expect("nice field");
        nices.push(nice.parse().expect("nice is a number"));
    }
    nices
}

fn own_nice() -> i32 {
    rustix::process::getpriority_process(None).expect("getpriority")
}

#[test]
fn storage_workers_run_below_the_callers_priority() {
    let dir = tempfile::tempdir().expect("temp dir");
    let before = own_nice();
    let config = FjallConfig {
        worker_threads: 2,
        ..FjallConfig::default()
    };
    let backend = FjallBackend::open(dir.path(), config.clone()).expect("open");
    assert_eq!(
        nice_of_threads("fjall:worker"),
        vec![config.worker_nice; 2],
        "each worker at the configured nice value"
    );
    assert_eq!(config.worker_nice, 19, "the default yields fully");
    assert_eq!(own_nice(), before, "the opening thread keeps its priority");
    drop(backend);

    // A configured 0 leaves them where the caller is.
    let dir = tempfile::tempdir().expect("temp dir");
    let _backend = FjallBackend::open(
        dir.path(),
        FjallConfig {
            worker_threads: 1,
            worker_nice: 0,
            ..FjallConfig::default()
        },
    )
    .expect("open");
    assert_eq!(nice_of_threads("fjall:worker"), vec![before]);
}
