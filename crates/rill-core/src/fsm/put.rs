//! The PUT quorum state machine: when a write has been acknowledged enough, or never can be.
//!
//! Mirrors Riak KV's `riak_kv_put_core` and the validation of `riak_kv_put_fsm`. Each vnode
//! answers a write twice: `w` when it has the request, then `dw` once the object is stored, or
//! `fail`. (An overloaded vnode sends `fail` alone.) The write
//!
//! * succeeds once `w >= W`, `dw >= DW` and the dw replies from primaries `>= PW`;
//! * fails with `pw_val_unsatisfied` or `dw_val_unsatisfied` as soon as the failures make PW or
//!   DW unreachable (`fail > N - PW`, `fail > N - DW`; PW is blamed when PW >= DW), or when
//!   every vnode has finished without enough primaries;
//! * fails at once with the coordinator's own reason if the coordinating vnode — the one that
//!   advances the causal clock before the others are asked — fails.
//!
//! DW is raised to at least 1 (Riak's rule: the coordinating vnode's durable write is what
//! produces the clock the other replicas receive).
//!
//! One addition: Riak never fails W directly — in Riak every vnode that can fail has sent `w`
//! first, except an overloaded one, and a W made unreachable that way leaves Riak waiting for
//! its timeout. Here that write fails at once with `w_val_unsatisfied`, the error (and message)
//! Riak's HTTP interface has for it.
//!
//! `node_confirms` (distinct physical nodes among the dw replies) is not modelled: it needs node
//! identities this machine does not have.

use super::{Step, Target, count_u32, effective_n};

/// A write's quorum parameters, already resolved to numbers against the bucket's n_val.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutParams {
    /// Replicas of the key (n_val).
    pub n: u32,
    /// Vnodes that must have received the write.
    pub w: u32,
    /// Vnodes that must have stored it durably (raised to at least 1).
    pub dw: u32,
    /// Primaries among the durable writes.
    pub pw: u32,
}

/// One message from a vnode about a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutReply<T> {
    /// The vnode received the write.
    W,
    /// The vnode stored the write, possibly returning the stored object (the coordinator
    /// always does; the others when the client asked for the body back). Implies `W`.
    Dw(Option<T>),
    /// The vnode failed the write.
    Fail(String),
}

/// How a write ended: `Ok` to acknowledge it, or why not.
pub type PutOutcome = Result<(), PutError>;

/// Why a write failed. `Display` is the body Riak's HTTP interface sends for the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum PutError {
    /// n_val is zero, or W, DW or PW exceeds it (HTTP 400).
    #[error("Specified w/dw/pw/node_confirms values invalid for bucket n value of {n}\n")]
    NValViolation {
        /// The bucket's n_val.
        n: u32,
    },
    /// Too few vnodes can still receive the write.
    #[error("W/DW-value unsatisfied: w={got_w}/{w} dw={got_dw}/{dw}\n")]
    WValUnsatisfied {
        /// Received acknowledgements needed.
        w: u32,
        /// Received acknowledgements so far.
        got_w: u32,
        /// Durable writes needed.
        dw: u32,
        /// Durable writes so far.
        got_dw: u32,
    },
    /// Too few durable writes.
    #[error("DW-value unsatisfied: {got}/{dw}\n")]
    DwValUnsatisfied {
        /// Durable writes needed.
        dw: u32,
        /// Durable writes received.
        got: u32,
    },
    /// Too few durable writes on primaries, or fewer primaries in the preference list than PW.
    #[error("PW-value unsatisfied: {got}/{pw}\n")]
    PwValUnsatisfied {
        /// Primary durable writes needed.
        pw: u32,
        /// Primary durable writes received (or primaries available, when refused up front).
        got: u32,
    },
    /// The preference list holds fewer vnodes than max(1, W, DW, PW).
    #[error("Error:\n{{insufficient_vnodes,{have},need,{need}}}\n")]
    InsufficientVnodes {
        /// Vnodes in the preference list.
        have: u32,
        /// Vnodes needed.
        need: u32,
    },
    /// The coordinating vnode failed the write; its reason is passed through.
    #[error("Error:\n{0}\n")]
    CoordinatorFailed(String),
    /// The caller's timer fired before the write was settled.
    #[error("request timed out\n")]
    Timeout,
}

impl PutError {
    /// A stable machine-readable name: Riak's error atom where it has one.
    pub fn code(&self) -> &'static str {
        match self {
            PutError::NValViolation { .. } => "n_val_violation",
            PutError::WValUnsatisfied { .. } => "w_val_unsatisfied",
            PutError::DwValUnsatisfied { .. } => "dw_val_unsatisfied",
            PutError::PwValUnsatisfied { .. } => "pw_val_unsatisfied",
            PutError::InsufficientVnodes { .. } => "insufficient_vnodes",
            PutError::CoordinatorFailed(_) => "coordinator_failed",
            PutError::Timeout => "timeout",
        }
    }

    /// The HTTP status to answer with: 400 for a request no preference list could satisfy,
    /// 503 for everything else. The other errors are availability answers (too few replicas
    /// reachable or answering right now, the coordinating replica failing the write), not
    /// server faults, so they are 503 even where Riak itself answers 500
    /// (`insufficient_vnodes`, a coordinator's failure).
    pub fn http_status(&self) -> u16 {
        match self {
            PutError::NValViolation { .. } => 400,
            PutError::WValUnsatisfied { .. }
            | PutError::DwValUnsatisfied { .. }
            | PutError::PwValUnsatisfied { .. }
            | PutError::InsufficientVnodes { .. }
            | PutError::CoordinatorFailed(_)
            | PutError::Timeout => 503,
        }
    }

    /// The error as the Erlang term Riak prints into a Protocol Buffers `RpbErrorResp`
    /// (`{dw_val_unsatisfied,3,2}`); a coordinator's reason is passed through as given.
    pub fn erlang_term(&self) -> String {
        match self {
            PutError::NValViolation { n } => format!("{{n_val_violation,{n}}}"),
            PutError::WValUnsatisfied {
                w,
                got_w,
                dw,
                got_dw,
            } => {
                format!("{{w_val_unsatisfied,{got_w},{got_dw},{w},{dw}}}")
            }
            PutError::DwValUnsatisfied { dw, got } => format!("{{dw_val_unsatisfied,{dw},{got}}}"),
            PutError::PwValUnsatisfied { pw, got } => format!("{{pw_val_unsatisfied,{pw},{got}}}"),
            PutError::InsufficientVnodes { have, need } => {
                format!("{{insufficient_vnodes,{have},need,{need}}}")
            }
            PutError::CoordinatorFailed(reason) => reason.clone(),
            PutError::Timeout => "timeout".to_owned(),
        }
    }
}

/// Rejects quorum values no preference list can satisfy: n_val must be positive and none of
/// W, DW (after raising it to 1) and PW may exceed it.
pub fn validate_put(n: u32, w: u32, dw: u32, pw: u32) -> Result<(), PutError> {
    if n == 0 || w > n || effective_dw(dw) > n || pw > n {
        return Err(PutError::NValViolation { n });
    }
    Ok(())
}

/// Riak always waits for at least one durable write.
fn effective_dw(dw: u32) -> u32 {
    dw.max(1)
}

/// Where one vnode stands in the write.
#[derive(Debug, Clone)]
enum Finish<T> {
    /// Neither stored nor failed yet.
    Pending,
    /// Stored, with the object it returned if any.
    Stored(Option<T>),
    /// Failed, with its reason.
    Failed(String),
}

/// One vnode the write involves.
#[derive(Debug, Clone)]
struct Slot<I, T> {
    index: I,
    primary: bool,
    received: bool,
    finish: Finish<T>,
}

/// Counts derived from the slots.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    w: u32,
    dw: u32,
    pw: u32,
    failed: u32,
    /// Vnodes that may still acknowledge receipt.
    may_receive: u32,
}

/// The state of one write: created with the vnodes asked, fed their replies, asked what now.
#[derive(Debug, Clone)]
pub struct PutFsm<I, T> {
    params: PutParams,
    coordinator: Option<I>,
    /// Replies counted against (n_val, or fewer vnodes when fewer were asked).
    expected: u32,
    slots: Vec<Slot<I, T>>,
    outcome: Option<PutOutcome>,
}

impl<I: Copy + Eq, T> PutFsm<I, T> {
    /// Starts a write sent to `targets`, coordinated by the vnode `coordinator` if given, or
    /// refuses it as Riak does before sending anything: `n_val_violation` for impossible
    /// values, `pw_val_unsatisfied` when fewer primaries than PW were asked,
    /// `insufficient_vnodes` when fewer vnodes than max(1, W, DW, PW). DW is raised to 1.
    pub fn new(
        params: PutParams,
        targets: Vec<Target<I>>,
        coordinator: Option<I>,
    ) -> Result<Self, PutError> {
        validate_put(params.n, params.w, params.dw, params.pw)?;
        let params = PutParams {
            dw: effective_dw(params.dw),
            ..params
        };
        let primaries = count_u32(targets.iter().filter(|t| t.primary).count());
        if params.pw > primaries {
            return Err(PutError::PwValUnsatisfied {
                pw: params.pw,
                got: primaries,
            });
        }
        let vnodes = count_u32(targets.len());
        let need = params.w.max(params.dw).max(params.pw);
        if vnodes < need {
            return Err(PutError::InsufficientVnodes { have: vnodes, need });
        }
        Ok(PutFsm {
            params,
            coordinator,
            expected: effective_n(params.n, targets.len()),
            slots: targets.into_iter().map(Slot::new).collect(),
            outcome: None,
        })
    }

    /// Records one vnode message and says whether the write is now settled. Messages from one
    /// vnode must arrive in the order it sent them (a `Fail` without a `W` before it means the
    /// vnode never took the write). A repeated message (a second `W`, a second final answer)
    /// is ignored; a vnode that was not asked counts as a primary (Riak's rule: during ring
    /// resizing only primaries forward).
    pub fn add_reply(&mut self, index: I, reply: PutReply<T>) -> Step<PutOutcome> {
        let is_coordinator = self.coordinator == Some(index);
        let slot = self.slot_mut(index);
        let coordinator_failure = match reply {
            PutReply::W if slot.received => return Step::Ignored,
            PutReply::W => {
                slot.received = true;
                None
            }
            PutReply::Dw(_) | PutReply::Fail(_) if !matches!(slot.finish, Finish::Pending) => {
                return Step::Ignored;
            }
            PutReply::Dw(obj) => {
                slot.received = true;
                slot.finish = Finish::Stored(obj);
                None
            }
            PutReply::Fail(reason) => {
                let failure = is_coordinator.then(|| reason.clone());
                slot.finish = Finish::Failed(reason);
                failure
            }
        };
        if self.outcome.is_some() {
            return Step::Late;
        }
        if let Some(reason) = coordinator_failure {
            return self.decide(Err(PutError::CoordinatorFailed(reason)));
        }
        let tally = self.tally();
        if !self.enough(&tally) {
            return Step::Waiting;
        }
        let outcome = self.response(&tally);
        self.decide(outcome)
    }

    /// The caller's timer fired: an unsettled write fails with `timeout`.
    pub fn on_timeout(&mut self) -> Step<PutOutcome> {
        if self.outcome.is_some() {
            return Step::Ignored;
        }
        self.decide(Err(PutError::Timeout))
    }

    /// The decision, once made.
    pub fn outcome(&self) -> Option<&PutOutcome> {
        self.outcome.as_ref()
    }

    /// The parameters the write runs with (DW already raised to at least 1).
    pub fn params(&self) -> &PutParams {
        &self.params
    }

    /// The objects returned with durable writes so far: merged, they are the body to return
    /// when the client asked for it.
    pub fn stored_objects(&self) -> impl Iterator<Item = (I, &T)> {
        self.slots.iter().filter_map(|s| match &s.finish {
            Finish::Stored(Some(obj)) => Some((s.index, obj)),
            _ => None,
        })
    }

    /// The vnodes that failed the write so far, with their reasons (for logs and stats).
    pub fn failures(&self) -> impl Iterator<Item = (I, &str)> {
        self.slots.iter().filter_map(|s| match &s.finish {
            Finish::Failed(reason) => Some((s.index, reason.as_str())),
            _ => None,
        })
    }

    /// True once every vnode asked has stored or failed the write.
    pub fn all_replied(&self) -> bool {
        let finished = self
            .slots
            .iter()
            .filter(|s| !matches!(s.finish, Finish::Pending));
        count_u32(finished.count()) >= self.expected
    }

    fn slot_mut(&mut self, index: I) -> &mut Slot<I, T> {
        let pos = match self.slots.iter().position(|s| s.index == index) {
            Some(pos) => pos,
            None => {
                self.slots.push(Slot::new(Target::primary(index)));
                self.slots.len() - 1
            }
        };
        &mut self.slots[pos]
    }

    fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for slot in &self.slots {
            if slot.received {
                t.w += 1;
            }
            match slot.finish {
                Finish::Pending if !slot.received => t.may_receive += 1,
                Finish::Pending => {}
                Finish::Stored(_) => {
                    t.dw += 1;
                    if slot.primary {
                        t.pw += 1;
                    }
                }
                Finish::Failed(_) => t.failed += 1,
            }
        }
        t
    }

    fn quorum_met(&self, t: &Tally) -> bool {
        let p = &self.params;
        t.w >= p.w && t.dw >= p.dw && t.pw >= p.pw
    }

    /// Failures beyond which `needed` successes out of the expected replies are impossible.
    fn too_many_failures(&self, t: &Tally, needed: u32) -> bool {
        t.failed > self.expected.saturating_sub(needed)
    }

    fn enough(&self, t: &Tally) -> bool {
        let p = &self.params;
        self.quorum_met(t)
            || self.too_many_failures(t, p.pw)
            || self.too_many_failures(t, p.dw)
            || (t.dw + t.failed >= self.expected && t.pw < p.pw)
            || t.w + t.may_receive < p.w
    }

    fn response(&self, t: &Tally) -> PutOutcome {
        let p = &self.params;
        if self.quorum_met(t) {
            return Ok(());
        }
        let pw_error = PutError::PwValUnsatisfied {
            pw: p.pw,
            got: t.pw,
        };
        if t.w >= p.w && t.dw >= p.dw {
            return Err(pw_error);
        }
        if self.too_many_failures(t, p.pw) && p.pw >= p.dw {
            return Err(pw_error);
        }
        if self.too_many_failures(t, p.dw) {
            return Err(PutError::DwValUnsatisfied {
                dw: p.dw,
                got: t.dw,
            });
        }
        Err(PutError::WValUnsatisfied {
            w: p.w,
            got_w: t.w,
            dw: p.dw,
            got_dw: t.dw,
        })
    }

    fn decide(&mut self, outcome: PutOutcome) -> Step<PutOutcome> {
        self.outcome = Some(outcome.clone());
        Step::Done(outcome)
    }
}

impl<I, T> Slot<I, T> {
    fn new(target: Target<I>) -> Self {
        Slot {
            index: target.index,
            primary: target.primary,
            received: false,
            finish: Finish::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PutReply::{Dw, Fail, W};
    use proptest::prelude::*;

    type Fsm = PutFsm<u8, u32>;

    fn params(n: u32, w: u32, dw: u32, pw: u32) -> PutParams {
        PutParams { n, w, dw, pw }
    }

    fn primaries(n: u8) -> Vec<Target<u8>> {
        (0..n).map(Target::primary).collect()
    }

    fn fsm(p: PutParams) -> Fsm {
        PutFsm::new(p, primaries(p.n as u8), None).expect("valid write")
    }

    fn fail() -> PutReply<u32> {
        Fail("disk full".into())
    }

    #[test]
    fn w_and_dw_settle_the_write() {
        let mut f = fsm(params(3, 2, 2, 0));
        assert_eq!(f.add_reply(0, W), Step::Waiting);
        assert_eq!(f.add_reply(1, W), Step::Waiting);
        assert_eq!(f.add_reply(0, Dw(None)), Step::Waiting);
        assert_eq!(f.add_reply(1, Dw(Some(9))), Step::Done(Ok(())));
        assert_eq!(f.stored_objects().collect::<Vec<_>>(), vec![(1, &9)]);
        // Vnode 2 has not answered yet.
        assert!(!f.all_replied());
    }

    #[test]
    fn dw_is_raised_to_one() {
        let mut f = fsm(params(3, 1, 0, 0));
        assert_eq!(f.params().dw, 1);
        assert_eq!(f.add_reply(0, W), Step::Waiting);
        assert_eq!(f.add_reply(0, Dw(None)), Step::Done(Ok(())));
        assert_eq!(validate_put(3, 0, 0, 0), Ok(()));
    }

    #[test]
    fn dw_fails_once_out_of_reach() {
        let mut f = fsm(params(3, 1, 3, 0));
        assert_eq!(
            f.add_reply(0, fail()),
            Step::Done(Err(PutError::DwValUnsatisfied { dw: 3, got: 0 }))
        );
        let mut f = fsm(params(3, 2, 2, 0));
        assert_eq!(f.add_reply(0, Dw(None)), Step::Waiting);
        assert_eq!(f.add_reply(1, fail()), Step::Waiting);
        assert_eq!(
            f.add_reply(2, fail()),
            Step::Done(Err(PutError::DwValUnsatisfied { dw: 2, got: 1 }))
        );
        assert_eq!(f.failures().map(|(i, _)| i).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn pw_counts_only_primary_durable_writes() {
        let targets = vec![Target::primary(0), Target::primary(1), Target::fallback(2)];
        let mut f = Fsm::new(params(3, 1, 1, 2), targets, None).unwrap();
        assert_eq!(f.add_reply(2, Dw(None)), Step::Waiting);
        assert_eq!(f.add_reply(0, W), Step::Waiting);
        assert_eq!(f.add_reply(0, Dw(None)), Step::Waiting);
        assert_eq!(f.add_reply(1, Dw(None)), Step::Done(Ok(())));
    }

    #[test]
    fn pw_shortfall_is_reported_once_everyone_finished() {
        let targets = vec![Target::primary(0), Target::fallback(1), Target::fallback(2)];
        let mut f = Fsm::new(params(3, 1, 1, 1), targets, None).unwrap();
        assert_eq!(f.add_reply(1, Dw(None)), Step::Waiting);
        assert_eq!(f.add_reply(2, Dw(None)), Step::Waiting);
        let last = f.add_reply(0, fail());
        assert_eq!(
            last,
            Step::Done(Err(PutError::PwValUnsatisfied { pw: 1, got: 0 }))
        );
        assert!(f.all_replied());
    }

    #[test]
    fn failures_blame_pw_when_it_is_at_least_dw() {
        let mut f = fsm(params(3, 1, 2, 2));
        assert_eq!(f.add_reply(0, fail()), Step::Waiting);
        assert_eq!(
            f.add_reply(1, fail()),
            Step::Done(Err(PutError::PwValUnsatisfied { pw: 2, got: 0 }))
        );
        let mut f = fsm(params(3, 1, 2, 1));
        assert_eq!(f.add_reply(0, fail()), Step::Waiting);
        assert_eq!(
            f.add_reply(1, fail()),
            Step::Done(Err(PutError::DwValUnsatisfied { dw: 2, got: 0 }))
        );
    }

    #[test]
    fn impossible_writes_are_refused_before_sending() {
        let two = vec![Target::primary(0), Target::fallback(1)];
        let n_err = PutError::NValViolation { n: 3 };
        assert_eq!(
            Fsm::new(params(3, 4, 1, 0), primaries(3), None).unwrap_err(),
            n_err
        );
        assert_eq!(
            Fsm::new(params(3, 1, 4, 0), primaries(3), None).unwrap_err(),
            n_err
        );
        assert_eq!(
            Fsm::new(params(3, 1, 1, 4), primaries(3), None).unwrap_err(),
            n_err
        );
        assert_eq!(
            validate_put(0, 0, 0, 0),
            Err(PutError::NValViolation { n: 0 })
        );
        let err = Fsm::new(params(3, 1, 1, 2), two.clone(), None).unwrap_err();
        assert_eq!(err, PutError::PwValUnsatisfied { pw: 2, got: 1 });
        let err = Fsm::new(params(3, 3, 1, 0), two, None).unwrap_err();
        assert_eq!(err, PutError::InsufficientVnodes { have: 2, need: 3 });
        let err = Fsm::new(params(3, 0, 0, 0), vec![], None).unwrap_err();
        assert_eq!(err, PutError::InsufficientVnodes { have: 0, need: 1 });
    }

    #[test]
    fn a_failing_coordinator_sinks_the_write() {
        let mut f = Fsm::new(params(3, 1, 1, 0), primaries(3), Some(0)).unwrap();
        assert_eq!(f.add_reply(0, W), Step::Waiting);
        let step = f.add_reply(0, Fail("too_many_siblings".into()));
        assert_eq!(
            step,
            Step::Done(Err(PutError::CoordinatorFailed("too_many_siblings".into())))
        );
        // Any other vnode's failure is just counted.
        let mut f = Fsm::new(params(3, 1, 1, 0), primaries(3), Some(0)).unwrap();
        assert_eq!(f.add_reply(1, fail()), Step::Waiting);
    }

    #[test]
    fn w_fails_when_too_few_vnodes_can_still_take_the_write() {
        // An overloaded vnode fails without ever sending `w`.
        let mut f = fsm(params(3, 3, 1, 0));
        assert_eq!(f.add_reply(0, Dw(None)), Step::Waiting);
        let step = f.add_reply(1, Fail("overload".into()));
        let err = PutError::WValUnsatisfied {
            w: 3,
            got_w: 1,
            dw: 1,
            got_dw: 1,
        };
        assert_eq!(step, Step::Done(Err(err)));
        // A vnode that received the write and then failed still counts towards W.
        let mut f = fsm(params(3, 3, 1, 0));
        for (i, reply) in [(0, W), (0, Dw(None)), (1, W), (1, fail())] {
            assert_eq!(f.add_reply(i, reply), Step::Waiting);
        }
        // The third receipt completes W=3 (DW=1 was met by vnode 0).
        assert_eq!(f.add_reply(2, W), Step::Done(Ok(())));
        // A vnode that received the write and has not finished counts once, not also as one
        // that may still receive it: 1 received + 1 that may = 2 < W=3.
        let mut f = fsm(params(3, 3, 1, 0));
        assert_eq!(f.add_reply(0, W), Step::Waiting);
        let err = PutError::WValUnsatisfied {
            w: 3,
            got_w: 1,
            dw: 1,
            got_dw: 0,
        };
        assert_eq!(
            f.add_reply(1, Fail("overload".into())),
            Step::Done(Err(err))
        );
    }

    #[test]
    fn a_w_shortfall_is_blamed_on_w_even_when_pw_is_at_least_dw() {
        // PW=1 is met by vnode 0's durable write; only W=3 is out of reach.
        let mut f = fsm(params(3, 3, 1, 1));
        assert_eq!(f.add_reply(0, Dw(None)), Step::Waiting);
        let err = PutError::WValUnsatisfied {
            w: 3,
            got_w: 1,
            dw: 1,
            got_dw: 1,
        };
        assert_eq!(
            f.add_reply(1, Fail("overload".into())),
            Step::Done(Err(err))
        );
    }

    #[test]
    fn a_reply_from_a_vnode_not_asked_does_not_end_the_wait_for_one_that_was() {
        // Three answers (one of them from vnode 7, not asked, which counts as a primary and
        // meets DW=1 and PW=1) are as many as n_val, but vnode 2 has not answered and can still
        // make W=2.
        let mut f = fsm(params(3, 2, 1, 1));
        assert_eq!(f.add_reply(7, Dw(None)), Step::Waiting);
        assert_eq!(f.add_reply(0, Fail("overload".into())), Step::Waiting);
        assert_eq!(f.add_reply(1, Fail("overload".into())), Step::Waiting);
        assert_eq!(f.add_reply(2, W), Step::Done(Ok(())));
    }

    #[test]
    fn late_and_repeated_replies() {
        let mut f = fsm(params(3, 2, 2, 0));
        assert_eq!(f.add_reply(0, Dw(None)), Step::Waiting);
        assert_eq!(f.add_reply(0, W), Step::Ignored);
        assert_eq!(f.add_reply(0, fail()), Step::Ignored);
        assert_eq!(f.add_reply(1, Dw(Some(1))), Step::Done(Ok(())));
        assert_eq!(f.add_reply(2, Dw(Some(2))), Step::Late);
        assert_eq!(f.stored_objects().count(), 2);
        assert!(f.all_replied());
        assert_eq!(f.outcome(), Some(&Ok(())));
    }

    #[test]
    fn a_vnode_not_asked_counts_as_a_primary() {
        let targets = vec![Target::fallback(0), Target::fallback(1), Target::primary(2)];
        let mut f = Fsm::new(params(3, 1, 1, 1), targets, None).unwrap();
        assert_eq!(f.add_reply(0, Dw(None)), Step::Waiting);
        assert_eq!(f.add_reply(7, Dw(None)), Step::Done(Ok(())));
    }

    #[test]
    fn timeout_fails_an_unsettled_write_only() {
        let mut f = fsm(params(3, 2, 2, 0));
        assert_eq!(f.add_reply(0, Dw(None)), Step::Waiting);
        assert_eq!(f.on_timeout(), Step::Done(Err(PutError::Timeout)));
        assert_eq!(f.on_timeout(), Step::Ignored);
        assert_eq!(f.add_reply(1, Dw(None)), Step::Late);
        assert_eq!(f.outcome(), Some(&Err(PutError::Timeout)));
    }

    #[test]
    fn errors_render_as_riak_does() {
        let dw = PutError::DwValUnsatisfied { dw: 3, got: 2 };
        assert_eq!(dw.to_string(), "DW-value unsatisfied: 2/3\n");
        assert_eq!((dw.code(), dw.http_status()), ("dw_val_unsatisfied", 503));
        assert_eq!(dw.erlang_term(), "{dw_val_unsatisfied,3,2}");
        let pw = PutError::PwValUnsatisfied { pw: 2, got: 1 };
        assert_eq!(pw.to_string(), "PW-value unsatisfied: 1/2\n");
        assert_eq!(pw.erlang_term(), "{pw_val_unsatisfied,2,1}");
        let w = PutError::WValUnsatisfied {
            w: 3,
            got_w: 1,
            dw: 2,
            got_dw: 0,
        };
        assert_eq!(w.to_string(), "W/DW-value unsatisfied: w=1/3 dw=0/2\n");
        assert_eq!(w.erlang_term(), "{w_val_unsatisfied,1,0,3,2}");
        let n = PutError::NValViolation { n: 3 };
        assert_eq!(
            n.to_string(),
            "Specified w/dw/pw/node_confirms values invalid for bucket n value of 3\n"
        );
        assert_eq!(n.http_status(), 400);
        let c = PutError::CoordinatorFailed("{too_many_siblings,101}".into());
        assert_eq!(c.to_string(), "Error:\n{too_many_siblings,101}\n");
        assert_eq!(
            (c.http_status(), c.erlang_term().as_str()),
            (503, "{too_many_siblings,101}")
        );
        let iv = PutError::InsufficientVnodes { have: 1, need: 2 };
        assert_eq!(iv.to_string(), "Error:\n{insufficient_vnodes,1,need,2}\n");
        assert_eq!(iv.http_status(), 503);
        assert_eq!(PutError::Timeout.to_string(), "request timed out\n");
    }

    /// What one vnode sends, in order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Script {
        Stores,
        StoresWithoutW,
        ReceivesThenFails,
        Overloaded,
        ReceivesThenSilent,
        Silent,
    }

    impl Script {
        fn messages(self) -> Vec<PutReply<u32>> {
            match self {
                Script::Stores => vec![W, Dw(None)],
                Script::StoresWithoutW => vec![Dw(None)],
                Script::ReceivesThenFails => vec![W, fail()],
                Script::Overloaded => vec![Fail("overload".into())],
                Script::ReceivesThenSilent => vec![W],
                Script::Silent => vec![],
            }
        }

        fn finishes(self) -> bool {
            !matches!(self, Script::ReceivesThenSilent | Script::Silent)
        }
    }

    #[derive(Debug, Clone)]
    struct Scenario {
        params: PutParams,
        primary: Vec<bool>,
        scripts: Vec<Script>,
        /// The vnode each delivered message comes from; each vnode's own messages keep their
        /// order.
        deliveries: Vec<usize>,
    }

    fn script() -> impl Strategy<Value = Script> {
        prop_oneof![
            4 => Just(Script::Stores),
            1 => Just(Script::StoresWithoutW),
            2 => Just(Script::ReceivesThenFails),
            1 => Just(Script::Overloaded),
            1 => Just(Script::ReceivesThenSilent),
            1 => Just(Script::Silent),
        ]
    }

    fn scenario() -> impl Strategy<Value = Scenario> {
        (1u32..=5)
            .prop_flat_map(|n| (Just(n), 1..=n))
            .prop_flat_map(|(n, asked)| {
                let size = asked as usize;
                (
                    Just(n),
                    prop::collection::vec(any::<bool>(), size),
                    prop::collection::vec(script(), size),
                    (0..=asked, 0..=asked, 0..=asked),
                )
            })
            .prop_flat_map(|(n, primary, scripts, (w, dw, pw))| {
                let primaries = primary.iter().filter(|p| **p).count() as u32;
                let params = PutParams {
                    n,
                    w,
                    dw,
                    pw: pw.min(primaries),
                };
                let deliveries: Vec<usize> = (0..scripts.len())
                    .flat_map(|i| std::iter::repeat_n(i, scripts[i].messages().len()))
                    .collect();
                (
                    Just(params),
                    Just(primary),
                    Just(scripts),
                    Just(deliveries).prop_shuffle(),
                )
            })
            .prop_map(|(params, primary, scripts, deliveries)| Scenario {
                params,
                primary,
                scripts,
                deliveries,
            })
    }

    /// Counts over what the vnodes will have said once every message is delivered.
    fn final_counts(s: &Scenario) -> (u32, u32, u32) {
        let mut w = 0;
        let mut dw = 0;
        let mut pw = 0;
        for (script, &primary) in s.scripts.iter().zip(&s.primary) {
            let stores = matches!(script, Script::Stores | Script::StoresWithoutW);
            let receives = stores
                || matches!(
                    script,
                    Script::ReceivesThenFails | Script::ReceivesThenSilent
                );
            w += u32::from(receives);
            dw += u32::from(stores);
            pw += u32::from(stores && primary);
        }
        (w, dw, pw)
    }

    proptest! {
        #[test]
        fn put_decision_depends_only_on_what_the_vnodes_said(s in scenario()) {
            let targets = (0u8..).zip(&s.primary).map(|(i, &p)| Target { index: i, primary: p }).collect();
            let mut f = Fsm::new(s.params, targets, None).expect("scenario values are valid");
            let mut queues: Vec<_> = s.scripts.iter().map(|sc| sc.messages().into_iter()).collect();
            let mut done_at = None;
            for (k, &vnode) in s.deliveries.iter().enumerate() {
                let msg = queues[vnode].next().expect("one message per delivery");
                match f.add_reply(vnode as u8, msg) {
                    Step::Done(_) => {
                        prop_assert!(done_at.is_none());
                        done_at = Some(k);
                    }
                    Step::Late => prop_assert!(done_at.is_some()),
                    Step::Waiting => prop_assert!(done_at.is_none()),
                    Step::Ignored => prop_assert!(false, "no message is repeated"),
                }
            }
            let p = f.params();
            let (w, dw, pw) = final_counts(&s);
            let meets = w >= p.w && dw >= p.dw && pw >= p.pw;
            match f.outcome() {
                // Success iff the vnodes' answers, in any order, meet every quorum; a failure is
                // only declared when they cannot.
                Some(Ok(())) => prop_assert!(meets),
                Some(Err(e)) => {
                    prop_assert!(!meets, "{:?}", e);
                    // The quorum blamed is one that was really short when the write failed.
                    let blamed_short = match *e {
                        PutError::DwValUnsatisfied { dw, got } => got < dw,
                        PutError::PwValUnsatisfied { pw, got } => got < pw,
                        PutError::WValUnsatisfied { w, got_w, .. } => got_w < w,
                        _ => false,
                    };
                    prop_assert!(blamed_short, "{:?}", e);
                }
                // Undecided only while some vnode may still answer.
                None => prop_assert!(s.scripts.iter().any(|sc| !sc.finishes())),
            }
            if s.scripts.iter().all(|sc| sc.finishes()) {
                prop_assert!(f.outcome().is_some());
                prop_assert!(f.all_replied());
            }
        }
    }
}
