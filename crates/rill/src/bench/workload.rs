//! What the load generator asks for: the operation mix, which key each operation addresses and
//! the value a write carries.
//!
//! Everything here is pure and driven by a caller-supplied random generator, so a run is
//! reproducible from its `--seed` and the generators can be tested for the distributions they
//! promise (uniform spread, Pareto skew, sequential coverage).

use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rand::{Rng, RngCore};
use serde::Serialize;

/// One kind of client operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Fetch a key.
    Get,
    /// Write a key blindly (no causal context).
    Put,
    /// Read-modify-write: fetch, then write back with the fetched vclock.
    Update,
    /// Delete a key.
    Delete,
    /// Increment a counter by 1.
    Counter,
    /// Fetch a counter.
    CounterFetch,
    /// Add one new random member to a set.
    SetAdd,
    /// Fetch a whole set.
    SetFetch,
    /// Update a map: increment its counter field and assign its register field.
    MapUpdate,
    /// Fetch a map.
    MapFetch,
}

/// The Riak data types the data-type operations work on; each lives in a bucket type of its own
/// whose `datatype` property names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    Counter,
    Set,
    Map,
}

impl DataType {
    /// Every data type the bench drives.
    pub const ALL: [DataType; 3] = [DataType::Counter, DataType::Set, DataType::Map];

    /// The value of the bucket type's `datatype` property.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Counter => "counter",
            DataType::Set => "set",
            DataType::Map => "map",
        }
    }
}

impl Op {
    /// Number of operation kinds, for per-operation arrays.
    pub const COUNT: usize = 10;

    /// Every operation, in report order; `Op::index` indexes into this.
    pub const ALL: [Op; Op::COUNT] = [
        Op::Get,
        Op::Put,
        Op::Update,
        Op::Delete,
        Op::Counter,
        Op::CounterFetch,
        Op::SetAdd,
        Op::SetFetch,
        Op::MapUpdate,
        Op::MapFetch,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Counter => "counter",
            Op::CounterFetch => "counter_fetch",
            Op::SetAdd => "set_add",
            Op::SetFetch => "set_fetch",
            Op::MapUpdate => "map_update",
            Op::MapFetch => "map_fetch",
        }
    }

    /// Position in [`Op::ALL`], for per-operation arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The data type the operation works on; `None` for the key/value operations.
    pub fn data_type(self) -> Option<DataType> {
        match self {
            Op::Get | Op::Put | Op::Update | Op::Delete => None,
            Op::Counter | Op::CounterFetch => Some(DataType::Counter),
            Op::SetAdd | Op::SetFetch => Some(DataType::Set),
            Op::MapUpdate | Op::MapFetch => Some(DataType::Map),
        }
    }

    fn parse(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// Weighted choice among operations, parsed from `get=4,put=1,...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpMix {
    /// Operations with a non-zero weight, in the order given.
    weights: Vec<(Op, u32)>,
    total: u32,
}

impl OpMix {
    /// Parses `op=weight` pairs separated by commas. Unknown or repeated operations, malformed
    /// weights and an all-zero mix are refused.
    pub fn parse(spec: &str) -> Result<OpMix, String> {
        let mut weights: Vec<(Op, u32)> = Vec::new();
        let mut seen = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("mix entry {part:?} is not op=weight"))?;
            let op = Op::parse(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = Op::ALL.iter().map(|op| op.name()).collect();
                format!(
                    "unknown operation {name:?} (expected one of {})",
                    known.join(", ")
                )
            })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight of {name} must be a whole number, not {weight:?}"))?;
            if seen.contains(&op) {
                return Err(format!("operation {name} appears twice in the mix"));
            }
            seen.push(op);
            if weight > 0 {
                weights.push((op, weight));
            }
        }
        let total = weights
            .iter()
            .try_fold(0u32, |acc, (_, w)| acc.checked_add(*w))
            .ok_or("mix weights are too large")?;
        if total == 0 {
            return Err("the mix needs at least one operation with a positive weight".into());
        }
        Ok(OpMix { weights, total })
    }

    /// Draws one operation with probability proportional to its weight.
    pub fn pick(&self, rng: &mut impl Rng) -> Op {
        let mut ticket = rng.random_range(0..self.total);
        for &(op, weight) in &self.weights {
            if ticket < weight {
                return op;
            }
            ticket -= weight;
        }
        // The tickets add up to `total`, so the loop always returns; the last entry is the
        // mathematically correct answer should it ever not.
        self.weights[self.weights.len() - 1].0
    }

    /// The operations the mix can produce.
    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        self.weights.iter().map(|(op, _)| *op)
    }

    /// The data types the mix's operations work on, each once, in [`DataType::ALL`] order.
    pub fn data_types(&self) -> Vec<DataType> {
        DataType::ALL
            .into_iter()
            .filter(|dt| self.ops().any(|op| op.data_type() == Some(*dt)))
            .collect()
    }

    /// Whether the mix has any key/value operation (get, put, update, delete).
    pub fn has_objects(&self) -> bool {
        self.ops().any(|op| op.data_type().is_none())
    }
}

impl fmt::Display for OpMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (op, w)) in self.weights.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{}={w}", op.name())?;
        }
        Ok(())
    }
}

/// How keys are drawn from the key space `0..keys`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Skewed: about 80% of operations address the lowest 20% of the key space.
    Pareto,
    /// All workers together walk the key space in order, wrapping around.
    Sequential,
}

/// Shape of the Pareto (Lomax) distribution: 1.16 is the classic "80/20" shape.
const PARETO_SHAPE: f64 = 1.16;
/// Scale of the distribution as a fraction of the key space. With the shape above and draws past
/// the key space rejected, 0.08 puts ~80% of the mass below 20% of the keys.
const PARETO_SCALE: f64 = 0.08;

/// Draws key indices; clones share the sequential position so workers cover the space together.
#[derive(Clone, Debug)]
pub struct KeyGen {
    dist: KeyDist,
    keys: u64,
    next: Arc<AtomicU64>,
}

impl KeyGen {
    /// A generator over `0..keys` (`keys` must be at least 1).
    pub fn new(dist: KeyDist, keys: u64) -> KeyGen {
        KeyGen {
            dist,
            keys: keys.max(1),
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The next key index, in `0..keys`.
    pub fn next_index(&self, rng: &mut impl Rng) -> u64 {
        match self.dist {
            KeyDist::Uniform => rng.random_range(0..self.keys),
            KeyDist::Sequential => self.next.fetch_add(1, Ordering::Relaxed) % self.keys,
            KeyDist::Pareto => self.pareto(rng),
        }
    }

    /// Inverse-CDF sampling of a Lomax distribution truncated to the key space by rejection
    /// (about 5% of draws are rejected), so no key at the edge collects the overflow.
    fn pareto(&self, rng: &mut impl Rng) -> u64 {
        let keys = self.keys as f64;
        let scale = keys * PARETO_SCALE;
        loop {
            // 1 - u lies in (0, 1], so the power is finite and at least 1.
            let u: f64 = rng.random();
            let x = scale * ((1.0 - u).powf(-1.0 / PARETO_SHAPE) - 1.0);
            if x < keys {
                return x as u64;
            }
        }
    }

    /// The key for an index: its decimal digits (readable, and safe in URLs).
    pub fn key(index: u64) -> Bytes {
        Bytes::from(index.to_string())
    }
}

/// The key generators of a run: one over the key space (`--keys`) for objects, counters and
/// maps, one over the sets (`--sets`). Sets have their own, usually tiny, space because a
/// big-set benchmark measures a few sets of a known size: spreading adds over 100 000 keys
/// would measure 100 000 small sets instead.
#[derive(Clone, Debug)]
pub struct Keys {
    objects: KeyGen,
    sets: KeyGen,
}

impl Keys {
    /// Generators over `0..keys` and `0..sets`, both with the distribution `dist`.
    pub fn new(dist: KeyDist, keys: u64, sets: u64) -> Keys {
        Keys {
            objects: KeyGen::new(dist, keys),
            sets: KeyGen::new(dist, sets),
        }
    }

    /// The key the next `op` addresses.
    pub fn next_key(&self, op: Op, rng: &mut impl Rng) -> Bytes {
        let space = match op.data_type() {
            Some(DataType::Set) => &self.sets,
            _ => &self.objects,
        };
        KeyGen::key(space.next_index(rng))
    }
}

/// Random bytes in a set member: 80 bits, so that even millions of members drawn in one run
/// collide with a probability below 10^-12, and a set grows by exactly one member per add (the
/// tests count on it).
const MEMBER_BYTES: usize = 10;

/// A new set member (or map register value): random bytes as lowercase hex, 20 characters,
/// so the same member travels over PB and inside HTTP's JSON, which carries members as text.
pub fn member(rng: &mut impl Rng) -> Bytes {
    let mut raw = [0u8; MEMBER_BYTES];
    rng.fill_bytes(&mut raw);
    let mut hex = String::with_capacity(2 * MEMBER_BYTES);
    for b in raw {
        // Writing into a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    Bytes::from(hex)
}

/// Spare random bytes beyond the largest value, so values start at varied offsets.
const POOL_SLACK: usize = 64 * 1024;

/// Produces values of a size drawn uniformly from `min..=max`, as zero-copy slices of one
/// pre-generated block of random bytes (so value generation costs no per-operation work).
#[derive(Clone, Debug)]
pub struct ValueGen {
    pool: Bytes,
    min: usize,
    max: usize,
}

impl ValueGen {
    /// A generator of values of `min..=max` bytes (`min <= max`).
    pub fn new(min: usize, max: usize, rng: &mut impl RngCore) -> ValueGen {
        let mut pool = vec![0u8; max + POOL_SLACK];
        rng.fill_bytes(&mut pool);
        ValueGen {
            pool: Bytes::from(pool),
            min: min.min(max),
            max,
        }
    }

    /// The next value.
    pub fn next(&self, rng: &mut impl Rng) -> Bytes {
        let size = rng.random_range(self.min..=self.max);
        let offset = rng.random_range(0..=self.pool.len() - size);
        self.pool.slice(offset..offset + size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(7)
    }

    #[test]
    fn mix_parses_and_prints_back() {
        let mix = OpMix::parse("get=4, put=1,update=0,delete=2").unwrap();
        assert_eq!(mix.to_string(), "get=4,put=1,delete=2");
        assert_eq!(
            mix.ops().collect::<Vec<_>>(),
            vec![Op::Get, Op::Put, Op::Delete]
        );
    }

    #[test]
    fn mix_refuses_bad_specs() {
        for bad in [
            "",
            "get",
            "get=x",
            "get=-1",
            "read=1",
            "get=1,get=2",
            "get=0,put=0",
            "get=4294967295,put=1",
        ] {
            assert!(OpMix::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn mix_picks_in_proportion_to_weights() {
        let mix = OpMix::parse("get=4,put=1,update=3").unwrap();
        let mut counts = [0u32; 4];
        let mut rng = rng();
        for _ in 0..80_000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        // Expected 40000 / 10000 / 30000 / 0; a 3% band is > 10 standard deviations.
        assert!((38_800..=41_200).contains(&counts[0]), "{counts:?}");
        assert!((9_700..=10_300).contains(&counts[1]), "{counts:?}");
        assert!((29_100..=30_900).contains(&counts[2]), "{counts:?}");
        assert_eq!(counts[3], 0);
    }

    /// Share of `draws` samples landing in the lowest fifth of the key space.
    fn low_fifth_share(dist: KeyDist, keys: u64, draws: u32) -> f64 {
        let gen_ = KeyGen::new(dist, keys);
        let mut rng = rng();
        let mut low = 0u32;
        for _ in 0..draws {
            let k = gen_.next_index(&mut rng);
            assert!(k < keys, "index {k} outside the key space");
            if k < keys / 5 {
                low += 1;
            }
        }
        f64::from(low) / f64::from(draws)
    }

    #[test]
    fn pareto_puts_most_operations_on_few_keys() {
        let share = low_fifth_share(KeyDist::Pareto, 100_000, 200_000);
        assert!(
            (0.77..=0.84).contains(&share),
            "pareto low-fifth share {share}"
        );
    }

    #[test]
    fn uniform_spreads_operations_evenly() {
        let share = low_fifth_share(KeyDist::Uniform, 100_000, 200_000);
        assert!(
            (0.19..=0.21).contains(&share),
            "uniform low-fifth share {share}"
        );
    }

    #[test]
    fn pareto_hottest_keys_are_far_hotter_than_the_coldest() {
        let gen_ = KeyGen::new(KeyDist::Pareto, 1000);
        let mut rng = rng();
        let mut hits = vec![0u32; 1000];
        for _ in 0..100_000 {
            hits[gen_.next_index(&mut rng) as usize] += 1;
        }
        let hot: u32 = hits[..100].iter().sum();
        let cold: u32 = hits[900..].iter().sum();
        assert!(hot > 10 * cold, "hot {hot} vs cold {cold}");
    }

    #[test]
    fn pareto_works_on_a_single_key() {
        let gen_ = KeyGen::new(KeyDist::Pareto, 1);
        let mut rng = rng();
        assert!((0..100).all(|_| gen_.next_index(&mut rng) == 0));
    }

    #[test]
    fn sequential_covers_the_key_space_in_order_across_clones() {
        let a = KeyGen::new(KeyDist::Sequential, 10);
        let b = a.clone();
        let mut rng = rng();
        let drawn: Vec<u64> = (0..25)
            .map(|i| {
                if i % 2 == 0 {
                    a.next_index(&mut rng)
                } else {
                    b.next_index(&mut rng)
                }
            })
            .collect();
        let expected: Vec<u64> = (0..25).map(|i| i % 10).collect();
        assert_eq!(drawn, expected);
    }

    #[test]
    fn keys_are_decimal() {
        assert_eq!(KeyGen::key(0), Bytes::from_static(b"0"));
        assert_eq!(KeyGen::key(98_765), Bytes::from_static(b"98765"));
    }

    #[test]
    fn values_respect_the_size_range_and_reach_both_ends() {
        let mut rng = rng();
        let values = ValueGen::new(10, 20, &mut rng);
        let sizes: Vec<usize> = (0..2000).map(|_| values.next(&mut rng).len()).collect();
        assert!(sizes.iter().all(|s| (10..=20).contains(s)));
        assert!(sizes.contains(&10) && sizes.contains(&20));
    }

    #[test]
    fn fixed_size_values_differ_from_each_other() {
        let mut rng = rng();
        let values = ValueGen::new(100, 100, &mut rng);
        let a = values.next(&mut rng);
        let b = values.next(&mut rng);
        assert_eq!((a.len(), b.len()), (100, 100));
        assert_ne!(a, b);
    }

    #[test]
    fn data_type_ops_parse_and_name_their_data_type() {
        let mix = OpMix::parse(
            "counter=1,counter_fetch=1,set_add=2,set_fetch=1,map_update=1,map_fetch=1",
        )
        .unwrap();
        assert_eq!(
            mix.to_string(),
            "counter=1,counter_fetch=1,set_add=2,set_fetch=1,map_update=1,map_fetch=1"
        );
        assert_eq!(
            mix.data_types(),
            vec![DataType::Counter, DataType::Set, DataType::Map]
        );
        assert!(!mix.has_objects());
        for op in Op::ALL {
            assert_eq!(Op::parse(op.name()), Some(op), "{op:?} parses back");
            assert_eq!(Op::ALL[op.index()], op, "{op:?} indexes ALL");
        }
        let only_sets = OpMix::parse("get=1,set_fetch=3").unwrap();
        assert_eq!(only_sets.data_types(), vec![DataType::Set]);
        assert!(only_sets.has_objects());
        assert!(OpMix::parse("get=1").unwrap().data_types().is_empty());
        let err = OpMix::parse("set_remove=1").unwrap_err();
        assert!(err.contains("map_fetch"), "the known ops are listed: {err}");
    }

    #[test]
    fn mix_picks_data_type_ops_in_proportion() {
        let mix = OpMix::parse("counter=1,set_add=1,map_update=1,set_fetch=1").unwrap();
        let mut counts = [0u32; Op::COUNT];
        let mut rng = rng();
        for _ in 0..40_000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        for op in [Op::Counter, Op::SetAdd, Op::MapUpdate, Op::SetFetch] {
            let n = counts[op.index()];
            // Expected 10000 each; a 5% band is > 10 standard deviations.
            assert!((9_500..=10_500).contains(&n), "{op:?} {counts:?}");
        }
        assert_eq!(counts.iter().sum::<u32>(), 40_000, "nothing else drawn");
    }

    #[test]
    fn set_ops_address_the_sets_and_the_others_the_key_space() {
        let keys = Keys::new(KeyDist::Uniform, 1000, 3);
        let mut rng = rng();
        let index = |k: Bytes| std::str::from_utf8(&k).unwrap().parse::<u64>().unwrap();
        let mut sets = std::collections::BTreeSet::new();
        let mut others = std::collections::BTreeSet::new();
        for _ in 0..3000 {
            sets.insert(index(keys.next_key(Op::SetAdd, &mut rng)));
            sets.insert(index(keys.next_key(Op::SetFetch, &mut rng)));
            for op in [Op::Get, Op::Counter, Op::MapUpdate, Op::MapFetch] {
                others.insert(index(keys.next_key(op, &mut rng)));
            }
        }
        assert_eq!(sets.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(others.len() > 900, "the whole key space: {}", others.len());
        assert!(others.iter().all(|k| *k < 1000));
        // One set: every set operation addresses it.
        let one = Keys::new(KeyDist::Pareto, 1000, 1);
        assert!((0..100).all(|_| one.next_key(Op::SetAdd, &mut rng) == Bytes::from_static(b"0")));
    }

    #[test]
    fn members_are_hex_and_distinct() {
        let mut rng = rng();
        let members: std::collections::HashSet<Bytes> =
            (0..10_000).map(|_| member(&mut rng)).collect();
        assert_eq!(members.len(), 10_000);
        for m in members.iter().take(100) {
            assert_eq!(m.len(), 20);
            assert!(
                m.iter()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
    }
}
