//! Quorum state machines: the counting half of Riak's get, put and delete coordinators.
//!
//! A coordinator sends a request to the N vnodes of a key's preference list and must decide,
//! reply by reply, when it knows enough to answer the client: enough successes (R, W, DW and
//! their primary-only variants PR, PW), or so many failures that success is no longer possible.
//! These machines make exactly that decision, with the rules of Riak KV's `riak_kv_get_core`,
//! `riak_kv_put_core` and the validation steps of `riak_kv_get_fsm` / `riak_kv_put_fsm`, so
//! that clients see the same answers — and the same error texts — as from Riak.
//!
//! They are deliberately ignorant of what a reply carries: the GET machine is generic over the
//! replica payload (a Riak object in production, a plain number in tests) and never merges it.
//! It says "found", "not found" or which error, and keeps every reply, including late ones that
//! arrive after the decision, so that the caller can merge siblings and plan read repair. No
//! clock is read here: the caller tells the machine when its timer fired.
//!
//! Inputs are already-resolved numbers: turning `one`/`quorum`/`all`/`default` into integers
//! against the bucket's n_val is the caller's job, as is rejecting unparsable values
//! (Riak's `{r_val_violation, V}` and friends).
//!
//! One deliberate difference from Riak: when the preference list holds fewer vnodes than n_val
//! (strict quorum with a primary down), Riak keeps counting against n_val and can only time out
//! once every vnode has answered; here the thresholds count against the vnodes actually asked,
//! so the same request fails at once with the error Riak would have given had it not waited.
//! With a full preference list — the normal case — the two are identical.

pub mod delete;
pub mod get;
pub mod put;

pub use delete::{DeleteQuorums, DeleteRequest};
pub use get::{GetError, GetFsm, GetOutcome, GetParams, GetReply, validate_get};
pub use put::{PutError, PutFsm, PutOutcome, PutParams, PutReply, validate_put};

/// One vnode a request was sent to: its partition index and whether it is a primary owner of
/// the key (as opposed to a fallback standing in for a down primary). PR and PW count only
/// replies from primaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<I> {
    /// The partition index the vnode serves (whatever type the ring uses to name partitions).
    pub index: I,
    /// True for a primary owner of the key, false for a fallback.
    pub primary: bool,
}

impl<I> Target<I> {
    /// A primary owner of the key.
    pub fn primary(index: I) -> Self {
        Target {
            index,
            primary: true,
        }
    }

    /// A fallback standing in for a down primary.
    pub fn fallback(index: I) -> Self {
        Target {
            index,
            primary: false,
        }
    }
}

/// What a state machine says after being told about one reply or a timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<O> {
    /// Not enough is known yet; keep waiting for replies (or the timer).
    Waiting,
    /// This event settled the request: answer the client with the outcome. Later events are
    /// still recorded but never change it.
    Done(O),
    /// The request was already settled; the reply was recorded (GET: for read repair).
    Late,
    /// Nothing was recorded: a second answer of the same kind from a vnode that already gave
    /// one, or a timeout after the decision.
    Ignored,
}

impl<O> Step<O> {
    /// The outcome if this step settled the request.
    pub fn done(self) -> Option<O> {
        match self {
            Step::Done(outcome) => Some(outcome),
            _ => None,
        }
    }
}

/// Riak's replies are counted against the vnodes asked when fewer than n_val could be asked
/// (see the module documentation); this is that effective N.
fn effective_n(n: u32, targets: usize) -> u32 {
    n.min(count_u32(targets))
}

/// Preference lists are a handful of entries; saturate rather than wrap on absurd sizes.
fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_settling_step_has_an_outcome() {
        assert_eq!(Step::Done(7).done(), Some(7));
        assert_eq!(Step::<u32>::Waiting.done(), None);
        assert_eq!(Step::<u32>::Late.done(), None);
        assert_eq!(Step::<u32>::Ignored.done(), None);
    }
}
