//! Laws and semantics of the data types: merge is commutative, associative and idempotent over
//! states built from generated concurrent histories; replicas converge; single-replica
//! histories match a sequential model; add-wins, enable-wins, LWW and reset-remove hold;
//! encodings round-trip and garbage never panics.

use std::collections::BTreeSet;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::crdt::causal::tests::actor;

const NOW: u64 = 1_700_000_000_000_000;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// One replica: a state and the actor that updates it.
#[derive(Clone, Debug)]
struct Replica {
    actor: Actor,
    state: Crdt,
}

impl Replica {
    fn new(n: u8, dt: Datatype) -> Self {
        Replica {
            actor: actor(n),
            state: Crdt::new(dt, VersionVector::new(), 10),
        }
    }

    /// Applies `op` as the next event of this replica's actor.
    fn update(&mut self, op: &Op, ctx: Option<&VersionVector>, now: u64) -> Result<(), DtError> {
        let counter = self.state.seen(self.actor).max(self.events()) + 1;
        let dot = Dot {
            actor: self.actor,
            counter,
        };
        self.state.apply(op, dot, ctx, now)
    }

    /// Events of its own for types without a clock (counters ignore the dot's counter).
    fn events(&self) -> u64 {
        0
    }

    fn ctx(&self) -> Option<VersionVector> {
        self.state.context().map(|c| c.0)
    }

    fn set(&self) -> Vec<Bytes> {
        match self.state.value() {
            DtValue::Set(v) => v,
            v => panic!("not a set: {v:?}"),
        }
    }

    fn map(&self) -> Vec<(FieldKey, FieldView)> {
        match self.state.value() {
            DtValue::Map(v) => v,
            v => panic!("not a map: {v:?}"),
        }
    }
}

fn set_op(adds: &[&str], removes: &[&str]) -> Op {
    Op::Set(SetOp {
        adds: adds.iter().map(|s| b(s)).collect(),
        removes: removes.iter().map(|s| b(s)).collect(),
    })
}

fn field(name: &str, kind: FieldKind) -> FieldKey {
    FieldKey::new(b(name), kind)
}

fn map_update(key: FieldKey, op: FieldOp) -> Op {
    Op::Map(MapOp {
        removes: vec![],
        updates: vec![(key, op)],
    })
}

fn map_remove(key: FieldKey) -> Op {
    Op::Map(MapOp {
        removes: vec![key],
        updates: vec![],
    })
}

fn merged(a: &Crdt, b: &Crdt) -> Crdt {
    let mut m = a.clone();
    m.merge(b);
    m
}

// ---- semantics -----------------------------------------------------------------------

#[test]
fn counter_sums_increments_and_decrements_of_every_actor() {
    let (mut x, mut y) = (
        Replica::new(1, Datatype::Counter),
        Replica::new(2, Datatype::Counter),
    );
    x.update(&Op::Counter(5), None, NOW).unwrap();
    y.update(&Op::Counter(-2), None, NOW).unwrap();
    y.update(&Op::Counter(10), None, NOW).unwrap();
    let m = merged(&x.state, &y.state);
    assert_eq!(m.value(), DtValue::Counter(13));
    assert_eq!(merged(&m, &x.state), m);
}

#[test]
fn set_remove_without_context_of_an_absent_member_is_a_precondition_error() {
    let mut s = Replica::new(1, Datatype::Set);
    s.update(&set_op(&["a"], &[]), None, NOW).unwrap();
    let before = s.state.clone();
    let err = s.update(&set_op(&["b"], &["zz"]), None, NOW).unwrap_err();
    assert_eq!(err, DtError::NotPresent(b("zz")));
    assert_eq!(err.to_string(), "{precondition,{not_present,<<\"zz\">>}}");
    assert_eq!(s.state, before, "a refused op changes nothing");
    // With a context, removing what is not there is fine (already removed).
    let ctx = s.ctx();
    s.update(&set_op(&[], &["zz"]), ctx.as_ref(), NOW).unwrap();
    assert_eq!(s.set(), vec![b("a")]);
}

#[test]
fn a_concurrent_add_wins_over_a_remove() {
    let mut x = Replica::new(1, Datatype::Set);
    x.update(&set_op(&["a", "b"], &[]), None, NOW).unwrap();
    let mut y = Replica::new(2, Datatype::Set);
    y.state.merge(&x.state);
    let ctx = x.ctx();
    x.update(&set_op(&[], &["a", "b"]), ctx.as_ref(), NOW)
        .unwrap();
    y.update(&set_op(&["a"], &[]), None, NOW).unwrap();
    let m = merged(&x.state, &y.state);
    assert_eq!(m.value(), DtValue::Set(vec![b("a")]));
    assert_eq!(m, merged(&y.state, &x.state));
}

#[test]
fn a_remove_sent_to_a_lagging_replica_waits_until_it_has_seen_the_context() {
    let mut x = Replica::new(1, Datatype::Set);
    x.update(&set_op(&["a", "b"], &[]), None, NOW).unwrap();
    let ctx = x.ctx();
    // Replica z never saw x's adds, but the client read them from x.
    let mut z = Replica::new(3, Datatype::Set);
    z.update(&set_op(&[], &["a"]), ctx.as_ref(), NOW).unwrap();
    assert!(z.set().is_empty());
    z.state.merge(&x.state);
    assert_eq!(
        z.set(),
        vec![b("b")],
        "the deferred remove ran after the merge"
    );
    x.state.merge(&z.state);
    assert_eq!(x.set(), vec![b("b")]);
    let Crdt::Set(s) = &x.state else {
        unreachable!()
    };
    assert!(s.deferred.is_empty(), "a remove that ran is not kept");
}

#[test]
fn a_removed_map_field_with_a_concurrent_update_keeps_only_that_update() {
    let tags = field("tags", FieldKind::Set);
    let mut x = Replica::new(1, Datatype::Map);
    let add = |m: &[&str]| {
        FieldOp::Set(SetOp {
            adds: m.iter().map(|s| b(s)).collect(),
            removes: vec![],
        })
    };
    x.update(&map_update(tags.clone(), add(&["a", "b"])), None, NOW)
        .unwrap();
    let mut y = Replica::new(2, Datatype::Map);
    y.state.merge(&x.state);
    let ctx = x.ctx();
    x.update(&map_remove(tags.clone()), ctx.as_ref(), NOW)
        .unwrap();
    assert!(x.map().is_empty());
    y.update(&map_update(tags.clone(), add(&["c"])), None, NOW)
        .unwrap();
    let m = merged(&x.state, &y.state);
    assert_eq!(
        m.value(),
        DtValue::Map(vec![(tags.clone(), FieldView::Set(vec![b("c")]))])
    );
    assert_eq!(m, merged(&y.state, &x.state));

    // The same at depth: a nested map removed while one of its fields is updated.
    let inner = field("inner", FieldKind::Map);
    let name = field("name", FieldKind::Register);
    let age = field("age", FieldKind::Register);
    let nested = |k: &FieldKey, v: &str| {
        FieldOp::Map(MapOp {
            removes: vec![],
            updates: vec![(k.clone(), FieldOp::Register(b(v)))],
        })
    };
    let mut x = Replica::new(1, Datatype::Map);
    x.update(&map_update(inner.clone(), nested(&name, "ann")), None, NOW)
        .unwrap();
    let mut y = Replica::new(2, Datatype::Map);
    y.state.merge(&x.state);
    let ctx = x.ctx();
    x.update(&map_remove(inner.clone()), ctx.as_ref(), NOW)
        .unwrap();
    y.update(&map_update(inner.clone(), nested(&age, "40")), None, NOW)
        .unwrap();
    assert_eq!(
        merged(&x.state, &y.state).value(),
        DtValue::Map(vec![(
            inner,
            FieldView::Map(vec![(age, FieldView::Register(b("40")))])
        )])
    );
}

#[test]
fn map_counters_keep_an_actors_total_through_a_concurrent_remove_as_riaks_do() {
    let hits = field("hits", FieldKind::Counter);
    let mut x = Replica::new(1, Datatype::Map);
    x.update(&map_update(hits.clone(), FieldOp::Counter(5)), None, NOW)
        .unwrap();
    let mut y = Replica::new(2, Datatype::Map);
    y.state.merge(&x.state);
    let ctx = y.ctx();
    y.update(&map_remove(hits.clone()), ctx.as_ref(), NOW)
        .unwrap();
    // Another actor's concurrent increment comes back alone ...
    let mut z = Replica::new(3, Datatype::Map);
    z.state.merge(&x.state);
    z.update(&map_update(hits.clone(), FieldOp::Counter(1)), None, NOW)
        .unwrap();
    assert_eq!(
        merged(&y.state, &z.state).value(),
        DtValue::Map(vec![(hits.clone(), FieldView::Counter(1))])
    );
    // ... while the same actor's carries its running total (riak_dt_emcntr's anomaly).
    x.update(&map_update(hits.clone(), FieldOp::Counter(1)), None, NOW)
        .unwrap();
    assert_eq!(
        merged(&y.state, &x.state).value(),
        DtValue::Map(vec![(hits, FieldView::Counter(6))])
    );
}

#[test]
fn registers_are_last_write_wins_and_flags_enable_wins() {
    let reg = field("name", FieldKind::Register);
    let flag = field("on", FieldKind::Flag);
    let mut x = Replica::new(1, Datatype::Map);
    let mut y = Replica::new(2, Datatype::Map);
    x.update(
        &map_update(reg.clone(), FieldOp::Register(b("old"))),
        None,
        NOW,
    )
    .unwrap();
    y.update(
        &map_update(reg.clone(), FieldOp::Register(b("new"))),
        None,
        NOW + 1,
    )
    .unwrap();
    x.update(&map_update(flag.clone(), FieldOp::Flag(true)), None, NOW)
        .unwrap();
    y.state.merge(&x.state);
    // Concurrently: y disables the flag it saw, x enables it again.
    let ctx = y.ctx();
    y.update(
        &map_update(flag.clone(), FieldOp::Flag(false)),
        ctx.as_ref(),
        NOW,
    )
    .unwrap();
    x.update(&map_update(flag.clone(), FieldOp::Flag(true)), None, NOW)
        .unwrap();
    let m = merged(&x.state, &y.state);
    assert_eq!(
        m.value(),
        DtValue::Map(vec![
            (reg, FieldView::Register(b("new"))),
            (flag.clone(), FieldView::Flag(true)),
        ])
    );
    // A disabled flag stays in the map as false.
    let mut y2 = y.clone();
    y2.state = m;
    let ctx = y2.ctx();
    y2.update(
        &map_update(flag.clone(), FieldOp::Flag(false)),
        ctx.as_ref(),
        NOW,
    )
    .unwrap();
    assert!(y2.map().contains(&(flag, FieldView::Flag(false))));
}

#[test]
fn map_field_remove_without_context_needs_the_field() {
    let mut x = Replica::new(1, Datatype::Map);
    let f = field("f", FieldKind::Flag);
    let err = x.update(&map_remove(f.clone()), None, NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "{precondition,{not_present,{<<\"f\">>,riak_dt_od_flag}}}"
    );
    assert_eq!(x.state, Crdt::new(Datatype::Map, VersionVector::new(), 10));
}

#[test]
fn an_op_of_another_type_is_refused() {
    let mut x = Replica::new(1, Datatype::Set);
    let err = x.update(&Op::Counter(1), None, NOW).unwrap_err();
    assert_eq!(
        err,
        DtError::WrongType {
            op: "counter".into(),
            bucket: "set".into()
        }
    );
}

#[test]
fn gsets_grow_and_hlls_count() {
    let mut g = Replica::new(1, Datatype::Gset);
    g.update(&Op::Gset(vec![b("a"), b("b")]), None, NOW)
        .unwrap();
    let mut h = Replica::new(1, Datatype::Hll);
    h.update(&Op::Hll(vec![b("a"), b("b"), b("a")]), None, NOW)
        .unwrap();
    assert_eq!(g.state.value(), DtValue::Gset(vec![b("a"), b("b")]));
    assert_eq!(h.state.value(), DtValue::Hll(2));
}

#[test]
fn contexts_round_trip_and_garbage_is_refused() {
    let mut x = Replica::new(1, Datatype::Set);
    x.update(&set_op(&["a"], &[]), None, NOW).unwrap();
    let ctx = x.state.context().unwrap();
    assert_eq!(Context::from_bytes(&ctx.to_bytes()).unwrap(), ctx);
    for bad in [&b""[..], b"\x02", b"\x01\x01", b"\x01\x00\x00"] {
        assert_eq!(
            Context::from_bytes(bad),
            Err(DtError::BadContext),
            "{bad:?}"
        );
    }
}

// ---- generated histories ----------------------------------------------------------------

/// A step of a concurrent history over three replicas.
#[derive(Clone, Debug)]
enum Step {
    /// Replica `at` applies an operation chosen by `seed` (observed removes use its context).
    Update { at: usize, seed: u32, now: u64 },
    /// Replica `to` merges replica `from`'s state.
    Merge { from: usize, to: usize },
}

fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => (0..3usize, any::<u32>(), 0..4u64).prop_map(|(at, seed, now)| Step::Update { at, seed, now }),
        2 => (0..3usize, 0..3usize).prop_map(|(from, to)| Step::Merge { from, to }),
    ];
    prop::collection::vec(step, 0..24)
}

const MEMBERS: [&str; 4] = ["a", "b", "c", "d"];

fn pick<T: Copy>(items: &[T], seed: u32) -> T {
    items[seed as usize % items.len()]
}

/// An operation on a field, chosen by `seed`, valid for `r`'s current state.
fn field_op(kind: FieldKind, seed: u32) -> FieldOp {
    let m = b(pick(&MEMBERS, seed >> 8));
    match kind {
        FieldKind::Counter => FieldOp::Counter(i64::from(seed % 7) - 3),
        FieldKind::Set if seed & 0x10 == 0 => FieldOp::Set(SetOp {
            adds: vec![m],
            removes: vec![],
        }),
        FieldKind::Set => FieldOp::Set(SetOp {
            adds: vec![],
            removes: vec![m],
        }),
        FieldKind::Register => FieldOp::Register(m),
        FieldKind::Flag => FieldOp::Flag(seed & 0x10 == 0),
        FieldKind::Map => FieldOp::Map(MapOp {
            removes: vec![],
            updates: vec![(
                field(pick(&MEMBERS, seed >> 12), FieldKind::Register),
                FieldOp::Register(m),
            )],
        }),
    }
}

const KINDS: [FieldKind; 5] = [
    FieldKind::Counter,
    FieldKind::Set,
    FieldKind::Register,
    FieldKind::Flag,
    FieldKind::Map,
];

fn op_for(dt: Datatype, seed: u32) -> Op {
    let m = b(pick(&MEMBERS, seed >> 4));
    match dt {
        Datatype::Counter => Op::Counter(i64::from(seed % 11) - 5),
        Datatype::Set if seed & 1 == 0 => Op::Set(SetOp {
            adds: vec![m],
            removes: vec![],
        }),
        Datatype::Set => Op::Set(SetOp {
            adds: vec![],
            removes: vec![m],
        }),
        Datatype::Map => {
            let key = field(pick(&["x", "y"], seed >> 16), pick(&KINDS, seed >> 20));
            if seed & 3 == 0 {
                map_remove(key)
            } else {
                map_update(key.clone(), field_op(key.kind, seed))
            }
        }
        Datatype::Hll => Op::Hll(vec![m]),
        Datatype::Gset => Op::Gset(vec![m]),
    }
}

/// Runs `steps` over three replicas of `dt`; every remove is an observed remove (it carries
/// the replica's context), as a client that fetched first would send.
fn run(dt: Datatype, steps: &[Step]) -> Vec<Replica> {
    let mut rs: Vec<Replica> = (1..=3).map(|n| Replica::new(n, dt)).collect();
    for step in steps {
        match *step {
            Step::Update { at, seed, now } => {
                let ctx = rs[at].ctx();
                rs[at]
                    .update(&op_for(dt, seed), ctx.as_ref(), NOW + now)
                    .expect("observed ops never fail");
            }
            Step::Merge { from, to } => {
                let s = rs[from].state.clone();
                rs[to].state.merge(&s);
            }
        }
    }
    rs
}

const TYPES: [Datatype; 5] = [
    Datatype::Counter,
    Datatype::Set,
    Datatype::Map,
    Datatype::Hll,
    Datatype::Gset,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn merge_is_commutative_associative_and_idempotent(dt in 0..5usize, steps in arb_steps()) {
        let rs = run(TYPES[dt], &steps);
        let (a, b, c) = (&rs[0].state, &rs[1].state, &rs[2].state);
        prop_assert_eq!(merged(a, b), merged(b, a));
        prop_assert_eq!(merged(&merged(a, b), c), merged(a, &merged(b, c)));
        prop_assert_eq!(&merged(a, a), a);
        // Merging something already seen changes nothing.
        let ab = merged(a, b);
        prop_assert_eq!(merged(&ab, b), ab);
    }

    #[test]
    fn replicas_that_exchange_everything_converge(dt in 0..5usize, steps in arb_steps()) {
        let mut rs = run(TYPES[dt], &steps);
        for (from, to) in [(0, 1), (1, 2), (2, 0), (0, 1)] {
            let s = rs[from].state.clone();
            rs[to].state.merge(&s);
        }
        prop_assert_eq!(&rs[0].state, &rs[1].state);
        prop_assert_eq!(&rs[1].state, &rs[2].state);
    }

    #[test]
    fn encoding_round_trips(dt in 0..5usize, steps in arb_steps()) {
        for r in run(TYPES[dt], &steps) {
            let raw = Bytes::from(encoding::encode(&r.state));
            prop_assert_eq!(encoding::decode(&raw).unwrap(), r.state);
        }
    }

    /// A fetch reads a set's members and context without building it, and reports what the
    /// state would; it refuses every truncation the decoder refuses.
    #[test]
    fn a_set_fetch_reports_what_its_state_holds(steps in arb_steps(), cut in any::<prop::sample::Index>()) {
        for r in run(Datatype::Set, &steps) {
            let (obj, _) = object::coordinate(None, Datatype::Set, &set_op(&["x"], &[]), None, actor(9), NOW, 14).unwrap();
            let mut obj = obj;
            obj.contents[0].value = Bytes::from(encoding::encode(&r.state));
            prop_assert_eq!(object::fetched(&obj, Datatype::Set).unwrap(), Some(Fetched::from(&r.state)));
            let raw = encoding::encode(&r.state);
            let cut = Bytes::copy_from_slice(&raw[..cut.index(raw.len())]);
            prop_assert!(encoding::set_view(&cut).is_err());
        }
    }

    #[test]
    fn decoding_garbage_never_panics(raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = encoding::decode(&Bytes::from(raw.clone()));
        let _ = encoding::set_view(&Bytes::from(raw));
    }

    #[test]
    fn truncated_states_are_refused(dt in 0..5usize, steps in arb_steps(), cut in any::<prop::sample::Index>()) {
        let r = &run(TYPES[dt], &steps)[0];
        let raw = encoding::encode(&r.state);
        let cut = cut.index(raw.len());
        prop_assert!(encoding::decode(&Bytes::copy_from_slice(&raw[..cut])).is_err());
    }

    /// One replica applying a sequence of set ops behaves like a plain set.
    #[test]
    fn a_single_replica_set_is_a_set(ops in prop::collection::vec((any::<bool>(), 0..4usize), 0..30)) {
        let mut r = Replica::new(1, Datatype::Set);
        let mut model = BTreeSet::new();
        for (add, m) in ops {
            let member = b(MEMBERS[m]);
            let ctx = r.ctx();
            if add {
                r.update(&set_op(&[MEMBERS[m]], &[]), None, NOW).unwrap();
                model.insert(member);
            } else {
                r.update(&set_op(&[], &[MEMBERS[m]]), ctx.as_ref(), NOW).unwrap();
                model.remove(&member);
            }
        }
        prop_assert_eq!(r.set(), model.into_iter().collect::<Vec<_>>());
    }

    /// Concurrent set histories end with exactly the members that have an add no remove had
    /// observed (add-wins observed-remove), checked against a model that tracks events.
    #[test]
    fn a_member_is_present_iff_some_add_was_not_observed_by_a_remove(steps in arb_steps()) {
        let rs = run(Datatype::Set, &steps);
        let all = merged(&merged(&rs[0].state, &rs[1].state), &rs[2].state);
        // Per replica: the add events (member, id) it has seen, and those it knows removed.
        let mut seen: Vec<BTreeSet<(Bytes, usize)>> = vec![BTreeSet::new(); 3];
        let mut removed: Vec<BTreeSet<(Bytes, usize)>> = vec![BTreeSet::new(); 3];
        for (id, step) in steps.iter().enumerate() {
            match *step {
                Step::Update { at, seed, .. } => {
                    let Op::Set(op) = op_for(Datatype::Set, seed) else { unreachable!() };
                    for m in op.adds {
                        seen[at].insert((m, id));
                    }
                    for m in op.removes {
                        let observed: Vec<_> = seen[at].iter().filter(|(x, _)| *x == m).cloned().collect();
                        removed[at].extend(observed);
                    }
                }
                Step::Merge { from, to } => {
                    let (s, r) = (seen[from].clone(), removed[from].clone());
                    seen[to].extend(s);
                    removed[to].extend(r);
                }
            }
        }
        let all_removed: BTreeSet<_> = removed.into_iter().flatten().collect();
        let expect: BTreeSet<Bytes> = seen
            .into_iter()
            .flatten()
            .filter(|e| !all_removed.contains(e))
            .map(|(m, _)| m)
            .collect();
        prop_assert_eq!(all.value(), DtValue::Set(expect.into_iter().collect()));
    }
}
