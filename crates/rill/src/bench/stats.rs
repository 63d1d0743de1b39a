//! Measurements: per-operation HDR latency histograms, outcome counts and kept error messages;
//! one recorder per worker, drained once a second into a per-second series and the run totals.
//!
//! Each worker records into its own mutex-guarded [`WorkerRecorder`] (uncontended except for the
//! once-a-second drain), so recording never serialises the workers. Latencies are kept in
//! microseconds with three significant digits from 1 µs to one hour; only successful operations
//! (found or not found) contribute latencies, errors are counted beside them.

use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::workload::Op;

/// Largest latency the histograms hold; longer ones are recorded as this.
const LATENCY_MAX_US: u64 = 3_600_000_000;
/// Distinct error messages kept per operation (further ones are only counted).
const KEPT_MESSAGES: usize = 5;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    // Constant, valid bounds: construction cannot fail.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// How one operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Success.
    Ok,
    /// Success, but the key did not exist (not an error).
    NotFound,
    /// Failure, with what went wrong.
    Error(String),
}

/// An error message and how often it occurred.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorMessage {
    pub message: String,
    pub count: u64,
}

/// Everything recorded about one operation kind over some period.
#[derive(Clone, Debug)]
pub struct OpStats {
    /// Latencies of successful operations.
    pub latency: Histogram<u64>,
    /// Successful operations that found nothing (also counted in `latency`).
    pub notfound: u64,
    pub errors: u64,
    /// The first few distinct error messages.
    pub messages: Vec<ErrorMessage>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            latency: histogram(),
            notfound: 0,
            errors: 0,
            messages: Vec::new(),
        }
    }
}

impl OpStats {
    /// Records one finished operation.
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Ok => self.record_latency(latency),
            Outcome::NotFound => {
                self.notfound += 1;
                self.record_latency(latency);
            }
            Outcome::Error(message) => {
                self.errors += 1;
                self.keep_message(message, 1);
            }
        }
    }

    fn record_latency(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(LATENCY_MAX_US);
        self.latency.saturating_record(us.clamp(1, LATENCY_MAX_US));
    }

    fn keep_message(&mut self, message: String, count: u64) {
        if let Some(kept) = self.messages.iter_mut().find(|m| m.message == message) {
            kept.count += count;
        } else if self.messages.len() < KEPT_MESSAGES {
            self.messages.push(ErrorMessage { message, count });
        }
    }

    /// Successful operations.
    pub fn count(&self) -> u64 {
        self.latency.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count() == 0 && self.errors == 0
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &OpStats) {
        // Both histograms have the same bounds, so adding cannot fail.
        self.latency
            .add(&other.latency)
            .expect("histograms with equal bounds");
        self.notfound += other.notfound;
        self.errors += other.errors;
        for m in &other.messages {
            self.keep_message(m.message.clone(), m.count);
        }
    }

    /// Forgets everything, keeping the histogram's memory.
    pub fn reset(&mut self) {
        self.latency.reset();
        self.notfound = 0;
        self.errors = 0;
        self.messages.clear();
    }
}

/// An operation that recorded nothing, for [`OpSet::op`] to lend out.
static EMPTY: LazyLock<OpStats> = LazyLock::new(OpStats::default);

/// [`OpStats`] for each operation kind, indexed by [`Op::index`]. An entry is allocated when
/// its operation is first recorded: a histogram is ~190 KB, every worker has a set and most
/// runs use two or three of the ten operations.
#[derive(Clone, Debug, Default)]
pub struct OpSet([Option<OpStats>; Op::COUNT]);

impl OpSet {
    pub fn op(&self, op: Op) -> &OpStats {
        self.0[op.index()].as_ref().unwrap_or(&EMPTY)
    }

    pub fn op_mut(&mut self, op: Op) -> &mut OpStats {
        self.0[op.index()].get_or_insert_with(OpStats::default)
    }

    /// The entries that were allocated, with their operation.
    fn present(&self) -> impl Iterator<Item = (Op, &OpStats)> {
        Op::ALL
            .into_iter()
            .zip(&self.0)
            .filter_map(|(op, s)| s.as_ref().map(|s| (op, s)))
    }

    /// Adds `other` into `self`, operation by operation; empty entries are skipped (their
    /// histograms would only cost a scan).
    pub fn merge(&mut self, other: &OpSet) {
        for (op, theirs) in other.present() {
            if !theirs.is_empty() {
                self.op_mut(op).merge(theirs);
            }
        }
    }

    /// Forgets everything, keeping the histograms' memory.
    pub fn reset(&mut self) {
        for s in self.0.iter_mut().flatten().filter(|s| !s.is_empty()) {
            s.reset();
        }
    }

    /// All operations together.
    pub fn combined(&self) -> OpStats {
        let mut all = OpStats::default();
        for (_, s) in self.recorded() {
            all.merge(s);
        }
        all
    }

    /// Operations that were recorded at all, in report order.
    pub fn recorded(&self) -> impl Iterator<Item = (Op, &OpStats)> {
        self.present().filter(|(_, s)| !s.is_empty())
    }
}

/// What one worker has recorded since the last drain.
#[derive(Debug, Default)]
pub struct WorkerRecorder {
    /// Measured operations.
    interval: OpSet,
    /// Operations that started during the warmup, per operation: counted, not measured.
    warmup: [u64; Op::COUNT],
}

impl WorkerRecorder {
    /// Records a finished operation; `measured` is false for operations started in the warmup.
    pub fn record(&mut self, op: Op, outcome: Outcome, latency: Duration, measured: bool) {
        if measured {
            self.interval.op_mut(op).record(outcome, latency);
        } else {
            self.warmup[op.index()] += 1;
        }
    }
}

/// A worker's recorder, shared with the collector.
pub type SharedRecorder = Arc<Mutex<WorkerRecorder>>;

/// Locks a recorder; a worker that panicked mid-record leaves consistent counters behind, so a
/// poisoned lock is still usable.
pub fn lock(r: &SharedRecorder) -> std::sync::MutexGuard<'_, WorkerRecorder> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One operation's numbers in one interval of the series.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    pub ops: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl Point {
    fn of(s: &OpStats) -> Point {
        Point {
            ops: s.count(),
            errors: s.errors,
            p50_us: s.latency.value_at_quantile(0.5),
            p99_us: s.latency.value_at_quantile(0.99),
        }
    }
}

/// One row of the per-second series: the interval ending `end_s` seconds after measurement
/// started, `interval_s` long (a whole second except possibly the last).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub end_s: f64,
    pub interval_s: f64,
    /// Operations recorded in the interval, in report order.
    pub points: Vec<(Op, Point)>,
}

/// A one-line view of the latest interval, for the progress line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    pub ops_per_sec: f64,
    /// Errors since measurement started.
    pub errors: u64,
    pub p99_us: u64,
}

/// Drains worker recorders into the series and the totals.
pub struct Collector {
    recorders: Vec<SharedRecorder>,
    interval: OpSet,
    pub totals: OpSet,
    pub series: Vec<Row>,
    warmup_seen: u64,
}

impl Collector {
    pub fn new(recorders: Vec<SharedRecorder>) -> Collector {
        Collector {
            recorders,
            interval: OpSet::default(),
            totals: OpSet::default(),
            series: Vec::new(),
            warmup_seen: 0,
        }
    }

    /// Moves what every worker recorded into `self.interval`.
    fn drain(&mut self) {
        self.interval.reset();
        for r in &self.recorders {
            let mut r = lock(r);
            self.interval.merge(&r.interval);
            r.interval.reset();
        }
    }

    /// Operations started during the warmup, all workers together.
    pub fn warmup_ops(&self) -> u64 {
        self.recorders
            .iter()
            .map(|r| lock(r).warmup.iter().sum::<u64>())
            .sum()
    }

    /// Warmup progress: operations per second over an interval of `interval_s`.
    pub fn warmup_tick(&mut self, interval_s: f64) -> f64 {
        let seen = self.warmup_ops();
        let delta = seen - self.warmup_seen;
        self.warmup_seen = seen;
        delta as f64 / interval_s.max(f64::EPSILON)
    }

    /// Closes the interval ending `end_s` seconds into the measurement: appends its row to the
    /// series (if anything happened), adds it to the totals and returns the progress view.
    pub fn tick(&mut self, end_s: f64, interval_s: f64) -> Progress {
        self.drain();
        let points: Vec<(Op, Point)> = self
            .interval
            .recorded()
            .map(|(op, s)| (op, Point::of(s)))
            .collect();
        let combined = self.interval.combined();
        if !points.is_empty() || interval_s >= 1.0 {
            self.series.push(Row {
                end_s,
                interval_s,
                points,
            });
        }
        self.totals.merge(&self.interval);
        Progress {
            ops_per_sec: combined.count() as f64 / interval_s.max(f64::EPSILON),
            errors: self.totals.combined().errors,
            p99_us: combined.latency.value_at_quantile(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn outcomes_are_counted_apart() {
        let mut s = OpStats::default();
        s.record(Outcome::Ok, ms(1));
        s.record(Outcome::NotFound, ms(2));
        s.record(Outcome::Error("boom".into()), ms(3));
        assert_eq!((s.count(), s.notfound, s.errors), (2, 1, 1));
        assert_eq!(s.latency.max(), s.latency.highest_equivalent(2000));
    }

    #[test]
    fn latencies_keep_microsecond_precision() {
        let mut s = OpStats::default();
        for us in 1..=1000u64 {
            s.record(Outcome::Ok, Duration::from_micros(us));
        }
        assert_eq!(s.latency.min(), 1);
        assert_eq!(s.latency.value_at_quantile(0.5), 500);
        assert_eq!(s.latency.value_at_quantile(0.99), 990);
        assert_eq!(s.latency.max(), 1000);
    }

    #[test]
    fn extreme_latencies_are_clamped_not_lost() {
        let mut s = OpStats::default();
        s.record(Outcome::Ok, Duration::ZERO);
        s.record(Outcome::Ok, Duration::from_secs(10 * 3600));
        assert_eq!(s.count(), 2);
        assert_eq!(s.latency.min(), 1);
        assert!(s.latency.max() >= LATENCY_MAX_US);
    }

    #[test]
    fn error_messages_are_kept_distinct_and_bounded() {
        let mut s = OpStats::default();
        for i in 0..20 {
            s.record(Outcome::Error(format!("e{}", i % 8)), ms(1));
        }
        assert_eq!(s.errors, 20);
        assert_eq!(s.messages.len(), KEPT_MESSAGES);
        assert_eq!(s.messages[0].message, "e0");
        assert_eq!(s.messages[0].count, 3, "e0 occurred at i = 0, 8, 16");
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = OpStats::default();
        a.record(Outcome::Ok, ms(1));
        a.record(Outcome::Error("x".into()), ms(1));
        let mut b = OpStats::default();
        b.record(Outcome::NotFound, ms(5));
        b.record(Outcome::Error("x".into()), ms(1));
        b.record(Outcome::Error("y".into()), ms(1));
        a.merge(&b);
        assert_eq!((a.count(), a.notfound, a.errors), (2, 1, 3));
        let counts: Vec<(&str, u64)> = a
            .messages
            .iter()
            .map(|m| (m.message.as_str(), m.count))
            .collect();
        assert_eq!(counts, vec![("x", 2), ("y", 1)]);
    }

    #[test]
    fn warmup_operations_are_counted_not_measured() {
        let rec: SharedRecorder = Arc::default();
        lock(&rec).record(Op::Get, Outcome::Ok, ms(1), false);
        lock(&rec).record(Op::Put, Outcome::Ok, ms(1), false);
        let mut c = Collector::new(vec![rec]);
        assert_eq!(c.warmup_ops(), 2);
        assert_eq!(c.warmup_tick(1.0), 2.0);
        let p = c.tick(1.0, 1.0);
        assert_eq!(p.ops_per_sec, 0.0);
        assert!(c.totals.combined().is_empty());
    }

    #[test]
    fn ticks_drain_workers_into_rows_and_totals() {
        let (a, b): (SharedRecorder, SharedRecorder) = (Arc::default(), Arc::default());
        let mut c = Collector::new(vec![a.clone(), b.clone()]);
        for _ in 0..3 {
            lock(&a).record(Op::Get, Outcome::Ok, ms(2), true);
        }
        lock(&b).record(Op::Put, Outcome::Error("down".into()), ms(1), true);
        let p = c.tick(1.0, 1.0);
        assert_eq!(p.ops_per_sec, 3.0);
        assert_eq!(p.errors, 1);
        lock(&b).record(Op::Get, Outcome::NotFound, ms(4), true);
        let p = c.tick(1.5, 0.5);
        assert_eq!(p.ops_per_sec, 2.0, "one op in half a second");
        assert_eq!(c.series.len(), 2);
        let first = &c.series[0];
        assert_eq!(first.points.len(), 2);
        assert_eq!(first.points[0].0, Op::Get);
        assert_eq!(first.points[0].1.ops, 3);
        assert_eq!(
            first.points[1].1,
            Point {
                ops: 0,
                errors: 1,
                p50_us: 0,
                p99_us: 0
            }
        );
        assert_eq!(c.totals.op(Op::Get).count(), 4);
        assert_eq!(c.totals.op(Op::Get).notfound, 1);
        assert_eq!(c.totals.op(Op::Put).errors, 1);
        assert!(lock(&a).interval.combined().is_empty(), "drained");
    }

    #[test]
    fn an_empty_final_partial_interval_adds_no_row() {
        let mut c = Collector::new(vec![Arc::default()]);
        c.tick(1.0, 1.0);
        c.tick(1.2, 0.2);
        assert_eq!(
            c.series.len(),
            1,
            "an idle whole second is a row; an idle tail is not"
        );
    }

    #[test]
    fn op_sets_allocate_only_recorded_operations() {
        let mut set = OpSet::default();
        assert!(
            set.op(Op::SetFetch).is_empty(),
            "an absent entry reads as empty"
        );
        set.op_mut(Op::SetAdd).record(Outcome::Ok, ms(3));
        assert_eq!(set.present().count(), 1);
        let mut other = OpSet::default();
        other.op_mut(Op::Counter).record(Outcome::Ok, ms(1));
        other.op_mut(Op::MapFetch); // allocated, nothing recorded
        set.merge(&other);
        let recorded: Vec<Op> = set.recorded().map(|(op, _)| op).collect();
        assert_eq!(recorded, vec![Op::Counter, Op::SetAdd], "in report order");
        assert_eq!(set.present().count(), 2, "empty entries are not copied");
        assert_eq!(set.combined().count(), 2);
        set.reset();
        assert!(set.combined().is_empty());
    }
}
