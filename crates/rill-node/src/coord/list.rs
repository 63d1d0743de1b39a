//! Key and bucket listing: streamed in chunks, never collected whole.
//!
//! Keys are listed from a covering set of vnodes: every N-th partition of the ring, so that the
//! preference list of every key (N consecutive partitions) contains at least one of them. A vnode
//! of the covering set reports a key only if it is the first covering partition in that key's
//! preference list, so each key is reported exactly once without any de-duplication state.
//!
//! The scan runs on a blocking thread and feeds a bounded channel: a slow client slows the scan,
//! and a client that goes away stops it at the next chunk.

use bytes::Bytes;
use rill_core::bkey::{BKey, Bucket};
use rill_core::ring::PartitionId;
use tokio::sync::mpsc;

use crate::error::NodeResult;
use crate::node::Node;

/// Keys or buckets per streamed chunk.
const CHUNK: usize = 1000;
/// Chunks buffered ahead of a slow reader.
const BUFFERED_CHUNKS: usize = 4;

/// A stream of chunks of keys (or bucket names); ends after the last chunk or the first error.
pub type KeyChunks = mpsc::Receiver<NodeResult<Vec<Bytes>>>;

impl Node {
    /// Streams every key of a bucket.
    pub fn list_keys(&self, bucket: &Bucket) -> NodeResult<KeyChunks> {
        let props = self.inner.metadata.bucket_props(bucket)?;
        let n = props.n_val;
        let size = self.ring().size();
        let covering: Vec<PartitionId> = (0..size).step_by(n as usize).collect();
        let node = self.clone();
        let bucket = bucket.clone();
        let (tx, rx) = mpsc::channel(BUFFERED_CHUNKS);
        tokio::task::spawn_blocking(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            for &p in &covering {
                let result = node.local_vnode(p).and_then(|v| {
                    v.fold_keys(&bucket, |key| {
                        let bkey = BKey {
                            bucket: bucket.clone(),
                            key,
                        };
                        if first_covering(&node, &bkey, n, &covering) == p {
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
        });
        Ok(rx)
    }

    /// Streams the names of every bucket of a type that holds at least one key, in storage
    /// order. Each step asks every vnode for its first bucket past the last one sent and takes
    /// the smallest: a merge of sorted streams, so duplicates across vnodes never need a set
    /// and memory stays constant however many buckets there are.
    pub fn list_buckets(&self, btype: &str) -> NodeResult<KeyChunks> {
        self.inner.metadata.check_type_active(btype)?;
        let node = self.clone();
        let btype = Bytes::copy_from_slice(btype.as_bytes());
        let (tx, rx) = mpsc::channel(BUFFERED_CHUNKS);
        tokio::task::spawn_blocking(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut last: Option<Bucket> = None;
            loop {
                let next = node
                    .vnodes()
                    .map(|v| v.next_bucket(&btype, last.as_ref()))
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
        });
        Ok(rx)
    }
}

/// The first partition of the covering set in a key's preference list.
fn first_covering(node: &Node, bkey: &BKey, n: u32, covering: &[PartitionId]) -> PartitionId {
    node.ring()
        .preflist(&bkey.chash(), n)
        .find(|p| covering.binary_search(p).is_ok())
        .unwrap_or(covering[0])
}
