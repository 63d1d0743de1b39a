//! The GET quorum state machine: when a read has heard enough, and what it heard.
//!
//! Mirrors Riak KV's `riak_kv_get_core` (counting and the final answer) and the validation and
//! failure threshold of `riak_kv_get_fsm`:
//!
//! * an object or tombstone reply is "ok"; a notfound is "ok" only with `notfound_ok`, else it
//!   counts against the read like an error; PR counts the ok replies from primaries;
//! * the read succeeds once `ok >= R` and `primary ok >= PR`;
//! * it fails early once notfounds + errors reach `N - max(R, PR) + 1` (R can no longer be
//!   met), or with `basic_quorum` the smaller of that and a majority, `N / 2 + 1`;
//! * failing that, it decides when every vnode has answered (a PR shortfall is only certain
//!   then);
//! * a failed read answers "not found" rather than an error when nothing but notfounds and
//!   tombstones came back, and an error otherwise: `pr_val_unsatisfied` when R was met but not
//!   PR or when PR >= R, else `r_val_unsatisfied`, replaced by `overload` if any vnode said so.
//!
//! Riak's HEAD-then-GET optimisation, expected-clock fetches and `node_confirms` are not
//! modelled: Rill's coordinator reads whole objects, and node confirmation needs node identities
//! this machine does not have.

use super::{Step, Target, count_u32, effective_n};

/// A read's quorum parameters, already resolved to numbers against the bucket's n_val.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetParams {
    /// Replicas of the key (n_val).
    pub n: u32,
    /// Ok replies needed.
    pub r: u32,
    /// Ok replies needed from primaries.
    pub pr: u32,
    /// Count a notfound as an ok reply ("this replica has no such key" is an answer).
    pub notfound_ok: bool,
    /// Give up once a majority of the replicas answered notfound or error.
    pub basic_quorum: bool,
}

/// One vnode's answer to a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetReply<T> {
    /// The vnode holds a live object.
    Found(T),
    /// The vnode holds a tombstone (every sibling deleted). It counts as an ok reply and takes
    /// part in the merge, but a read that finds only tombstones answers "not found".
    Tombstone(T),
    /// The vnode has no such key.
    NotFound,
    /// The vnode refused the request because its queue is full.
    Overload,
    /// The vnode failed to read.
    Error(String),
}

impl<T> GetReply<T> {
    /// The object carried by a `Found` or `Tombstone` reply.
    pub fn object(&self) -> Option<&T> {
        match self {
            GetReply::Found(obj) | GetReply::Tombstone(obj) => Some(obj),
            _ => None,
        }
    }
}

/// How a read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetOutcome {
    /// Quorum was met and at least one object (live or tombstone) came back: merge the objects
    /// of [`GetFsm::decision_replies`]. If the merge is a tombstone the client is told "not
    /// found" (or, when it asked for deleted vclocks, given the tombstone's clock).
    Found,
    /// Quorum was met with notfounds only, or the read failed having seen nothing but
    /// notfounds and tombstones.
    NotFound,
    /// The read failed.
    Failed(GetError),
}

/// Why a read failed. `Display` is the body Riak's HTTP interface sends for the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum GetError {
    /// n_val is zero, or R or PR exceeds it (HTTP 400).
    #[error("Specified w/dw/pw/node_confirms values invalid for bucket n value of {n}\n")]
    NValViolation {
        /// The bucket's n_val.
        n: u32,
    },
    /// Too few ok replies.
    #[error("R-value unsatisfied: {got}/{r}\n")]
    RValUnsatisfied {
        /// Ok replies needed.
        r: u32,
        /// Ok replies received.
        got: u32,
    },
    /// Too few ok replies from primaries, or fewer primaries in the preference list than PR.
    #[error("PR-value unsatisfied: {got}/{pr}\n")]
    PrValUnsatisfied {
        /// Primary ok replies needed.
        pr: u32,
        /// Primary ok replies received (or primaries available, when refused up front).
        got: u32,
    },
    /// The preference list holds fewer vnodes than R.
    #[error("Error:\n{{insufficient_vnodes,{have},need,{need}}}\n")]
    InsufficientVnodes {
        /// Vnodes in the preference list.
        have: u32,
        /// Vnodes needed (R).
        need: u32,
    },
    /// The read failed and at least one vnode was overloaded.
    #[error("Error:\noverload\n")]
    Overload,
    /// The caller's timer fired before the read was settled.
    #[error("request timed out\n")]
    Timeout,
}

impl GetError {
    /// A stable machine-readable name: Riak's error atom.
    pub fn code(&self) -> &'static str {
        match self {
            GetError::NValViolation { .. } => "n_val_violation",
            GetError::RValUnsatisfied { .. } => "r_val_unsatisfied",
            GetError::PrValUnsatisfied { .. } => "pr_val_unsatisfied",
            GetError::InsufficientVnodes { .. } => "insufficient_vnodes",
            GetError::Overload => "overload",
            GetError::Timeout => "timeout",
        }
    }

    /// The HTTP status to answer with: 400 for a request no preference list could satisfy,
    /// 503 for everything else. The other errors are availability answers (too few replicas
    /// reachable, answering or unloaded right now), not server faults, so they are 503 even
    /// where Riak itself answers 500 (`insufficient_vnodes`, `overload`).
    pub fn http_status(&self) -> u16 {
        match self {
            GetError::NValViolation { .. } => 400,
            GetError::RValUnsatisfied { .. }
            | GetError::PrValUnsatisfied { .. }
            | GetError::InsufficientVnodes { .. }
            | GetError::Overload
            | GetError::Timeout => 503,
        }
    }

    /// The error as the Erlang term Riak prints into a Protocol Buffers `RpbErrorResp`
    /// (`{r_val_unsatisfied,2,1}`).
    pub fn erlang_term(&self) -> String {
        match self {
            GetError::NValViolation { n } => format!("{{n_val_violation,{n}}}"),
            GetError::RValUnsatisfied { r, got } => format!("{{r_val_unsatisfied,{r},{got}}}"),
            GetError::PrValUnsatisfied { pr, got } => {
                format!("{{pr_val_unsatisfied,{pr},{got}}}")
            }
            GetError::InsufficientVnodes { have, need } => {
                format!("{{insufficient_vnodes,{have},need,{need}}}")
            }
            GetError::Overload => "overload".to_owned(),
            GetError::Timeout => "timeout".to_owned(),
        }
    }
}

/// Rejects quorum values no preference list can satisfy, in Riak's order of checks: n_val
/// must be positive, and neither R nor PR may exceed it.
pub fn validate_get(n: u32, r: u32, pr: u32) -> Result<(), GetError> {
    if n == 0 || r > n || pr > n {
        return Err(GetError::NValViolation { n });
    }
    Ok(())
}

/// Reply counts, kept as Riak keeps them.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    /// Objects, tombstones, and notfounds when notfound_ok.
    ok: u32,
    /// The part of `ok` that came from primaries.
    primary_ok: u32,
    /// Notfounds when not notfound_ok.
    notfound: u32,
    /// Tombstones (also counted in `ok`).
    deleted: u32,
    /// Errors, overloads included.
    failed: u32,
}

/// The state of one read: created with the vnodes asked, fed their replies, asked what now.
#[derive(Debug, Clone)]
pub struct GetFsm<I, T> {
    params: GetParams,
    targets: Vec<Target<I>>,
    /// Replies counted against (n_val, or fewer vnodes when fewer were asked).
    expected: u32,
    fail_threshold: u32,
    tally: Tally,
    overloaded: bool,
    /// Every reply in arrival order, late ones included.
    replies: Vec<(I, GetReply<T>)>,
    /// The decision, and how many replies had arrived when it was made.
    decision: Option<(GetOutcome, usize)>,
}

impl<I: Copy + Eq, T> GetFsm<I, T> {
    /// Starts a read sent to `targets`, or refuses it as Riak does before sending anything:
    /// `n_val_violation` for impossible R/PR, `pr_val_unsatisfied` when fewer primaries than
    /// PR were asked, `insufficient_vnodes` when fewer vnodes than R were asked.
    pub fn new(params: GetParams, targets: Vec<Target<I>>) -> Result<Self, GetError> {
        validate_get(params.n, params.r, params.pr)?;
        let primaries = count_u32(targets.iter().filter(|t| t.primary).count());
        if params.pr > primaries {
            return Err(GetError::PrValUnsatisfied {
                pr: params.pr,
                got: primaries,
            });
        }
        let vnodes = count_u32(targets.len());
        if params.r > vnodes {
            return Err(GetError::InsufficientVnodes {
                have: vnodes,
                need: params.r,
            });
        }
        let expected = effective_n(params.n, targets.len());
        Ok(GetFsm {
            fail_threshold: fail_threshold(&params, expected),
            params,
            targets,
            expected,
            tally: Tally::default(),
            overloaded: false,
            replies: Vec::new(),
            decision: None,
        })
    }

    /// Records one vnode's reply and says whether the read is now settled. A second reply from
    /// the same vnode is ignored; a reply from a vnode that was not asked counts as a primary's
    /// (Riak's rule: during ring resizing only primaries forward).
    pub fn add_reply(&mut self, index: I, reply: GetReply<T>) -> Step<GetOutcome> {
        if self.replies.iter().any(|(i, _)| *i == index) {
            return Step::Ignored;
        }
        self.count(self.is_primary(index), &reply);
        self.replies.push((index, reply));
        if self.decision.is_some() {
            return Step::Late;
        }
        if !self.enough() {
            return Step::Waiting;
        }
        let outcome = self.response();
        self.decide(outcome)
    }

    /// The caller's timer fired: an unsettled read fails with `timeout`.
    pub fn on_timeout(&mut self) -> Step<GetOutcome> {
        if self.decision.is_some() {
            return Step::Ignored;
        }
        self.decide(GetOutcome::Failed(GetError::Timeout))
    }

    /// The decision, once made.
    pub fn outcome(&self) -> Option<&GetOutcome> {
        self.decision.as_ref().map(|(outcome, _)| outcome)
    }

    /// The parameters the read runs with.
    pub fn params(&self) -> &GetParams {
        &self.params
    }

    /// The vnodes the read was sent to.
    pub fn targets(&self) -> &[Target<I>] {
        &self.targets
    }

    /// Every reply received so far, in arrival order, including those after the decision:
    /// the material for read repair.
    pub fn replies(&self) -> &[(I, GetReply<T>)] {
        &self.replies
    }

    /// The replies the decision was made on (all of them while undecided): merge the objects
    /// among these to answer a `Found` read.
    pub fn decision_replies(&self) -> &[(I, GetReply<T>)] {
        let seen = self
            .decision
            .as_ref()
            .map_or(self.replies.len(), |(_, n)| *n);
        &self.replies[..seen]
    }

    /// True once every vnode asked has answered, so read repair can be planned on the full
    /// picture.
    pub fn all_replied(&self) -> bool {
        self.replies.len() >= self.expected as usize
    }

    fn is_primary(&self, index: I) -> bool {
        self.targets
            .iter()
            .find(|t| t.index == index)
            .is_none_or(|t| t.primary)
    }

    fn count(&mut self, primary: bool, reply: &GetReply<T>) {
        let ok = match reply {
            GetReply::Found(_) => true,
            GetReply::Tombstone(_) => {
                self.tally.deleted += 1;
                true
            }
            GetReply::NotFound if self.params.notfound_ok => true,
            GetReply::NotFound => {
                self.tally.notfound += 1;
                false
            }
            GetReply::Overload => {
                self.overloaded = true;
                self.tally.failed += 1;
                false
            }
            GetReply::Error(_) => {
                self.tally.failed += 1;
                false
            }
        };
        if ok {
            self.tally.ok += 1;
            if primary {
                self.tally.primary_ok += 1;
            }
        }
    }

    fn quorum_met(&self) -> bool {
        self.tally.ok >= self.params.r && self.tally.primary_ok >= self.params.pr
    }

    fn enough(&self) -> bool {
        let t = &self.tally;
        self.quorum_met()
            || t.notfound + t.failed >= self.fail_threshold
            || t.ok + t.notfound + t.failed >= self.expected
    }

    fn response(&self) -> GetOutcome {
        let (t, p) = (&self.tally, &self.params);
        if self.quorum_met() {
            return if self.replies.iter().any(|(_, r)| r.object().is_some()) {
                GetOutcome::Found
            } else {
                GetOutcome::NotFound
            };
        }
        // Only absences came back (no live object, no error): the key is simply not there.
        if t.notfound + t.deleted > 0 && t.ok == t.deleted && t.failed == 0 {
            return GetOutcome::NotFound;
        }
        if self.overloaded {
            return GetOutcome::Failed(GetError::Overload);
        }
        let pr_short = p.pr > 0 && t.primary_ok < p.pr && t.ok >= p.r;
        GetOutcome::Failed(if pr_short || p.pr >= p.r {
            GetError::PrValUnsatisfied {
                pr: p.pr,
                got: t.primary_ok,
            }
        } else {
            GetError::RValUnsatisfied { r: p.r, got: t.ok }
        })
    }

    fn decide(&mut self, outcome: GetOutcome) -> Step<GetOutcome> {
        self.decision = Some((outcome.clone(), self.replies.len()));
        Step::Done(outcome)
    }
}

/// Notfounds plus errors at which the read gives up: when R (or PR) ok replies can no longer
/// arrive, or with basic_quorum as soon as a majority of n_val failed, whichever comes first.
fn fail_threshold(params: &GetParams, expected: u32) -> u32 {
    let unreachable = expected.saturating_sub(params.r.max(params.pr)) + 1;
    if params.basic_quorum {
        unreachable.min(params.n / 2 + 1)
    } else {
        unreachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Fsm = GetFsm<u8, u32>;

    fn params(n: u32, r: u32, pr: u32) -> GetParams {
        GetParams {
            n,
            r,
            pr,
            notfound_ok: true,
            basic_quorum: false,
        }
    }

    fn primaries(n: u8) -> Vec<Target<u8>> {
        (0..n).map(Target::primary).collect()
    }

    fn fsm(p: GetParams) -> Fsm {
        GetFsm::new(p, primaries(p.n as u8)).expect("valid read")
    }

    /// Feeds replies to vnodes 0, 1, 2… in order and returns every step.
    fn feed(fsm: &mut Fsm, replies: Vec<GetReply<u32>>) -> Vec<Step<GetOutcome>> {
        let base = fsm.replies().len() as u8;
        (base..)
            .zip(replies)
            .map(|(i, r)| fsm.add_reply(i, r))
            .collect()
    }

    fn failed(e: GetError) -> Step<GetOutcome> {
        Step::Done(GetOutcome::Failed(e))
    }

    use GetReply::{Error, Found, NotFound, Overload, Tombstone};

    #[test]
    fn r_ok_replies_settle_the_read() {
        let mut f = fsm(params(3, 2, 0));
        let steps = feed(&mut f, vec![Found(1), Found(2)]);
        assert_eq!(steps, vec![Step::Waiting, Step::Done(GetOutcome::Found)]);
        let objs: Vec<_> = f
            .decision_replies()
            .iter()
            .filter_map(|(_, r)| r.object())
            .collect();
        assert_eq!(objs, vec![&1, &2]);
        assert!(!f.all_replied());
    }

    #[test]
    fn notfound_ok_counts_notfound_towards_r() {
        let mut f = fsm(params(3, 2, 0));
        assert_eq!(
            feed(&mut f, vec![NotFound, NotFound])[1],
            Step::Done(GetOutcome::NotFound)
        );
        let mut f = fsm(params(3, 2, 0));
        assert_eq!(
            feed(&mut f, vec![NotFound, Found(7)])[1],
            Step::Done(GetOutcome::Found)
        );
    }

    #[test]
    fn without_notfound_ok_notfounds_fail_the_read_as_notfound() {
        let p = GetParams {
            notfound_ok: false,
            ..params(3, 2, 0)
        };
        let mut f = fsm(p);
        // Two notfounds: R=2 is out of reach (3 - 2 + 1 = 2 failures), and nothing but
        // absences came back, so the answer is notfound rather than an error.
        let steps = feed(&mut f, vec![NotFound, NotFound]);
        assert_eq!(steps, vec![Step::Waiting, Step::Done(GetOutcome::NotFound)]);
    }

    #[test]
    fn without_notfound_ok_a_lone_object_is_r_unsatisfied_and_order_matters() {
        let p = GetParams {
            notfound_ok: false,
            ..params(3, 2, 0)
        };
        let mut f = fsm(p);
        let steps = feed(&mut f, vec![Found(1), NotFound, NotFound]);
        // Riak's answer depends on the order: the same three replies with the object last
        // settle as notfound after the two notfounds (previous test).
        assert_eq!(steps[2], failed(GetError::RValUnsatisfied { r: 2, got: 1 }));
        let mut f = fsm(p);
        assert_eq!(
            feed(&mut f, vec![NotFound, Found(1), Found(2)])[2],
            Step::Done(GetOutcome::Found)
        );
    }

    #[test]
    fn errors_fail_with_r_unsatisfied_even_mixed_with_notfounds() {
        let mut f = fsm(params(3, 2, 0));
        let steps = feed(&mut f, vec![Error("disk".into()), Error("disk".into())]);
        assert_eq!(steps[1], failed(GetError::RValUnsatisfied { r: 2, got: 0 }));
        let mut f = fsm(GetParams {
            notfound_ok: false,
            ..params(3, 2, 0)
        });
        let steps = feed(&mut f, vec![NotFound, Error("disk".into())]);
        assert_eq!(steps[1], failed(GetError::RValUnsatisfied { r: 2, got: 0 }));
    }

    #[test]
    fn overload_replaces_the_quorum_error() {
        let mut f = fsm(GetParams {
            notfound_ok: false,
            ..params(3, 2, 0)
        });
        let steps = feed(&mut f, vec![Overload, NotFound]);
        assert_eq!(steps[1], failed(GetError::Overload));
    }

    #[test]
    fn basic_quorum_gives_up_at_a_majority_of_failures() {
        let p = GetParams {
            notfound_ok: false,
            ..params(3, 1, 0)
        };
        let mut plain = fsm(p);
        assert_eq!(
            feed(&mut plain, vec![NotFound, NotFound]),
            vec![Step::Waiting; 2]
        );
        let mut basic = fsm(GetParams {
            basic_quorum: true,
            ..p
        });
        assert_eq!(
            feed(&mut basic, vec![NotFound, NotFound])[1],
            Step::Done(GetOutcome::NotFound)
        );
        let mut basic = fsm(GetParams {
            basic_quorum: true,
            ..p
        });
        let steps = feed(&mut basic, vec![NotFound, Error("x".into())]);
        assert_eq!(steps[1], failed(GetError::RValUnsatisfied { r: 1, got: 0 }));
    }

    #[test]
    fn pr_counts_only_primaries() {
        let targets = vec![Target::primary(0), Target::primary(1), Target::fallback(2)];
        let mut f = Fsm::new(params(3, 1, 2), targets.clone()).unwrap();
        assert_eq!((f.params(), f.targets()), (&params(3, 1, 2), &targets[..]));
        assert_eq!(f.add_reply(2, Found(1)), Step::Waiting);
        assert_eq!(f.add_reply(0, Found(1)), Step::Waiting);
        assert_eq!(f.add_reply(1, NotFound), Step::Done(GetOutcome::Found));
    }

    #[test]
    fn pr_shortfall_is_reported_once_everyone_answered() {
        let targets = vec![Target::primary(0), Target::primary(1), Target::fallback(2)];
        let mut f = Fsm::new(params(3, 1, 2), targets).unwrap();
        assert_eq!(f.add_reply(2, Found(1)), Step::Waiting);
        assert_eq!(f.add_reply(0, Found(1)), Step::Waiting);
        let last = f.add_reply(1, Error("x".into()));
        assert_eq!(last, failed(GetError::PrValUnsatisfied { pr: 2, got: 1 }));
        assert!(f.all_replied());
    }

    #[test]
    fn pr_at_least_r_blames_pr() {
        let mut f = fsm(params(3, 2, 2));
        let steps = feed(&mut f, vec![Error("x".into()), Error("x".into())]);
        assert_eq!(
            steps[1],
            failed(GetError::PrValUnsatisfied { pr: 2, got: 0 })
        );
        let mut f = fsm(params(3, 3, 2));
        assert_eq!(
            feed(&mut f, vec![Error("x".into())])[0],
            failed(GetError::RValUnsatisfied { r: 3, got: 0 })
        );
    }

    #[test]
    fn only_tombstones_and_notfounds_answer_notfound_even_when_pr_fails() {
        let targets = vec![Target::primary(0), Target::primary(1), Target::fallback(2)];
        let p = GetParams {
            notfound_ok: false,
            ..params(3, 1, 2)
        };
        let mut f = Fsm::new(p, targets).unwrap();
        assert_eq!(f.add_reply(2, Tombstone(1)), Step::Waiting);
        assert_eq!(f.add_reply(0, NotFound), Step::Waiting);
        assert_eq!(f.add_reply(1, NotFound), Step::Done(GetOutcome::NotFound));
    }

    #[test]
    fn tombstones_meet_quorum_and_are_handed_over_for_merging() {
        let mut f = fsm(params(3, 2, 0));
        let steps = feed(&mut f, vec![Tombstone(4), Found(5)]);
        assert_eq!(steps[1], Step::Done(GetOutcome::Found));
        let objs: Vec<_> = f
            .decision_replies()
            .iter()
            .filter_map(|(_, r)| r.object())
            .collect();
        assert_eq!(objs, vec![&4, &5]);
    }

    #[test]
    fn impossible_reads_are_refused_before_sending() {
        let two = vec![Target::primary(0), Target::fallback(1)];
        assert_eq!(
            Fsm::new(params(3, 4, 0), primaries(3)).unwrap_err(),
            GetError::NValViolation { n: 3 }
        );
        assert_eq!(
            Fsm::new(params(3, 1, 4), primaries(3)).unwrap_err(),
            GetError::NValViolation { n: 3 }
        );
        assert_eq!(
            Fsm::new(params(0, 0, 0), vec![]).unwrap_err(),
            GetError::NValViolation { n: 0 }
        );
        let err = Fsm::new(params(3, 1, 2), two.clone()).unwrap_err();
        assert_eq!(err, GetError::PrValUnsatisfied { pr: 2, got: 1 });
        let err = Fsm::new(params(3, 3, 0), two).unwrap_err();
        assert_eq!(err, GetError::InsufficientVnodes { have: 2, need: 3 });
        assert_eq!(validate_get(3, 3, 3), Ok(()));
    }

    #[test]
    fn late_replies_are_kept_for_read_repair() {
        let mut f = fsm(params(3, 2, 0));
        feed(&mut f, vec![Found(1), NotFound]);
        assert_eq!(f.add_reply(2, Found(2)), Step::Late);
        assert_eq!(f.outcome(), Some(&GetOutcome::Found));
        assert_eq!(f.decision_replies().len(), 2);
        assert_eq!(f.replies().len(), 3);
        assert!(f.all_replied());
    }

    #[test]
    fn a_second_reply_from_one_vnode_is_ignored() {
        let mut f = fsm(params(3, 2, 0));
        assert_eq!(f.add_reply(0, Found(1)), Step::Waiting);
        assert_eq!(f.add_reply(0, Found(1)), Step::Ignored);
        assert_eq!(f.replies().len(), 1);
        assert_eq!(f.add_reply(1, Found(1)), Step::Done(GetOutcome::Found));
    }

    #[test]
    fn a_vnode_not_asked_counts_as_a_primary() {
        let targets = vec![Target::fallback(0), Target::primary(1), Target::primary(2)];
        let mut f = Fsm::new(params(3, 1, 1), targets).unwrap();
        assert_eq!(f.add_reply(0, Found(1)), Step::Waiting);
        assert_eq!(f.add_reply(9, Found(1)), Step::Done(GetOutcome::Found));
    }

    #[test]
    fn timeout_fails_an_unsettled_read_only() {
        let mut f = fsm(params(3, 2, 0));
        feed(&mut f, vec![Found(1)]);
        assert_eq!(f.on_timeout(), failed(GetError::Timeout));
        assert_eq!(f.on_timeout(), Step::Ignored);
        assert_eq!(f.add_reply(1, Found(2)), Step::Late);
        assert_eq!(f.outcome(), Some(&GetOutcome::Failed(GetError::Timeout)));

        let mut f = fsm(params(3, 1, 0));
        feed(&mut f, vec![Found(1)]);
        assert_eq!(f.on_timeout(), Step::Ignored);
    }

    #[test]
    fn r_zero_settles_on_the_first_reply() {
        let mut f = fsm(params(3, 0, 0));
        assert_eq!(
            f.add_reply(0, Error("x".into())),
            Step::Done(GetOutcome::NotFound)
        );
    }

    #[test]
    fn a_short_preference_list_counts_against_the_vnodes_asked() {
        // n_val 3 but only two vnodes reachable: one notfound already makes R=2 impossible.
        let p = GetParams {
            notfound_ok: false,
            ..params(3, 2, 0)
        };
        let mut f = Fsm::new(p, primaries(2)).unwrap();
        assert_eq!(f.add_reply(0, NotFound), Step::Done(GetOutcome::NotFound));
        let mut f = Fsm::new(
            params(3, 1, 1),
            vec![Target::primary(0), Target::fallback(1)],
        )
        .unwrap();
        assert_eq!(f.add_reply(1, Found(1)), Step::Waiting);
        let last = f.add_reply(0, Error("x".into()));
        assert_eq!(last, failed(GetError::PrValUnsatisfied { pr: 1, got: 0 }));
    }

    #[test]
    fn errors_render_as_riak_does() {
        let r = GetError::RValUnsatisfied { r: 2, got: 1 };
        assert_eq!(r.to_string(), "R-value unsatisfied: 1/2\n");
        assert_eq!((r.code(), r.http_status()), ("r_val_unsatisfied", 503));
        assert_eq!(r.erlang_term(), "{r_val_unsatisfied,2,1}");
        let pr = GetError::PrValUnsatisfied { pr: 3, got: 2 };
        assert_eq!(pr.to_string(), "PR-value unsatisfied: 2/3\n");
        assert_eq!(pr.erlang_term(), "{pr_val_unsatisfied,3,2}");
        let n = GetError::NValViolation { n: 3 };
        assert_eq!(
            n.to_string(),
            "Specified w/dw/pw/node_confirms values invalid for bucket n value of 3\n"
        );
        assert_eq!(
            (n.http_status(), n.erlang_term().as_str()),
            (400, "{n_val_violation,3}")
        );
        let iv = GetError::InsufficientVnodes { have: 2, need: 3 };
        assert_eq!(iv.to_string(), "Error:\n{insufficient_vnodes,2,need,3}\n");
        assert_eq!(iv.http_status(), 503);
        assert_eq!(GetError::Overload.http_status(), 503);
        assert_eq!(GetError::Timeout.to_string(), "request timed out\n");
        assert_eq!(GetError::Timeout.erlang_term(), "timeout");
        assert_eq!(GetError::Overload.code(), "overload");
    }

    /// A scenario: quorum values, which vnodes are primaries, one reply per vnode, and the
    /// order the replies arrive in.
    #[derive(Debug, Clone)]
    struct Scenario {
        params: GetParams,
        primary: Vec<bool>,
        replies: Vec<GetReply<u32>>,
        order: Vec<usize>,
    }

    fn reply() -> impl Strategy<Value = GetReply<u32>> {
        prop_oneof![
            3 => any::<u32>().prop_map(Found),
            1 => any::<u32>().prop_map(Tombstone),
            3 => Just(NotFound),
            1 => Just(Overload),
            2 => Just(Error("x".into())),
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
                    prop::collection::vec(reply(), size),
                    Just((0..size).collect::<Vec<_>>()).prop_shuffle(),
                    any::<(bool, bool)>(),
                    0..=asked,
                    0..=asked,
                )
            })
            .prop_map(
                |(n, primary, replies, order, (notfound_ok, basic_quorum), r, pr)| {
                    let primaries = primary.iter().filter(|p| **p).count() as u32;
                    let params = GetParams {
                        n,
                        r,
                        pr: pr.min(primaries),
                        notfound_ok,
                        basic_quorum,
                    };
                    Scenario {
                        params,
                        primary,
                        replies,
                        order,
                    }
                },
            )
    }

    /// Runs a scenario to the end; returns the machine and the step each reply produced.
    fn run(s: &Scenario) -> (Fsm, Vec<Step<GetOutcome>>) {
        let targets = (0u8..)
            .zip(&s.primary)
            .map(|(i, &p)| Target {
                index: i,
                primary: p,
            })
            .collect();
        let mut f = Fsm::new(s.params, targets).expect("scenario values are valid");
        let steps = s
            .order
            .iter()
            .map(|&i| f.add_reply(i as u8, s.replies[i].clone()))
            .collect();
        (f, steps)
    }

    /// Reference counts over a set of (primary, reply) pairs, computed from scratch.
    struct Counts {
        ok: u32,
        primary_ok: u32,
        bad: u32,
        live: u32,
        errors: u32,
    }

    fn counts(p: &GetParams, seen: &[(bool, &GetReply<u32>)]) -> Counts {
        let is_ok = |r: &GetReply<u32>| r.object().is_some() || (p.notfound_ok && *r == NotFound);
        let ok = seen.iter().filter(|(_, r)| is_ok(r)).count() as u32;
        Counts {
            ok,
            primary_ok: seen.iter().filter(|(pr, r)| *pr && is_ok(r)).count() as u32,
            bad: seen.len() as u32 - ok,
            live: seen.iter().filter(|(_, r)| matches!(r, Found(_))).count() as u32,
            errors: seen
                .iter()
                .filter(|(_, r)| matches!(r, Error(_) | Overload))
                .count() as u32,
        }
    }

    proptest! {
        #[test]
        fn get_decides_exactly_when_riak_would_and_consistently(s in scenario()) {
            let (f, steps) = run(&s);
            let p = s.params;
            let asked = s.primary.len() as u32;
            let threshold = {
                let t = asked - p.r.max(p.pr) + 1;
                if p.basic_quorum { t.min(p.n / 2 + 1) } else { t }
            };
            let seen: Vec<_> = s.order.iter().map(|&i| (s.primary[i], &s.replies[i])).collect();
            // The first prefix at which Riak's `enough` holds.
            let settle = (1..=seen.len())
                .find(|&k| {
                    let c = counts(&p, &seen[..k]);
                    (c.ok >= p.r && c.primary_ok >= p.pr) || c.bad >= threshold || k == seen.len()
                })
                .expect("the full set always settles");
            for (k, step) in steps.iter().enumerate() {
                match k + 1 {
                    at if at < settle => prop_assert_eq!(step, &Step::Waiting),
                    at if at == settle => prop_assert!(matches!(step, Step::Done(_))),
                    _ => prop_assert_eq!(step, &Step::Late),
                }
            }
            prop_assert!(f.all_replied());
            prop_assert_eq!(f.decision_replies().len(), settle);

            let at = counts(&p, &seen[..settle]);
            let met = at.ok >= p.r && at.primary_ok >= p.pr;
            match f.outcome().expect("settled") {
                // Never "found" without R ok replies and PR from primaries.
                GetOutcome::Found => prop_assert!(met && at.ok > 0),
                // Not found: a quorum of absences, or nothing but absences.
                GetOutcome::NotFound => prop_assert!(
                    (met && seen[..settle].iter().all(|(_, r)| r.object().is_none()))
                        || (at.live == 0 && at.errors == 0)
                ),
                GetOutcome::Failed(GetError::Overload) => prop_assert!(!met),
                GetOutcome::Failed(e) => {
                    prop_assert!(!met && at.errors + at.live > 0, "{:?}", e);
                    // The quorum blamed is one that was really short, reported with the
                    // count at the decision.
                    let blamed_right = match *e {
                        GetError::RValUnsatisfied { r, got } => got < r && got == at.ok,
                        GetError::PrValUnsatisfied { pr, got } => got < pr && got == at.primary_ok,
                        _ => false,
                    };
                    prop_assert!(blamed_right, "{:?}", e);
                }
            }

            // Without basic_quorum, whether quorum was met depends only on the multiset of
            // replies: exactly when the full set meets it.
            if !p.basic_quorum {
                let all = counts(&p, &seen);
                prop_assert_eq!(met, all.ok >= p.r && all.primary_ok >= p.pr);
            }
        }
    }
}
