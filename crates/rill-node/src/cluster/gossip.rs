//! The cluster's background worker: heartbeats, gossip, metadata propagation, and the duties
//! that follow from the state.
//!
//! Every [`HEARTBEAT`] the node pings every other member. A pong feeds that peer's failure
//! detector and carries the digest of the peer's cluster state; when digests differ, the two
//! exchange states (push-pull) and both merge. So a change reaches every member within about a
//! heartbeat even if its broadcast was lost, and a member that was away catches up at its first
//! pong. Metadata changes are broadcast as they happen, and every [`META_SYNC_EVERY`] heartbeats
//! the node compares metadata digests with one random peer and exchanges entries if they
//! differ — anti-entropy for nodes that missed a broadcast.
//!
//! After each heartbeat the node also does what the state asks of it: the claimant retires
//! members that finished leaving and a new claimant steps in if the old one is gone; a node
//! that was marked down but is running says it is back; a leaving node that has handed
//! everything off marks itself exiting and stops; a node removed from its cluster starts over
//! as a cluster of its own.

use std::time::Duration;

use rill_core::cluster::plan::{claimant_duties, elect_claimant};
use rill_core::cluster::{ClusterState, Status};
use rill_core::ring::NodeName;
use rill_net::Listener;
use rill_net::server::{ServeOptions, serve};

use crate::node::Node;
use crate::proto::{Reply, Request};

/// How often each peer is pinged.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Metadata anti-entropy runs every this many heartbeats.
const META_SYNC_EVERY: u64 = 5;
/// At most this many internode connections are accepted at once.
const MAX_INTERNODE_CONNECTIONS: usize = 4096;

impl Node {
    /// Serves internode traffic on `listener` and starts the cluster's background workers
    /// (heartbeats and gossip, metadata broadcast, handoff). Runs until the node shuts down.
    pub fn serve_internode(&self, listener: Box<dyn Listener>) {
        let opts = ServeOptions {
            net: self.inner.net.clone(),
            auth: match &self.inner.config.cluster_secret {
                Some(s) => rill_net::Auth::new(s),
                None => rill_net::Auth::none(),
            },
            me: rill_net::PeerName::from(self.name().as_str()),
            mux: rill_net::mux::MuxConfig {
                max_frame: self.inner.config.internode_max_frame(),
                ..rill_net::mux::MuxConfig::default()
            },
            max_connections: MAX_INTERNODE_CONNECTIONS,
        };
        let service = std::sync::Arc::new(crate::service::NodeService::new(
            std::sync::Arc::downgrade(&self.inner),
        ));
        let mut shutdown = self.shutdown_signal();
        tokio::spawn(async move {
            tokio::select! {
                _ = serve(listener, opts, service) => {}
                _ = shutdown.changed() => {}
            }
        });
        tokio::spawn(self.clone().run_heartbeats());
        tokio::spawn(self.clone().run_metadata_broadcast());
        tokio::spawn(self.clone().run_handoffs());
    }

    async fn run_heartbeats(self) {
        let mut shutdown = self.shutdown_signal();
        let mut tick = rill_net::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(rill_net::time::MissedTickBehavior::Delay);
        let mut round: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            round += 1;
            let view = self.view();
            for peer in self.peers_of(&view) {
                let node = self.clone();
                let digest = view.digest;
                tokio::spawn(async move { node.ping(&peer, digest).await });
            }
            if round.is_multiple_of(META_SYNC_EVERY) {
                let node = self.clone();
                tokio::spawn(async move { node.sync_metadata_with_someone().await });
            }
            if let Err(e) = self.duties().await {
                tracing::warn!(error = %e, "cluster duties failed");
            }
        }
    }

    async fn ping(&self, peer: &NodeName, digest: u64) {
        if let Ok(Reply::Pong { digest: theirs }) =
            self.call(peer, &Request::Ping { digest }, HEARTBEAT).await
        {
            if self.inner.liveness.heartbeat(peer, self.now_ms()) {
                tracing::info!(%peer, "peer is reachable");
            }
            self.inner.liveness.saw_digest(peer, theirs);
            if theirs != self.view().digest {
                self.gossip_with(peer).await;
            }
        }
    }

    /// Exchanges states with `peer` in the background.
    pub(crate) fn gossip_soon(&self, peer: &NodeName) {
        let (node, peer) = (self.clone(), peer.clone());
        tokio::spawn(async move { node.gossip_with(&peer).await });
    }

    /// Sends our state to `peer` and merges whatever it knows that we do not.
    pub(crate) async fn gossip_with(&self, peer: &NodeName) {
        let state = Box::new(self.view().state.clone());
        match self
            .call(peer, &Request::Gossip(state), HEARTBEAT * 2)
            .await
        {
            Ok(Reply::Gossip(Some(theirs))) => {
                if let Err(e) = self.merge_state(&theirs) {
                    tracing::warn!(%peer, error = %e, "gossip from a peer refused");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%peer, error = %e, "gossip failed"),
        }
    }

    /// Pushes our state to every member and waits (briefly) for them. Members that are away
    /// fail fast (the peer table backs off from them) and catch up at their next heartbeat.
    pub(crate) async fn broadcast_state(&self) {
        let view = self.view();
        let all = self.peers_of(&view).into_iter().map(|p| {
            let node = self.clone();
            async move { node.gossip_with(&p).await }
        });
        futures::future::join_all(all).await;
    }

    async fn run_metadata_broadcast(self) {
        let Some(mut changes) = self.inner.metadata_changes.lock().take() else {
            return;
        };
        let mut shutdown = self.shutdown_signal();
        loop {
            let entry = tokio::select! {
                e = changes.recv() => e,
                _ = shutdown.changed() => return,
            };
            let Some(entry) = entry else { return };
            let view = self.view();
            let msg = Request::Meta(entry);
            for peer in self.peers_of(&view) {
                self.cast(&peer, &msg).await;
            }
        }
    }

    /// Metadata anti-entropy with one random reachable member.
    async fn sync_metadata_with_someone(&self) {
        let view = self.view();
        let up: Vec<NodeName> = self
            .peers_of(&view)
            .into_iter()
            .filter(|p| self.is_up(p))
            .collect();
        if up.is_empty() {
            return;
        }
        let peer = &up[(self.inner.net.random_u64() % up.len() as u64) as usize];
        self.sync_metadata(peer).await;
    }

    /// Compares metadata with `peer`; when it differs, takes its entries and gives ours.
    pub(crate) async fn sync_metadata(&self, peer: &NodeName) {
        let digest = self.metadata().digest();
        match self
            .call(peer, &Request::MetaSync { digest }, HEARTBEAT * 5)
            .await
        {
            Ok(Reply::Entries(Some(theirs))) => {
                for e in &theirs {
                    if let Err(err) = self.metadata().apply_remote(e) {
                        tracing::warn!(%peer, error = %err, "metadata entry from a peer refused");
                    }
                }
                let ours = Request::MetaPush(self.metadata().entries());
                let _ = self.call(peer, &ours, HEARTBEAT * 5).await;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%peer, error = %e, "metadata sync failed"),
        }
    }

    /// What the state asks of this node now (see the module docs).
    async fn duties(&self) -> crate::error::NodeResult<()> {
        let me = self.name().clone();
        let changed = self.update_state(|s| {
            let mut changed = elect_claimant(s, &me);
            changed |= claimant_duties(s, &me);
            if s.status(&me) == Status::Down {
                tracing::info!("this node was marked down but is running: marking it valid");
                changed |= s.set_status(&me, Status::Valid, &me);
            }
            if s.status(&me) == Status::Leaving
                && s.partitions_of(&me).is_empty()
                && !s.pending().iter().any(|t| t.from == me || t.to == me)
            {
                changed |= s.set_status(&me, Status::Exiting, &me);
            }
            Ok(changed)
        })?;
        if changed {
            self.broadcast_state().await;
        }
        let view = self.view();
        match view.state.status(&me) {
            Status::Exiting => {
                self.broadcast_state().await;
                let reason = "this node has handed off all its partitions and left the cluster";
                tracing::info!("{reason}; stopping");
                let _ = self.inner.exit.send(Some(reason.into()));
            }
            Status::Removed => self.start_over(),
            _ => {}
        }
        Ok(())
    }

    /// Removed from its cluster (a cleared join, a force-remove): become a cluster of one again,
    /// keeping whatever data is here.
    fn start_over(&self) {
        let me = self.name().clone();
        let id = self.inner.net.random_u64();
        let size = self.ring_size();
        let addr = self.internode_addr();
        let result = self.update_state(|s| {
            *s = ClusterState::singleton(id, size, me.clone(), addr)
                .map_err(|e| crate::error::NodeError::Config(e.to_string()))?;
            Ok(true)
        });
        match result {
            Ok(_) => tracing::warn!(
                "this node was removed from its cluster; it is now a cluster of its own"
            ),
            Err(e) => tracing::error!(error = %e, "could not start over as a cluster of one"),
        }
    }
}
