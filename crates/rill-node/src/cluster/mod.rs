//! The node's side of clustering: its view of the cluster state, how the state is loaded,
//! changed, persisted and announced, and who is reachable.
//!
//! The state itself and every decision about it (merging, planning, committing, electing a
//! claimant, detecting failures) are pure code in `rill_core::cluster`; this module applies
//! them to a running node:
//!
//! - [`View`]: the state plus what requests need from it (the ring), swapped whole on every
//!   change so a request reads one consistent view without locking.
//! - [`Node::update_state`]: the one way the state changes — apply a change or a merge, persist
//!   it, publish the new view, open the vnodes the node now needs, tell the peer table where the
//!   members are, and wake the workers.
//! - [`Liveness`]: one phi-accrual detector per peer, fed by heartbeats (see [`gossip`]).
//! - [`admin`]: join, leave, plan, commit and the other operator commands.
//! - [`gossip`]: the background worker — heartbeats, gossip of the state and the metadata,
//!   claimant duties, leaving when done.

pub mod admin;
pub mod gossip;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rill_core::cluster::liveness::{Detector, DetectorConfig};
use rill_core::cluster::{Change, ClusterState, Plan, Status};
use rill_core::ring::{NodeName, PartitionId, Ring};
use rill_net::Net;
use rill_storage::PartitionStore;
use sha1::{Digest, Sha1};

use crate::config::NodeConfig;
use crate::error::{NodeError, NodeResult};
use crate::node::Node;

/// Where the cluster state is kept in the node metadata.
const STATE_KEY: &[u8] = b"cluster";
/// Where Rill before clustering kept its single-node ring.
const LEGACY_RING_KEY: &[u8] = b"ring";

/// The cluster as one node sees it at one moment.
pub struct View {
    pub state: ClusterState,
    /// The current owners, as a ring for preference lists.
    pub ring: Ring,
    /// A digest of the state's version vector: equal digests mean equal states.
    pub digest: u64,
}

impl View {
    pub fn new(state: ClusterState) -> View {
        View {
            ring: state.ring(),
            digest: version_digest(&state),
            state,
        }
    }

    /// Whether `node` owns partition `p` or is receiving it.
    pub fn holds(&self, p: PartitionId, node: &NodeName) -> bool {
        let s = self.state.partition(p);
        s.owner == *node || s.next.as_ref() == Some(node)
    }
}

/// The digest heartbeats carry, so peers notice a differing state without exchanging it.
pub fn version_digest(state: &ClusterState) -> u64 {
    let mut h = Sha1::new();
    h.update(state.cluster_id().to_be_bytes());
    for (name, count) in state.version() {
        h.update(name.as_str().as_bytes());
        h.update([0]);
        h.update(count.to_be_bytes());
    }
    let out: [u8; 20] = h.finalize().into();
    u64::from_be_bytes(out[..8].try_into().expect("8 bytes"))
}

/// What the claimant holds between `cluster plan` and `cluster commit`.
#[derive(Default)]
pub struct Staging {
    pub changes: Vec<Change>,
    pub plan: Option<Plan>,
}

/// Reachability of the peers, and the state digest each last reported.
#[derive(Default)]
pub struct Liveness {
    detectors: Mutex<HashMap<NodeName, Detector>>,
    digests: Mutex<HashMap<NodeName, u64>>,
}

impl Liveness {
    /// Records the state digest a peer's pong carried.
    pub fn saw_digest(&self, node: &NodeName, digest: u64) {
        self.digests.lock().insert(node.clone(), digest);
    }

    /// The digest `node` reported last.
    pub fn digest_of(&self, node: &NodeName) -> Option<u64> {
        self.digests.lock().get(node).copied()
    }

    pub fn is_up(&self, node: &NodeName, now_ms: u64) -> bool {
        self.detectors
            .lock()
            .get(node)
            .is_some_and(|d| d.is_up(now_ms))
    }

    /// A sign of life from `node`. Returns true when it was down before (it is back).
    pub fn heartbeat(&self, node: &NodeName, now_ms: u64) -> bool {
        let mut detectors = self.detectors.lock();
        let d = detectors
            .entry(node.clone())
            .or_insert_with(|| Detector::new(DetectorConfig::default()));
        let was_up = d.is_up(now_ms);
        if !was_up {
            // Back from an absence: its old gaps say nothing about the new process.
            d.reset();
        }
        d.heartbeat(now_ms);
        !was_up
    }

    /// The connection to `node` failed: down at once, without waiting for silence.
    pub fn connection_failed(&self, node: &NodeName) {
        if let Some(d) = self.detectors.lock().get_mut(node) {
            d.reset();
        }
    }

    pub fn forget(&self, node: &NodeName) {
        self.detectors.lock().remove(node);
        self.digests.lock().remove(node);
    }
}

/// Milliseconds since the process started, on the runtime's (virtualisable) clock.
pub fn monotonic_ms() -> u64 {
    static START: OnceLock<rill_net::time::Instant> = OnceLock::new();
    let start = *START.get_or_init(rill_net::time::Instant::now);
    start.elapsed().as_millis() as u64
}

/// The cluster state of this data directory, created (a cluster of one) on first start.
///
/// The node's name stays tied to its data directory: a restart under another name, or with
/// another ring size, is refused rather than misplacing data. A node that finds itself
/// removed from its cluster (its join was cleared, or it was force-removed) starts again as a
/// cluster of its own, keeping its data.
pub(crate) fn load_state(
    meta: &dyn PartitionStore,
    config: &NodeConfig,
    name: &NodeName,
    net: &dyn Net,
) -> NodeResult<ClusterState> {
    let fresh = |net: &dyn Net| {
        ClusterState::singleton(
            net.random_u64(),
            config.ring_size,
            name.clone(),
            config.internode_addr,
        )
        .map_err(|e| NodeError::Config(format!("ring: {e}")))
    };
    let state = match meta.get(STATE_KEY)? {
        Some(raw) => serde_json::from_slice::<ClusterState>(&raw)
            .map_err(|e| NodeError::Corrupt(format!("stored cluster state: {e}")))?,
        None => match meta.get(LEGACY_RING_KEY)? {
            None => fresh(net)?,
            Some(raw) => {
                let ring: Ring = serde_json::from_slice(&raw)
                    .map_err(|e| NodeError::Corrupt(format!("stored ring: {e}")))?;
                check_identity(ring.size(), &ring.members(), config, name)?;
                fresh(net)?
            }
        },
    };
    let members: Vec<NodeName> = state.members().keys().cloned().collect();
    check_identity(state.ring_size(), &members, config, name)?;
    let mut state = if state.status(name) == Status::Removed {
        tracing::warn!(node = %name, "this node was removed from its cluster; starting as a cluster of its own");
        fresh(net)?
    } else {
        state
    };
    // Announce where this node listens now, if that changed.
    let me = state.member(name).expect("checked above").clone();
    if me.addr != config.internode_addr {
        state.set_member(name, me.status, config.internode_addr, name);
    }
    save_state(meta, &state)?;
    Ok(state)
}

fn check_identity(
    size: u32,
    members: &[NodeName],
    config: &NodeConfig,
    name: &NodeName,
) -> NodeResult<()> {
    if size != config.ring_size {
        return Err(NodeError::Config(format!(
            "the data directory holds a ring of {size} partitions, but ring_size is {}; \
             start with --ring-size {size} (a ring's size cannot change in place)",
            config.ring_size,
        )));
    }
    if !members.contains(name) {
        return Err(NodeError::Config(format!(
            "the data directory belongs to node {}, not {name}; start with --name {}",
            members
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            members.first().map(ToString::to_string).unwrap_or_default()
        )));
    }
    Ok(())
}

pub(crate) fn save_state(meta: &dyn PartitionStore, state: &ClusterState) -> NodeResult<()> {
    meta.put(
        STATE_KEY,
        &serde_json::to_vec(state).expect("a cluster state serializes"),
    )?;
    Ok(())
}

impl Node {
    /// Changes the cluster state: `change` edits a copy and says whether it changed anything.
    /// A change is persisted before it is published, so a restart never forgets what peers
    /// may already have heard.
    pub(crate) fn update_state(
        &self,
        change: impl FnOnce(&mut ClusterState) -> NodeResult<bool>,
    ) -> NodeResult<bool> {
        let _serial = self.inner.view_lock.lock();
        let mut state = self.view().state.clone();
        if !change(&mut state)? {
            return Ok(false);
        }
        save_state(self.inner.backend.metadata().as_ref(), &state)?;
        let view = Arc::new(View::new(state));
        self.inner.view.store(view.clone());
        drop(_serial);
        self.after_change(&view);
        Ok(true)
    }

    /// Merges a state heard from a peer.
    pub(crate) fn merge_state(&self, theirs: &ClusterState) -> NodeResult<bool> {
        self.update_state(|mine| {
            mine.merge(theirs)
                .map_err(|e| NodeError::BadRequest(e.to_string()))
        })
    }

    /// Everything that follows a change of the state.
    fn after_change(&self, view: &View) {
        self.sync_peers();
        for p in 0..self.ring_size() {
            if view.holds(p, self.name())
                && self.vnode(p).is_none()
                && let Err(e) = self.open_vnode(p)
            {
                tracing::error!(partition = p, error = %e, "cannot open a vnode this node now holds");
            }
        }
        self.mark_handoffs(view);
        self.inner.view_changed.send_modify(|n| *n += 1);
    }

    /// Points the peer table at every active member's internode address.
    pub(crate) fn sync_peers(&self) {
        let view = self.view();
        for (name, m) in view.state.members() {
            if name == self.name() {
                continue;
            }
            let peer = rill_net::PeerName::from(name.as_str());
            if m.status == Status::Removed {
                self.inner.peers.remove(name.as_str());
                self.inner.liveness.forget(name);
            } else {
                self.inner.peers.set_address(&peer, m.addr);
            }
        }
    }

    /// Tells each vnode whether it is being handed off (so its writes are tracked for resending).
    pub(crate) fn mark_handoffs(&self, view: &View) {
        for v in self.vnodes() {
            let outgoing = view
                .state
                .pending_transfer(v.partition())
                .is_some_and(|t| t.from == *self.name());
            v.set_handing_off(outgoing);
        }
    }

    /// Members that are neither removed nor this node.
    pub(crate) fn peers_of(&self, view: &View) -> Vec<NodeName> {
        view.state
            .active_members()
            .map(|(n, _)| n.clone())
            .filter(|n| n != self.name())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_storage::{Backend, MemoryBackend};

    fn config(name: &str) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            ring_size: 16,
            ..NodeConfig::default()
        }
    }

    #[test]
    fn the_state_is_created_once_and_tied_to_the_name_and_ring_size() {
        let backend = MemoryBackend::default();
        let meta = backend.metadata();
        let net = rill_net::TokioNet;
        let a = NodeName::from("a@h");
        let s = load_state(meta.as_ref(), &config("a@h"), &a, &net).unwrap();
        assert_eq!(s.partitions_of(&a).len(), 16);
        let again = load_state(meta.as_ref(), &config("a@h"), &a, &net).unwrap();
        assert_eq!(again.cluster_id(), s.cluster_id());
        let err = load_state(meta.as_ref(), &config("b@h"), &NodeName::from("b@h"), &net);
        assert!(err.unwrap_err().to_string().contains("belongs to node a@h"));
        let mut bigger = config("a@h");
        bigger.ring_size = 32;
        let err = load_state(meta.as_ref(), &bigger, &a, &net).unwrap_err();
        assert!(err.to_string().contains("--ring-size 16"), "{err}");
    }

    #[test]
    fn a_single_node_ring_of_an_earlier_version_is_adopted() {
        let backend = MemoryBackend::default();
        let meta = backend.metadata();
        let a = NodeName::from("a@h");
        let ring = Ring::new_single(16, a.clone()).unwrap();
        meta.put(LEGACY_RING_KEY, &serde_json::to_vec(&ring).unwrap())
            .unwrap();
        let s = load_state(meta.as_ref(), &config("a@h"), &a, &rill_net::TokioNet).unwrap();
        assert_eq!(s.ring(), ring);
        let err = load_state(
            MemoryBackend::default().metadata().as_ref(),
            &config("a@h"),
            &a,
            &rill_net::TokioNet,
        );
        assert!(err.is_ok());
    }

    #[test]
    fn a_changed_internode_address_is_announced() {
        let backend = MemoryBackend::default();
        let meta = backend.metadata();
        let a = NodeName::from("a@h");
        load_state(meta.as_ref(), &config("a@h"), &a, &rill_net::TokioNet).unwrap();
        let mut moved = config("a@h");
        moved.internode_addr = "127.0.0.1:9999".parse().unwrap();
        let s = load_state(meta.as_ref(), &moved, &a, &rill_net::TokioNet).unwrap();
        assert_eq!(s.member(&a).unwrap().addr, moved.internode_addr);
    }
}
