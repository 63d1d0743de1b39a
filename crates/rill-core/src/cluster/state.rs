//! The cluster state every node holds: members, partition ownership, transfers, claimant.
//!
//! The state is a product of last-writer-wins registers, each with a stamp no two writers
//! share, and the merge takes the larger stamp of every register:
//!
//! - one register per **member**, stamped by an incarnation number that every change of that
//!   member increments (ties, which only concurrent changes produce, go to the status that is
//!   further along: `down` over `valid`, `removed` over everything);
//! - one register per **partition**: its owner, the node it is moving to (if a commit started a
//!   transfer), stamped by the commit that last touched it and whether the transfer is done.
//!   Only the claimant that made commit *C* writes `(C, planned)`, and only the partition's
//!   sender writes `(C, done)`, which outranks it — so a finished transfer is never undone by a
//!   merge, whatever order the messages arrive in;
//! - one register for the **claimant** (the node that plans and commits changes), stamped by
//!   (epoch, author);
//! - a **version vector** counting each node's changes. Every change bumps its author's entry,
//!   so a copy whose vector is at least another's has seen every change the other has: gossip
//!   compares vectors to know who is behind, and equal vectors mean equal states.
//!
//! Merging registers by stamp is commutative, associative and idempotent, so copies converge
//! whatever the order, duplication or delay of gossip (property-tested below). A state arriving
//! from a peer is validated as it is decoded (see [`ClusterState`]'s `Deserialize`), so a peer
//! cannot make a node index out of bounds.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::ring::{NodeName, PartitionId, Ring, RingError};

/// A member's place in the cluster's life cycle (Riak's member statuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Asked to join; owns nothing until a commit gives it partitions.
    Joining,
    /// A full member.
    Valid,
    /// Committed to leave: handing its partitions to others.
    Leaving,
    /// Handed everything off; about to stop.
    Exiting,
    /// Marked down by an operator, so changes can proceed without it; keeps its partitions.
    Down,
    /// No longer a member (left, force-removed, or a join that was cleared).
    Removed,
}

impl Status {
    /// Riak's lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Joining => "joining",
            Status::Valid => "valid",
            Status::Leaving => "leaving",
            Status::Exiting => "exiting",
            Status::Down => "down",
            Status::Removed => "removed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member: its status and where its internode listener is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub status: Status,
    pub addr: SocketAddr,
    /// Incremented by every change to this member; the larger one wins a merge.
    pub incarnation: u64,
}

impl Member {
    fn outranks(&self, other: &Member) -> bool {
        (self.incarnation, self.status, self.addr) > (other.incarnation, other.status, other.addr)
    }
}

/// Which commit wrote a partition's register, and whether its transfer finished.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub commit: CommitId,
    pub done: bool,
}

/// A commit: the epoch it opened and the claimant that made it. Ordered by epoch, then name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CommitId {
    pub epoch: u64,
    pub author: NodeName,
}

/// One partition's ownership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub owner: NodeName,
    /// The node the partition is being handed to, while a transfer is pending.
    pub next: Option<NodeName>,
    pub stamp: Stamp,
}

/// A pending ownership transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTransfer {
    pub partition: PartitionId,
    pub from: NodeName,
    pub to: NodeName,
    pub commit: CommitId,
}

/// Why two states cannot be merged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("the peer belongs to another cluster")]
    DifferentCluster,
}

/// The whole cluster state (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Repr")]
pub struct ClusterState {
    cluster_id: u64,
    members: BTreeMap<NodeName, Member>,
    partitions: Vec<PartitionState>,
    claimant: (CommitId, NodeName),
    version: BTreeMap<NodeName, u64>,
}

/// The unvalidated form, checked on the way in.
#[derive(Deserialize)]
struct Repr {
    cluster_id: u64,
    members: BTreeMap<NodeName, Member>,
    partitions: Vec<PartitionState>,
    claimant: (CommitId, NodeName),
    version: BTreeMap<NodeName, u64>,
}

impl TryFrom<Repr> for ClusterState {
    type Error = String;
    fn try_from(r: Repr) -> Result<Self, String> {
        Ring::from_owners(r.partitions.iter().map(|p| p.owner.clone()).collect())
            .map_err(|e| e.to_string())?;
        if let Some((p, _)) = r
            .partitions
            .iter()
            .enumerate()
            .find(|(_, s)| s.next.as_ref() == Some(&s.owner))
        {
            return Err(format!("partition {p} is moving to its own owner"));
        }
        Ok(ClusterState {
            cluster_id: r.cluster_id,
            members: r.members,
            partitions: r.partitions,
            claimant: r.claimant,
            version: r.version,
        })
    }
}

impl ClusterState {
    /// A one-node cluster: `me` owns every partition and is the claimant.
    pub fn singleton(
        cluster_id: u64,
        ring_size: u32,
        me: NodeName,
        addr: SocketAddr,
    ) -> Result<ClusterState, RingError> {
        let ring = Ring::new_single(ring_size, me.clone())?;
        let first = CommitId {
            epoch: 1,
            author: me.clone(),
        };
        let mut state = ClusterState {
            cluster_id,
            members: BTreeMap::from([(
                me.clone(),
                Member {
                    status: Status::Valid,
                    addr,
                    incarnation: 1,
                },
            )]),
            partitions: ring
                .owners()
                .iter()
                .map(|o| PartitionState {
                    owner: o.clone(),
                    next: None,
                    stamp: Stamp {
                        commit: first.clone(),
                        done: true,
                    },
                })
                .collect(),
            claimant: (first, me.clone()),
            version: BTreeMap::new(),
        };
        state.bump(&me);
        Ok(state)
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn ring_size(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// Every member ever known, removed ones included (they stay so that old gossip cannot
    /// bring them back).
    pub fn members(&self) -> &BTreeMap<NodeName, Member> {
        &self.members
    }

    pub fn member(&self, name: &NodeName) -> Option<&Member> {
        self.members.get(name)
    }

    /// A member's status; `Removed` for nodes that were never members.
    pub fn status(&self, name: &NodeName) -> Status {
        self.members.get(name).map_or(Status::Removed, |m| m.status)
    }

    /// Members that are not removed, in name order.
    pub fn active_members(&self) -> impl Iterator<Item = (&NodeName, &Member)> {
        self.members
            .iter()
            .filter(|(_, m)| m.status != Status::Removed)
    }

    pub fn claimant(&self) -> &NodeName {
        &self.claimant.1
    }

    /// The current owner of partition `p` (after every finished transfer).
    pub fn owner(&self, p: PartitionId) -> &NodeName {
        &self.partitions[p as usize].owner
    }

    pub fn partition(&self, p: PartitionId) -> &PartitionState {
        &self.partitions[p as usize]
    }

    /// The ring as it is now: the current owner of every partition.
    pub fn ring(&self) -> Ring {
        Ring::from_owners(self.partitions.iter().map(|p| p.owner.clone()).collect())
            .expect("validated ring size")
    }

    /// The ring once every pending transfer is done.
    pub fn future_ring(&self) -> Ring {
        Ring::from_owners(
            self.partitions
                .iter()
                .map(|p| p.next.clone().unwrap_or_else(|| p.owner.clone()))
                .collect(),
        )
        .expect("validated ring size")
    }

    /// Transfers started by a commit and not yet finished, in partition order.
    pub fn pending(&self) -> Vec<PendingTransfer> {
        self.partitions
            .iter()
            .enumerate()
            .filter_map(|(p, s)| {
                Some(PendingTransfer {
                    partition: p as PartitionId,
                    from: s.owner.clone(),
                    to: s.next.clone()?,
                    commit: s.stamp.commit.clone(),
                })
            })
            .collect()
    }

    /// The pending transfer of partition `p`, if any.
    pub fn pending_transfer(&self, p: PartitionId) -> Option<PendingTransfer> {
        let s = self.partitions.get(p as usize)?;
        Some(PendingTransfer {
            partition: p,
            from: s.owner.clone(),
            to: s.next.clone()?,
            commit: s.stamp.commit.clone(),
        })
    }

    /// Partitions `node` owns now.
    pub fn partitions_of(&self, node: &NodeName) -> Vec<PartitionId> {
        (0..self.ring_size())
            .filter(|&p| self.owner(p) == node)
            .collect()
    }

    /// The version vector: changes seen per author.
    pub fn version(&self) -> &BTreeMap<NodeName, u64> {
        &self.version
    }

    /// Whether this copy has seen every change `other` has.
    pub fn descends(&self, other: &ClusterState) -> bool {
        other
            .version
            .iter()
            .all(|(n, c)| self.version.get(n).is_some_and(|mine| mine >= c))
    }

    /// The largest epoch any commit or claimant change has used.
    pub fn max_epoch(&self) -> u64 {
        self.partitions
            .iter()
            .map(|p| p.stamp.commit.epoch)
            .chain([self.claimant.0.epoch])
            .max()
            .unwrap_or(0)
    }

    /// Merges another copy into this one; returns whether this one changed.
    pub fn merge(&mut self, other: &ClusterState) -> Result<bool, MergeError> {
        if other.cluster_id != self.cluster_id || other.ring_size() != self.ring_size() {
            return Err(MergeError::DifferentCluster);
        }
        if self.descends(other) {
            return Ok(false);
        }
        for (name, theirs) in &other.members {
            match self.members.get_mut(name) {
                Some(mine) if !theirs.outranks(mine) => {}
                Some(mine) => *mine = theirs.clone(),
                None => {
                    self.members.insert(name.clone(), theirs.clone());
                }
            }
        }
        for (mine, theirs) in self.partitions.iter_mut().zip(&other.partitions) {
            if theirs.stamp > mine.stamp {
                *mine = theirs.clone();
            }
        }
        if other.claimant.0 > self.claimant.0 {
            self.claimant = other.claimant.clone();
        }
        for (name, count) in &other.version {
            let mine = self.version.entry(name.clone()).or_insert(0);
            *mine = (*mine).max(*count);
        }
        Ok(true)
    }

    /// Records a change made by `author`.
    fn bump(&mut self, author: &NodeName) {
        *self.version.entry(author.clone()).or_insert(0) += 1;
    }

    /// Sets a member's status and address (adding it if new), as a change by `author`.
    pub fn set_member(
        &mut self,
        name: &NodeName,
        status: Status,
        addr: SocketAddr,
        author: &NodeName,
    ) {
        let incarnation = self.members.get(name).map_or(0, |m| m.incarnation) + 1;
        self.members.insert(
            name.clone(),
            Member {
                status,
                addr,
                incarnation,
            },
        );
        self.bump(author);
    }

    /// Sets a known member's status, keeping its address. Returns false for unknown members.
    pub fn set_status(&mut self, name: &NodeName, status: Status, author: &NodeName) -> bool {
        let Some(addr) = self.members.get(name).map(|m| m.addr) else {
            return false;
        };
        self.set_member(name, status, addr, author);
        true
    }

    /// Marks partition `p`'s pending transfer done: ownership passes to the receiver. Only
    /// the sending owner calls this, once the receiver holds everything. Returns false when
    /// there is no such transfer (already done, or a newer commit replaced it).
    pub fn complete_transfer(
        &mut self,
        p: PartitionId,
        commit: &CommitId,
        author: &NodeName,
    ) -> bool {
        let Some(s) = self.partitions.get_mut(p as usize) else {
            return false;
        };
        let Some(to) = s.next.take_if(|_| s.stamp.commit == *commit) else {
            return false;
        };
        s.owner = to;
        s.stamp.done = true;
        self.bump(author);
        true
    }

    /// Starts a transfer of `p` to `to` under `commit`, or (`handoff = false`) moves it there
    /// at once. Used by the claimant's commit.
    pub(crate) fn assign(
        &mut self,
        p: PartitionId,
        to: &NodeName,
        commit: &CommitId,
        handoff: bool,
    ) {
        let s = &mut self.partitions[p as usize];
        if handoff && s.owner != *to {
            s.next = Some(to.clone());
            s.stamp = Stamp {
                commit: commit.clone(),
                done: false,
            };
        } else {
            s.owner = to.clone();
            s.next = None;
            s.stamp = Stamp {
                commit: commit.clone(),
                done: true,
            };
        }
    }

    /// Makes `me` the claimant (when the old one is gone), as a change by `me`.
    pub(crate) fn take_claimant(&mut self, me: &NodeName) {
        let commit = CommitId {
            epoch: self.max_epoch() + 1,
            author: me.clone(),
        };
        self.claimant = (commit, me.clone());
        self.bump(me);
    }

    /// Records a change by `author` that touched registers directly (a commit).
    pub(crate) fn record_change(&mut self, author: &NodeName) {
        self.bump(author);
    }

    /// Share of the ring each active member owns now and after pending transfers.
    pub fn shares(&self) -> BTreeMap<NodeName, (u32, u32)> {
        let mut out: BTreeMap<NodeName, (u32, u32)> = self
            .active_members()
            .map(|(n, _)| (n.clone(), (0, 0)))
            .collect();
        for s in &self.partitions {
            out.entry(s.owner.clone()).or_default().0 += 1;
            let future = s.next.as_ref().unwrap_or(&s.owner);
            out.entry(future.clone()).or_default().1 += 1;
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 8099))
    }

    pub(crate) fn name(i: u8) -> NodeName {
        NodeName::from(format!("n{i}@h"))
    }

    #[test]
    fn a_singleton_owns_everything_and_claims() {
        let s = ClusterState::singleton(7, 16, name(1), addr(1)).unwrap();
        assert_eq!(s.ring_size(), 16);
        assert_eq!(s.partitions_of(&name(1)).len(), 16);
        assert_eq!(s.claimant(), &name(1));
        assert_eq!(s.status(&name(1)), Status::Valid);
        assert_eq!(s.status(&name(2)), Status::Removed);
        assert!(s.pending().is_empty());
        assert_eq!(s.version()[&name(1)], 1);
        assert!(ClusterState::singleton(7, 12, name(1), addr(1)).is_err());
    }

    #[test]
    fn states_of_other_clusters_do_not_merge() {
        let mut a = ClusterState::singleton(1, 16, name(1), addr(1)).unwrap();
        let b = ClusterState::singleton(2, 16, name(2), addr(2)).unwrap();
        assert_eq!(a.merge(&b), Err(MergeError::DifferentCluster));
        let c = ClusterState::singleton(1, 32, name(2), addr(2)).unwrap();
        assert_eq!(a.merge(&c), Err(MergeError::DifferentCluster));
    }

    #[test]
    fn a_finished_transfer_outranks_the_plan_that_started_it() {
        let mut s = ClusterState::singleton(1, 8, name(1), addr(1)).unwrap();
        s.set_member(&name(2), Status::Valid, addr(2), &name(1));
        let commit = CommitId {
            epoch: 2,
            author: name(1),
        };
        s.assign(3, &name(2), &commit, true);
        s.record_change(&name(1));
        let planned = s.clone();
        assert_eq!(s.pending().len(), 1);
        assert!(s.complete_transfer(3, &commit, &name(1)));
        assert!(!s.complete_transfer(3, &commit, &name(1)), "only once");
        assert_eq!(s.owner(3), &name(2));
        let done = s.clone();
        // The older copy never undoes the completion, whichever side merges.
        let mut a = planned.clone();
        a.merge(&done).unwrap();
        assert_eq!(a, done);
        let mut b = done.clone();
        assert!(!b.merge(&planned).unwrap());
        assert_eq!(b, done);
    }

    #[test]
    fn decoding_validates_the_ring() {
        let s = ClusterState::singleton(1, 8, name(1), addr(1)).unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            serde_json::from_value::<ClusterState>(json.clone()).unwrap(),
            s
        );
        let mut bad = json.clone();
        bad["partitions"].as_array_mut().unwrap().pop();
        assert!(serde_json::from_value::<ClusterState>(bad).is_err());
        let mut bad = json;
        bad["partitions"][0]["next"] = serde_json::json!("n1@h");
        assert!(serde_json::from_value::<ClusterState>(bad).is_err());
        // Garbage through postcard never panics.
        for junk in [&b""[..], b"\x01\x02\x03", &[0xFF; 64]] {
            assert!(postcard::from_bytes::<ClusterState>(junk).is_err());
        }
    }

    /// A random change by one of five nodes to its own copy.
    #[derive(Clone, Debug)]
    enum Op {
        Member {
            by: u8,
            who: u8,
            status: u8,
        },
        Assign {
            by: u8,
            p: u32,
            to: u8,
            handoff: bool,
        },
        Complete {
            by: u8,
            p: u32,
        },
        Claimant {
            by: u8,
        },
        Sync {
            from: u8,
            to: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..5, 0u8..5, 0u8..6).prop_map(|(by, who, status)| Op::Member { by, who, status }),
            (0u8..5, 0u32..8, 0u8..5, any::<bool>()).prop_map(|(by, p, to, handoff)| Op::Assign {
                by,
                p,
                to,
                handoff
            }),
            (0u8..5, 0u32..8).prop_map(|(by, p)| Op::Complete { by, p }),
            (0u8..5).prop_map(|by| Op::Claimant { by }),
            (0u8..5, 0u8..5).prop_map(|(from, to)| Op::Sync { from, to }),
        ]
    }

    fn status(i: u8) -> Status {
        [
            Status::Joining,
            Status::Valid,
            Status::Leaving,
            Status::Exiting,
            Status::Down,
            Status::Removed,
        ][i as usize]
    }

    /// Runs random local changes and partial syncs on five copies of one cluster.
    fn histories(ops: &[Op]) -> Vec<ClusterState> {
        let base = ClusterState::singleton(9, 8, name(0), addr(0)).unwrap();
        let mut copies = vec![base; 5];
        for op in ops {
            match *op {
                Op::Member {
                    by,
                    who,
                    status: st,
                } => copies[by as usize].set_member(&name(who), status(st), addr(who), &name(by)),
                Op::Assign { by, p, to, handoff } => {
                    let c = &mut copies[by as usize];
                    let commit = CommitId {
                        epoch: c.max_epoch() + 1,
                        author: name(by),
                    };
                    c.assign(p, &name(to), &commit, handoff);
                    c.record_change(&name(by));
                }
                Op::Complete { by, p } => {
                    let c = &mut copies[by as usize];
                    if let Some(t) = c.pending_transfer(p) {
                        c.complete_transfer(p, &t.commit, &name(by));
                    }
                }
                Op::Claimant { by } => copies[by as usize].take_claimant(&name(by)),
                Op::Sync { from, to } => {
                    let src = copies[from as usize].clone();
                    copies[to as usize].merge(&src).unwrap();
                }
            }
        }
        copies
    }

    proptest! {
        #[test]
        fn gossip_converges_from_any_order(ops in prop::collection::vec(op(), 0..40), order in Just(()).prop_perturb(|_, mut rng| {
            let mut v: Vec<usize> = (0..5).collect();
            for i in (1..5).rev() { v.swap(i, (rng.next_u32() as usize) % (i + 1)); }
            v
        })) {
            let copies = histories(&ops);
            // Merge all copies into one, in two different orders: the same state.
            let mut forward = copies[0].clone();
            for c in &copies[1..] { forward.merge(c).unwrap(); }
            let mut shuffled = copies[order[0]].clone();
            for &i in &order[1..] { shuffled.merge(&copies[i]).unwrap(); }
            prop_assert_eq!(&forward, &shuffled);
            // Idempotent, and the result descends every input.
            let again = forward.clone();
            prop_assert!(!forward.merge(&again).unwrap());
            for c in &copies {
                prop_assert!(forward.descends(c));
                let mut x = forward.clone();
                prop_assert!(!x.merge(c).unwrap());
            }
            // Associative: (a+b)+c == a+(b+c).
            let (a, b, c) = (&copies[0], &copies[1], &copies[2]);
            let mut ab = a.clone(); ab.merge(b).unwrap(); ab.merge(c).unwrap();
            let mut bc = b.clone(); bc.merge(c).unwrap();
            let mut a_bc = a.clone(); a_bc.merge(&bc).unwrap();
            prop_assert_eq!(ab, a_bc);
        }

        #[test]
        fn equal_versions_mean_equal_states(ops in prop::collection::vec(op(), 0..40)) {
            let copies = histories(&ops);
            for x in &copies {
                for y in &copies {
                    if x.version() == y.version() {
                        prop_assert_eq!(x, y);
                    }
                }
            }
        }
    }
}
