//! The operator's cluster commands, as `riak admin cluster …` has them, on any node.
//!
//! `join` runs on the joining node: it asks the target for its cluster's state, checks that the
//! two can form one cluster, adopts the state with itself as a `joining` member, and gossips it.
//! Changes to other members (`leave`, `force-remove`, `replace`, `force-replace`) are staged at
//! the claimant, whichever node the operator talks to; `plan` and `commit` run there too, so one
//! node decides. `down` marks an unreachable node down from anywhere. The status commands
//! (`member-status`, `ring-status`, `transfers`) read this node's view, asking the other members
//! where the answer lives with them.

use std::net::SocketAddr;
use std::time::Duration;

use rill_core::cluster::plan::{self, Plan};
use rill_core::cluster::{Change, Status};
use rill_core::ring::{NodeName, PartitionId};
use serde::{Deserialize, Serialize};

use crate::error::{NodeError, NodeResult};
use crate::handoff::TransferStatus;
use crate::node::Node;
use crate::proto::{ClaimantOp, ClaimantReply, Reply, Request};

/// How long a commit waits for every member to have seen the latest state.
const RING_READY_WAIT: Duration = Duration::from_secs(5);

/// One row of `member-status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberInfo {
    pub node: NodeName,
    pub status: Status,
    /// Share of the ring owned now, in percent.
    pub ring_pct: f64,
    /// Share after pending transfers, when there are any.
    pub pending_pct: Option<f64>,
    pub reachable: bool,
    pub addr: SocketAddr,
}

/// `ring-status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RingStatus {
    pub claimant: NodeName,
    pub claimant_up: bool,
    /// Every reachable member has the same state as this node.
    pub ring_ready: bool,
    pub pending: Vec<PendingRow>,
    pub unreachable: Vec<NodeName>,
}

/// A partition waiting for ownership handoff.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingRow {
    pub partition: PartitionId,
    pub index: String,
    pub owner: NodeName,
    pub next_owner: NodeName,
}

/// `transfers`: what runs, and what waits.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TransfersReport {
    pub active: Vec<TransferStatus>,
    /// Nodes with ownership transfers still to send, and how many.
    pub waiting: Vec<(NodeName, usize)>,
    /// Members that could not be asked.
    pub unreachable: Vec<NodeName>,
}

/// `cluster status`: members, claimant, staged changes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub members: Vec<MemberInfo>,
    pub claimant: NodeName,
    pub staged: Vec<Change>,
    pub ring_size: u32,
}

impl Node {
    /// Joins the cluster of the node listening at `target` (its internode address).
    pub async fn join(&self, target: SocketAddr) -> NodeResult<()> {
        let view = self.view();
        let me = self.name().clone();
        let others = self.peers_of(&view).len();
        if others > 0 {
            return Err(NodeError::BadRequest(format!(
                "{me} is already a member of a cluster of {} nodes; it must leave it first",
                others + 1
            )));
        }
        if let Some((p, _)) = self.vnodes().iter().find_map(|v| {
            v.scan_objects(None)
                .next()
                .map(|item| (v.partition(), item))
        }) {
            return Err(NodeError::BadRequest(format!(
                "{me} holds data (partition {p} is not empty); a node joining a cluster must be \
                 empty: start it with a fresh data directory"
            )));
        }
        let ask = Request::Join {
            name: me.clone(),
            addr: self.internode_addr(),
            ring_size: self.ring_size(),
        };
        let (peer, raw) = self
            .inner
            .peers
            .call_address(target, crate::proto::encode(&ask), Duration::from_secs(10))
            .await
            .map_err(|e| NodeError::Unreachable(format!("cannot reach {target}: {e}")))?;
        if *peer == *me.as_str() {
            return Err(NodeError::BadRequest(format!(
                "{target} is this node ({me}); join another node"
            )));
        }
        let mut theirs = match crate::proto::decode::<crate::proto::Response>(&raw)?? {
            Reply::Joined(state) => *state,
            other => return Err(crate::remote::unexpected(&other)),
        };
        theirs.set_member(&me, Status::Joining, self.internode_addr(), &me);
        self.update_state(|s| {
            *s = theirs;
            Ok(true)
        })?;
        let target_name = NodeName::from(&*peer);
        self.sync_metadata(&target_name).await;
        self.gossip_with(&target_name).await;
        tracing::info!(cluster_via = %target_name, "joined; the join takes effect with `cluster plan` and `cluster commit`");
        Ok(())
    }

    /// The target's side of a join: may `name` join, and on what state?
    pub(crate) fn answer_join(
        &self,
        name: &NodeName,
        addr: SocketAddr,
        ring_size: u32,
    ) -> crate::proto::Response {
        if ring_size != self.ring_size() {
            return Err(NodeError::BadRequest(format!(
                "{name} has a ring of {ring_size} partitions, this cluster {}; \
                 every node of a cluster needs the same --ring-size",
                self.ring_size()
            )));
        }
        if name == self.name() {
            return Err(NodeError::BadRequest(format!("{name} cannot join itself")));
        }
        let view = self.view();
        let status = view.state.status(name);
        if !matches!(status, Status::Removed | Status::Joining) {
            return Err(NodeError::BadRequest(format!(
                "{name} is already a member of this cluster ({status})"
            )));
        }
        tracing::info!(node = %name, %addr, "a node asks to join");
        Ok(Reply::Joined(Box::new(view.state.clone())))
    }

    /// Stages a change at the claimant.
    pub async fn stage(&self, change: Change) -> NodeResult<Vec<Change>> {
        match self.claimant(ClaimantOp::Stage(change)).await? {
            ClaimantReply::Staged(all) => Ok(all),
            other => Err(unexpected_claimant(&other)),
        }
    }

    /// The changes staged at the claimant.
    pub async fn staged(&self) -> NodeResult<Vec<Change>> {
        match self.claimant(ClaimantOp::Staged).await? {
            ClaimantReply::Staged(all) => Ok(all),
            other => Err(unexpected_claimant(&other)),
        }
    }

    /// Computes (at the claimant) what committing the staged changes would do.
    pub async fn plan(&self) -> NodeResult<Plan> {
        match self.claimant(ClaimantOp::Plan).await? {
            ClaimantReply::Plan(p) => Ok(p),
            other => Err(unexpected_claimant(&other)),
        }
    }

    /// Commits the plan last computed.
    pub async fn commit_plan(&self) -> NodeResult<()> {
        match self.claimant(ClaimantOp::Commit).await? {
            ClaimantReply::Committed => Ok(()),
            other => Err(unexpected_claimant(&other)),
        }
    }

    /// Drops the staged changes (and un-stages joins).
    pub async fn clear_staged(&self) -> NodeResult<()> {
        match self.claimant(ClaimantOp::Clear).await? {
            ClaimantReply::Cleared => Ok(()),
            other => Err(unexpected_claimant(&other)),
        }
    }

    /// Marks an unreachable node down, so changes can proceed without it.
    pub async fn mark_down(&self, node: &NodeName) -> NodeResult<()> {
        if node == self.name() || self.is_up(node) {
            return Err(NodeError::BadRequest(format!(
                "{node} is reachable; only an unreachable node can be marked down"
            )));
        }
        let me = self.name().clone();
        let known = self.update_state(|s| {
            if matches!(s.status(node), Status::Removed) {
                return Err(NodeError::BadRequest(format!(
                    "{node} is not a member of this cluster"
                )));
            }
            Ok(s.set_status(node, Status::Down, &me))
        })?;
        if known {
            self.broadcast_state().await;
        }
        Ok(())
    }

    /// Runs a claimant command here if this node is the claimant, else at the claimant.
    async fn claimant(&self, op: ClaimantOp) -> NodeResult<ClaimantReply> {
        let claimant = self.view().state.claimant().clone();
        if claimant == *self.name() {
            return self.serve_claimant(op).await;
        }
        match self
            .call(&claimant, &Request::Claimant(op), Duration::from_secs(30))
            .await?
        {
            Reply::Claimant(r) => Ok(r),
            other => Err(crate::remote::unexpected(&other)),
        }
    }

    /// The claimant's side of the commands.
    pub(crate) async fn serve_claimant(&self, op: ClaimantOp) -> NodeResult<ClaimantReply> {
        let view = self.view();
        if view.state.claimant() != self.name() {
            return Err(NodeError::BadRequest(format!(
                "{} is not the claimant; {} is",
                self.name(),
                view.state.claimant()
            )));
        }
        match op {
            ClaimantOp::Staged => Ok(ClaimantReply::Staged(
                self.inner.staging.lock().changes.clone(),
            )),
            ClaimantOp::Stage(change) => {
                // Check the change on its own now, so the operator hears of a mistake at once.
                plan::validate(&view.state, std::slice::from_ref(&change), self.name())
                    .map_err(|e| NodeError::BadRequest(e.to_string()))?;
                let mut staging = self.inner.staging.lock();
                staging.changes.retain(|c| c.node() != change.node());
                staging.changes.push(change);
                staging.plan = None;
                Ok(ClaimantReply::Staged(staging.changes.clone()))
            }
            ClaimantOp::Plan => {
                let changes = self.inner.staging.lock().changes.clone();
                let p = plan::plan(
                    &view.state,
                    &changes,
                    self.name(),
                    self.inner.config.target_n_val,
                )
                .map_err(|e| NodeError::BadRequest(e.to_string()))?;
                self.inner.staging.lock().plan = Some(p.clone());
                Ok(ClaimantReply::Plan(p))
            }
            ClaimantOp::Commit => {
                let Some(p) = self.inner.staging.lock().plan.clone() else {
                    return Err(NodeError::BadRequest(
                        "no plan to commit: run `cluster plan` first".into(),
                    ));
                };
                self.wait_ring_ready().await?;
                let me = self.name().clone();
                self.update_state(|s| {
                    plan::commit(s, &p, &me).map_err(|e| NodeError::BadRequest(e.to_string()))?;
                    Ok(true)
                })?;
                *self.inner.staging.lock() = Default::default();
                self.broadcast_state().await;
                tracing::info!(moves = p.moves.len(), "cluster changes committed");
                Ok(ClaimantReply::Committed)
            }
            ClaimantOp::Clear => {
                *self.inner.staging.lock() = Default::default();
                let me = self.name().clone();
                let changed = self.update_state(|s| {
                    let joining: Vec<NodeName> = s
                        .active_members()
                        .filter(|(_, m)| m.status == Status::Joining)
                        .map(|(n, _)| n.clone())
                        .collect();
                    for j in &joining {
                        s.set_status(j, Status::Removed, &me);
                    }
                    Ok(!joining.is_empty())
                })?;
                if changed {
                    self.broadcast_state().await;
                }
                Ok(ClaimantReply::Cleared)
            }
        }
    }

    /// Waits until every member that is not down has this node's state (Riak's "ring ready"):
    /// a commit made while some member lags could be built on a state it has not seen.
    async fn wait_ring_ready(&self) -> NodeResult<()> {
        let deadline = rill_net::time::Instant::now() + RING_READY_WAIT;
        loop {
            let lagging = self.lagging_members();
            if lagging.is_empty() {
                return Ok(());
            }
            if rill_net::time::Instant::now() >= deadline {
                let names: Vec<String> = lagging.iter().map(ToString::to_string).collect();
                return Err(NodeError::Unreachable(format!(
                    "the ring is not ready: {} {} not confirmed the latest cluster state \
                     (mark unreachable nodes down with `rill admin down NODE`)",
                    names.join(", "),
                    if names.len() == 1 { "has" } else { "have" }
                )));
            }
            self.broadcast_state().await;
            rill_net::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Members (not down) that are unreachable or last reported another state.
    fn lagging_members(&self) -> Vec<NodeName> {
        let view = self.view();
        self.peers_of(&view)
            .into_iter()
            .filter(|n| view.state.status(n) != Status::Down)
            .filter(|n| !self.is_up(n) || self.inner.liveness.digest_of(n) != Some(view.digest))
            .collect()
    }

    /// `member-status`.
    pub fn member_status(&self) -> Vec<MemberInfo> {
        let view = self.view();
        let size = view.state.ring_size() as f64;
        let shares = view.state.shares();
        let pending = !view.state.pending().is_empty();
        view.state
            .active_members()
            .map(|(n, m)| {
                let (now, after) = shares.get(n).copied().unwrap_or_default();
                MemberInfo {
                    node: n.clone(),
                    status: m.status,
                    ring_pct: 100.0 * now as f64 / size,
                    pending_pct: pending.then(|| 100.0 * after as f64 / size),
                    reachable: self.is_up(n),
                    addr: m.addr,
                }
            })
            .collect()
    }

    /// `ring-status`.
    pub fn ring_status(&self) -> RingStatus {
        let view = self.view();
        let claimant = view.state.claimant().clone();
        let lagging = self.lagging_members();
        let unreachable: Vec<NodeName> = self
            .peers_of(&view)
            .into_iter()
            .filter(|n| !self.is_up(n))
            .collect();
        RingStatus {
            claimant_up: self.is_up(&claimant),
            claimant,
            ring_ready: lagging.is_empty(),
            pending: view
                .state
                .pending()
                .into_iter()
                .map(|t| PendingRow {
                    index: view.ring.partition_index_decimal(t.partition),
                    partition: t.partition,
                    owner: t.from,
                    next_owner: t.to,
                })
                .collect(),
            unreachable,
        }
    }

    /// `cluster status`.
    pub async fn cluster_status(&self) -> NodeResult<ClusterStatus> {
        let view = self.view();
        Ok(ClusterStatus {
            members: self.member_status(),
            claimant: view.state.claimant().clone(),
            staged: self.staged().await.unwrap_or_default(),
            ring_size: view.state.ring_size(),
        })
    }

    /// `transfers`: every member's running transfers, and who still has some to send.
    pub async fn transfers_report(&self) -> TransfersReport {
        let view = self.view();
        let mut active = self.inner.transfers.status();
        let mut unreachable = Vec::new();
        for peer in self.peers_of(&view) {
            match self
                .call(&peer, &Request::Transfers, Duration::from_secs(5))
                .await
            {
                Ok(Reply::Transfers(t)) => active.extend(t),
                _ => unreachable.push(peer),
            }
        }
        let mut waiting: Vec<(NodeName, usize)> = Vec::new();
        for t in view.state.pending() {
            match waiting.iter_mut().find(|(n, _)| *n == t.from) {
                Some((_, k)) => *k += 1,
                None => waiting.push((t.from.clone(), 1)),
            }
        }
        TransfersReport {
            active,
            waiting,
            unreachable,
        }
    }

    /// Cluster figures for `/stats`, under Riak's names where Riak has them.
    pub fn cluster_report(&self, out: &mut serde_json::Map<String, serde_json::Value>) {
        use std::sync::atomic::Ordering::Relaxed;
        let view = self.view();
        let size = view.state.ring_size();
        out.insert("ring_creation_size".into(), size.into());
        out.insert("ring_num_partitions".into(), size.into());
        let members: Vec<serde_json::Value> = view
            .state
            .active_members()
            .map(|(n, _)| n.to_string().into())
            .collect();
        out.insert("ring_members".into(), members.into());
        let owned: Vec<serde_json::Value> = view
            .ring
            .members()
            .iter()
            .map(|n| n.to_string().into())
            .collect();
        out.insert("ring_ownership_members".into(), owned.into());
        let connected: Vec<serde_json::Value> = self
            .inner
            .peers
            .status()
            .into_iter()
            .filter(|p| p.connected)
            .map(|p| p.name.to_string().into())
            .collect();
        out.insert("connected_nodes".into(), connected.into());
        out.insert("claimant".into(), view.state.claimant().to_string().into());
        out.insert("partitions_held".into(), self.vnodes().len().into());
        let t = &self.inner.transfers;
        out.insert("handoff_pending".into(), view.state.pending().len().into());
        out.insert("handoffs_active".into(), t.status().len().into());
        out.insert(
            "handoffs_completed_total".into(),
            t.completed.load(Relaxed).into(),
        );
        out.insert(
            "handoff_failures_total".into(),
            t.failures.load(Relaxed).into(),
        );
        out.insert(
            "handoff_objects_sent_total".into(),
            t.objects_sent.load(Relaxed).into(),
        );
        out.insert(
            "handoff_bytes_sent_total".into(),
            t.bytes_sent.load(Relaxed).into(),
        );
        out.insert(
            "handoff_objects_received_total".into(),
            t.objects_received.load(Relaxed).into(),
        );
    }

    /// The number of transfers this node sends at once.
    pub fn transfer_limit(&self) -> usize {
        self.inner.transfers.limit()
    }

    /// Changes how many transfers this node sends at once.
    pub fn set_transfer_limit(&self, n: usize) {
        self.inner.transfers.set_limit(n);
        self.inner.view_changed.send_modify(|v| *v += 1);
    }

    /// Names of the members that do not know bucket type `name` (activation needs all).
    pub async fn members_lacking_type(&self, name: &str) -> Vec<NodeName> {
        let view = self.view();
        let mut lacking = Vec::new();
        if !self.metadata().has_type(name) {
            lacking.push(self.name().clone());
        }
        for peer in self.peers_of(&view) {
            let has = matches!(
                self.call(
                    &peer,
                    &Request::HasType(name.to_string()),
                    Duration::from_secs(5)
                )
                .await,
                Ok(Reply::HasType(true))
            );
            if !has {
                lacking.push(peer);
            }
        }
        lacking
    }

    /// Activates a bucket type, once every member has it (Riak's rule).
    pub async fn activate_type(&self, name: &str) -> NodeResult<()> {
        let lacking = self.members_lacking_type(name).await;
        if !lacking.is_empty() && self.metadata().has_type(name) {
            let names: Vec<String> = lacking.iter().map(ToString::to_string).collect();
            return Err(NodeError::BadRequest(format!(
                "{name} cannot be activated: not every node has it yet ({} lacking); try again in a moment",
                names.join(", ")
            )));
        }
        self.metadata().activate_type(name)
    }
}

fn unexpected_claimant(r: &ClaimantReply) -> NodeError {
    NodeError::Unreachable(format!("unexpected answer from the claimant: {r:?}"))
}
