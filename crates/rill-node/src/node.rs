//! The node: the ring, its vnodes, the bucket metadata and the statistics, and the entry points
//! the protocol layers call (`get`, `put`, `delete`, listing, properties).
//!
//! A request's path: the protocol layer builds a [`crate::request`] value and calls the node; the
//! coordinator for that operation (in [`crate::coord`]) resolves the bucket's properties and the
//! request's quorums, computes the preference list from the ring, addresses each replica through
//! [`Node::replica`], feeds the replies into the pure quorum state machine from `rill_core::fsm`,
//! and answers as soon as the machine decides. Replicas are reached through one seam
//! ([`Replica`]), so that when clustering arrives a remote vnode is addressed exactly like a
//! local one.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rill_core::bkey::BKey;
use rill_core::object::RiakObject;
use rill_core::ring::{NodeName, PartitionId, PreflistEntry, Ring};
use rill_storage::{Backend, Durability, FjallBackend, FjallConfig, MemoryBackend, PartitionStore};
use tokio::sync::watch;

use crate::config::{BackendKind, NodeConfig};
use crate::error::{NodeError, NodeResult};
use crate::metadata::Metadata;
use crate::object_cache::ObjectCache;
use crate::stats::Stats;
use crate::vnode::Vnode;

/// A running node. Cheap to clone: every clone is a handle to the same node.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: NodeConfig,
    pub(crate) name: NodeName,
    pub(crate) ring: Ring,
    pub(crate) backend: Arc<dyn Backend>,
    /// Vnodes of the partitions this node holds, indexed by partition id.
    pub(crate) vnodes: Vec<Option<Arc<Vnode>>>,
    pub(crate) metadata: Metadata,
    pub(crate) cache: Arc<ObjectCache>,
    pub(crate) stats: Stats,
    pub(crate) shutdown: watch::Sender<bool>,
}

/// How a coordinator reaches one replica of a preference list.
pub(crate) enum Replica<'a> {
    Local(&'a Vnode),
}

/// What a node found in its data directory when it started.
#[derive(Debug, Clone)]
pub struct StartupReport {
    pub partitions_on_disk: usize,
    pub objects_estimate: u64,
}

impl Node {
    /// Opens the backend, the metadata and one vnode per partition this node owns.
    pub fn start(config: NodeConfig) -> NodeResult<(Node, StartupReport)> {
        let name = NodeName::from(config.name.as_str());
        // Every held partition has a memtable; together they get the write-buffer budget.
        let held = config.ring_size.max(1) as u64;
        let backend: Arc<dyn Backend> = match config.backend {
            BackendKind::Fjall => Arc::new(FjallBackend::open(
                &config.data_dir,
                FjallConfig {
                    cache_bytes: config.cache_bytes,
                    max_memtable_bytes: config.write_buffer_bytes / held,
                    durability: if config.sync_writes {
                        Durability::Synced
                    } else {
                        Durability::Buffered
                    },
                    ..FjallConfig::default()
                },
            )?),
            BackendKind::Memory => Arc::new(MemoryBackend::default()),
        };
        let on_disk = backend.partitions()?.len();
        let ring = load_ring(backend.metadata().as_ref(), &config, &name)?;
        let metadata = Metadata::load(backend.metadata(), name.clone(), ring.size())?;
        let meta_store = backend.metadata();
        let cache = Arc::new(ObjectCache::new(config.object_cache_bytes));
        let mut vnodes = Vec::with_capacity(ring.size() as usize);
        let mut objects = 0;
        for p in 0..ring.size() {
            if ring.owner(p) != Some(&name) {
                vnodes.push(None);
                continue;
            }
            let store = backend.open_partition(p)?;
            objects += store.approximate_len();
            let vnode = Vnode::open(p, store, cache.clone(), meta_store.as_ref(), rand::random)?;
            vnodes.push(Some(Arc::new(vnode)));
        }
        let (shutdown, _) = watch::channel(false);
        let node = Node {
            inner: Arc::new(Inner {
                config,
                name,
                ring,
                backend,
                vnodes,
                metadata,
                cache,
                stats: Stats::default(),
                shutdown,
            }),
        };
        let report = StartupReport {
            partitions_on_disk: on_disk,
            objects_estimate: objects,
        };
        Ok((node, report))
    }

    pub fn name(&self) -> &NodeName {
        &self.inner.name
    }

    pub fn ring(&self) -> &Ring {
        &self.inner.ring
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn metadata(&self) -> &Metadata {
        &self.inner.metadata
    }

    /// Memory and journal figures of the storage and the object cache, for `/stats`.
    pub fn memory_report(&self, out: &mut serde_json::Map<String, serde_json::Value>) {
        let s = self.inner.backend.stats();
        out.insert(
            "storage_write_buffer_bytes".into(),
            s.write_buffer_bytes.into(),
        );
        out.insert(
            "storage_block_cache_bytes".into(),
            s.block_cache_bytes.into(),
        );
        out.insert("storage_journal_bytes".into(), s.journal_bytes.into());
        out.insert(
            "storage_synced_commits_total".into(),
            s.synced_commits.into(),
        );
        out.insert("storage_fsyncs_total".into(), s.fsyncs.into());
        out.insert(
            "object_cache_bytes".into(),
            self.inner.cache.weight().into(),
        );
    }

    /// The name of the storage backend in use.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// Whether a node is reachable. A single node only knows itself; the failure detector
    /// of the clustering layer will answer this for peers.
    pub(crate) fn is_up(&self, node: &NodeName) -> bool {
        *node == self.inner.name
    }

    /// The annotated preference list (primaries and fallbacks) for a key with `n` replicas.
    pub fn preflist(&self, bkey: &BKey, n: u32) -> Vec<PreflistEntry> {
        self.inner
            .ring
            .apl(&bkey.chash(), n, |node| self.is_up(node))
    }

    /// Resolves a preference-list entry to something a coordinator can call.
    pub(crate) fn replica(&self, entry: &PreflistEntry) -> NodeResult<Replica<'_>> {
        if entry.node != self.inner.name {
            return Err(NodeError::BadRequest(format!(
                "node {} is not reachable from {}",
                entry.node, self.inner.name
            )));
        }
        self.local_vnode(entry.partition).map(Replica::Local)
    }

    pub(crate) fn local_vnode(&self, p: PartitionId) -> NodeResult<&Vnode> {
        self.inner
            .vnodes
            .get(p as usize)
            .and_then(|v| v.as_deref())
            .ok_or_else(|| NodeError::BadRequest(format!("partition {p} is not held here")))
    }

    /// Every vnode held here.
    pub(crate) fn vnodes(&self) -> impl Iterator<Item = &Arc<Vnode>> {
        self.inner.vnodes.iter().flatten()
    }

    /// Waits until every write made so far is durable at the configured level (group commit).
    pub(crate) async fn commit(&self) -> NodeResult<()> {
        let level = self.inner.backend.default_durability();
        self.inner.backend.commit(level).await?;
        Ok(())
    }

    /// Runs a request under its timeout (the request's own, else the node's default).
    pub(crate) async fn with_timeout<T>(
        &self,
        timeout: Option<std::time::Duration>,
        fut: impl std::future::Future<Output = NodeResult<T>>,
    ) -> NodeResult<T> {
        let limit = timeout.unwrap_or(self.inner.config.request_timeout);
        tokio::time::timeout(limit, fut)
            .await
            .unwrap_or(Err(NodeError::Timeout))
    }

    /// Wall-clock time in microseconds since the Unix epoch: the one place the node and its
    /// protocol layers read the clock (and where a simulator will inject time).
    pub fn now_us(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    }

    /// A receiver that turns true when the node shuts down (background tasks watch it).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Stops background work and makes everything written so far durable.
    pub async fn shutdown(&self) -> NodeResult<()> {
        let _ = self.inner.shutdown.send(true);
        self.inner.backend.commit(Durability::Synced).await?;
        Ok(())
    }
}

/// Where the ring is kept in the node metadata.
const RING_KEY: &[u8] = b"ring";

/// The ring this data directory was created with, or a new single-node ring (persisted): data
/// is placed by the ring, so a restart must not silently change its size or owner.
fn load_ring(meta: &dyn PartitionStore, config: &NodeConfig, name: &NodeName) -> NodeResult<Ring> {
    let Some(raw) = meta.get(RING_KEY)? else {
        let ring = Ring::new_single(config.ring_size, name.clone())
            .map_err(|e| NodeError::Config(format!("ring: {e}")))?;
        meta.put(
            RING_KEY,
            &serde_json::to_vec(&ring).expect("a ring serializes"),
        )?;
        return Ok(ring);
    };
    let ring: Ring = serde_json::from_slice(&raw)
        .map_err(|e| NodeError::Corrupt(format!("stored ring: {e}")))?;
    if ring.size() != config.ring_size {
        return Err(NodeError::Config(format!(
            "the data directory holds a ring of {} partitions, but ring_size is {}; \
             start with --ring-size {} (a ring's size cannot change in place)",
            ring.size(),
            config.ring_size,
            ring.size()
        )));
    }
    if !ring.members().contains(name) {
        return Err(NodeError::Config(format!(
            "the data directory belongs to node {}, not {name}; start with --name {}",
            ring.members()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            ring.members()
                .first()
                .map(ToString::to_string)
                .unwrap_or_default()
        )));
    }
    Ok(ring)
}

/// Strips values from an object, for `head` requests.
pub(crate) fn head_only(mut obj: RiakObject) -> RiakObject {
    for c in &mut obj.contents {
        c.value = bytes::Bytes::new();
    }
    obj
}
