//! The writeback thread: storage work that must not run on a request's path.
//!
//! Two jobs, both measured as write stalls when they ran where fjall runs them:
//! - **Sealing memtables** that the write buffer chose ([`crate::write_buffer`]). Sealing takes
//!   fjall's journal lock and then tidies the version history of every keyspace: 10-25 ms at
//!   64 partitions, which on a writer's thread is a runtime worker (and every request queued on
//!   it) stopped that long.
//! - **Writing the journal back** to disk in small steps. Buffered writes only reach the page
//!   cache, and fjall fsyncs the journal while holding its lock when a flush starts and when the
//!   journal rotates: the first rotation of a fresh node fsynced 117 MB at once and stopped every
//!   writer for 105 ms. Every [`SYNC_EVERY`] this thread `fdatasync`s the active journal through
//!   a file handle of its own, outside fjall's lock, so fjall's own fsyncs find little left to
//!   write. Writers keep appending meanwhile. This is no durability promise: acknowledged
//!   buffered writes were already safe from a process crash, and only `--sync` waits for disk.
//!   With synced commits the group committer's fsyncs already keep the journal clean, and a
//!   second fsync beside them only delays theirs (measured: 18 % fewer synced PUTs), so then the
//!   thread only seals.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fjall::Keyspace;

use crate::StorageError;

/// How often the active journal is written back while writes arrive.
pub(crate) const SYNC_EVERY: Duration = Duration::from_millis(50);

/// Owner of the writeback thread; dropping it stops and joins the thread.
pub(crate) struct Writeback {
    seals: Option<Sender<Keyspace>>,
    dirty: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Writeback {
    /// Starts the thread for the database whose journals are in `dir`; `write_back` says
    /// whether it syncs the journal (see the module docs).
    pub(crate) fn start(dir: &Path, write_back: bool) -> Result<Self, StorageError> {
        let (seals, rx) = mpsc::channel::<Keyspace>();
        let dirty = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("rill-storage-writeback".to_owned())
            .spawn({
                let dirty = dirty.clone();
                let mut journal = ActiveJournal::new(dir.to_path_buf());
                move || {
                    let mut synced = Instant::now();
                    loop {
                        match rx.recv_timeout(SYNC_EVERY) {
                            Ok(keyspace) => seal(&keyspace),
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                        if synced.elapsed() >= SYNC_EVERY {
                            synced = Instant::now();
                            if dirty.swap(false, Ordering::AcqRel) && write_back {
                                journal.write_back();
                            }
                        }
                    }
                }
            })?;
        Ok(Writeback {
            seals: Some(seals),
            dirty,
            thread: Some(thread),
        })
    }

    /// Notes that the journal has records the thread has not written back.
    pub(crate) fn wrote(&self) {
        // A plain load first: the flag is set on nearly every write, and a store to a cache line
        // that already says `true` would only bounce it between the cores.
        if !self.dirty.load(Ordering::Relaxed) {
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Asks the thread to seal `keyspace`'s memtable and queue its flush.
    pub(crate) fn seal(&self, keyspace: Keyspace) {
        if let Some(seals) = &self.seals {
            // Fails only once the thread is gone, when the backend is closing anyway.
            let _ = seals.send(keyspace);
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.seals = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn seal(keyspace: &Keyspace) {
    // A failure means the engine is poisoned, which the next write reports to its client.
    if let Err(err) = keyspace.rotate_memtable() {
        tracing::warn!(%err, "sealing a memtable for flushing failed");
    }
}

/// A handle on the newest journal file (`{id}.jnl` in the database directory).
struct ActiveJournal {
    dir: PathBuf,
    open: Option<(u64, File)>,
}

impl ActiveJournal {
    fn new(dir: PathBuf) -> Self {
        ActiveJournal { dir, open: None }
    }

    /// `fdatasync`s the newest journal, reopening when fjall has rotated to a new one. Errors
    /// are left to fjall, whose own writes and fsyncs of the same file report them.
    fn write_back(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let names = entries.filter_map(|e| e.ok()?.file_name().into_string().ok());
        let Some(newest) = newest_journal(names) else {
            return;
        };
        if self.open.as_ref().is_none_or(|(id, _)| *id != newest) {
            self.open = File::open(self.dir.join(format!("{newest}.jnl")))
                .ok()
                .map(|f| (newest, f));
        }
        if let Some((_, file)) = &self.open {
            let _ = rustix::fs::fdatasync(file);
        }
    }
}

/// The id of the newest journal among a directory's file names.
fn newest_journal(names: impl Iterator<Item = String>) -> Option<u64> {
    names
        .filter_map(|name| name.strip_suffix(".jnl")?.parse::<u64>().ok())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_journal_is_the_highest_numbered() {
        let names = [
            "0.jnl",
            "10.jnl",
            "9.jnl",
            "lock",
            "version",
            "x.jnl",
            "11.jnl.tmp",
        ];
        assert_eq!(
            newest_journal(names.iter().map(|s| s.to_string())),
            Some(10)
        );
        assert_eq!(newest_journal(["lock".to_string()].into_iter()), None);
    }
}
