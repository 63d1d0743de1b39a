//! The consistent-hash ring: which node owns which slice of the key space, the preference list
//! of a key, the sloppy-quorum substitutes for down nodes, and the claim that computes a new
//! ownership when the cluster's membership changes.
//!
//! The arithmetic is Riak's, so that a key lives on the same partitions in Rill as in Riak: the
//! ring is the 160-bit SHA-1 space cut into `size` equal arcs (`size` a power of two), partition
//! `i` is named by its "index" `i * 2^160 / size`, and a key hash `h` belongs first to partition
//! `(h div inc + 1) mod size` — the first partition boundary strictly after the hash — followed
//! clockwise by the rest of its preference list.
//!
//! Everything here is pure: the ring models any number of nodes by name, liveness is a
//! predicate passed in, and [`Ring::claim`] is a deterministic function of the current ring and
//! the member list, so every node that runs it on the same input computes the same ring.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A partition number, `0..ring_size`.
pub type PartitionId = u32;

/// Smallest ring size accepted (Riak's lower bound for `ring_creation_size`).
pub const MIN_RING_SIZE: u32 = 8;
/// Largest ring size accepted.
pub const MAX_RING_SIZE: u32 = 1024;

/// A node's name, such as `rill@127.0.0.1`. Cloning shares the string, so names can be copied
/// into every preference list entry cheaply.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(Arc<str>);

impl NodeName {
    pub fn new(name: &str) -> Self {
        NodeName(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NodeName {
    fn from(name: &str) -> Self {
        NodeName::new(name)
    }
}

impl From<String> for NodeName {
    fn from(name: String) -> Self {
        NodeName(Arc::from(name))
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for NodeName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(NodeName::from)
    }
}

/// Why a ring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error(
        "ring size {0} is invalid: it must be a power of two between {MIN_RING_SIZE} and {MAX_RING_SIZE}"
    )]
    InvalidSize(u64),
}

/// The ownership of every partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RingRepr", into = "RingRepr")]
pub struct Ring {
    size: u32,
    owners: Vec<NodeName>,
}

/// The serialized form: the owners alone (the size is their count), validated on the way in so
/// a ring received from a peer or read from disk is always well formed.
#[derive(Serialize, Deserialize)]
struct RingRepr {
    owners: Vec<NodeName>,
}

impl TryFrom<RingRepr> for Ring {
    type Error = RingError;
    fn try_from(repr: RingRepr) -> Result<Self, RingError> {
        Ring::from_owners(repr.owners)
    }
}

impl From<Ring> for RingRepr {
    fn from(ring: Ring) -> Self {
        RingRepr {
            owners: ring.owners,
        }
    }
}

/// One entry of an active preference list: the partition whose replica is meant, the node that
/// will serve it, and whether that node is the partition's owner (primary) or a stand-in
/// (fallback) that will hand the data back later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflistEntry {
    pub partition: PartitionId,
    pub node: NodeName,
    pub primary: bool,
}

/// One partition changing owner in a claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub partition: PartitionId,
    pub from: NodeName,
    pub to: NodeName,
}

/// Something a claim could not achieve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimWarning {
    /// The member list was empty; the ring was left unchanged.
    NoMembers,
    /// Too few members (or a ring too small for them) to keep every `target_n_val` consecutive
    /// partitions on distinct nodes; ownership is balanced but some preference lists repeat a
    /// node.
    SpacingImpossible { members: usize, target_n_val: u32 },
}

impl fmt::Display for ClaimWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimWarning::NoMembers => f.write_str("no members to claim the ring; ring unchanged"),
            ClaimWarning::SpacingImpossible {
                members,
                target_n_val,
            } => write!(
                f,
                "{members} members cannot keep every {target_n_val} consecutive partitions on \
                 distinct nodes; some replicas will share a node"
            ),
        }
    }
}

/// What a claim did: the partitions that move (in partition order) and any warnings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimReport {
    pub transfers: Vec<Transfer>,
    pub warnings: Vec<ClaimWarning>,
}

impl Ring {
    /// A fresh ring of `size` partitions all owned by `node` (a one-node cluster).
    pub fn new_single(size: u32, node: NodeName) -> Result<Ring, RingError> {
        check_size(size as u64)?;
        Ok(Ring {
            size,
            owners: vec![node; size as usize],
        })
    }

    /// A ring with the given owner per partition; the count must be a valid ring size.
    pub fn from_owners(owners: Vec<NodeName>) -> Result<Ring, RingError> {
        let size = check_size(owners.len() as u64)?;
        Ok(Ring { size, owners })
    }

    /// The number of partitions.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The owner of partition `id`, or `None` if there is no such partition.
    pub fn owner(&self, id: PartitionId) -> Option<&NodeName> {
        self.owners.get(id as usize)
    }

    /// Every partition's owner, in partition order.
    pub fn owners(&self) -> &[NodeName] {
        &self.owners
    }

    /// The distinct owners, sorted.
    pub fn members(&self) -> Vec<NodeName> {
        let set: BTreeSet<&NodeName> = self.owners.iter().collect();
        set.into_iter().cloned().collect()
    }

    /// The partitions `node` owns, in order.
    pub fn partitions_of(&self, node: &NodeName) -> Vec<PartitionId> {
        (0..self.size)
            .filter(|&p| &self.owners[p as usize] == node)
            .collect()
    }

    /// The first partition of a key's preference list: the first boundary clockwise after the
    /// hash, `((h div inc) + 1) mod size`.
    pub fn partition_for(&self, hash: &[u8; 20]) -> PartitionId {
        // inc = 2^160 / size = 2^(160 - bits), so `h div inc` is the hash's top `bits` bits;
        // bits <= 10, so the first two bytes hold them.
        let bits = self.bits();
        let top = u16::from_be_bytes([hash[0], hash[1]]) as u32 >> (16 - bits);
        (top + 1) % self.size
    }

    /// Riak's name for partition `id`: the 160-bit big-endian integer `id * 2^160 / size`.
    pub fn partition_index(&self, id: PartitionId) -> [u8; 20] {
        let mut out = [0u8; 20];
        let shifted = ((id % self.size) << (16 - self.bits())) as u16;
        out[..2].copy_from_slice(&shifted.to_be_bytes());
        out
    }

    /// [`Ring::partition_index`] in decimal, as Riak prints partition indexes.
    pub fn partition_index_decimal(&self, id: PartitionId) -> String {
        u160_to_decimal(&self.partition_index(id))
    }

    /// The `n` partitions (at most the ring size) that hold a key's replicas: `n` consecutive
    /// partitions clockwise from [`Ring::partition_for`].
    pub fn preflist(&self, hash: &[u8; 20], n: u32) -> impl Iterator<Item = PartitionId> + use<> {
        let (first, size) = (self.partition_for(hash), self.size);
        (0..n.min(size)).map(move |i| (first + i) % size)
    }

    /// The active preference list (sloppy quorum), as Riak's `get_apl_ann`: the primaries that
    /// are up, in preference order, then one fallback per down primary. Fallbacks are found by
    /// walking the partitions that follow the first `n` clockwise, once around the rest of the
    /// ring: each position is considered at most once, and a position whose owner is up serves
    /// the next down primary. The result has fewer than `n` entries only when too few up owners
    /// remain in the rest of the ring.
    pub fn apl(
        &self,
        hash: &[u8; 20],
        n: u32,
        is_up: impl Fn(&NodeName) -> bool,
    ) -> Vec<PreflistEntry> {
        let n = n.min(self.size);
        let first = self.partition_for(hash);
        let mut out = Vec::with_capacity(n as usize);
        let mut down = Vec::new();
        for p in self.preflist(hash, n) {
            let node = &self.owners[p as usize];
            if is_up(node) {
                out.push(PreflistEntry {
                    partition: p,
                    node: node.clone(),
                    primary: true,
                });
            } else {
                down.push(p);
            }
        }
        let mut rest = (n..self.size).map(|i| (first + i) % self.size);
        for partition in down {
            let Some(stand_in) = rest.find(|&q| is_up(&self.owners[q as usize])) else {
                break;
            };
            let node = self.owners[stand_in as usize].clone();
            out.push(PreflistEntry {
                partition,
                node,
                primary: false,
            });
        }
        out
    }

    /// The partitions whose owner also owns one of the next `target_n_val - 1` partitions
    /// clockwise: where a preference list of that length would repeat a node.
    pub fn spacing_violations(&self, target_n_val: u32) -> Vec<PartitionId> {
        let owners: Vec<usize> = index_owners(&self.owners, &self.members());
        violations(&owners, target_n_val as usize)
            .into_iter()
            .map(|p| p as PartitionId)
            .collect()
    }

    /// Computes a new ownership for `members` (duplicates ignored, order irrelevant).
    ///
    /// Goals, in priority order: every partition is owned by a member; every member owns
    /// `size / count` partitions (±1); any `target_n_val` consecutive partitions are owned by
    /// distinct nodes whenever that is possible (otherwise the report carries a warning); as
    /// few partitions as possible change owner. The result depends only on the inputs.
    ///
    /// When the target spacing is impossible the claim keeps the widest spacing that is possible
    /// and reports a warning. It first tries to move only what must move: members below their share take
    /// partitions from members above theirs (and from departed owners), choosing positions that
    /// keep their own partitions `target_n_val` apart. If that leaves a spacing violation that a
    /// full rearrangement could avoid, it lays the members out in a spaced pattern instead,
    /// rotated and labelled to keep as many current owners as possible.
    pub fn claim(&self, members: &[NodeName], target_n_val: u32) -> (Ring, ClaimReport) {
        let members: Vec<NodeName> = members
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if members.is_empty() {
            let report = ClaimReport {
                transfers: Vec::new(),
                warnings: vec![ClaimWarning::NoMembers],
            };
            return (self.clone(), report);
        }
        let size = self.size as usize;
        let spacing = (target_n_val as usize).clamp(1, size);
        let current = index_owners(&self.owners, &members);
        // When the target spacing cannot be met, aim for the widest spacing that can.
        let achievable = (1..=spacing)
            .rev()
            .find(|&s| spacing_feasible(size, members.len(), s))
            .unwrap_or(1);
        let mut chosen = incremental_claim(&current, members.len(), achievable);
        if !violations(&chosen, achievable).is_empty() {
            chosen = pattern_claim(&current, members.len());
        }
        let owners: Vec<NodeName> = chosen.iter().map(|&m| members[m].clone()).collect();
        let transfers = (0..self.size)
            .filter(|&p| owners[p as usize] != self.owners[p as usize])
            .map(|p| Transfer {
                partition: p,
                from: self.owners[p as usize].clone(),
                to: owners[p as usize].clone(),
            })
            .collect();
        let mut warnings = Vec::new();
        if achievable < spacing {
            warnings.push(ClaimWarning::SpacingImpossible {
                members: members.len(),
                target_n_val,
            });
        }
        (
            Ring {
                size: self.size,
                owners,
            },
            ClaimReport {
                transfers,
                warnings,
            },
        )
    }

    /// log2 of the size (the size is a validated power of two).
    fn bits(&self) -> u32 {
        self.size.trailing_zeros()
    }
}

fn check_size(size: u64) -> Result<u32, RingError> {
    let ok =
        size.is_power_of_two() && (MIN_RING_SIZE as u64..=MAX_RING_SIZE as u64).contains(&size);
    if ok {
        Ok(size as u32)
    } else {
        Err(RingError::InvalidSize(size))
    }
}

/// Formats a 160-bit big-endian unsigned integer in decimal.
pub fn u160_to_decimal(value: &[u8; 20]) -> String {
    let mut num = *value;
    let mut digits = Vec::new();
    loop {
        // Long division of the whole number by 10, most significant byte first.
        let mut rem = 0u32;
        for byte in num.iter_mut() {
            let cur = (rem << 8) | *byte as u32;
            *byte = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
        if num.iter().all(|&b| b == 0) {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).expect("ASCII digits")
}

/// Owners as member indexes; a partition whose owner is not a member gets `usize::MAX`, which
/// marks it as one that must move (and never equals a member, so it never counts as a repeat).
fn index_owners(owners: &[NodeName], members: &[NodeName]) -> Vec<usize> {
    owners
        .iter()
        .map(|o| members.binary_search(o).unwrap_or(usize::MAX))
        .collect()
}

/// Partitions whose owner reappears within the next `spacing - 1` partitions (cyclically).
fn violations(owners: &[usize], spacing: usize) -> Vec<usize> {
    let size = owners.len();
    (0..size)
        .filter(|&p| {
            owners[p] != usize::MAX
                && (1..spacing.min(size)).any(|d| owners[(p + d) % size] == owners[p])
        })
        .collect()
}

/// Whether `members` nodes can own a ring of `size` partitions in balanced shares with every
/// `spacing` consecutive partitions distinct. With `size = q * members + r`, the `r` members that
/// own `q + 1` partitions need `q + 1` gaps of at least `spacing`, which is also sufficient
/// (see [`spaced_pattern`]).
fn spacing_feasible(size: usize, members: usize, spacing: usize) -> bool {
    if spacing <= 1 {
        return true;
    }
    if members < spacing {
        return false;
    }
    let (q, r) = (size / members, size % members);
    r == 0 || (q + 1) * spacing <= size
}

/// Each member's share: `size / count`, plus one for the `size % count` members that already
/// own the most (so fewer partitions move), ties broken by member order.
fn quotas(current: &[usize], members: usize) -> Vec<usize> {
    let size = current.len();
    let mut counts = vec![0usize; members];
    for &o in current.iter().filter(|&&o| o != usize::MAX) {
        counts[o] += 1;
    }
    let mut order: Vec<usize> = (0..members).collect();
    order.sort_by_key(|&m| (std::cmp::Reverse(counts[m]), m));
    let mut quota = vec![size / members; members];
    for &m in order.iter().take(size % members) {
        quota[m] += 1;
    }
    quota
}

/// Cyclic distance from `p` to the nearest partition in `own` (or `size` if `own` is empty).
fn nearest(own: &BTreeSet<usize>, p: usize, size: usize) -> usize {
    if own.contains(&p) {
        0
    } else {
        nearest_other(own, p, size)
    }
}

/// Cyclic distance from `p` to the nearest partition in `own` other than `p` itself (or `size`
/// if there is none): how close a member's *other* partitions are to one it holds.
fn nearest_other(own: &BTreeSet<usize>, p: usize, size: usize) -> usize {
    let dist = |q: usize| {
        let d = p.abs_diff(q);
        d.min(size - d)
    };
    let mut others = own.range(p + 1..).chain(own.range(..p));
    let after = others.next();
    let before = others.next_back();
    after
        .into_iter()
        .chain(before)
        .map(|&q| dist(q))
        .min()
        .unwrap_or(size)
}

/// Moves only what must move: while some member is below its share, it takes one partition
/// from a departed owner or from a member above its share. Among candidates it prefers, in
/// order: keeping its own partitions `spacing` apart; a departed owner's partition; a partition
/// that is too close to its donor's other partitions; a distance to its nearest own partition
/// close to its ideal gap (size / share), which lays a newcomer's partitions out evenly; the
/// lowest partition number.
fn incremental_claim(current: &[usize], members: usize, spacing: usize) -> Vec<usize> {
    let size = current.len();
    let quota = quotas(current, members);
    let mut owners = current.to_vec();
    let mut own: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); members];
    for (p, &o) in owners.iter().enumerate().filter(|(_, o)| **o != usize::MAX) {
        own[o].insert(p);
    }
    while let Some(taker) = (0..members)
        .filter(|&m| own[m].len() < quota[m])
        .max_by_key(|&m| (quota[m] - own[m].len(), std::cmp::Reverse(m)))
    {
        let ideal = size / quota[taker];
        let best = (0..size)
            .filter(|&p| {
                let o = owners[p];
                o == usize::MAX || (o != taker && own[o].len() > quota[o])
            })
            .max_by_key(|&p| {
                let donor = owners[p];
                let dist = nearest(&own[taker], p, size);
                let orphan = donor == usize::MAX;
                let donor_crowded = !orphan && nearest_other(&own[donor], p, size) < spacing;
                (
                    dist >= spacing,
                    orphan,
                    donor_crowded,
                    std::cmp::Reverse(dist.abs_diff(ideal)),
                    std::cmp::Reverse(p),
                )
            })
            .expect("a member below its share implies a partition above another's share");
        if owners[best] != usize::MAX {
            own[owners[best]].remove(&best);
        }
        owners[best] = taker;
        own[taker].insert(best);
    }
    owners
}

/// A balanced ownership with every `spacing` consecutive partitions distinct (when
/// [`spacing_feasible`]), as abstract labels `0..members`, relabelled and rotated to keep as
/// many current owners as possible.
fn pattern_claim(current: &[usize], members: usize) -> Vec<usize> {
    let size = current.len();
    let pattern = spaced_pattern(size, members);
    let mut best: Option<(usize, Vec<usize>, usize)> = None;
    for rot in 0..size {
        let (kept, labels) = best_labelling(current, &pattern, rot, members);
        if best.as_ref().is_none_or(|(k, _, _)| kept > *k) {
            best = Some((kept, labels, rot));
        }
    }
    let (_, labels, rot) = best.expect("a ring has at least one rotation");
    (0..size)
        .map(|p| labels[pattern[(p + rot) % size]])
        .collect()
}

/// Greedy maximum-overlap assignment of pattern labels to members for one rotation: pairs
/// (label, member) that agree on the most partitions are matched first. Returns the number of
/// partitions kept and the member for each label.
fn best_labelling(
    current: &[usize],
    pattern: &[usize],
    rot: usize,
    members: usize,
) -> (usize, Vec<usize>) {
    let size = current.len();
    let mut overlap = vec![0usize; members * members];
    for p in 0..size {
        if current[p] != usize::MAX {
            overlap[pattern[(p + rot) % size] * members + current[p]] += 1;
        }
    }
    let mut pairs: Vec<(usize, usize)> = (0..members * members)
        .filter(|&i| overlap[i] > 0)
        .map(|i| (i / members, i % members))
        .collect();
    pairs.sort_by_key(|&(l, m)| (std::cmp::Reverse(overlap[l * members + m]), l, m));
    let (mut label_to, mut taken) = (vec![usize::MAX; members], vec![false; members]);
    let mut kept = 0;
    for (l, m) in pairs {
        if label_to[l] == usize::MAX && !taken[m] {
            label_to[l] = m;
            taken[m] = true;
            kept += overlap[l * members + m];
        }
    }
    let mut free = (0..members).filter(|&m| !taken[m]);
    for slot in label_to.iter_mut().filter(|s| **s == usize::MAX) {
        *slot = free.next().expect("as many members as labels");
    }
    (kept, label_to)
}

/// A cyclic sequence of `size` labels from `0..members` in which every label occurs
/// `size / members` or one more times and (when [`spacing_feasible`]) equal labels are at least
/// `spacing` apart.
///
/// With `size = q * members + r` and `r > 0`: labels `0..r` ("heavy", `q + 1` each) open each of
/// `q + 1` rounds; the other `members - r` labels ("light", `q` each) follow, each skipping
/// exactly one round. Round `c` skips `d_c` consecutive lights of the cyclic light list (spread
/// evenly, `d_c <= members - spacing` when feasible) and lists the rest in descending offset from
/// the end of its skipped block. A light's position within its round then grows by exactly the
/// length of the previous round's skipped block, so it recurs every `members` partitions, while
/// heavies recur every round (at least `spacing` long).
fn spaced_pattern(size: usize, members: usize) -> Vec<usize> {
    let (q, heavy) = (size / members, size % members);
    if heavy == 0 {
        return (0..size).map(|p| p % members).collect();
    }
    let rounds = q + 1;
    let light = members - heavy;
    let skipped_before = |c: usize| c * light / rounds;
    let mut out = Vec::with_capacity(size);
    for c in 0..rounds {
        out.extend(0..heavy);
        let start = skipped_before(c + 1);
        let skipped = start - skipped_before(c);
        for offset in (0..light - skipped).rev() {
            out.push(heavy + (start + offset) % light);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nodes(names: &[&str]) -> Vec<NodeName> {
        names.iter().map(|n| NodeName::from(*n)).collect()
    }

    /// A ring owned round-robin by `names` (Riak's test "perfect ring").
    fn perfect(size: u32, names: &[&str]) -> Ring {
        let ns = nodes(names);
        Ring::from_owners(
            (0..size as usize)
                .map(|i| ns[i % ns.len()].clone())
                .collect(),
        )
        .unwrap()
    }

    fn last_in_ring() -> [u8; 20] {
        [0xff; 20]
    }

    fn counts(ring: &Ring, members: &[NodeName]) -> Vec<usize> {
        members
            .iter()
            .map(|m| ring.partitions_of(m).len())
            .collect()
    }

    #[test]
    fn sizes_are_validated() {
        let n = NodeName::from("a@h");
        for bad in [0, 4, 7, 12, 2048] {
            assert_eq!(
                Ring::new_single(bad, n.clone()),
                Err(RingError::InvalidSize(bad as u64))
            );
        }
        for good in [8, 64, 1024] {
            assert_eq!(Ring::new_single(good, n.clone()).unwrap().size(), good);
        }
        assert!(Ring::from_owners(vec![n; 10]).is_err());
    }

    #[test]
    fn members_are_the_distinct_owners_sorted() {
        let ring = Ring::from_owners(nodes(&["c", "a", "c", "b", "a", "c", "a", "b"])).unwrap();
        assert_eq!(ring.members(), nodes(&["a", "b", "c"]));
        assert_eq!(ring.partitions_of(&NodeName::from("a")), vec![1, 4, 6]);
        assert_eq!(ring.owner(3), Some(&NodeName::from("b")));
        assert_eq!(ring.owner(8), None);
    }

    #[test]
    fn spacing_violations_name_the_partitions_that_repeat_a_node() {
        // a b a c b c d d: with preference lists of 3, partitions 0 (a again at 2), 3 (c at 5)
        // and 6 (d at 7) repeat a node; with lists of 2 only 6 does.
        let ring = Ring::from_owners(nodes(&["a", "b", "a", "c", "b", "c", "d", "d"])).unwrap();
        assert_eq!(ring.spacing_violations(3), vec![0, 3, 6]);
        assert_eq!(ring.spacing_violations(2), vec![6]);
        assert_eq!(ring.spacing_violations(1), Vec::<PartitionId>::new());
        // Around the end of the ring: d at 7 and at 0.
        let ring = Ring::from_owners(nodes(&["d", "a", "b", "c", "a", "b", "c", "d"])).unwrap();
        assert_eq!(ring.spacing_violations(2), vec![7]);
    }

    #[test]
    fn the_members_owning_the_most_keep_the_remainder() {
        // 8 partitions over 3 members: shares of 3, 3 and 2. c owns 4 and b 3, so c and b keep
        // the two larger shares (not a and b, first in member order) and a takes its second
        // partition from c, the only member above its share, though b's partition 3 is where
        // a's would be best spread (opposite 7): one move.
        let ring = Ring::from_owners(nodes(&["c", "c", "c", "b", "c", "b", "b", "a"])).unwrap();
        let (claimed, report) = ring.claim(&nodes(&["a", "b", "c"]), 1);
        let moves: Vec<(&str, &str)> = report
            .transfers
            .iter()
            .map(|t| (t.from.as_str(), t.to.as_str()))
            .collect();
        assert_eq!(moves, [("c", "a")], "{:?}", claimed.owners());
        let shares: Vec<usize> = nodes(&["a", "b", "c"])
            .iter()
            .map(|n| claimed.partitions_of(n).len())
            .collect();
        assert_eq!(shares, [2, 3, 3]);
    }

    #[test]
    fn nearest_measures_around_the_ring() {
        let set = |ps: &[usize]| ps.iter().copied().collect::<BTreeSet<usize>>();
        assert_eq!(nearest(&set(&[3]), 3, 8), 0);
        assert_eq!(nearest(&set(&[0]), 7, 8), 1, "across the wrap");
        assert_eq!(nearest(&set(&[1, 6]), 3, 8), 2);
        assert_eq!(nearest(&set(&[]), 3, 8), 8);
        // The partition itself does not count as one of the others.
        assert_eq!(nearest_other(&set(&[3]), 3, 8), 8);
        assert_eq!(nearest_other(&set(&[1, 3]), 3, 8), 2);
        assert_eq!(nearest_other(&set(&[0, 3]), 3, 8), 3);
        assert_eq!(nearest_other(&set(&[0, 3, 6]), 0, 8), 2, "across the wrap");
    }

    #[test]
    fn a_newcomer_takes_partitions_that_crowd_their_donor() {
        // 6 partitions, 3 members, spacing 2: members 0 and 1 hold 3 each against shares of 2.
        // Newcomer 2 first takes 0 (its donor's 1 is adjacent; lowest of the crowded ones), then
        // 4 rather than 2: both are 2 from its own 0, but 4 sits beside its donor's 5, and taking
        // 2 would leave member 1 with 4 and 5 adjacent.
        let claimed = incremental_claim(&[0, 0, 1, 0, 1, 1], 3, 2);
        assert_eq!(claimed, [2, 0, 1, 0, 2, 1]);
        assert!(violations(&claimed, 2).is_empty());
    }

    #[test]
    fn the_member_furthest_below_its_share_chooses_first() {
        // 6 partitions, 3 members with shares of 2, spacing 2; partitions 0, 2 and 3 have no
        // member. Newcomer 2 (two short) takes 0 first, then member 0 (one short) takes 2, two
        // from its 4, and member 2 takes 3. Had member 0 chosen first it would have taken 0,
        // leaving member 2 the adjacent 2 and 3.
        let gone = usize::MAX;
        let claimed = incremental_claim(&[gone, 1, gone, gone, 0, 1], 3, 2);
        assert_eq!(claimed, [2, 1, 0, 2, 0, 1]);
        assert!(violations(&claimed, 2).is_empty());
    }

    #[test]
    fn a_newcomer_spreads_its_partitions_by_the_ideal_gap() {
        // With no spacing to keep (1), only the ideal gap (8 / 4 = 2) spreads the newcomer's
        // partitions: every other one, not the neighbours of its first.
        let claimed = incremental_claim(&[0; 8], 2, 1);
        assert_eq!(claimed, [1, 0, 1, 0, 1, 0, 1, 0]);
    }

    #[test]
    fn labelling_matches_the_largest_overlaps_first() {
        let pattern = [0, 1, 2, 0, 1, 2];
        let gone = usize::MAX;
        let current = [1, 1, 0, gone, 2, 0];
        // Label 2 and member 0 share partitions 2 and 5; then label 0 goes to member 1 and
        // label 1, whose member 1 is taken, to member 2.
        assert_eq!(best_labelling(&current, &pattern, 0, 3), (4, vec![1, 2, 0]));
        // One partition on, every label keeps its own member.
        assert_eq!(best_labelling(&current, &pattern, 1, 3), (4, vec![0, 1, 2]));
        // Labels with no overlap take the free members in order.
        assert_eq!(best_labelling(&[1; 6], &pattern, 0, 3), (2, vec![1, 0, 2]));
        // The larger overlap wins even when its label comes later: label 1 agrees with member 0
        // on three partitions (1, 3, 5), label 0 on one (0), so member 0 gets label 1.
        let current = [0, 0, gone, 0, gone, 0, gone, gone];
        let pattern = [0, 1, 0, 1, 0, 1, 0, 1];
        assert_eq!(best_labelling(&current, &pattern, 0, 2), (3, vec![1, 0]));
    }

    #[test]
    fn the_pattern_claim_keeps_the_rotation_that_keeps_the_most() {
        let pattern = spaced_pattern(7, 3);
        // Nothing to keep: the first rotation, labels in order.
        assert_eq!(pattern_claim(&[usize::MAX; 7], 3), pattern);
        // A relabelled rotation of the pattern is kept whole.
        let relabel = [2, 0, 1];
        let current: Vec<usize> = (0..7).map(|p| relabel[pattern[(p + 3) % 7]]).collect();
        assert_eq!(pattern_claim(&current, 3), current);
    }

    #[test]
    fn incremental_claim_moves_only_what_must_move() {
        // Member 1 holds its share (3 of 8), member 0 five against a share of 3: newcomer 2
        // takes two partitions, both from member 0, though member 1's partitions come first
        // in partition order.
        let current = [1, 1, 1, 0, 0, 0, 0, 0];
        let claimed = incremental_claim(&current, 3, 2);
        let moved: Vec<usize> = (0..8).filter(|&p| claimed[p] != current[p]).collect();
        assert_eq!(moved.len(), 2, "{claimed:?}");
        assert!(
            moved.iter().all(|&p| current[p] == 0 && claimed[p] == 2),
            "{claimed:?}"
        );
        // A departed owner's partitions (no member) are all that moves when the members hold
        // their shares, one to each.
        let gone = usize::MAX;
        let current = [0, 1, gone, 0, 1, gone, 0, 1];
        let claimed = incremental_claim(&current, 2, 2);
        for p in [0, 1, 3, 4, 6, 7] {
            assert_eq!(claimed[p], current[p], "{claimed:?}");
        }
        let mut taken = [claimed[2], claimed[5]];
        taken.sort();
        assert_eq!(taken, [0, 1], "{claimed:?}");
    }

    #[test]
    fn serde_round_trip_validates() {
        let ring = perfect(8, &["a", "b"]);
        let json = serde_json::to_string(&ring).unwrap();
        assert_eq!(serde_json::from_str::<Ring>(&json).unwrap(), ring);
        assert!(serde_json::from_str::<Ring>(r#"{"owners":["a","b","c"]}"#).is_err());
    }

    #[test]
    fn partition_indexes_match_riak() {
        let ring = perfect(8, &["a"]);
        assert_eq!(ring.partition_index_decimal(0), "0");
        assert_eq!(
            ring.partition_index_decimal(1),
            "182687704666362864775460604089535377456991567872"
        );
        assert_eq!(
            ring.partition_index_decimal(2),
            "365375409332725729550921208179070754913983135744"
        );
        let ring64 = perfect(64, &["a"]);
        assert_eq!(
            ring64.partition_index_decimal(19),
            "433883298582611803841718934712646521460354973696"
        );
        assert_eq!(
            u160_to_decimal(&[0xff; 20]),
            "1461501637330902918203684832716283019655932542975"
        );
    }

    #[test]
    fn riak_preflist_examples() {
        // riak_core_apl six_node_test: this hash's first partition is 19 of 64.
        let doc = [
            73, 212, 27, 234, 104, 13, 150, 207, 0, 82, 86, 183, 125, 225, 172, 154, 135, 46, 6,
            112,
        ];
        assert_eq!(perfect(64, &["a"]).partition_for(&doc), 19);
        // The last hash in the ring wraps around to partition 0.
        assert_eq!(perfect(8, &["a"]).partition_for(&last_in_ring()), 0);
        assert_eq!(perfect(8, &["a"]).partition_for(&[0; 20]), 1);
    }

    #[test]
    fn apl_matches_riak_four_node_test() {
        let ring = perfect(8, &["a", "b", "c", "d"]);
        let apl = |up: &[&str]| -> Vec<(PartitionId, String, bool)> {
            let up = nodes(up);
            ring.apl(&last_in_ring(), 3, |n| up.contains(n))
                .into_iter()
                .map(|e| (e.partition, e.node.to_string(), e.primary))
                .collect()
        };
        let e = |p, n: &str, prim| (p, n.to_string(), prim);
        assert_eq!(
            apl(&["a", "b", "c", "d"]),
            vec![e(0, "a", true), e(1, "b", true), e(2, "c", true)]
        );
        assert_eq!(
            apl(&["b", "c", "d"]),
            vec![e(1, "b", true), e(2, "c", true), e(0, "d", false)]
        );
        assert_eq!(
            apl(&["c", "d"]),
            vec![e(2, "c", true), e(0, "d", false), e(1, "c", false)]
        );
        assert_eq!(
            apl(&["a", "b"]),
            vec![e(0, "a", true), e(1, "b", true), e(2, "a", false)]
        );
        assert!(apl(&[]).is_empty());
    }

    #[test]
    fn apl_runs_out_of_fallbacks_on_a_small_ring() {
        // Ring of 8 on 8 nodes, only the owners of partitions 0 and 7 up: the walk over the five
        // partitions after the primaries 1..=3 finds two stand-ins for three down primaries.
        let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let ring = perfect(8, &names);
        let up = nodes(&["a", "h"]);
        let apl = ring.apl(&[0; 20], 3, |n| up.contains(n));
        let fallback = |partition, node: &str| PreflistEntry {
            partition,
            node: NodeName::from(node),
            primary: false,
        };
        assert_eq!(apl, vec![fallback(1, "h"), fallback(2, "a")]);
    }

    #[test]
    fn claim_from_single_node_is_balanced_and_spaced() {
        let ring = Ring::new_single(64, NodeName::from("a")).unwrap();
        let members = nodes(&["a", "b", "c", "d", "e"]);
        let (new, report) = ring.claim(&members, 4);
        assert!(report.warnings.is_empty());
        assert!(new.spacing_violations(4).is_empty());
        let c = counts(&new, &members);
        assert!(c.iter().all(|&k| k == 12 || k == 13), "{c:?}");
        assert_eq!(report.transfers.len(), 64 - c[0]);
        assert!(
            report
                .transfers
                .iter()
                .all(|t| t.from.as_str() == "a" && t.to.as_str() != "a")
        );
    }

    #[test]
    fn claim_on_the_largest_ring_with_many_nodes() {
        let members: Vec<NodeName> = (0..64).map(|i| NodeName::from(format!("n{i}"))).collect();
        let ring = Ring::new_single(MAX_RING_SIZE, members[0].clone()).unwrap();
        let (new, report) = ring.claim(&members, 4);
        assert!(report.warnings.is_empty());
        assert!(new.spacing_violations(4).is_empty());
        assert!(counts(&new, &members).iter().all(|&k| k == 16));
        // Growing by one node takes about its share and nothing else.
        let mut more = members.clone();
        more.push(NodeName::from("n64"));
        let (grown, report) = new.claim(&more, 4);
        assert!(grown.spacing_violations(4).is_empty());
        assert_eq!(report.transfers.len(), 1024 / 65);
    }

    #[test]
    fn claim_warns_when_spacing_is_impossible() {
        let ring = Ring::new_single(64, NodeName::from("a")).unwrap();
        let members = nodes(&["a", "b", "c"]);
        let (new, report) = ring.claim(&members, 4);
        assert_eq!(
            report.warnings,
            vec![ClaimWarning::SpacingImpossible {
                members: 3,
                target_n_val: 4
            }]
        );
        let c = counts(&new, &members);
        assert!(c.iter().all(|&k| k == 21 || k == 22), "{c:?}");
        // 64 = 3 * 21 + 1 rules out spacing 3 (22 * 3 > 64), but the claim still keeps
        // neighbouring partitions on different nodes.
        assert!(new.spacing_violations(2).is_empty());
    }

    #[test]
    fn claim_with_no_members_keeps_the_ring() {
        let ring = perfect(8, &["a", "b"]);
        let (new, report) = ring.claim(&[], 4);
        assert_eq!(new, ring);
        assert_eq!(report.warnings, vec![ClaimWarning::NoMembers]);
    }

    #[test]
    fn removing_a_node_hands_its_partitions_out() {
        let members = nodes(&["a", "b", "c", "d", "e", "f"]);
        let (six, _) = Ring::new_single(64, members[0].clone())
            .unwrap()
            .claim(&members, 4);
        let (five, report) = six.claim(&members[..5], 4);
        assert!(five.partitions_of(&members[5]).is_empty());
        assert!(five.spacing_violations(4).is_empty());
        assert!(report.transfers.iter().all(|t| t.from != t.to));
        let c = counts(&five, &members[..5]);
        assert!(c.iter().all(|&k| k == 12 || k == 13), "{c:?}");
    }

    #[test]
    fn spaced_pattern_works_whenever_spacing_is_feasible() {
        // Exhaustive over the ring sizes, member counts up to 64 and target_n_val up to 6.
        let mut size = MIN_RING_SIZE as usize;
        while size <= MAX_RING_SIZE as usize {
            for members in 1..=64 {
                for spacing in 1..=6usize.min(size) {
                    if !spacing_feasible(size, members, spacing) {
                        continue;
                    }
                    let pattern = spaced_pattern(size, members);
                    assert_eq!(pattern.len(), size);
                    assert!(
                        violations(&pattern, spacing).is_empty(),
                        "{size} {members} {spacing}"
                    );
                    let mut c = vec![0; members];
                    pattern.iter().for_each(|&l| c[l] += 1);
                    assert!(
                        c.iter()
                            .all(|&k| k == size / members || k == size / members + 1)
                    );
                }
            }
            size *= 2;
        }
    }

    #[test]
    fn infeasible_spacing_is_really_infeasible_for_tiny_cases() {
        // Brute force over all balanced sequences of a ring of 8 confirms the feasibility rule.
        fn search(seq: &mut Vec<usize>, left: &mut [usize], spacing: usize) -> bool {
            if left.iter().all(|&k| k == 0) {
                return violations(seq, spacing).is_empty();
            }
            for l in 0..left.len() {
                if left[l] == 0 || seq.iter().rev().take(spacing - 1).any(|&x| x == l) {
                    continue;
                }
                left[l] -= 1;
                seq.push(l);
                let found = search(seq, left, spacing);
                seq.pop();
                left[l] += 1;
                if found {
                    return true;
                }
            }
            false
        }
        for members in 1..=6 {
            for spacing in 2..=5 {
                let mut left: Vec<usize> = (0..members)
                    .map(|m| 8 / members + usize::from(m < 8 % members))
                    .collect();
                let possible = search(&mut Vec::new(), &mut left, spacing);
                assert_eq!(
                    possible,
                    spacing_feasible(8, members, spacing),
                    "{members} {spacing}"
                );
            }
        }
    }

    fn ring_size() -> impl Strategy<Value = u32> {
        (3u32..=10).prop_map(|b| 1 << b)
    }

    fn member_names(max: usize) -> impl Strategy<Value = Vec<NodeName>> {
        prop::collection::btree_set(0u32..200, 1..=max).prop_map(|s| {
            s.into_iter()
                .map(|i| NodeName::from(format!("n{i}@host")))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn preflist_is_n_distinct_consecutive_partitions(size in ring_size(), hash in any::<[u8; 20]>(), n in 1u32..2000) {
            let ring = Ring::new_single(size, NodeName::from("a")).unwrap();
            let pl: Vec<_> = ring.preflist(&hash, n).collect();
            prop_assert_eq!(pl.len() as u32, n.min(size));
            prop_assert_eq!(pl[0], ring.partition_for(&hash));
            let distinct: BTreeSet<_> = pl.iter().collect();
            prop_assert_eq!(distinct.len(), pl.len());
            for w in pl.windows(2) {
                prop_assert_eq!(w[1], (w[0] + 1) % size);
            }
        }

        #[test]
        fn partition_for_is_the_next_boundary_after_the_hash(size in ring_size(), hash in any::<[u8; 20]>()) {
            // Arithmetic definition: the hash lies in [index(p-1), index(p-1) + inc), i.e. at or
            // after the preceding boundary and before the next one; compared as 160-bit numbers.
            let ring = Ring::new_single(size, NodeName::from("a")).unwrap();
            let p = ring.partition_for(&hash);
            let before = (p + size - 1) % size;
            prop_assert!(ring.partition_index(before) <= hash);
            if before + 1 < size {
                prop_assert!(hash < ring.partition_index(before + 1));
            }
        }

        #[test]
        fn apl_is_full_when_enough_nodes_are_up_and_never_uses_a_down_node(
            members in member_names(12), seed in any::<u64>(), hash in any::<[u8; 20]>(), n in 1u32..6,
        ) {
            let (ring, _) = Ring::new_single(64, members[0].clone()).unwrap().claim(&members, 4);
            let up: Vec<NodeName> = members.iter().enumerate()
                .filter(|(i, _)| (seed >> (i % 64)) & 1 == 1).map(|(_, m)| m.clone()).collect();
            let apl = ring.apl(&hash, n, |x| up.contains(x));
            prop_assert!(apl.iter().all(|e| up.contains(&e.node)));
            let primaries: Vec<PartitionId> = ring.preflist(&hash, n).collect();
            let mut served: Vec<PartitionId> = apl.iter().map(|e| e.partition).collect();
            served.sort();
            let mut expected = primaries.clone();
            expected.sort();
            if !up.is_empty() && ring.size() as usize >= n as usize + up.len() * 2 {
                // Every up node owns several partitions outside the first n, so the walk never
                // runs dry.
                prop_assert_eq!(&served, &expected);
            }
            for e in &apl {
                prop_assert!(primaries.contains(&e.partition));
                prop_assert_eq!(e.primary, ring.owner(e.partition) == Some(&e.node));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn claim_is_balanced_spaced_and_deterministic(
            size in ring_size(), members in member_names(24), start in member_names(6), t in 1u32..6,
        ) {
            let base = Ring::new_single(size, start[0].clone()).unwrap();
            let (ring0, _) = base.claim(&start, t);
            let (ring, report) = ring0.claim(&members, t);
            let c = counts(&ring, &members);
            let share = size as usize / members.len();
            prop_assert!(c.iter().all(|&k| k == share || k == share + 1), "{:?}", c);
            prop_assert_eq!(c.iter().sum::<usize>(), size as usize);
            let spacing = (t as usize).min(size as usize);
            let best = (1..=spacing).rev()
                .find(|&s| spacing_feasible(size as usize, members.len(), s)).unwrap();
            prop_assert!(ring.spacing_violations(best as u32).is_empty());
            prop_assert_eq!(report.warnings.is_empty(), best == spacing);
            // Same inputs in another order, same output.
            let mut reversed = members.clone();
            reversed.reverse();
            let (again, report2) = ring0.claim(&reversed, t);
            prop_assert_eq!(&again, &ring);
            prop_assert_eq!(&report2, &report);
            // The report describes exactly the difference.
            for tr in &report.transfers {
                prop_assert_eq!(ring0.owner(tr.partition), Some(&tr.from));
                prop_assert_eq!(ring.owner(tr.partition), Some(&tr.to));
            }
            let changed = (0..size).filter(|&p| ring0.owner(p) != ring.owner(p)).count();
            prop_assert_eq!(changed, report.transfers.len());
        }

        #[test]
        fn adding_a_node_moves_about_its_share(size in (6u32..=10).prop_map(|b| 1 << b), count in 4usize..16) {
            let members: Vec<NodeName> = (0..=count).map(|i| NodeName::from(format!("n{i}"))).collect();
            let old = &members[..count];
            let (before, _) = Ring::new_single(size, old[0].clone()).unwrap().claim(old, 4);
            let (after, report) = before.claim(&members, 4);
            let share = (size as usize).div_ceil(count + 1);
            prop_assert!(report.transfers.len() <= share + share / 2,
                "{} moved, share {}", report.transfers.len(), share);
            prop_assert!(report.transfers.iter().all(|t| t.to == members[count]));
            if spacing_feasible(size as usize, count + 1, 4) {
                prop_assert!(after.spacing_violations(4).is_empty());
            }
        }
    }
}
