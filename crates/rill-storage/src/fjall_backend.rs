//! The durable backend: one fjall database per node, one keyspace per partition.
//!
//! Layout: keyspace `p{id}` holds partition `id`, keyspace `meta` holds node metadata. All
//! keyspaces share fjall's single journal (write-ahead log), so one fsync makes every
//! partition's writes durable; [`Backend::commit`] builds group commit on that (see
//! [`crate::group_commit`]). At restart [`Backend::partitions`] lists the `p{id}` keyspaces fjall
//! recovered.
//!
//! # Durability facts (fjall 3.1, established from its source)
//!
//! - A plain `Keyspace::insert`/`remove` appends its record to the journal's userspace
//!   `BufWriter` and then, because keyspaces default to `manual_journal_persist = false`, calls
//!   `persist(PersistMode::Buffer)` under the journal lock before returning, which flushes that
//!   buffer with `write(2)`. So a write that returned is in the OS page cache and survives
//!   `kill -9`. We keep that default for single writes ([`PartitionStore::put`], `delete`).
//! - Batches ([`Backend::write_batch`]: every replica write of a request) are committed with
//!   `durability(None)` instead, which leaves their record in that buffer, and the
//!   [`Durability::Buffered`] commit the request makes before it answers writes the buffer out
//!   (`persist(PersistMode::Buffer)`), unless a write of the buffer since this request's batch
//!   already did (batch tickets, [`JournalTickets`]). The node yields to the other requests
//!   ready on its runtime worker before it commits, so their batches join, and one `write(2)`
//!   carries them all: a `write(2)` per PUT was 6 % of the node's CPU in the PUT profile, and
//!   the CPU per PUT fell by ~9 % with the grouping (docs/PERFORMANCE.md). The kill test in
//!   `tests/` checks both kinds of write end to end.
//! - fjall 3 has no background fsync timer (fjall 2's `fsync_ms` is gone). The journal is only
//!   fsynced by an explicit `Database::persist(SyncData | SyncAll)`, on journal rotation, when a
//!   memtable flush starts, and when the database is dropped. [`Durability::Synced`] commits
//!   go to the group-commit thread, which calls `persist(PersistMode::SyncData)`: the journal
//!   is created and pre-sized with `fsync` and new journals are made durable with a directory
//!   fsync on rotation, so `fdatasync` of the active journal suffices.
//! - A failed journal write or flush *poisons* the database: every later write fails with
//!   `Poisoned` until the process reopens it. We remember the kind of the first failure
//!   (for instance [`ErrorKind::NoSpace`]) and report later poisoned writes with that kind, so
//!   a full disk keeps being reported as a full disk. A failed background flush or
//!   compaction poisons it too, but its error only reaches fjall's log: then we ask the
//!   filesystem (`statvfs`), and less free space than one memtable flush needs means the disk
//!   is full. A batch is in the memtables before its record reaches the OS, so when that write
//!   fails, the commit reports the failure to every request that relied on it, and what those
//!   batches wrote stays readable (in memory) until the process reopens the database: like
//!   any write that failed partway, it may or may not be there afterwards.
//!
//! # Settings, and fjall issue #288 (journals pinned by idle keyspaces)
//!
//! A journal file can only be deleted once every keyspace with records in it has flushed its
//! memtable. A node has dozens of partitions, many of them quiet; a quiet keyspace with a small
//! memtable never reaches its own flush threshold, so it pins old journals. fjall bounds this
//! with `max_journaling_size`: past it, the keyspaces pinning the oldest journal are forced to
//! flush. Hence:
//! - fjall enforces that limit (and rotates the journal) only when some memtable is flushed,
//!   and on its own a memtable is flushed only when it outgrows `max_memtable_bytes`. Writes
//!   spread evenly over many partitions can therefore grow every memtable — and the journal —
//!   to just under that size before anything happens (measured: a 741 MB journal and 1.2 GB of
//!   memtables with 64 partitions at 16 MiB), and then flush them all at once.
//! - So the bound is ours: [`crate::write_buffer`] seals the largest memtable whenever all
//!   partitions' memtables together pass their budget, one at a time. `max_memtable_bytes`,
//!   fjall's per-keyspace limit, is only a backstop.
//! - Flushing one memtable at a time, a memtable is flushed about every other time the budget
//!   is written, so the journal holds about twice what the memtables hold. The journal is
//!   replayed at startup, so it is what bounds restart time: `write_buffer_bytes` is the
//!   unflushed writes the journal may hold, and the memtables get half of it (measured: with
//!   memtables given all of it, the journal grew to 370 MB and a restart after `kill -9` took
//!   4.8 s; with half, 1.2-2.3 s, against 0.26-3.4 s with the lockstep flushes of before).
//! - `max_journal_bytes` defaults to the write buffer plus two journal files (64 MiB each), so
//!   that in steady writing it is never what forces a flush: past it, fjall flushes every
//!   partition holding records in the oldest journal at once, the lockstep burst again. It still
//!   catches quiet partitions, whose small memtables are never the largest and would otherwise
//!   pin old journals.
//! - We never call `Keyspace::clear`: #288 is a journal pinned forever by a keyspace whose
//!   only record is a `clear` followed by no writes (its memtable is empty, so it can never
//!   flush). Dropping a partition uses `Database::delete_keyspace` instead.
//!
//! # Compaction: many small trees
//!
//! Each partition is its own LSM tree, so a node's writes are spread over dozens of trees and
//! each tree's flushes are small: the write buffer's memtable half divided by the partitions
//! (128 MiB / 2 / 64 = 1 MiB by default). fjall's default leveled compaction is sized for one
//! big tree: 64 MiB tables, an L1 of four of them. A partition below 256 MiB then keeps its
//! whole L1 in one table, and every merge of four small L0 tables into it rewrites the whole
//! partition: the work of one compaction grows with the data, and on a two-core machine it
//! competes with the writers for the cores. With `table_target_bytes` at 2 MiB the
//! levels hold 8 MiB, 80 MiB, 800 MiB…, and each compaction merges a few small tables, whatever
//! the partition's size.
//!
//! fjall stores a keyspace's options (the compaction strategy and its sizes, the data block size)
//! when it creates the keyspace, and recovers them at every open: a partition keeps the settings
//! it was created with, and changed settings here apply to partitions created from then on
//! (read in fjall 3.1.13's source; the test `a_partition_keeps_the_options_it_was_created_with`).
//!
//! Worker threads: 1 by default. The request path (runtime workers and the clients' sockets)
//! needs most of two cores, and a second compaction thread made compaction burstier without
//! raising the mean. Measured 2026-12-07, 120 s PUT runs over 10 M keys on a loaded machine,
//! one after another: 64 MiB tables and 2 workers averaged 8 761 and 8 776 put/s with the
//! slowest second at 0.56 and 0.41 of the mean (6 and 17 seconds below 0.7); 2 MiB and 1 worker
//! 8 613 put/s, slowest second 0.74, none below 0.7 (docs/PERFORMANCE.md).
//!
//! That thread runs at nice 19 (`worker_nice`). At the same priority it takes a core from a
//! runtime worker for a scheduler slice of milliseconds whenever it has work, and every request
//! queued on that worker waits the slice out. At nice 19 it runs in the cores' idle moments
//! and yields within microseconds when a request is ready; a closed-loop load leaves enough of
//! those moments that compaction kept up (the same table count after 5 minutes). Measured
//! 2026-12-07, 300 s PUT runs over 10 M keys on a quiet machine: p99.9 11.9 and 12.6 ms at
//! nice 0, 8.4 and 8.7 ms at nice 19, the mean unchanged (19.2 and 18.9 k put/s against 19.9
//! and 20.0 k). A second worker at nice 19 was worse again: 21 seconds below 0.7 of the mean.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use fjall::compaction::Leveled;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::group_commit::{CommitStats, GroupCommitter};
use crate::limits::{check_put, storable_key};
use crate::scan::scan_bounds;
use crate::write_buffer::{FlushPlanner, entry_bytes};
use crate::writeback::Writeback;
use crate::{
    Backend, BackendStats, BatchWrite, Durability, ErrorKind, KeyIter, KvIter, PartitionId,
    PartitionStore, StorageError,
};

/// fjall refuses (panics on) a journal limit below this.
const MIN_JOURNAL_BYTES: u64 = 64 * 1024 * 1024;
/// Memtables smaller than this would flush (and write a table file) every few writes.
const MIN_MEMTABLE_BYTES: u64 = 1024 * 1024;
/// Smaller compaction output would mean thousands of table files per gigabyte.
const MIN_TABLE_BYTES: u64 = 1024 * 1024;
/// Default nice value of fjall's worker threads (module docs).
const WORKER_NICE: i32 = 19;

/// Name of the metadata keyspace; partition keyspaces are `p{id}`.
const META_KEYSPACE: &str = "meta";

/// Tuning of a [`FjallBackend`]; see the module docs for why the defaults are what they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FjallConfig {
    /// Block cache shared by all partitions, in bytes.
    pub cache_bytes: u64,
    /// The level the node commits at before acknowledging a write.
    pub durability: Durability,
    /// Total journal size past which quiet partitions are forced to flush (at least 64 MiB;
    /// smaller values are raised to that). Keep it above `write_buffer_bytes`.
    pub max_journal_bytes: u64,
    /// Unflushed writes, in bytes: the memtables of all partitions together hold at most half
    /// of it (past that, the largest is flushed), and the journal about all of it.
    pub write_buffer_bytes: u64,
    /// Size at which fjall flushes one partition's memtable by itself (at least 1 MiB), a
    /// backstop to `write_buffer_bytes`. Fixed when a partition is created.
    pub max_memtable_bytes: u64,
    /// Size of the table files compaction writes (at least 1 MiB); levels are sized from it
    /// (L1 four tables, each further level ten times the last).
    pub table_target_bytes: u64,
    /// fjall's flush and compaction threads (at least 1).
    pub worker_threads: usize,
    /// The nice value of those threads (0 to 19; Linux, where a thread has its own): how far
    /// background work yields the cores to requests (module docs).
    pub worker_nice: i32,
}

impl Default for FjallConfig {
    fn default() -> Self {
        FjallConfig {
            cache_bytes: 128 * 1024 * 1024,
            durability: Durability::Buffered,
            max_journal_bytes: 256 * 1024 * 1024,
            write_buffer_bytes: 128 * 1024 * 1024,
            max_memtable_bytes: 32 * 1024 * 1024,
            table_target_bytes: 2 * 1024 * 1024,
            worker_threads: 1,
            worker_nice: WORKER_NICE,
        }
    }
}

/// The fjall-backed, durable [`Backend`].
pub struct FjallBackend {
    // Declared first so it is dropped first: its thread holds a database handle and must have
    // answered every waiter before the database closes.
    committer: GroupCommitter,
    // Next, for the same reason: its thread seals keyspaces and syncs the journal.
    write_buffer: Arc<WriteBuffer>,
    db: Database,
    partitions: Mutex<HashMap<PartitionId, Arc<FjallPartition>>>,
    meta: Arc<FjallPartition>,
    keyspace_options: KeyspaceOptions,
    faults: Arc<Faults>,
    durability: Durability,
    staged: JournalTickets,
}

/// See [`FjallBackend::shape`] (and [`BackendStats`]).
#[derive(Default)]
struct Shape {
    tables: u64,
    l0_tables: u64,
    l0_tables_max: u64,
    sealed_memtables: u64,
}

/// Which batches of [`Backend::write_batch`] may still be in fjall's userspace journal buffer:
/// each batch takes a ticket once it is in that buffer, and a flush records the last ticket it
/// covers (see [`Backend::commit`] for why batches are not flushed one by one).
#[derive(Default)]
struct JournalTickets {
    written: AtomicU64,
    flushed: AtomicU64,
    /// Flushes performed (for the grouping ratio in `/stats`).
    flushes: AtomicU64,
}

impl FjallBackend {
    /// Opens (or creates) the node's database at `path`, recovering its journal.
    pub fn open(path: impl AsRef<Path>, config: FjallConfig) -> Result<Self, StorageError> {
        let path = path.as_ref();
        let builder = Database::builder(path)
            .cache_size(config.cache_bytes)
            .max_journaling_size(config.max_journal_bytes.max(MIN_JOURNAL_BYTES))
            .worker_threads(config.worker_threads.max(1));
        let db = open_with_nice_workers(builder, config.worker_nice)?;
        let keyspace_options = KeyspaceOptions {
            max_memtable_bytes: config.max_memtable_bytes.max(MIN_MEMTABLE_BYTES),
            table_target_bytes: config.table_target_bytes.max(MIN_TABLE_BYTES),
        };
        let faults = Arc::new(Faults::new(
            filesystem_free_bytes(path),
            keyspace_options.max_memtable_bytes,
        ));
        let write_buffer = Arc::new(WriteBuffer::new(
            config.write_buffer_bytes / 2,
            path,
            config.durability,
        )?);
        // The metadata keyspace is small and rarely written: fjall's own limit flushes it.
        let meta = Arc::new(FjallPartition {
            keyspace: db.keyspace(META_KEYSPACE, || keyspace_options.create())?,
            faults: faults.clone(),
            partition: None,
            write_buffer: write_buffer.clone(),
        });
        let committer = GroupCommitter::start("rill-storage-commit", {
            let db = db.clone();
            let faults = faults.clone();
            Box::new(move || faults.check(db.persist(PersistMode::SyncData)))
        })?;
        let backend = FjallBackend {
            committer,
            write_buffer,
            db,
            partitions: Mutex::new(HashMap::new()),
            meta,
            keyspace_options,
            faults,
            durability: config.durability,
            staged: JournalTickets::default(),
        };
        tracing::info!(path = %path.display(), partitions = ?backend.partitions()?, "opened fjall storage");
        Ok(backend)
    }

    /// The shape of the partitions' trees. fjall marks these accessors experimental (hidden
    /// from its docs); they are read-only counters.
    fn shape(&self) -> Shape {
        let mut shape = Shape::default();
        for p in self.partitions.lock().values() {
            let l0 = p.keyspace.l0_table_count() as u64;
            shape.tables += p.keyspace.table_count() as u64;
            shape.l0_tables += l0;
            shape.l0_tables_max = shape.l0_tables_max.max(l0);
            shape.sealed_memtables += p.keyspace.sealed_memtable_count() as u64;
        }
        shape
    }

    /// Writes the journal's buffer to the OS unless a flush since every batch that returned
    /// before this call already did.
    fn flush_journal(&self) -> Result<(), StorageError> {
        let needed = self.staged.written.load(Ordering::Acquire);
        if self.staged.flushed.load(Ordering::Acquire) >= needed {
            return Ok(());
        }
        // Read before the flush: every batch with a ticket up to here is in the buffer it writes.
        let covered = self.staged.written.load(Ordering::Acquire);
        self.faults.check(self.db.persist(PersistMode::Buffer))?;
        self.staged.flushed.fetch_max(covered, Ordering::AcqRel);
        self.staged.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Counters of the synced commits requested and the fsyncs that served them.
    pub fn commit_stats(&self) -> CommitStats {
        self.committer.stats()
    }

    fn open_keyspace(&self, p: PartitionId) -> Result<Keyspace, StorageError> {
        let options = self.keyspace_options;
        Ok(self.db.keyspace(&partition_name(p), || options.create())?)
    }
}

impl Backend for FjallBackend {
    fn open_partition(&self, p: PartitionId) -> Result<Arc<dyn PartitionStore>, StorageError> {
        let mut partitions = self.partitions.lock();
        if let Some(store) = partitions.get(&p) {
            return Ok(store.clone());
        }
        let store = Arc::new(FjallPartition {
            keyspace: self.open_keyspace(p)?,
            faults: self.faults.clone(),
            partition: Some(p),
            write_buffer: self.write_buffer.clone(),
        });
        self.write_buffer.track(p, &store.keyspace);
        partitions.insert(p, store.clone());
        Ok(store)
    }

    fn drop_partition(&self, p: PartitionId) -> Result<(), StorageError> {
        // Held throughout, so a concurrent open cannot resurrect a half-dropped partition.
        let mut partitions = self.partitions.lock();
        let cached = partitions.remove(&p);
        self.write_buffer.forget(p);
        if !self.db.keyspace_exists(&partition_name(p)) {
            return Ok(());
        }
        let keyspace = match cached {
            Some(store) => store.keyspace.clone(),
            None => self.open_keyspace(p)?,
        };
        self.db.delete_keyspace(keyspace)?;
        tracing::info!(partition = p, "dropped partition");
        Ok(())
    }

    fn partitions(&self) -> Result<Vec<PartitionId>, StorageError> {
        let mut ids: Vec<PartitionId> = self
            .db
            .list_keyspace_names()
            .iter()
            .filter_map(|name| parse_partition_name(name))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn metadata(&self) -> Arc<dyn PartitionStore> {
        self.meta.clone()
    }

    fn write_batch(&self, writes: &[BatchWrite<'_>]) -> Result<(), StorageError> {
        let mut batch = self.db.batch();
        {
            let partitions = self.partitions.lock();
            for w in writes {
                let store = partitions
                    .get(&w.partition)
                    .ok_or_else(|| StorageError::closed("partition"))?;
                match w.value {
                    Some(value) => {
                        check_put(w.key, value)?;
                        batch.insert(&store.keyspace, w.key, value);
                    }
                    None if storable_key(w.key) => batch.remove(&store.keyspace, w.key),
                    None => {}
                }
            }
        }
        // One journal entry for the whole batch, left in the journal's buffer: the commit that
        // follows writes it to the OS together with the other requests' batches.
        self.faults.check(batch.durability(None).commit())?;
        self.staged.written.fetch_add(1, Ordering::AcqRel);
        self.write_buffer.wrote(writes.iter().map(|w| {
            let bytes = entry_bytes(w.key, w.value.unwrap_or_default());
            (w.partition, bytes)
        }));
        Ok(())
    }

    fn commit(&self, level: Durability) -> BoxFuture<'static, Result<(), StorageError>> {
        match level {
            Durability::Buffered => futures::future::ready(self.flush_journal()).boxed(),
            // The fsync writes the buffer out first.
            Durability::Synced => self.committer.request(),
        }
    }

    fn stats(&self) -> BackendStats {
        let commits = self.committer.stats();
        let shape = self.shape();
        BackendStats {
            // fjall marks these two accessors experimental; they are read-only counters.
            write_buffer_bytes: self.db.write_buffer_size(),
            block_cache_bytes: self.db.cache_size(),
            journal_bytes: self.db.journal_disk_space().unwrap_or(0),
            synced_commits: commits.commits,
            fsyncs: commits.persists,
            journal_batches: self.staged.written.load(Ordering::Relaxed),
            journal_flushes: self.staged.flushes.load(Ordering::Relaxed),
            tables: shape.tables,
            l0_tables: shape.l0_tables,
            sealed_memtables: shape.sealed_memtables,
            l0_tables_max: shape.l0_tables_max,
            compactions: self.db.compactions_completed() as u64,
            compaction_ms: self.db.time_compacting().as_millis() as u64,
        }
    }

    fn default_durability(&self) -> Durability {
        self.durability
    }

    fn name(&self) -> &'static str {
        "fjall"
    }
}

/// Opens the database from a thread of its own whose nice value is first raised to `nice`:
/// fjall starts its worker threads while it opens, and a new thread takes its parent's nice
/// value, so they run at `nice` while the caller's threads keep theirs. fjall has no hook of
/// its own for its threads. Failing to lower the priority (a platform without per-thread nice
/// values, say) only costs latency: it is logged, and the database opens all the same.
fn open_with_nice_workers(
    builder: fjall::DatabaseBuilder<Database>,
    nice: i32,
) -> Result<Database, StorageError> {
    let opened = std::thread::scope(|s| {
        s.spawn(|| {
            let nice = nice.clamp(0, 19);
            if nice > 0
                && let Err(e) = rustix::process::setpriority_process(None, nice)
            {
                tracing::warn!(%e, nice, "could not lower the storage workers' priority");
            }
            builder.open()
        })
        .join()
    });
    match opened {
        Ok(db) => Ok(db?),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn partition_name(p: PartitionId) -> String {
    format!("p{p}")
}

/// The partition id of a keyspace name, or `None` for other keyspaces (such as `meta`).
fn parse_partition_name(name: &str) -> Option<PartitionId> {
    let digits = name.strip_prefix('p')?;
    let id: PartitionId = digits.parse().ok()?;
    // Only the canonical spelling: "p007" or "p+7" are not ours.
    (partition_name(id) == name).then_some(id)
}

/// The options every keyspace of this backend is created with.
#[derive(Clone, Copy)]
struct KeyspaceOptions {
    max_memtable_bytes: u64,
    table_target_bytes: u64,
}

impl KeyspaceOptions {
    fn create(self) -> KeyspaceCreateOptions {
        // `manual_journal_persist` stays false: each single write flushes its journal record to
        // the OS (batches are written out by the commit that follows them, module docs).
        KeyspaceCreateOptions::default()
            .max_memtable_size(self.max_memtable_bytes)
            .compaction_strategy(Arc::new(
                Leveled::default().with_table_target_size(self.table_target_bytes),
            ))
    }
}

/// The kind of the first write failure, which poisoned the database.
struct Faults {
    first: Mutex<Option<ErrorKind>>,
    /// Free bytes on the database's filesystem, where they can be known.
    free_bytes: FreeBytes,
    /// A background failure with less free space than this is put down to a full disk: a
    /// flush needs room for about one memtable.
    full_below: u64,
}

type FreeBytes = Box<dyn Fn() -> Option<u64> + Send + Sync>;

/// Asks the filesystem holding `path` how many bytes are free for unprivileged writers.
fn filesystem_free_bytes(path: &Path) -> FreeBytes {
    let path = path.to_path_buf();
    Box::new(move || {
        let stat = rustix::fs::statvfs(&path).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    })
}

impl Faults {
    fn new(free_bytes: FreeBytes, full_below: u64) -> Self {
        Faults {
            first: Mutex::new(None),
            free_bytes,
            full_below,
        }
    }

    /// Converts a write's result, remembering the first failure and reporting later
    /// `Poisoned` errors with its kind.
    fn check(&self, result: fjall::Result<()>) -> Result<(), StorageError> {
        let Err(err) = result else {
            return Ok(());
        };
        let err = StorageError::from(err);
        let mut first = self.first.lock();
        match (err.kind(), *first) {
            (ErrorKind::Poisoned, Some(cause)) => Err(StorageError::new(
                cause,
                format!(
                    "storage refuses writes after an earlier {cause:?} failure; \
                     fix the cause and restart the node ({})",
                    err.message()
                ),
            )),
            (ErrorKind::NoSpace | ErrorKind::Io | ErrorKind::Corruption, None) => {
                *first = Some(err.kind());
                tracing::error!(%err, "storage write failed; further writes are refused");
                Err(err)
            }
            // The engine was poisoned by a failure in its own background work (a flush or a
            // compaction), whose error only reached fjall's log. Most often the disk is full:
            // ask the filesystem, so that the client is told so when it is.
            (ErrorKind::Poisoned, None) => match (self.free_bytes)() {
                Some(free) if free < self.full_below => {
                    *first = Some(ErrorKind::NoSpace);
                    let err = StorageError::new(
                        ErrorKind::NoSpace,
                        format!(
                            "the disk is full ({free} bytes free): a background flush or \
                             compaction failed; free space and restart the node"
                        ),
                    );
                    tracing::error!(%err, "storage write failed; further writes are refused");
                    Err(err)
                }
                _ => Err(StorageError::new(
                    ErrorKind::Poisoned,
                    "storage refuses writes after a background flush or compaction failed \
                     (see the log); fix the cause and restart the node",
                )),
            },
            _ => Err(err),
        }
    }
}

/// The shell around [`FlushPlanner`]: counts the partitions' writes and has the writeback
/// thread seal the memtables it names, which hands them to fjall's flush workers.
struct WriteBuffer {
    planner: Mutex<FlushPlanner<Keyspace>>,
    writeback: Writeback,
}

impl WriteBuffer {
    fn new(budget: u64, dir: &Path, durability: Durability) -> Result<Self, StorageError> {
        Ok(WriteBuffer {
            planner: Mutex::new(FlushPlanner::new(budget)),
            writeback: Writeback::start(dir, durability == Durability::Buffered)?,
        })
    }

    fn track(&self, p: PartitionId, keyspace: &Keyspace) {
        self.planner.lock().track(p, keyspace.clone());
    }

    fn forget(&self, p: PartitionId) {
        self.planner.lock().forget(p);
    }

    /// Counts stored writes, `(partition, bytes)`, and has what the planner names sealed.
    fn wrote(&self, writes: impl IntoIterator<Item = (PartitionId, u64)>) {
        self.writeback.wrote();
        let seal: Vec<Keyspace> = {
            let mut planner = self.planner.lock();
            writes
                .into_iter()
                .filter_map(|(p, bytes)| planner.wrote(p, bytes))
                .collect()
        };
        for keyspace in seal {
            self.writeback.seal(keyspace);
        }
    }
}

/// One partition: a keyspace of the shared database.
struct FjallPartition {
    keyspace: Keyspace,
    faults: Arc<Faults>,
    /// `None` for the metadata keyspace, whose writes the write buffer does not count.
    partition: Option<PartitionId>,
    write_buffer: Arc<WriteBuffer>,
}

impl FjallPartition {
    /// Counts a stored write against the write buffer (the metadata's only for writeback).
    fn counted(&self, key: &[u8], value: &[u8]) {
        let counted = self.partition.map(|p| (p, entry_bytes(key, value)));
        self.write_buffer.wrote(counted);
    }

    /// fjall's iterator over the keys with `prefix` after `start_after`, if that range is not
    /// empty.
    fn range(&self, prefix: &[u8], start_after: Option<&[u8]>) -> Option<fjall::Iter> {
        scan_bounds(prefix, start_after).map(|bounds| self.keyspace.range(bounds))
    }
}

impl PartitionStore for FjallPartition {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        if !storable_key(key) {
            return Ok(None);
        }
        Ok(self.keyspace.get(key)?.map(Bytes::from))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        check_put(key, value)?;
        self.faults.check(self.keyspace.insert(key, value))?;
        self.counted(key, value);
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), StorageError> {
        if !storable_key(key) {
            return Ok(());
        }
        self.faults.check(self.keyspace.remove(key))?;
        self.counted(key, b"");
        Ok(())
    }

    fn scan(&self, prefix: &[u8], start_after: Option<&[u8]>) -> KvIter<'_> {
        Box::new(
            self.range(prefix, start_after)
                .into_iter()
                .flatten()
                .map(|guard| {
                    let (key, value) = guard.into_inner()?;
                    Ok((Bytes::from(key), Bytes::from(value)))
                }),
        )
    }

    fn scan_keys(&self, prefix: &[u8], start_after: Option<&[u8]>) -> KeyIter<'_> {
        Box::new(
            self.range(prefix, start_after)
                .into_iter()
                .flatten()
                .map(|guard| Ok(Bytes::from(guard.key()?))),
        )
    }

    fn approximate_len(&self) -> u64 {
        self.keyspace.approximate_len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fjall stores a keyspace's options when it creates it (module docs): a partition made
    /// with other options (8 KiB data blocks here) keeps them when this backend opens it, and a
    /// new partition gets this backend's.
    #[test]
    fn a_partition_keeps_the_options_it_was_created_with() {
        use fjall::config::BlockSizePolicy;
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let db = Database::builder(dir.path()).open().expect("open");
            let old = db
                .keyspace(&partition_name(3), || {
                    KeyspaceCreateOptions::default()
                        .data_block_size_policy(BlockSizePolicy::all(8 * 1024))
                })
                .expect("create");
            old.insert("k", "v").expect("write");
        }
        let config = FjallConfig {
            cache_bytes: 1 << 20,
            ..FjallConfig::default()
        };
        let backend = FjallBackend::open(dir.path(), config).expect("reopen");
        let blocks = |p| {
            backend.open_partition(p).expect("partition");
            let partitions = backend.partitions.lock();
            partitions[&p]
                .keyspace
                .config
                .data_block_size_policy
                .clone()
        };
        assert_eq!(blocks(3), BlockSizePolicy::all(8 * 1024));
        assert_eq!(blocks(4), BlockSizePolicy::all(4 * 1024), "fjall's default");
        assert_eq!(
            backend
                .open_partition(3)
                .unwrap()
                .get(b"k")
                .unwrap()
                .as_deref(),
            Some(&b"v"[..])
        );
    }

    #[test]
    fn partition_names_round_trip_and_reject_others() {
        for p in [0, 7, 1_000_000, PartitionId::MAX] {
            assert_eq!(parse_partition_name(&partition_name(p)), Some(p));
        }
        for other in ["meta", "p", "p007", "p+7", "q7", "p-1", "p4294967296"] {
            assert_eq!(parse_partition_name(other), None, "{other}");
        }
    }

    /// Faults on a filesystem that reports `free` bytes, with a 1 MiB memtable.
    fn faults(free: Option<u64>) -> Faults {
        Faults::new(Box::new(move || free), 1 << 20)
    }

    #[test]
    fn poisoned_writes_report_the_first_failure_kind() {
        let faults = faults(Some(u64::MAX));
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let err = faults
            .check(Err(fjall::Error::Io(full)))
            .expect_err("fails");
        assert_eq!(err.kind(), ErrorKind::NoSpace);
        let err = faults
            .check(Err(fjall::Error::Poisoned))
            .expect_err("fails");
        assert_eq!(err.kind(), ErrorKind::NoSpace);
        assert!(err.message().contains("restart"), "{err}");
        faults.check(Ok(())).expect("success passes through");
    }

    #[test]
    fn poisoned_without_a_known_cause_stays_poisoned_unless_the_disk_is_full() {
        for free in [None, Some(1 << 20), Some(u64::MAX)] {
            let err = faults(free)
                .check(Err(fjall::Error::Poisoned))
                .expect_err("fails");
            assert_eq!(err.kind(), ErrorKind::Poisoned, "{free:?} bytes free");
            assert!(err.message().contains("restart"), "{err}");
        }
        // Less free space than a flush needs: the background failure was the full disk, and
        // every later refusal says so.
        let faults = faults(Some((1 << 20) - 1));
        for _ in 0..2 {
            let err = faults
                .check(Err(fjall::Error::Poisoned))
                .expect_err("fails");
            assert_eq!(err.kind(), ErrorKind::NoSpace);
            assert!(err.message().contains("restart"), "{err}");
        }
    }

    #[test]
    fn free_bytes_come_from_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let free = filesystem_free_bytes(dir.path())().expect("statvfs works on a temp dir");
        assert!(free > 0, "a temp dir has some room");
        assert_eq!(filesystem_free_bytes(&dir.path().join("absent"))(), None);
    }
}
