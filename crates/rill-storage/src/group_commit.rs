//! Group commit: one flush for every writer waiting at the time.
//!
//! Writers call [`GroupCommitter::request`] after their writes returned and await the future.
//! A dedicated thread sleeps until someone waits, takes *all* waiters queued so far, performs
//! one persist (for fjall: one `fdatasync` of the shared journal), and answers each of them
//! with its result. While that persist runs, new waiters queue up and share the next one, so
//! under load the number of fsyncs grows far slower than the number of commits.
//!
//! Ordering argument: a waiter is queued only after its writes returned, and the thread takes
//! the queue before it starts the persist, so every write a waiter made precedes the persist
//! that answers it.
//!
//! The thread is plain `std::thread` and the futures are `futures::channel::oneshot`, so this
//! crate needs no async runtime. Dropping the committer answers everyone still queued (with a
//! final persist) and joins the thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::BoxFuture;
use parking_lot::{Condvar, Mutex};

use crate::StorageError;

/// The operation a group performs once for all its members.
pub(crate) type PersistFn = Box<dyn FnMut() -> Result<(), StorageError> + Send>;

type Waiter = oneshot::Sender<Result<(), StorageError>>;

/// Counters of a backend's group commits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Commits that asked for a persist (commits already satisfied are not counted).
    pub commits: u64,
    /// Persist operations performed; each answered one or more commits.
    pub persists: u64,
}

/// Owner of the group-commit thread.
pub(crate) struct GroupCommitter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    commits: AtomicU64,
    persists: AtomicU64,
}

#[derive(Default)]
struct Queue {
    waiters: Vec<Waiter>,
    closing: bool,
}

impl GroupCommitter {
    /// Starts the thread (named `thread_name`) that runs `persist` once per group.
    pub(crate) fn start(thread_name: &str, persist: PersistFn) -> Result<Self, StorageError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            commits: AtomicU64::new(0),
            persists: AtomicU64::new(0),
        });
        let thread = std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn({
                let shared = shared.clone();
                move || run(&shared, persist)
            })?;
        Ok(GroupCommitter {
            shared,
            thread: Some(thread),
        })
    }

    /// Joins the next group; the future resolves with that group's persist result.
    pub(crate) fn request(&self) -> BoxFuture<'static, Result<(), StorageError>> {
        let (tx, rx) = oneshot::channel();
        {
            let mut queue = self.shared.queue.lock();
            if queue.closing {
                return futures::future::ready(Err(StorageError::closed("group commit"))).boxed();
            }
            queue.waiters.push(tx);
        }
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        self.shared.wake.notify_one();
        async move {
            rx.await
                .unwrap_or_else(|_| Err(StorageError::closed("group commit")))
        }
        .boxed()
    }

    /// Commits requested and persists performed so far.
    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            persists: self.shared.persists.load(Ordering::Relaxed),
        }
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        self.shared.queue.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("group commit thread panicked");
        }
    }
}

/// The thread's loop: wait for waiters, persist once for all of them, answer them.
fn run(shared: &Shared, mut persist: PersistFn) {
    while let Some(group) = next_group(shared) {
        let result = persist();
        shared.persists.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = &result {
            tracing::error!(%err, waiters = group.len(), "group commit failed");
        }
        for waiter in group {
            // A waiter that stopped waiting (dropped its future) needs no answer.
            let _ = waiter.send(result.clone());
        }
    }
}

/// Blocks until there are waiters (returning all of them) or the committer is closing with
/// none left (returning `None`).
fn next_group(shared: &Shared) -> Option<Vec<Waiter>> {
    let mut queue = shared.queue.lock();
    while queue.waiters.is_empty() {
        if queue.closing {
            return None;
        }
        shared.wake.wait(&mut queue);
    }
    Some(std::mem::take(&mut queue.waiters))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use futures::executor::block_on;
    use std::sync::mpsc;

    /// A persist function whose first call reports that it started and then blocks until the
    /// test releases it, so the test controls exactly which waiters share which persist.
    fn gated_persist() -> (PersistFn, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let mut first = true;
        let persist: PersistFn = Box::new(move || {
            if std::mem::take(&mut first) {
                entered_tx.send(()).expect("test is waiting");
                release_rx.recv().expect("test releases the gate");
            }
            Ok(())
        });
        (persist, entered_rx, release_tx)
    }

    #[test]
    fn waiters_queued_during_a_persist_share_the_next_one() {
        let (persist, entered, release) = gated_persist();
        let committer = GroupCommitter::start("test-commit", persist).expect("spawn");

        let first = committer.request();
        entered.recv().expect("first persist started");
        // The first persist is in progress: these all queue up behind it.
        let rest: Vec<_> = (0..20).map(|_| committer.request()).collect();
        release.send(()).expect("gate open");

        block_on(first).expect("first commit");
        for commit in rest {
            block_on(commit).expect("grouped commit");
        }
        assert_eq!(
            committer.stats(),
            CommitStats {
                commits: 21,
                persists: 2
            }
        );
    }

    #[test]
    fn a_failed_persist_fails_every_member_of_its_group() {
        let persist: PersistFn = Box::new(|| Err(StorageError::new(ErrorKind::NoSpace, "full")));
        let committer = GroupCommitter::start("test-commit", persist).expect("spawn");
        let commits: Vec<_> = (0..5).map(|_| committer.request()).collect();
        for commit in commits {
            let err = block_on(commit).expect_err("persist failed");
            assert_eq!(err.kind(), ErrorKind::NoSpace);
        }
    }

    #[test]
    fn drop_answers_queued_waiters_and_later_requests_fail_closed() {
        let (persist, entered, release) = gated_persist();
        let committer = GroupCommitter::start("test-commit", persist).expect("spawn");
        let first = committer.request();
        entered.recv().expect("first persist started");
        let queued = committer.request();
        release.send(()).expect("gate open");
        drop(committer);
        block_on(first).expect("answered before shutdown");
        block_on(queued).expect("answered by the final persist");

        let (persist, _entered, _release) = gated_persist();
        let committer = GroupCommitter::start("test-commit", persist).expect("spawn");
        committer.shared.queue.lock().closing = true;
        let err = block_on(committer.request()).expect_err("closing");
        assert_eq!(err.kind(), ErrorKind::Closed);
    }
}
