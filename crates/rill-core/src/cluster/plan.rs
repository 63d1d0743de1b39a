//! Staged membership changes, the plan they make, and the claimant's commit.
//!
//! As in Riak, an operator stages changes (`leave`, `force-remove`, `replace`, ...; a `join`
//! is staged by the joining node appearing as a `joining` member), reviews the [`Plan`] — the
//! ring after the changes, the transfers, the resulting shares, warnings — and commits it. Only
//! the claimant plans and commits, and a commit is refused when the state changed since the plan
//! was made (the operator sees a stale plan, never a different one than the one applied), when
//! nothing is staged, or while transfers of the previous commit are still running.
//!
//! The claimant also has routine duties that need no operator ([`claimant_duties`]): retiring
//! members that finished leaving. [`elect_claimant`] lets another node take over when the
//! claimant itself is gone.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::state::{ClusterState, CommitId, Status};
use crate::ring::{NodeName, PartitionId, Ring};

/// A change an operator stages (joins are staged by the joining node itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Hand the node's partitions to the others, then remove it.
    Leave(NodeName),
    /// Remove the node at once; its partitions move without handoff.
    ForceRemove(NodeName),
    /// Hand every partition of `node` to the joining node `with`, then remove `node`.
    Replace { node: NodeName, with: NodeName },
    /// Give `node`'s partitions to the joining node `with` at once, without handoff.
    ForceReplace { node: NodeName, with: NodeName },
}

impl Change {
    /// The node a change is about.
    pub fn node(&self) -> &NodeName {
        match self {
            Change::Leave(n) | Change::ForceRemove(n) => n,
            Change::Replace { node, .. } | Change::ForceReplace { node, .. } => node,
        }
    }
}

/// One partition moving in a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub partition: PartitionId,
    pub from: NodeName,
    pub to: NodeName,
    /// False when the move happens without handoff (force-remove, force-replace): the new
    /// owner starts empty and replicas are rebuilt by read repair and anti-entropy.
    pub handoff: bool,
}

/// What committing the staged changes would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Staged changes, joins included, as (action, node, other node) for display.
    pub actions: Vec<(String, NodeName, Option<NodeName>)>,
    /// The operator's changes (joins are implied by joining members).
    pub changes: Vec<Change>,
    /// Owners after every transfer.
    pub owners: Vec<NodeName>,
    pub moves: Vec<Move>,
    /// Partitions per member now and after.
    pub shares: BTreeMap<NodeName, (u32, u32)>,
    pub warnings: Vec<String>,
    /// The state version the plan was computed on.
    pub based_on: BTreeMap<NodeName, u64>,
}

/// Why a plan or commit was refused. `Display` is what the operator reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PlanError {
    #[error("There are no staged changes")]
    NothingStaged,
    #[error("the cluster changed since the plan was made; run `cluster plan` again")]
    Stale,
    #[error(
        "{left} transfers of the previous change are still pending; wait until `rill admin transfers` shows none"
    )]
    TransfersPending { left: usize },
    #[error("{0}")]
    Invalid(String),
}

/// Computes the plan for the staged `changes` plus every joining member.
pub fn plan(
    state: &ClusterState,
    changes: &[Change],
    claimant: &NodeName,
    target_n_val: u32,
) -> Result<Plan, PlanError> {
    validate(state, changes, claimant)?;
    let joining: Vec<NodeName> = state
        .active_members()
        .filter(|(_, m)| m.status == Status::Joining)
        .map(|(n, _)| n.clone())
        .collect();
    if changes.is_empty() && joining.is_empty() {
        return Err(PlanError::NothingStaged);
    }
    let forced: BTreeSet<&NodeName> = changes
        .iter()
        .filter(|c| matches!(c, Change::ForceRemove(_) | Change::ForceReplace { .. }))
        .map(Change::node)
        .collect();
    // Transfers still pending are allowed only when a forced change settles them: a transfer
    // from a force-removed node moves without handoff, one to it is cancelled.
    let mut start: Vec<NodeName> = Vec::with_capacity(state.ring_size() as usize);
    let mut left = 0;
    for p in 0..state.ring_size() {
        let s = state.partition(p);
        match &s.next {
            Some(to) if forced.contains(&s.owner) => start.push(to.clone()),
            Some(to) if forced.contains(to) => start.push(s.owner.clone()),
            Some(_) => {
                left += 1;
                start.push(s.owner.clone());
            }
            None => start.push(s.owner.clone()),
        }
    }
    if left > 0 {
        return Err(PlanError::TransfersPending { left });
    }

    // Replacements rename owners first; then one claim over the remaining members.
    let mut renamed = start.clone();
    for c in changes {
        if let Change::Replace { node, with } | Change::ForceReplace { node, with } = c {
            for o in renamed.iter_mut().filter(|o| *o == node) {
                *o = with.clone();
            }
        }
    }
    let departing: BTreeSet<&NodeName> = changes.iter().map(Change::node).collect();
    let claiming: Vec<NodeName> = state
        .active_members()
        .filter(|(n, m)| {
            matches!(m.status, Status::Valid | Status::Joining | Status::Down)
                && !departing.contains(n)
        })
        .map(|(n, _)| n.clone())
        .collect();
    if claiming.is_empty() {
        return Err(PlanError::Invalid(
            "the plan would leave the cluster without members".into(),
        ));
    }
    let before = Ring::from_owners(renamed).expect("same ring size");
    let (after, report) = before.claim(&claiming, target_n_val);
    let owners = after.owners().to_vec();

    let moves: Vec<Move> = (0..state.ring_size())
        .filter(|&p| owners[p as usize] != start[p as usize])
        .map(|p| {
            let from = start[p as usize].clone();
            Move {
                partition: p,
                handoff: !forced.contains(&from),
                to: owners[p as usize].clone(),
                from,
            }
        })
        .collect();

    let mut shares: BTreeMap<NodeName, (u32, u32)> = state
        .active_members()
        .map(|(n, _)| (n.clone(), (0, 0)))
        .collect();
    for p in 0..state.ring_size() {
        shares.entry(state.owner(p).clone()).or_default().0 += 1;
        shares.entry(owners[p as usize].clone()).or_default().1 += 1;
    }

    let mut warnings: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
    for (n, m) in state.active_members() {
        if m.status == Status::Down && moves.iter().any(|mv| mv.handoff && &mv.from == n) {
            warnings.push(format!(
                "{n} is down: its transfers will wait until it is back"
            ));
        }
    }
    for n in &forced {
        let lost = moves.iter().filter(|m| !m.handoff && &m.from == *n).count();
        warnings.push(format!(
            "{n}: {lost} partitions move without handoff; their replicas are rebuilt from the \
             other replicas by read repair"
        ));
    }

    let mut actions: Vec<(String, NodeName, Option<NodeName>)> = joining
        .iter()
        .filter(|j| {
            !changes.iter().any(
                |c| matches!(c, Change::Replace { with, .. } | Change::ForceReplace { with, .. } if with == *j),
            )
        })
        .map(|j| ("join".to_string(), j.clone(), None))
        .collect();
    for c in changes {
        actions.push(match c {
            Change::Leave(n) => ("leave".into(), n.clone(), None),
            Change::ForceRemove(n) => ("force-remove".into(), n.clone(), None),
            Change::Replace { node, with } => ("replace".into(), node.clone(), Some(with.clone())),
            Change::ForceReplace { node, with } => {
                ("force-replace".into(), node.clone(), Some(with.clone()))
            }
        });
    }

    Ok(Plan {
        actions,
        changes: changes.to_vec(),
        owners,
        moves,
        shares,
        warnings,
        based_on: state.version().clone(),
    })
}

/// Checks each staged change against the members.
pub fn validate(
    state: &ClusterState,
    changes: &[Change],
    claimant: &NodeName,
) -> Result<(), PlanError> {
    let invalid = |m: String| Err(PlanError::Invalid(m));
    let mut seen = BTreeSet::new();
    for c in changes {
        for n in [Some(c.node()), replacement(c)].into_iter().flatten() {
            if !seen.insert(n.clone()) {
                return invalid(format!("{n} appears in more than one staged change"));
            }
        }
        let status = state.status(c.node());
        match c {
            Change::Leave(n) if status != Status::Valid => {
                return invalid(format!("{n} cannot leave: it is {status}, not valid"));
            }
            Change::ForceRemove(n) if status == Status::Removed => {
                return invalid(format!("{n} is not a member of this cluster"));
            }
            Change::ForceRemove(n) if n == claimant => {
                return invalid(format!(
                    "{n} is the claimant and cannot remove itself; mark it down \
                     (`rill admin down {n}`) and run the command on another node"
                ));
            }
            Change::Replace { node, with } | Change::ForceReplace { node, with } => {
                if !matches!(status, Status::Valid | Status::Down) {
                    return invalid(format!("{node} cannot be replaced: it is {status}"));
                }
                if state.status(with) != Status::Joining {
                    return invalid(format!(
                        "{with} must be joining the cluster to replace {node} (run `cluster join` on it first)"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn replacement(c: &Change) -> Option<&NodeName> {
    match c {
        Change::Replace { with, .. } | Change::ForceReplace { with, .. } => Some(with),
        _ => None,
    }
}

/// Applies a plan as the claimant `me`. Refused when the state moved on since the plan.
pub fn commit(state: &mut ClusterState, plan: &Plan, me: &NodeName) -> Result<(), PlanError> {
    if state.version() != &plan.based_on {
        return Err(PlanError::Stale);
    }
    let commit = CommitId {
        epoch: state.max_epoch() + 1,
        author: me.clone(),
    };
    // Pending transfers a forced change settles, then the plan's moves.
    for p in 0..state.ring_size() {
        let s = state.partition(p).clone();
        if s.next.is_some() {
            let target = plan.owners[p as usize].clone();
            state.assign(p, &target, &commit, false);
        }
    }
    for m in &plan.moves {
        state.assign(m.partition, &m.to, &commit, m.handoff);
    }
    let joining: Vec<NodeName> = state
        .active_members()
        .filter(|(_, m)| m.status == Status::Joining)
        .map(|(n, _)| n.clone())
        .collect();
    for j in &joining {
        state.set_status(j, Status::Valid, me);
    }
    for c in &plan.changes {
        match c {
            Change::Leave(n) | Change::Replace { node: n, .. } => {
                state.set_status(n, Status::Leaving, me);
            }
            Change::ForceRemove(n) | Change::ForceReplace { node: n, .. } => {
                state.set_status(n, Status::Removed, me);
            }
        }
    }
    state.record_change(me);
    Ok(())
}

/// The claimant's routine work: a leaving member that owns nothing and has nothing left to
/// hand off has exited; an exited member is removed. Returns whether the state changed.
pub fn claimant_duties(state: &mut ClusterState, me: &NodeName) -> bool {
    if state.claimant() != me {
        return false;
    }
    let pending = state.pending();
    let done: Vec<NodeName> = state
        .active_members()
        .filter(|(n, m)| {
            matches!(m.status, Status::Leaving | Status::Exiting)
                && state.partitions_of(n).is_empty()
                && !pending.iter().any(|t| &t.from == *n || &t.to == *n)
        })
        .map(|(n, _)| n.clone())
        .collect();
    for n in &done {
        state.set_status(n, Status::Removed, me);
    }
    !done.is_empty()
}

/// Takes the claimant role when the claimant is no longer a working member (down, exiting or
/// removed) and `me` is the first valid member by name. Returns whether it did.
pub fn elect_claimant(state: &mut ClusterState, me: &NodeName) -> bool {
    let current = state.status(state.claimant());
    if matches!(current, Status::Valid | Status::Leaving) {
        return false;
    }
    let first_valid = state
        .active_members()
        .find(|(_, m)| m.status == Status::Valid)
        .map(|(n, _)| n.clone());
    if first_valid.as_ref() != Some(me) {
        return false;
    }
    state.take_claimant(me);
    true
}

#[cfg(test)]
mod tests {
    use super::super::state::tests::{addr, name};
    use super::*;
    use proptest::prelude::*;

    fn cluster(n: u8, size: u32) -> ClusterState {
        let mut s = ClusterState::singleton(1, size, name(0), addr(0)).unwrap();
        for i in 1..n {
            s.set_member(&name(i), Status::Joining, addr(i), &name(i));
        }
        let p = plan(&s, &[], &name(0), 4).unwrap();
        commit(&mut s, &p, &name(0)).unwrap();
        finish(&mut s);
        s
    }

    /// Completes every pending transfer, as the senders would.
    fn finish(s: &mut ClusterState) {
        for t in s.pending() {
            let from = t.from.clone();
            assert!(s.complete_transfer(t.partition, &t.commit, &from));
        }
    }

    #[test]
    fn joins_are_planned_committed_and_balanced() {
        let mut s = ClusterState::singleton(1, 64, name(0), addr(0)).unwrap();
        assert_eq!(plan(&s, &[], &name(0), 4), Err(PlanError::NothingStaged));
        s.set_member(&name(1), Status::Joining, addr(1), &name(1));
        s.set_member(&name(2), Status::Joining, addr(2), &name(2));
        let p = plan(&s, &[], &name(0), 4).unwrap();
        assert_eq!(p.actions.len(), 2);
        assert!(p.actions.iter().all(|(a, _, _)| a == "join"));
        assert_eq!(p.shares[&name(0)], (64, 22));
        assert!(p.moves.iter().all(|m| m.handoff && m.from == name(0)));
        assert_eq!(p.moves.len(), 64 - 22);
        // 3 nodes cannot keep 4 consecutive partitions distinct.
        assert!(!p.warnings.is_empty());
        commit(&mut s, &p, &name(0)).unwrap();
        assert_eq!(s.status(&name(1)), Status::Valid);
        // Ownership stays until each transfer finishes.
        assert_eq!(s.partitions_of(&name(0)).len(), 64);
        assert_eq!(s.pending().len(), 42);
        assert_eq!(s.future_ring().partitions_of(&name(1)).len(), 21);
        // A new plan must wait for the transfers.
        s.set_member(&name(3), Status::Joining, addr(3), &name(3));
        assert_eq!(
            plan(&s, &[], &name(0), 4),
            Err(PlanError::TransfersPending { left: 42 })
        );
        finish(&mut s);
        assert_eq!(s.ring().owners(), &p.owners[..]);
    }

    #[test]
    fn a_stale_plan_is_refused() {
        let mut s = ClusterState::singleton(1, 16, name(0), addr(0)).unwrap();
        s.set_member(&name(1), Status::Joining, addr(1), &name(1));
        let p = plan(&s, &[], &name(0), 4).unwrap();
        s.set_member(&name(2), Status::Joining, addr(2), &name(2));
        assert_eq!(commit(&mut s, &p, &name(0)), Err(PlanError::Stale));
    }

    #[test]
    fn leave_hands_everything_off_and_the_claimant_retires_the_node() {
        let mut s = cluster(4, 64);
        let p = plan(&s, &[Change::Leave(name(3))], &name(0), 4).unwrap();
        // Every partition of the leaver moves (others may shift to keep the ring spaced).
        assert!(p.moves.iter().all(|m| m.handoff));
        let owned = s.partitions_of(&name(3));
        assert!(
            owned
                .iter()
                .all(|q| p.moves.iter().any(|m| m.partition == *q))
        );
        assert_eq!(p.shares[&name(3)].1, 0);
        commit(&mut s, &p, &name(0)).unwrap();
        assert_eq!(s.status(&name(3)), Status::Leaving);
        assert!(!claimant_duties(&mut s, &name(0)), "still owns partitions");
        finish(&mut s);
        assert!(s.partitions_of(&name(3)).is_empty());
        assert!(
            !claimant_duties(&mut s, &name(1)),
            "only the claimant retires"
        );
        assert!(claimant_duties(&mut s, &name(0)));
        assert_eq!(s.status(&name(3)), Status::Removed);
    }

    #[test]
    fn force_remove_moves_without_handoff_and_settles_pending_transfers() {
        let mut s = cluster(3, 32);
        s.set_member(&name(3), Status::Joining, addr(3), &name(3));
        let p = plan(&s, &[], &name(0), 4).unwrap();
        commit(&mut s, &p, &name(0)).unwrap();
        // Transfers among the live nodes finish; those to the new node never will.
        for t in s.pending().into_iter().filter(|t| t.to != name(3)) {
            assert!(s.complete_transfer(t.partition, &t.commit, &t.from));
        }
        assert!(!s.pending().is_empty());
        // The new node dies before receiving anything: force-remove settles its transfers.
        let p = plan(&s, &[Change::ForceRemove(name(3))], &name(0), 4).unwrap();
        assert!(p.moves.iter().all(|m| m.to != name(3)));
        commit(&mut s, &p, &name(0)).unwrap();
        assert!(s.pending().iter().all(|t| t.to != name(3)));
        assert_eq!(s.status(&name(3)), Status::Removed);
        assert!(s.partitions_of(&name(3)).is_empty());
        finish(&mut s);
        // Force-removing a node that owns partitions moves them at once, no handoff.
        let p = plan(&s, &[Change::ForceRemove(name(2))], &name(0), 4).unwrap();
        assert!(
            p.moves
                .iter()
                .filter(|m| m.from == name(2))
                .all(|m| !m.handoff)
        );
        assert!(p.warnings.iter().any(|w| w.contains("without handoff")));
        commit(&mut s, &p, &name(0)).unwrap();
        assert!(s.partitions_of(&name(2)).is_empty());
    }

    #[test]
    fn replace_gives_exactly_the_old_nodes_partitions_to_the_new_one() {
        let mut s = cluster(3, 64);
        let owned = s.partitions_of(&name(1));
        s.set_member(&name(7), Status::Joining, addr(7), &name(7));
        let change = Change::Replace {
            node: name(1),
            with: name(7),
        };
        let p = plan(&s, std::slice::from_ref(&change), &name(0), 4).unwrap();
        let moved: Vec<PartitionId> = p.moves.iter().map(|m| m.partition).collect();
        assert_eq!(moved, owned);
        assert!(p.moves.iter().all(|m| m.from == name(1) && m.to == name(7)));
        assert_eq!(p.actions, vec![("replace".into(), name(1), Some(name(7)))]);
        commit(&mut s, &p, &name(0)).unwrap();
        assert_eq!(s.status(&name(1)), Status::Leaving);
        assert_eq!(s.status(&name(7)), Status::Valid);
    }

    #[test]
    fn invalid_changes_are_refused_with_a_reason() {
        let s = cluster(3, 16);
        let err = |c: Vec<Change>| match plan(&s, &c, &name(0), 4) {
            Err(PlanError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(err(vec![Change::Leave(name(9))]).contains("cannot leave"));
        assert!(err(vec![Change::ForceRemove(name(9))]).contains("not a member"));
        assert!(err(vec![Change::ForceRemove(name(0))]).contains("claimant"));
        assert!(
            err(vec![Change::Leave(name(1)), Change::ForceRemove(name(1))])
                .contains("more than one")
        );
        assert!(
            err(vec![Change::Replace {
                node: name(1),
                with: name(2)
            }])
            .contains("must be joining")
        );
        let mut lone = ClusterState::singleton(1, 16, name(0), addr(0)).unwrap();
        let r = plan(&lone, &[Change::Leave(name(0))], &name(0), 4);
        assert!(matches!(r, Err(PlanError::Invalid(m)) if m.contains("without members")));
        lone.set_status(&name(0), Status::Down, &name(0));
        assert!(!elect_claimant(&mut lone, &name(0)));
    }

    #[test]
    fn a_new_claimant_is_elected_only_when_the_old_one_is_gone() {
        let mut s = cluster(3, 16);
        assert!(!elect_claimant(&mut s, &name(1)));
        s.set_status(&name(0), Status::Down, &name(2));
        assert!(!elect_claimant(&mut s, &name(2)), "n1 comes first");
        assert!(elect_claimant(&mut s, &name(1)));
        assert_eq!(s.claimant(), &name(1));
        assert!(!elect_claimant(&mut s, &name(1)));
    }

    /// One operator step in a random cluster history.
    #[derive(Clone, Debug)]
    enum Step {
        Join,
        Leave(usize),
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn random_joins_and_leaves_stay_balanced_spaced_and_move_little(
            size in (3u32..=10).prop_map(|b| 1 << b),
            steps in prop::collection::vec(prop_oneof![3 => Just(Step::Join), 1 => (0usize..32).prop_map(Step::Leave)], 1..24),
        ) {
            let mut s = ClusterState::singleton(1, size, name(0), addr(0)).unwrap();
            let mut next = 1u8;
            let (mut moved, mut ideal) = (0usize, 0usize);
            for step in steps {
                let members: Vec<NodeName> = s.active_members().map(|(n, _)| n.clone()).collect();
                let change = match step {
                    Step::Join if members.len() < 32 => {
                        s.set_member(&name(next), Status::Joining, addr(next), &name(next));
                        next += 1;
                        None
                    }
                    Step::Leave(i) if members.len() > 1 => {
                        let leaving = members[i % members.len()].clone();
                        if leaving == *s.claimant() { continue; }
                        Some(Change::Leave(leaving))
                    }
                    _ => continue,
                };
                let before = members.len();
                let claimant = s.claimant().clone();
                let p = plan(&s, change.as_slice(), &claimant, 4).unwrap();
                commit(&mut s, &p, &claimant).unwrap();
                finish(&mut s);
                claimant_duties(&mut s, &claimant);
                let after: Vec<NodeName> = s.active_members().map(|(n, _)| n.clone()).collect();
                // Balanced: every member within one partition of its share.
                let share = size as usize / after.len();
                for m in &after {
                    let k = s.partitions_of(m).len();
                    prop_assert!(k == share || k == share + 1, "{m}: {k} of {size} over {}", after.len());
                }
                // Spaced whenever it can be.
                let feasible = after.len() >= 4 && ((size as usize).is_multiple_of(after.len())
                    || (share + 1) * 4 <= size as usize);
                if feasible {
                    prop_assert!(s.ring().spacing_violations(4).is_empty());
                }
                moved += p.moves.len();
                // The least any claim could move: the newcomer's share, or the leaver's partitions.
                ideal += (size as usize).div_ceil(after.len().max(before)) ;
            }
            if ideal > 0 {
                let ratio = moved as f64 / ideal as f64;
                println!("size {size}: moved/ideal = {ratio:.2} ({moved}/{ideal})");
                prop_assert!(ratio <= 4.0, "moved {moved}, ideal {ideal}");
            }
        }
    }
}
