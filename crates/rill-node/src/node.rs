//! The node: its vnodes, its view of the cluster, the bucket metadata and the statistics, and
//! the entry points the protocol layers call (`get`, `put`, `delete`, listing, properties).
//!
//! A request's path: the protocol layer builds a [`crate::request`] value and calls the node; the
//! coordinator for that operation (in [`crate::coord`]) resolves the bucket's properties and the
//! request's quorums, computes the preference list from the current ring and the failure
//! detector, addresses each replica through [`Node::replica`] — a local vnode, or a vnode on
//! another node reached over the internode transport — feeds the replies into the pure quorum
//! state machine from `rill_core::fsm`, and answers as soon as the machine decides. There is one
//! code path: a single node is a cluster of one, whose replicas are all local.
//!
//! The ring is not fixed: it is derived from the cluster state ([`crate::cluster`]), which gossip
//! and commits change at run time. Each request reads the current view once (a lock-free load)
//! and keeps it to the end, so nothing caches an old ring past one request.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use rill_core::bkey::BKey;
use rill_core::cluster::ClusterState;
use rill_core::object::RiakObject;
use rill_core::ring::{NodeName, PartitionId, PreflistEntry, Ring};
use rill_net::{Auth, Net, Peers, PeersConfig, TokioNet};
use rill_storage::{Backend, Durability, FjallBackend, FjallConfig, MemoryBackend};
use tokio::sync::{mpsc, watch};

use crate::cluster::{self, Liveness, View};
use crate::config::{BackendKind, NodeConfig};
use crate::error::{NodeError, NodeResult};
use crate::handoff::Transfers;
use crate::metadata::Metadata;
use crate::object_cache::ObjectCache;
use crate::service::NodeService;
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
    pub(crate) net: Arc<dyn Net>,
    pub(crate) backend: Arc<dyn Backend>,
    /// The cluster as this node sees it; swapped whole on every change.
    pub(crate) view: ArcSwap<View>,
    /// Serialises changes to the cluster state (reads never wait for it).
    pub(crate) view_lock: Mutex<()>,
    /// Ticks on every change of the view, for the workers.
    pub(crate) view_changed: watch::Sender<u64>,
    /// Vnodes of the partitions held here, indexed by partition id.
    pub(crate) vnodes: RwLock<Vec<Option<Arc<Vnode>>>>,
    pub(crate) metadata: Metadata,
    /// Local metadata changes waiting for the gossip worker to broadcast them.
    pub(crate) metadata_changes: Mutex<Option<mpsc::UnboundedReceiver<crate::metadata::Entry>>>,
    pub(crate) cache: Arc<ObjectCache>,
    pub(crate) stats: Stats,
    pub(crate) peers: Peers,
    pub(crate) liveness: Liveness,
    pub(crate) transfers: Transfers,
    pub(crate) staging: Mutex<cluster::Staging>,
    pub(crate) shutdown: watch::Sender<bool>,
    /// Set when the node decides to stop by itself (it left the cluster), with the reason.
    pub(crate) exit: watch::Sender<Option<String>>,
}

/// How a coordinator reaches one replica of a preference list: a vnode here, or the node
/// that serves it.
pub(crate) enum Replica {
    Local(Arc<Vnode>),
    Remote(NodeName),
}

/// What a node found in its data directory when it started.
#[derive(Debug, Clone)]
pub struct StartupReport {
    pub partitions_on_disk: usize,
    pub objects_estimate: u64,
    pub cluster_members: usize,
}

impl Node {
    /// Opens the node on the real network, clock and randomness.
    pub fn start(config: NodeConfig) -> NodeResult<(Node, StartupReport)> {
        Node::start_with(config, Arc::new(TokioNet))
    }

    /// Opens the backend, the metadata, the cluster state and the vnodes of the partitions
    /// this node holds, with every socket, clock read and random choice going through `net`.
    /// Internode traffic starts with [`Node::serve_internode`].
    pub fn start_with(config: NodeConfig, net: Arc<dyn Net>) -> NodeResult<(Node, StartupReport)> {
        let name = NodeName::from(config.name.as_str());
        let backend: Arc<dyn Backend> = match config.backend {
            BackendKind::Fjall => Arc::new(FjallBackend::open(
                &config.data_dir,
                FjallConfig {
                    cache_bytes: config.cache_bytes,
                    // The held partitions share the write-buffer budget; the storage flushes the
                    // largest memtable when they pass it. fjall's own per-partition limit is a
                    // backstop, and the journal limit must be above the budget (see
                    // `rill_storage::FjallConfig`).
                    write_buffer_bytes: config.write_buffer_bytes,
                    max_memtable_bytes: (config.write_buffer_bytes / 4).min(64 << 20),
                    max_journal_bytes: config.write_buffer_bytes + (128 << 20),
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
        let on_disk = backend.partitions()?;
        let meta_store = backend.metadata();
        let state = cluster::load_state(meta_store.as_ref(), &config, &name, &*net)?;
        let (meta_tx, meta_rx) = mpsc::unbounded_channel();
        let metadata = Metadata::load(
            meta_store.clone(),
            name.clone(),
            net.clone(),
            meta_tx,
            config.ring_size,
        )?;
        let cache = Arc::new(ObjectCache::new(config.object_cache_bytes));
        let auth = match &config.cluster_secret {
            Some(s) => Auth::new(s),
            None => Auth::none(),
        };
        let peers_config = PeersConfig {
            mux: rill_net::mux::MuxConfig {
                max_frame: config.internode_max_frame(),
                ..rill_net::mux::MuxConfig::default()
            },
            ..PeersConfig::default()
        };
        let (shutdown, _) = watch::channel(false);
        let (exit, _) = watch::channel(None);
        let (view_changed, _) = watch::channel(0);
        let members = state.active_members().count();
        let inner = Arc::new_cyclic(|weak| Inner {
            peers: Peers::new(
                rill_net::PeerName::from(name.as_str()),
                net.clone(),
                auth,
                Arc::new(NodeService::new(weak.clone())),
                peers_config,
            ),
            view: ArcSwap::from_pointee(View::new(state)),
            view_lock: Mutex::new(()),
            view_changed,
            vnodes: RwLock::new(vec![None; config.ring_size as usize]),
            transfers: Transfers::new(config.transfer_limit),
            config,
            name,
            net,
            backend,
            metadata,
            metadata_changes: Mutex::new(Some(meta_rx)),
            cache,
            stats: Stats::default(),
            liveness: Liveness::default(),
            staging: Mutex::new(cluster::Staging::default()),
            shutdown,
            exit,
        });
        let node = Node { inner };
        node.sync_peers();
        // Partitions this node owns or is receiving, and any left on disk from an earlier
        // ownership (their data is kept, never silently dropped).
        let mut objects = 0;
        let view = node.view();
        for p in 0..node.ring_size() {
            if view.holds(p, node.name()) || on_disk.contains(&p) {
                objects += node.open_vnode(p)?.approximate_len();
            }
        }
        node.mark_handoffs(&view);
        let report = StartupReport {
            partitions_on_disk: on_disk.len(),
            objects_estimate: objects,
            cluster_members: members,
        };
        Ok((node, report))
    }

    pub fn name(&self) -> &NodeName {
        &self.inner.name
    }

    /// The ring as it is now (owners after every finished transfer).
    pub fn ring(&self) -> Ring {
        self.view().ring.clone()
    }

    /// The number of partitions (fixed for the life of the cluster).
    pub fn ring_size(&self) -> u32 {
        self.inner.config.ring_size
    }

    /// The current view of the cluster.
    pub fn view(&self) -> Arc<View> {
        self.inner.view.load_full()
    }

    /// The cluster state as this node knows it.
    pub fn cluster_state(&self) -> ClusterState {
        self.view().state.clone()
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

    pub fn net(&self) -> &Arc<dyn Net> {
        &self.inner.net
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
            "storage_journal_batches_total".into(),
            s.journal_batches.into(),
        );
        out.insert(
            "storage_journal_flushes_total".into(),
            s.journal_flushes.into(),
        );
        out.insert("storage_tables".into(), s.tables.into());
        out.insert("storage_l0_tables".into(), s.l0_tables.into());
        out.insert("storage_sealed_memtables".into(), s.sealed_memtables.into());
        out.insert("storage_l0_tables_max".into(), s.l0_tables_max.into());
        out.insert("storage_compactions_total".into(), s.compactions.into());
        out.insert("storage_compaction_ms_total".into(), s.compaction_ms.into());
        out.insert(
            "object_cache_bytes".into(),
            self.inner.cache.weight().into(),
        );
    }

    /// The name of the storage backend in use.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// Whether a node is reachable now: this node always, a peer when the failure detector
    /// has heard from it recently enough.
    pub fn is_up(&self, node: &NodeName) -> bool {
        *node == self.inner.name || self.inner.liveness.is_up(node, self.now_ms())
    }

    /// The annotated preference list (primaries and fallbacks) for a key with `n` replicas.
    pub fn preflist(&self, bkey: &BKey, n: u32) -> Vec<PreflistEntry> {
        self.inner
            .view
            .load()
            .ring
            .apl(&bkey.chash(), n, |node| self.is_up(node))
    }

    /// Resolves a preference-list entry to something a coordinator can call.
    pub(crate) fn replica(&self, entry: &PreflistEntry) -> NodeResult<Replica> {
        if entry.node != self.inner.name {
            return Ok(Replica::Remote(entry.node.clone()));
        }
        let vnode = match self.vnode(entry.partition) {
            Some(v) => v,
            None => self.open_vnode(entry.partition)?,
        };
        Ok(match vnode.forwarding() {
            Some(to) => Replica::Remote(to),
            None => Replica::Local(vnode),
        })
    }

    /// The vnode of partition `p`, if open here.
    pub(crate) fn vnode(&self, p: PartitionId) -> Option<Arc<Vnode>> {
        self.inner.vnodes.read().get(p as usize).cloned().flatten()
    }

    /// Opens (or returns) the vnode of partition `p`.
    pub(crate) fn open_vnode(&self, p: PartitionId) -> NodeResult<Arc<Vnode>> {
        if p >= self.ring_size() {
            return Err(NodeError::BadRequest(format!("no partition {p}")));
        }
        let mut vnodes = self.inner.vnodes.write();
        if let Some(v) = &vnodes[p as usize] {
            return Ok(v.clone());
        }
        let store = self.inner.backend.open_partition(p)?;
        let meta = self.inner.backend.metadata();
        let net = self.inner.net.clone();
        let vnode = Arc::new(Vnode::open(
            p,
            store,
            self.inner.backend.clone(),
            self.inner.cache.clone(),
            meta.as_ref(),
            || {
                let mut id = [0u8; 8];
                net.fill_random(&mut id);
                id
            },
        )?);
        vnodes[p as usize] = Some(vnode.clone());
        Ok(vnode)
    }

    /// Forgets partition `p` here after it was handed off: its data, its cached objects.
    pub(crate) fn drop_vnode(&self, p: PartitionId) -> NodeResult<()> {
        self.inner.vnodes.write()[p as usize] = None;
        self.inner.backend.drop_partition(p)?;
        self.inner.cache.drop_partition(p);
        Ok(())
    }

    /// Every vnode held here.
    pub(crate) fn vnodes(&self) -> Vec<Arc<Vnode>> {
        self.inner.vnodes.read().iter().flatten().cloned().collect()
    }

    /// Waits until every write made so far is durable at the configured level (group commit).
    pub(crate) async fn commit(&self) -> NodeResult<()> {
        let level = self.inner.backend.default_durability();
        // Let the requests already waiting on this worker make their writes first, so that one
        // flush of the journal covers them all.
        tokio::task::yield_now().await;
        fail::fail_point!("node-commit", |_| Err(crate::vnode::injected(
            "node-commit"
        )));
        self.inner.backend.commit(level).await?;
        Ok(())
    }

    /// Runs a request under its timeout (the request's own, else the node's default). Callers
    /// pass the request's future pinned where it was made (`pin!`): a coordinator's future is
    /// large, and moving it into the timer and then into the caller's state costs a copy each.
    pub(crate) async fn with_timeout<T>(
        &self,
        timeout: Option<std::time::Duration>,
        fut: impl std::future::Future<Output = NodeResult<T>>,
    ) -> NodeResult<T> {
        let limit = timeout.unwrap_or(self.inner.config.request_timeout);
        rill_net::time::timeout(limit, fut)
            .await
            .unwrap_or(Err(NodeError::Timeout))
    }

    /// Wall-clock time in microseconds since the Unix epoch: the one place the node and its
    /// protocol layers read the clock (through the network seam, so a simulator controls it).
    pub fn now_us(&self) -> u64 {
        self.inner.net.now_us()
    }

    /// Milliseconds of the monotonic clock, for the failure detector.
    pub(crate) fn now_ms(&self) -> u64 {
        cluster::monotonic_ms()
    }

    /// A random 128-bit number, through the network seam.
    pub fn random_u128(&self) -> u128 {
        ((self.inner.net.random_u64() as u128) << 64) | self.inner.net.random_u64() as u128
    }

    /// A fresh key for a POST that names none: 22 base-62 digits of 128 random bits, as
    /// unique as Riak's.
    pub fn generate_key(&self) -> Bytes {
        self.random_numeral()
    }

    /// A fresh vtag for a new sibling (the coordinating vnode replaces it with one made from
    /// the write's dot; writes stored as they are keep it).
    pub fn generate_vtag(&self) -> Bytes {
        self.random_numeral()
    }

    fn random_numeral(&self) -> Bytes {
        Bytes::copy_from_slice(&rill_core::base62::numeral(self.random_u128()))
    }

    /// The internode address this node announces to its peers.
    pub fn internode_addr(&self) -> SocketAddr {
        self.inner.config.internode_addr
    }

    /// A receiver that turns true when the node shuts down (background tasks watch it).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Resolves with a reason when the node decided to stop by itself (it left the cluster).
    pub async fn exit_requested(&self) -> String {
        let mut rx = self.inner.exit.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops background work and makes everything written so far durable.
    pub async fn shutdown(&self) -> NodeResult<()> {
        let _ = self.inner.shutdown.send(true);
        self.inner.backend.commit(Durability::Synced).await?;
        Ok(())
    }
}

/// Strips values from an object, for `head` requests.
pub(crate) fn head_only(mut obj: RiakObject) -> RiakObject {
    for c in &mut obj.contents {
        c.value = bytes::Bytes::new();
    }
    obj
}

/// Keys of node-internal entries inside a partition's store (handoff bookkeeping) start with
/// this byte. Storage keys of objects never do: they start with the bucket type's length as a
/// big-endian `u16`, and a type is at most 255 bytes long.
pub(crate) const RESERVED_PREFIX: u8 = 0xFF;
