//! What the load generator asks for: the operation mix, which key each operation addresses and
//! the value a write carries.
//!
//! Everything here is pure and driven by a caller-supplied random generator, so a run is
//! reproducible from its `--seed` and the generators can be tested for the distributions they
//! promise (uniform spread, Pareto skew, sequential coverage).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rand::{Rng, RngCore};
use serde::Serialize;

/// One kind of client operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Fetch a key.
    Get,
    /// Write a key blindly (no causal context).
    Put,
    /// Read-modify-write: fetch, then write back with the fetched vclock.
    Update,
    /// Delete a key.
    Delete,
}

impl Op {
    /// Every operation, in report order; `Op::index` indexes into this.
    pub const ALL: [Op; 4] = [Op::Get, Op::Put, Op::Update, Op::Delete];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    /// Position in [`Op::ALL`], for per-operation arrays.
    pub fn index(self) -> usize {
        self as usize
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
                format!("unknown operation {name:?} (expected get, put, update, delete)")
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
}
