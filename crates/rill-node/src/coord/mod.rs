//! Request coordinators: the drivers that take a client request through the ring, the replicas
//! and the pure quorum state machines of `rill_core::fsm`, one module per operation.

mod datatype;
mod delete;
mod get;
pub(crate) mod list;
mod put;
#[cfg(test)]
mod set_tests;
#[cfg(test)]
mod tests;

pub use list::KeyChunks;

use rill_core::fsm::Target;
use rill_core::merge::MergeOptions;
use rill_core::props::{BucketProps, Quorum, QuorumError, QuorumParam};
use rill_core::ring::PreflistEntry;

use crate::error::{NodeError, NodeResult};

/// The request's n_val: the bucket's, or a smaller one the request asked for.
pub(crate) fn resolve_n(requested: Option<u32>, props: &BucketProps) -> NodeResult<u32> {
    match requested {
        None => Ok(props.n_val),
        Some(n) if n >= 1 && n <= props.n_val => Ok(n),
        Some(n) => Err(NodeError::BadRequest(format!(
            "n_val {n} is not between 1 and the bucket's n_val {}",
            props.n_val
        ))),
    }
}

/// A quorum parameter as a number: the request's value, else the bucket's, against `n`.
pub(crate) fn resolve_quorum(
    param: QuorumParam,
    requested: Option<Quorum>,
    props: &BucketProps,
    n: u32,
) -> Result<u32, QuorumError> {
    let bucket = props.quorum(param);
    requested.unwrap_or(bucket).resolve(param, n, bucket)
}

/// The quorum machines' view of a preference list: each entry by its position, and whether it
/// is a primary.
pub(crate) fn fsm_targets(targets: &[PreflistEntry]) -> Vec<Target<usize>> {
    targets
        .iter()
        .enumerate()
        .map(|(i, t)| Target {
            index: i,
            primary: t.primary,
        })
        .collect()
}

/// The merge rules a bucket's properties imply.
pub(crate) fn merge_options(props: &BucketProps) -> MergeOptions {
    MergeOptions {
        allow_mult: props.allow_mult,
        last_write_wins: props.last_write_wins,
        dvv_enabled: props.dvv_enabled,
        datatype: props.datatype,
    }
}
