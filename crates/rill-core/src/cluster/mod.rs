//! Cluster membership and ring ownership as pure, mergeable state (Riak's "chstate").
//!
//! - [`state`]: [`ClusterState`] — the members with their statuses and internode addresses,
//!   the committed partition owners, the transfers a commit started and which of them are
//!   done, the claimant, and a version vector. Every node holds a copy; copies are gossiped
//!   and merged, and the merge is a join (commutative, associative, idempotent), so every node
//!   converges on the same state from any order of messages.
//! - [`plan`]: staged changes (`join`, `leave`, `force-remove`, `replace`, ...) turned into a
//!   [`plan::Plan`] — the ring after the changes, the transfers, warnings — and applied by the
//!   claimant's commit. Also the claimant's routine duties: electing a claimant when the old one
//!   is gone, retiring members that have exited, and folding finished transfers into the ring.
//! - [`liveness`]: a phi-accrual failure detector over heartbeat arrival times.
//!
//! Nothing here does I/O: the node feeds in what it heard and the time, and acts on the result.

pub mod liveness;
pub mod plan;
pub mod state;

pub use plan::{Change, Plan, PlanError};
pub use state::{ClusterState, CommitId, Member, MergeError, PendingTransfer, Status};
