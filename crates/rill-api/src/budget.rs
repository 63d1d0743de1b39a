//! The node-wide budget for request bytes held in memory, and the growable buffer that charges
//! it as a request's bytes arrive.
//!
//! Every listener reads a request into a [`BudgetedBuf`]. The buffer grows only as bytes
//! actually arrive (never to a length the client declared), and before it grows it charges
//! the new capacity to the [`RequestBudget`]: a semaphore whose permits are bytes. When the
//! budget is spent the charge waits — the connection stops reading its socket, so TCP pushes
//! back on the client — until other requests finish and give their bytes back. A request that
//! could not fit the budget even alone is refused instead of waiting forever.
//!
//! Each buffer holds its first [`BudgetedBuf::free`] bytes without charge: every connection
//! needs a small read buffer anyway, and requests that small (nearly all of them) then never
//! wait behind large ones, so pings and ordinary reads and writes keep flowing while large or
//! hostile requests queue for the budget. What that adds is bounded by the number of
//! connections a listener admits.
//!
//! Nothing here knows a protocol: the HTTP and PB listeners use it alike, and so can any other
//! listener (the internode one, when it comes).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::sync::Semaphore;

/// Why a request's bytes could not be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The request needs more than the whole budget.
    #[error(
        "request of at least {needed} bytes exceeds the node's request memory budget of {capacity} bytes"
    )]
    TooLarge {
        /// The bytes the request needed when it was refused.
        needed: usize,
        /// The whole budget.
        capacity: usize,
    },
}

/// The budget's figures, for `/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStats {
    /// The whole budget, in bytes.
    pub capacity: usize,
    /// Bytes charged right now.
    pub held: usize,
    /// Charges that had to wait for other requests to give bytes back.
    pub waits: u64,
    /// Requests refused because they could not fit the whole budget.
    pub refusals: u64,
}

/// A byte budget shared by every connection of the node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RequestBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    permits: Semaphore,
    capacity: usize,
    waits: AtomicU64,
    refusals: AtomicU64,
}

impl RequestBudget {
    /// A budget of `capacity` bytes (at most what a semaphore can count).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.min(Semaphore::MAX_PERMITS);
        RequestBudget {
            inner: Arc::new(Inner {
                permits: Semaphore::new(capacity),
                capacity,
                waits: AtomicU64::new(0),
                refusals: AtomicU64::new(0),
            }),
        }
    }

    /// The whole budget, in bytes.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    pub fn stats(&self) -> BudgetStats {
        let inner = &self.inner;
        BudgetStats {
            capacity: inner.capacity,
            held: inner.capacity - inner.permits.available_permits().min(inner.capacity),
            waits: inner.waits.load(Ordering::Relaxed),
            refusals: inner.refusals.load(Ordering::Relaxed),
        }
    }

    /// An empty charge, to grow with [`Lease::resize`].
    pub fn lease(&self) -> Lease {
        Lease {
            budget: self.clone(),
            held: 0,
        }
    }

    /// Counts a request refused before any of it was read (its declared size alone exceeds
    /// the budget), and says why.
    pub fn refuse(&self, needed: usize) -> BudgetError {
        self.inner.refusals.fetch_add(1, Ordering::Relaxed);
        BudgetError::TooLarge {
            needed,
            capacity: self.inner.capacity,
        }
    }

    /// Takes up to `n` bytes (at most what one semaphore call can count), waiting for them
    /// when they are not free; returns how many it took. Dropping the future takes nothing.
    async fn take(&self, n: usize) -> usize {
        let step = n.min(u32::MAX as usize) as u32;
        let permits = &self.inner.permits;
        match permits.try_acquire_many(step) {
            Ok(p) => p.forget(),
            Err(_) => {
                self.inner.waits.fetch_add(1, Ordering::Relaxed);
                permits
                    .acquire_many(step)
                    .await
                    .expect("the budget's semaphore is never closed")
                    .forget();
            }
        }
        step as usize
    }

    fn give_back(&self, n: usize) {
        if n > 0 {
            self.inner.permits.add_permits(n);
        }
    }
}

/// Bytes charged to the budget on behalf of one request; given back when dropped.
#[derive(Debug)]
pub struct Lease {
    budget: RequestBudget,
    held: usize,
}

impl Lease {
    /// Bytes charged.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Makes the charge exactly `bytes`: gives back any excess at once, or waits for the
    /// missing bytes. Refuses (changing nothing) a charge larger than the whole budget.
    /// Cancel-safe: dropped while waiting, the lease holds what it had taken so far.
    pub async fn resize(&mut self, bytes: usize) -> Result<(), BudgetError> {
        if bytes > self.budget.capacity() {
            return Err(self.budget.refuse(bytes));
        }
        while self.held < bytes {
            self.held += self.budget.take(bytes - self.held).await;
        }
        if self.held > bytes {
            self.budget.give_back(self.held - bytes);
            self.held = bytes;
        }
        Ok(())
    }

    /// Gives back everything beyond `bytes` (never waits).
    pub fn shrink_to(&mut self, bytes: usize) {
        if self.held > bytes {
            self.budget.give_back(self.held - bytes);
            self.held = bytes;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
    }
}

/// A request buffer that grows as bytes arrive and charges its capacity beyond the first
/// `free` bytes to the budget before it allocates.
#[derive(Debug)]
pub struct BudgetedBuf {
    buf: BytesMut,
    /// The size of the allocation behind `buf`. Frames split off the front shrink what
    /// `buf.capacity()` reports, but the allocation lives on until the buffer is replaced.
    allocated: usize,
    lease: Lease,
    free: usize,
}

impl BudgetedBuf {
    /// An empty buffer of `free` bytes' capacity, none of them charged.
    pub fn new(budget: &RequestBudget, free: usize) -> Self {
        let buf = BytesMut::with_capacity(free);
        BudgetedBuf {
            allocated: buf.capacity(),
            buf,
            lease: budget.lease(),
            free,
        }
    }

    /// The bytes a buffer holds without charge.
    pub fn free(&self) -> usize {
        self.free
    }

    /// The buffered bytes, to read into (within its capacity) and to take frames from.
    pub fn bytes_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Makes room for `additional` more bytes. The capacity at least doubles when it grows
    /// (so a large request is copied a bounded number of times), but never past `upto` bytes
    /// in all when the caller knows where the request ends, nor past what the budget could
    /// ever grant. The new capacity is charged before it is allocated: this waits while the
    /// budget is spent, and fails if the request could not fit the whole budget. (The old
    /// buffer, copied into the new one, lives on uncharged for the length of that copy.)
    pub async fn reserve(&mut self, additional: usize, upto: usize) -> Result<(), BudgetError> {
        let needed = self.buf.len() + additional;
        if self.buf.capacity() >= needed {
            return Ok(());
        }
        let most = self.lease.budget.capacity().saturating_add(self.free);
        let doubled = (self.allocated * 2).max(self.free);
        // Never smaller than the free bytes: they cost nothing and let small requests that
        // arrive together be read at once.
        let capacity = doubled.min(upto.max(self.free)).min(most).max(needed);
        // While the old allocation is still held, both are charged.
        self.lease
            .resize((capacity.max(self.allocated)).saturating_sub(self.free))
            .await?;
        self.replace(capacity);
        Ok(())
    }

    /// After the requests taken from the buffer were served: returns the buffer to its free
    /// size (keeping any bytes of the next request) and gives the rest of the charge back.
    pub fn settle(&mut self) {
        let keep = self.free.max(self.buf.len());
        if self.allocated > keep {
            self.replace(keep);
        }
    }

    /// Moves the buffered bytes into a new allocation of `capacity` bytes and makes the charge
    /// match it (the old allocation is freed here).
    fn replace(&mut self, capacity: usize) {
        let mut fresh = BytesMut::with_capacity(capacity);
        fresh.extend_from_slice(&self.buf);
        self.allocated = fresh.capacity();
        self.buf = fresh;
        self.lease
            .shrink_to(self.allocated.saturating_sub(self.free));
    }

    /// The whole buffer as one value, with the charge that must be held until the request
    /// it carries has been served.
    pub fn into_parts(self) -> (Bytes, Lease) {
        (self.buf.freeze(), self.lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn leases_take_and_give_back_bytes() {
        let budget = RequestBudget::new(1000);
        let mut a = budget.lease();
        a.resize(600).await.unwrap();
        assert_eq!(budget.stats().held, 600);
        a.resize(100).await.unwrap();
        assert_eq!(budget.stats().held, 100);
        assert_eq!(
            a.resize(1001).await,
            Err(BudgetError::TooLarge {
                needed: 1001,
                capacity: 1000
            })
        );
        assert_eq!(a.held(), 100, "a refused resize changes nothing");
        drop(a);
        let s = budget.stats();
        assert_eq!((s.held, s.waits, s.refusals), (0, 0, 1));
    }

    #[tokio::test]
    async fn a_charge_waits_until_bytes_are_given_back() {
        let budget = RequestBudget::new(1000);
        let mut first = budget.lease();
        first.resize(900).await.unwrap();
        let b2 = budget.clone();
        let waiting = tokio::spawn(async move {
            let mut second = b2.lease();
            second.resize(500).await.unwrap();
            second
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "only 100 bytes are free");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting charge proceeds once bytes are back")
            .unwrap();
        assert_eq!(second.held(), 500);
        assert_eq!(budget.stats().waits, 1);
    }

    #[tokio::test]
    async fn the_buffer_grows_with_what_arrives_and_charges_beyond_its_free_bytes() {
        let budget = RequestBudget::new(1 << 20);
        let mut buf = BudgetedBuf::new(&budget, 1024);
        buf.reserve(100, usize::MAX).await.unwrap();
        assert_eq!(budget.stats().held, 0, "within the free bytes");
        buf.bytes_mut().extend_from_slice(&[7; 1000]);
        // A request declared as 50 MB that has sent 1000 bytes costs about that, not 50 MB.
        buf.reserve(1000, 50_000_000).await.unwrap();
        assert!(buf.bytes_mut().capacity() >= 2000);
        assert_eq!(budget.stats().held, buf.bytes_mut().capacity() - 1024);
        assert!(budget.stats().held <= 1024 + 1000);
        // Growth stops at the request's end.
        buf.reserve(5000, 3000).await.unwrap();
        assert_eq!(buf.bytes_mut().capacity(), 6000);
        let (bytes, lease) = buf.into_parts();
        assert_eq!(&bytes[..], &[7; 1000][..]);
        assert_eq!(lease.held(), 6000 - 1024);
        drop((bytes, lease));
        assert_eq!(budget.stats().held, 0);
    }

    #[tokio::test]
    async fn settling_returns_to_the_free_size_and_keeps_the_next_bytes() {
        let budget = RequestBudget::new(1 << 20);
        let mut buf = BudgetedBuf::new(&budget, 64);
        buf.reserve(10_000, usize::MAX).await.unwrap();
        assert!(budget.stats().held > 0);
        buf.bytes_mut().extend_from_slice(b"next");
        buf.settle();
        assert_eq!(buf.bytes_mut().capacity(), 64);
        assert_eq!(&buf.bytes_mut()[..], b"next");
        assert_eq!(budget.stats().held, 0);
    }

    #[tokio::test]
    async fn small_requests_are_read_a_free_buffer_at_a_time() {
        let budget = RequestBudget::new(1 << 20);
        let mut buf = BudgetedBuf::new(&budget, 1024);
        buf.bytes_mut().extend_from_slice(&[1; 1024]);
        drop(buf.bytes_mut().split_to(1024));
        // Only a length prefix is wanted, but the spent buffer regrows to its free size.
        buf.reserve(4, 4).await.unwrap();
        assert!(buf.bytes_mut().capacity() >= 1024);
        assert_eq!(budget.stats().held, 0);
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_is_refused_not_queued() {
        let budget = RequestBudget::new(4096);
        let mut buf = BudgetedBuf::new(&budget, 1024);
        let e = buf.reserve(10_000, usize::MAX).await.unwrap_err();
        assert!(matches!(e, BudgetError::TooLarge { capacity: 4096, .. }));
        assert_eq!(budget.stats().refusals, 1);
        assert_eq!(budget.stats().held, 0);
    }
}
