//! Ownership handoff: moving a partition's data to its new owner while both keep serving.
//!
//! After a commit, the old owner of each moving partition streams it to the new owner over a
//! dedicated bulk connection, in key order, in batches the receiver acknowledges once stored
//! (at most [`WINDOW`] unacknowledged, so a slow receiver slows the sender). Nothing
//! acknowledged is ever lost, and nothing is sent twice needlessly:
//!
//! - **Writes during the transfer.** While a transfer of a partition is pending, every write to
//!   it also leaves a durable *dirty mark* in the same storage batch. After the fold, the sender
//!   resends every marked key (clearing marks as the receiver acknowledges them) until none are
//!   left, then *freezes* the vnode — from then on every request for the partition is passed to
//!   the new owner — resends the last marks, and only then marks the transfer done, which gives
//!   the new owner the partition in the cluster state. Replica merges are idempotent and
//!   commutative, so resending an object the receiver already has is harmless.
//! - **Interruptions resume.** The receiver stores, with every batch, the last key it holds (its
//!   *cursor*, per commit). A transfer that is cut off — the receiver killed, the connection
//!   lost, the sender restarted — reopens, asks for the cursor and folds on from there. The dirty
//!   marks are on disk too, so writes that arrived behind the cursor while the transfer was
//!   stalled are still resent.
//! - **Then the old copy goes**: once the transfer is marked done, the old owner drops the
//!   partition's data and its cached objects, and passes stray requests on to the new owner.
//!
//! How many transfers a node sends at once is its `transfer-limit` (changeable at run time);
//! bandwidth per transfer is capped by `handoff_rate`. Progress (keys, bytes, rate, estimated
//! remaining) is kept in [`Transfers`] for `rill admin transfers`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rill_core::bkey::BKey;
use rill_core::cluster::{CommitId, PendingTransfer};
use rill_core::codec;
use rill_core::merge::MergeOptions;
use rill_core::object::Limits;
use rill_core::ring::{NodeName, PartitionId};
use rill_net::BulkStream;
use rill_net::time::Instant;
use serde::{Deserialize, Serialize};

use crate::coord::merge_options;
use crate::error::{NodeError, NodeResult};
use crate::node::{Node, RESERVED_PREFIX};
use crate::proto::{self, HandoffMsg, StreamOpen};
use crate::vnode::Vnode;

/// Unacknowledged batches a sender may have in flight.
const WINDOW: usize = 2;
/// Objects per batch, at most.
const BATCH_KEYS: usize = 1000;
/// Bytes per batch, about (a rate-limited transfer sends a quarter second's worth, so its
/// flow stays smooth and an interruption loses little).
const BATCH_BYTES: usize = 1024 * 1024;
/// How often the manager looks for transfers to start.
const TICK: Duration = Duration::from_secs(1);

/// One transfer as `rill admin transfers` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStatus {
    pub partition: PartitionId,
    pub from: NodeName,
    pub to: NodeName,
    /// "ownership" (a commit moved the partition).
    pub kind: String,
    /// What it is doing: "sending", "resending", "finishing", "waiting".
    pub phase: String,
    pub keys_sent: u64,
    pub bytes_sent: u64,
    /// Objects the partition holds, approximately (for the progress bar).
    pub keys_total: u64,
    /// Milliseconds since this attempt started.
    pub elapsed_ms: u64,
    /// The key the current attempt resumed after, if it did not start from the beginning.
    pub resumed: bool,
    /// Attempts so far (more than one: it was interrupted and resumed).
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// This node's outgoing transfers and the handoff counters.
pub struct Transfers {
    limit: AtomicUsize,
    active: Mutex<BTreeMap<PartitionId, Arc<Progress>>>,
    pub completed: AtomicU64,
    pub objects_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub objects_received: AtomicU64,
    pub failures: AtomicU64,
}

/// A running transfer's progress, updated by its task.
struct Progress {
    transfer: PendingTransfer,
    started: Mutex<Instant>,
    keys_total: AtomicU64,
    keys_sent: AtomicU64,
    bytes_sent: AtomicU64,
    phase: Mutex<&'static str>,
    running: std::sync::atomic::AtomicBool,
    resumed: std::sync::atomic::AtomicBool,
    attempts: AtomicU64,
    last_error: Mutex<Option<String>>,
    retry_at: Mutex<Option<Instant>>,
}

impl Transfers {
    pub fn new(limit: usize) -> Transfers {
        Transfers {
            limit: AtomicUsize::new(limit),
            active: Mutex::new(BTreeMap::new()),
            completed: AtomicU64::new(0),
            objects_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            objects_received: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// How many transfers may run at once.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    pub fn set_limit(&self, n: usize) {
        self.limit.store(n, Ordering::Relaxed);
    }

    /// Transfers running or waiting to retry.
    pub fn status(&self) -> Vec<TransferStatus> {
        self.active
            .lock()
            .values()
            .map(|p| TransferStatus {
                partition: p.transfer.partition,
                from: p.transfer.from.clone(),
                to: p.transfer.to.clone(),
                kind: "ownership".into(),
                phase: p.phase.lock().to_string(),
                keys_sent: p.keys_sent.load(Ordering::Relaxed),
                bytes_sent: p.bytes_sent.load(Ordering::Relaxed),
                keys_total: p.keys_total.load(Ordering::Relaxed),
                elapsed_ms: p.started.lock().elapsed().as_millis() as u64,
                resumed: p.resumed.load(Ordering::Relaxed),
                attempts: p.attempts.load(Ordering::Relaxed) as u32,
                last_error: p.last_error.lock().clone(),
            })
            .collect()
    }

    fn running(&self) -> usize {
        self.active
            .lock()
            .values()
            .filter(|p| p.running.load(Ordering::Relaxed))
            .count()
    }
}

/// The cursor of a transfer under `commit`, in the receiving partition's store.
fn cursor_key(commit: &CommitId) -> Vec<u8> {
    let mut k = vec![RESERVED_PREFIX, b'C'];
    k.extend_from_slice(&postcard::to_allocvec(commit).expect("a commit id serializes"));
    k
}

/// Limits for objects arriving by handoff: none. An object stored under earlier limits must
/// move with its partition, not be refused on the way.
const NO_LIMITS: Limits = Limits {
    sibling_warn: usize::MAX,
    sibling_max: usize::MAX,
    size_warn: usize::MAX,
    size_max: usize::MAX,
};

/// Merge rules when a bucket's properties are not known here yet: keep every sibling.
const KEEP_ALL: MergeOptions = MergeOptions {
    allow_mult: true,
    last_write_wins: false,
    dvv_enabled: true,
    datatype: None,
};

impl Node {
    /// The handoff manager: starts this node's pending transfers, up to the limit, whenever the
    /// cluster state changes and once a second.
    pub(crate) async fn run_handoffs(self) {
        let mut changed = self.inner.view_changed.subscribe();
        let mut shutdown = self.shutdown_signal();
        loop {
            self.start_transfers();
            tokio::select! {
                _ = changed.changed() => {}
                _ = rill_net::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    fn start_transfers(&self) {
        let view = self.view();
        let mine: Vec<PendingTransfer> = view
            .state
            .pending()
            .into_iter()
            .filter(|t| t.from == *self.name())
            .collect();
        let transfers = &self.inner.transfers;
        // Forget transfers that are no longer pending (done, or replaced by another commit).
        transfers.active.lock().retain(|p, prog| {
            prog.running.load(Ordering::Relaxed)
                || mine
                    .iter()
                    .any(|t| t.partition == *p && t.commit == prog.transfer.commit)
        });
        for t in mine {
            if transfers.running() >= transfers.limit() {
                return;
            }
            let progress = {
                let mut active = transfers.active.lock();
                let entry = active.entry(t.partition).or_insert_with(|| {
                    Arc::new(Progress {
                        transfer: t.clone(),
                        started: Mutex::new(Instant::now()),
                        keys_total: AtomicU64::new(0),
                        keys_sent: AtomicU64::new(0),
                        bytes_sent: AtomicU64::new(0),
                        phase: Mutex::new("waiting"),
                        running: Default::default(),
                        resumed: Default::default(),
                        attempts: AtomicU64::new(0),
                        last_error: Mutex::new(None),
                        retry_at: Mutex::new(None),
                    })
                });
                let p = entry.clone();
                let waiting = p.retry_at.lock().is_some_and(|at| Instant::now() < at);
                if p.running.load(Ordering::Relaxed) || waiting || !self.is_up(&t.to) {
                    continue;
                }
                p.running.store(true, Ordering::Relaxed);
                p
            };
            let node = self.clone();
            tokio::spawn(async move {
                progress.attempts.fetch_add(1, Ordering::Relaxed);
                *progress.started.lock() = Instant::now();
                let t = progress.transfer.clone();
                match node.send_partition(&t, &progress).await {
                    Ok(()) => {
                        node.inner
                            .transfers
                            .completed
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::info!(partition = t.partition, to = %t.to, keys = progress.keys_sent.load(Ordering::Relaxed), "handoff complete");
                    }
                    Err(e) => {
                        node.inner
                            .transfers
                            .failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(partition = t.partition, to = %t.to, error = %e, "handoff interrupted; it will resume");
                        *progress.last_error.lock() = Some(e.to_string());
                        *progress.phase.lock() = "waiting";
                        *progress.retry_at.lock() = Some(Instant::now() + TICK);
                    }
                }
                progress.running.store(false, Ordering::Relaxed);
                node.inner.view_changed.send_modify(|n| *n += 1);
            });
        }
    }

    /// Sends partition `t.partition` to `t.to`, then hands it over.
    async fn send_partition(&self, t: &PendingTransfer, progress: &Progress) -> NodeResult<()> {
        let vnode = match self.vnode(t.partition) {
            Some(v) => v,
            None => self.open_vnode(t.partition)?,
        };
        progress
            .keys_total
            .store(vnode.approximate_len(), Ordering::Relaxed);
        let open = StreamOpen::Handoff {
            partition: t.partition,
            commit: t.commit.clone(),
        };
        let peer = rill_net::PeerName::from(t.to.as_str());
        let stream = self
            .inner
            .peers
            .open_stream(&peer, proto::encode(&open))
            .await
            .map_err(|e| NodeError::Unreachable(e.to_string()))?;
        let mut s = Sender {
            node: self.clone(),
            stream,
            progress,
            seq: 0,
            unacked: VecDeque::new(),
            rate: self.inner.config.handoff_rate,
        };
        let mut cursor = match s.recv().await? {
            HandoffMsg::Resume { cursor } => cursor,
            HandoffMsg::Error(e) => return Err(NodeError::Unreachable(e)),
            other => return Err(protocol(&other)),
        };
        progress.resumed.store(cursor.is_some(), Ordering::Relaxed);
        *progress.phase.lock() = "sending";

        // The fold, from where the receiver stands.
        let batch_bytes = match s.rate {
            0 => BATCH_BYTES,
            rate => ((rate / 4) as usize).clamp(16 * 1024, BATCH_BYTES),
        };
        loop {
            let (items, last) = read_batch(&vnode, cursor.clone(), batch_bytes).await?;
            if items.is_empty() {
                break;
            }
            s.send_batch(items, last.clone()).await?;
            cursor = last;
        }
        s.drain().await?;

        // What changed behind the fold, until nothing does; then freeze and resend the rest.
        *progress.phase.lock() = "resending";
        while s.resend_dirty(&vnode).await? > 0 {}
        *progress.phase.lock() = "finishing";
        let to = t.to.clone();
        let frozen = vnode.clone();
        tokio::task::spawn_blocking(move || frozen.freeze(to))
            .await
            .map_err(|e| NodeError::Unreachable(e.to_string()))?;
        s.resend_dirty(&vnode).await?;
        s.seq += 1;
        s.send(&HandoffMsg::Done { seq: s.seq }).await?;
        s.expect_ack(s.seq).await?;

        // The receiver holds everything: it owns the partition now.
        let me = self.name().clone();
        self.update_state(|state| Ok(state.complete_transfer(t.partition, &t.commit, &me)))?;
        self.broadcast_state().await;
        self.drop_vnode(t.partition)?;
        Ok(())
    }

    /// Receives a partition from `peer` (the server side of a handoff stream).
    pub(crate) async fn receive_handoff(
        &self,
        peer: &NodeName,
        partition: PartitionId,
        commit: CommitId,
        mut stream: BulkStream,
    ) {
        if let Err(e) = self.receive(peer, partition, &commit, &mut stream).await {
            tracing::warn!(%peer, partition, error = %e, "receiving a handoff failed");
            let _ = stream
                .send(proto::encode(&HandoffMsg::Error(e.to_string())))
                .await;
        }
    }

    async fn receive(
        &self,
        peer: &NodeName,
        partition: PartitionId,
        commit: &CommitId,
        stream: &mut BulkStream,
    ) -> NodeResult<()> {
        let expected = self
            .view()
            .state
            .pending_transfer(partition)
            .is_some_and(|t| t.from == *peer && t.to == *self.name() && t.commit == *commit);
        if !expected {
            return Err(NodeError::BadRequest(format!(
                "no transfer of partition {partition} from {peer} to {} is pending here (yet)",
                self.name()
            )));
        }
        let vnode = self.open_vnode(partition)?;
        let ckey = cursor_key(commit);
        let cursor = vnode.store().get(&ckey)?;
        send(stream, &HandoffMsg::Resume { cursor }).await?;
        loop {
            let msg = match stream.recv().await {
                Some(Ok(raw)) => proto::decode::<HandoffMsg>(&raw)?,
                Some(Err(e)) => return Err(NodeError::Unreachable(e.to_string())),
                None => return Err(NodeError::Unreachable("the sender went away".into())),
            };
            match msg {
                HandoffMsg::Batch { seq, items, cursor } => {
                    let (node, v, ck) = (self.clone(), vnode.clone(), ckey.clone());
                    tokio::task::spawn_blocking(move || node.store_batch(&v, items, cursor, &ck))
                        .await
                        .map_err(|e| NodeError::Unreachable(e.to_string()))??;
                    self.commit().await?;
                    send(stream, &HandoffMsg::Ack { seq }).await?;
                }
                HandoffMsg::Done { seq } => {
                    vnode.store().delete(&ckey)?;
                    self.commit().await?;
                    send(stream, &HandoffMsg::Ack { seq }).await?;
                    return Ok(());
                }
                other => return Err(protocol(&other)),
            }
        }
    }

    /// Merges a batch into the receiving vnode, then records how far the fold has come.
    fn store_batch(
        &self,
        vnode: &Vnode,
        items: Vec<(Bytes, Bytes)>,
        cursor: Option<Bytes>,
        cursor_key: &[u8],
    ) -> NodeResult<()> {
        for (skey, raw) in items {
            let bkey = BKey::from_storage_key(&skey)
                .map_err(|e| NodeError::Corrupt(format!("handoff key: {e}")))?;
            let obj = codec::decode_bytes(raw)
                .map_err(|e| NodeError::Corrupt(format!("handoff object: {e}")))?;
            let merge = self
                .metadata()
                .bucket_props(&bkey.bucket)
                .map(|p| merge_options(&p))
                .unwrap_or(KEEP_ALL);
            vnode.replica_put(&bkey, &obj, &merge, &NO_LIMITS)?;
            self.inner
                .transfers
                .objects_received
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(c) = cursor {
            vnode.store().put(cursor_key, &c)?;
        }
        Ok(())
    }
}

/// The sending end of one transfer attempt.
struct Sender<'a> {
    node: Node,
    stream: BulkStream,
    progress: &'a Progress,
    seq: u64,
    unacked: VecDeque<u64>,
    /// Bytes per second, 0 for no limit.
    rate: u64,
}

impl Sender<'_> {
    async fn send(&mut self, msg: &HandoffMsg) -> NodeResult<usize> {
        send(&mut self.stream, msg).await
    }

    async fn recv(&mut self) -> NodeResult<HandoffMsg> {
        match self.stream.recv().await {
            Some(Ok(raw)) => proto::decode(&raw),
            Some(Err(e)) => Err(NodeError::Unreachable(e.to_string())),
            None => Err(NodeError::Unreachable("the receiver went away".into())),
        }
    }

    async fn expect_ack(&mut self, seq: u64) -> NodeResult<()> {
        match self.recv().await? {
            HandoffMsg::Ack { seq: got } if got == seq => Ok(()),
            HandoffMsg::Error(e) => Err(NodeError::Unreachable(format!("the receiver: {e}"))),
            other => Err(protocol(&other)),
        }
    }

    /// Sends a batch, keeping at most [`WINDOW`] unacknowledged.
    async fn send_batch(
        &mut self,
        items: Vec<(Bytes, Bytes)>,
        cursor: Option<Bytes>,
    ) -> NodeResult<()> {
        let keys = items.len() as u64;
        self.seq += 1;
        let started = Instant::now();
        let bytes = self
            .send(&HandoffMsg::Batch {
                seq: self.seq,
                items,
                cursor,
            })
            .await?;
        self.unacked.push_back(self.seq);
        let transfers = &self.node.inner.transfers;
        transfers.objects_sent.fetch_add(keys, Ordering::Relaxed);
        transfers
            .bytes_sent
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.progress.keys_sent.fetch_add(keys, Ordering::Relaxed);
        self.progress
            .bytes_sent
            .fetch_add(bytes as u64, Ordering::Relaxed);
        if self.unacked.len() >= WINDOW {
            let seq = self.unacked.pop_front().expect("non-empty");
            self.expect_ack(seq).await?;
        }
        if self.rate > 0 {
            let budget = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
            if let Some(rest) = budget.checked_sub(started.elapsed()) {
                rill_net::time::sleep(rest).await;
            }
        }
        Ok(())
    }

    async fn drain(&mut self) -> NodeResult<()> {
        while let Some(seq) = self.unacked.pop_front() {
            self.expect_ack(seq).await?;
        }
        Ok(())
    }

    /// Resends every key marked dirty, clearing the marks once acknowledged. Returns how many.
    async fn resend_dirty(&mut self, vnode: &Arc<Vnode>) -> NodeResult<usize> {
        let v = vnode.clone();
        let keys = tokio::task::spawn_blocking(move || v.dirty_keys())
            .await
            .map_err(|e| NodeError::Unreachable(e.to_string()))??;
        for chunk in keys.chunks(BATCH_KEYS) {
            let mut items = Vec::with_capacity(chunk.len());
            for k in chunk {
                if let Some(raw) = vnode.raw_get(k)? {
                    items.push((k.clone(), raw));
                }
            }
            let items = vnode.whole_objects(items)?;
            self.send_batch(items, None).await?;
            self.drain().await?;
            for k in chunk {
                vnode.clear_dirty(k)?;
            }
        }
        Ok(keys.len())
    }
}

/// Reads the next batch of objects after `cursor` (on a blocking thread).
async fn read_batch(
    vnode: &Arc<Vnode>,
    cursor: Option<Bytes>,
    batch_bytes: usize,
) -> NodeResult<(Vec<(Bytes, Bytes)>, Option<Bytes>)> {
    let v = vnode.clone();
    tokio::task::spawn_blocking(move || {
        let mut items = Vec::new();
        let mut bytes = 0;
        for item in v.scan_objects(cursor.as_deref()) {
            let (k, val) = item?;
            bytes += k.len() + val.len();
            items.push((k, val));
            if items.len() >= BATCH_KEYS || bytes >= batch_bytes {
                break;
            }
        }
        let last = items.last().map(|(k, _)| k.clone());
        Ok((v.whole_objects(items)?, last))
    })
    .await
    .map_err(|e| NodeError::Unreachable(e.to_string()))?
}

async fn send(stream: &mut BulkStream, msg: &HandoffMsg) -> NodeResult<usize> {
    let raw = proto::encode(msg);
    let len = raw.len();
    stream
        .send(raw)
        .await
        .map_err(|e| NodeError::Unreachable(e.to_string()))?;
    Ok(len)
}

fn protocol(msg: &HandoffMsg) -> NodeError {
    let kind = match msg {
        HandoffMsg::Resume { .. } => "resume",
        HandoffMsg::Batch { .. } => "batch",
        HandoffMsg::Ack { .. } => "ack",
        HandoffMsg::Done { .. } => "done",
        HandoffMsg::Error(_) => "error",
    };
    NodeError::Unreachable(format!("handoff protocol error: unexpected {kind} message"))
}
