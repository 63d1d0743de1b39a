//! Key and bucket listing across the cluster: streamed in chunks, never collected whole.
//!
//! **Keys** are listed from a coverage plan: a covering set of partitions `k, k+N, k+2N, …`
//! (every preference list of N consecutive partitions contains at least one of them), with the
//! offset `k` chosen so that every covering partition's owner is reachable. Each node scans its
//! covering partitions (this node locally, the others over a dedicated bulk connection), and a
//! partition reports a key only if it is the first covering partition of that key's preference
//! list, so each key is reported exactly once cluster-wide without any de-duplication state.
//!
//! **Buckets**: every node that owns partitions streams the buckets it stores, in storage
//! order, and the coordinator merges the sorted streams, skipping repeats — memory stays
//! constant however many buckets there are.
//!
//! Scans run on blocking threads and feed bounded channels: a slow client slows the scans, and a
//! client that goes away stops them at the next chunk. A node that cannot be reached, or fails
//! in the middle, turns the listing into an error, never into a silently short list.

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use rill_core::bkey::{BKey, Bucket};
use rill_core::ring::{NodeName, PartitionId, Ring};
use tokio::sync::mpsc;

use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::proto::{self, ListMsg, StreamOpen};

/// Keys or buckets per streamed chunk.
pub(crate) const CHUNK: usize = 1000;
/// Chunks buffered ahead of a slow reader.
const BUFFERED_CHUNKS: usize = 4;

/// A coverage plan: the covering partitions, and which node scans which of them.
type Coverage = (Vec<PartitionId>, BTreeMap<NodeName, Vec<PartitionId>>);

/// A stream of chunks of keys (or bucket names); ends after the last chunk or the first error.
pub type KeyChunks = mpsc::Receiver<NodeResult<Vec<Bytes>>>;

impl Node {
    /// Streams every key of a bucket, from the whole cluster.
    pub fn list_keys(&self, bucket: &Bucket) -> NodeResult<KeyChunks> {
        let props = self.inner.metadata.bucket_props(bucket)?;
        let n = props.n_val.max(1);
        let (covering, by_node) = self.coverage(n)?;
        let (tx, rx) = mpsc::channel(BUFFERED_CHUNKS);
        for (owner, partitions) in by_node {
            let tx = tx.clone();
            if owner == *self.name() {
                let (node, bucket, covering) = (self.clone(), bucket.clone(), covering.clone());
                tokio::task::spawn_blocking(move || {
                    scan_keys(&node, &bucket, &partitions, &covering, n, &tx);
                });
            } else {
                let open = StreamOpen::ListKeys {
                    btype: bucket.btype.clone(),
                    bucket: bucket.name.clone(),
                    partitions,
                    covering: covering.clone(),
                    n,
                };
                tokio::spawn(self.clone().relay_stream(owner, open, tx));
            }
        }
        Ok(rx)
    }

    /// Streams the names of every bucket of a type that holds at least one key, in storage
    /// order, merged from every node that owns partitions.
    pub fn list_buckets(&self, btype: &str) -> NodeResult<KeyChunks> {
        self.inner.metadata.check_type_active(btype)?;
        let btype = Bytes::copy_from_slice(btype.as_bytes());
        let view = self.view();
        let mut sources = Vec::new();
        for owner in view.ring.members() {
            if !self.is_up(&owner) {
                return Err(NodeError::Unreachable(format!(
                    "cannot list buckets: {owner} is unreachable"
                )));
            }
            let (tx, rx) = mpsc::channel(BUFFERED_CHUNKS);
            if owner == *self.name() {
                let (node, btype) = (self.clone(), btype.clone());
                tokio::task::spawn_blocking(move || local_buckets(&node, &btype, &tx));
            } else {
                let open = StreamOpen::ListBuckets {
                    btype: btype.clone(),
                };
                tokio::spawn(self.clone().relay_stream(owner, open, tx));
            }
            sources.push(rx);
        }
        let (tx, rx) = mpsc::channel(BUFFERED_CHUNKS);
        tokio::spawn(merge_sorted(sources, tx));
        Ok(rx)
    }

    /// The covering partitions for replicas of `n`, and which node scans which of them.
    fn coverage(&self, n: u32) -> NodeResult<Coverage> {
        let view = self.view();
        let size = view.ring.size();
        let step = n.min(size);
        let mut unreachable = Vec::new();
        for offset in 0..step {
            let covering: Vec<PartitionId> = (offset..size).step_by(step as usize).collect();
            let down: Vec<PartitionId> = covering
                .iter()
                .copied()
                .filter(|&p| !self.is_up(view.ring.owner(p).expect("partition in ring")))
                .collect();
            if down.is_empty() {
                let mut by_node: BTreeMap<NodeName, Vec<PartitionId>> = BTreeMap::new();
                for &p in &covering {
                    let owner = view.ring.owner(p).expect("partition in ring").clone();
                    by_node.entry(owner).or_default().push(p);
                }
                return Ok((covering, by_node));
            }
            unreachable = down;
        }
        Err(NodeError::Unreachable(format!(
            "cannot cover the ring: the owners of partitions {unreachable:?} are unreachable"
        )))
    }

    /// Opens a listing stream to `peer` and passes its chunks on, or an error if it fails.
    async fn relay_stream(
        self,
        peer: NodeName,
        open: StreamOpen,
        tx: mpsc::Sender<NodeResult<Vec<Bytes>>>,
    ) {
        let failed = |e: String| NodeError::Unreachable(format!("listing on {peer}: {e}"));
        let name = rill_net::PeerName::from(peer.as_str());
        let mut stream = match self
            .inner
            .peers
            .open_stream(&name, proto::encode(&open))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(failed(e.to_string()))).await;
                return;
            }
        };
        loop {
            let msg = match stream.recv().await {
                Some(Ok(raw)) => proto::decode::<ListMsg>(&raw),
                Some(Err(e)) => Err(failed(e.to_string())),
                None => Err(failed("the stream ended early".into())),
            };
            let item = match msg {
                Ok(ListMsg::Chunk(names)) => Ok(names),
                Ok(ListMsg::End) => return,
                Ok(ListMsg::Error(e)) => Err(failed(e)),
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    }
}

/// Scans `partitions` here for the keys of `bucket` each is first to cover, into `tx`
/// (blocking; run it on a blocking thread).
pub(crate) fn scan_keys(
    node: &Node,
    bucket: &Bucket,
    partitions: &[PartitionId],
    covering: &[PartitionId],
    n: u32,
    tx: &mpsc::Sender<NodeResult<Vec<Bytes>>>,
) {
    let shape = ring_shape(node.ring_size());
    let mut chunk = Vec::with_capacity(CHUNK);
    for &p in partitions {
        let result = node
            .vnode(p)
            .ok_or_else(|| {
                NodeError::Unreachable(format!("partition {p} is not held by {}", node.name()))
            })
            .and_then(|v| {
                v.fold_keys(bucket, |key| {
                    let bkey = BKey {
                        bucket: bucket.clone(),
                        key,
                    };
                    if first_covering(&shape, &bkey, n, covering) == p {
                        chunk.push(bkey.key);
                        if chunk.len() == CHUNK {
                            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                            return tx.blocking_send(Ok(full)).is_ok();
                        }
                    }
                    true
                })
            });
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        if tx.is_closed() {
            return;
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
}

/// Streams the buckets of `btype` stored in this node's vnodes, in storage order: each step
/// asks every vnode for its first bucket past the last one sent and takes the smallest.
pub(crate) fn local_buckets(node: &Node, btype: &[u8], tx: &mpsc::Sender<NodeResult<Vec<Bytes>>>) {
    let vnodes = node.vnodes();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut last: Option<Bucket> = None;
    loop {
        let next = vnodes
            .iter()
            .map(|v| v.next_bucket(btype, last.as_ref()))
            .filter_map(Result::transpose)
            .try_fold(None::<(Vec<u8>, Bucket)>, |best, found| {
                let found = found?;
                let key = found.storage_prefix();
                Ok(match best {
                    Some((k, b)) if k <= key => Some((k, b)),
                    _ => Some((key, found)),
                })
            });
        match next {
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            Ok(None) => break,
            Ok(Some((_, bucket))) => {
                chunk.push(bucket.name.clone());
                last = Some(bucket);
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if tx.blocking_send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
}

/// Storage order of bucket names within one type: by length, then bytes (the name is stored
/// after its 16-bit length).
fn storage_order(a: &Bytes, b: &Bytes) -> Ordering {
    (a.len(), a.as_ref()).cmp(&(b.len(), b.as_ref()))
}

/// Merges sorted streams of names into one sorted stream without repeats.
async fn merge_sorted(
    mut sources: Vec<mpsc::Receiver<NodeResult<Vec<Bytes>>>>,
    tx: mpsc::Sender<NodeResult<Vec<Bytes>>>,
) {
    let mut heads: Vec<VecDeque<Bytes>> = vec![VecDeque::new(); sources.len()];
    let mut done = vec![false; sources.len()];
    let mut last: Option<Bytes> = None;
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        // Refill every source whose buffered names ran out.
        for i in 0..sources.len() {
            while heads[i].is_empty() && !done[i] {
                match sources[i].recv().await {
                    Some(Ok(names)) => heads[i].extend(names),
                    Some(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    None => done[i] = true,
                }
            }
        }
        let Some(i) = (0..heads.len())
            .filter(|&i| !heads[i].is_empty())
            .min_by(|&a, &b| storage_order(&heads[a][0], &heads[b][0]))
        else {
            break;
        };
        let name = heads[i].pop_front().expect("non-empty");
        if last.as_ref() == Some(&name) {
            continue;
        }
        last = Some(name.clone());
        chunk.push(name);
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if tx.send(Ok(full)).await.is_err() {
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(Ok(chunk)).await;
    }
}

/// The first partition of the covering set in a key's preference list.
fn first_covering(shape: &Ring, bkey: &BKey, n: u32, covering: &[PartitionId]) -> PartitionId {
    shape
        .preflist(&bkey.chash(), n)
        .find(|p| covering.binary_search(p).is_ok())
        .unwrap_or(covering[0])
}

/// A ring of `size` partitions for position arithmetic only: preference lists depend on the
/// ring's size, not on who owns what.
fn ring_shape(size: u32) -> Ring {
    Ring::new_single(size, NodeName::from("-")).expect("a valid ring size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sorted_streams_merge_without_repeats() {
        let mut sources = Vec::new();
        for names in [vec!["a", "c", "bb"], vec!["b", "c", "aa", "bb"], vec![]] {
            let (tx, rx) = mpsc::channel(4);
            let chunk: Vec<Bytes> = names.into_iter().map(Bytes::from).collect();
            tokio::spawn(async move {
                // One name per chunk, so chunk boundaries are exercised too.
                for n in chunk {
                    let _ = tx.send(Ok(vec![n])).await;
                }
            });
            sources.push(rx);
        }
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(merge_sorted(sources, tx));
        let mut all = Vec::new();
        while let Some(c) = rx.recv().await {
            all.extend(c.unwrap());
        }
        let want: Vec<Bytes> = ["a", "b", "c", "aa", "bb"]
            .into_iter()
            .map(Bytes::from)
            .collect();
        assert_eq!(all, want);
    }

    #[tokio::test]
    async fn an_error_in_one_source_ends_the_merge_with_it() {
        let (ta, ra) = mpsc::channel(4);
        let (tb, rb) = mpsc::channel(4);
        ta.send(Ok(vec![Bytes::from_static(b"a")])).await.unwrap();
        tb.send(Err(NodeError::Unreachable("gone".into())))
            .await
            .unwrap();
        drop((ta, tb));
        let (tx, mut rx) = mpsc::channel(4);
        merge_sorted(vec![ra, rb], tx).await;
        let first = rx.recv().await.unwrap();
        assert!(matches!(first, Err(NodeError::Unreachable(_))));
    }
}
