//! Node statistics in Riak's names: request counters and coordinator latencies.
//!
//! Counters are lock-free atomics. Latencies go into HDR histograms that rotate every minute, so
//! the reported mean/median/95/99/100 cover roughly the last minute, as Riak's `node_*_fsm_time_*`
//! do; `*_total` counters are cumulative since start and one-minute counts (`node_gets`) come from
//! the same rotation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rill_core::props::Datatype;
use serde_json::{Map, Value};

/// Width of a statistics window.
const WINDOW: Duration = Duration::from_secs(60);

/// A latency histogram over (about) the last minute, in microseconds.
pub struct Window {
    inner: Mutex<WindowInner>,
    total: AtomicU64,
}

struct WindowInner {
    started: Instant,
    current: Histogram<u64>,
    previous: Histogram<u64>,
}

impl Window {
    fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
        Window {
            inner: Mutex::new(WindowInner {
                started: Instant::now(),
                current: h(),
                previous: h(),
            }),
            total: AtomicU64::new(0),
        }
    }

    /// Records one request that took `elapsed`.
    pub fn record(&self, elapsed: Duration) {
        self.record_value(elapsed.as_micros() as u64);
    }

    /// Records one sample (a latency in µs, a size in bytes, a count).
    pub fn record_value(&self, value: u64) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let us = value.clamp(1, 3_600_000_000);
        let mut w = self.inner.lock();
        w.rotate();
        w.current.saturating_record(us);
    }

    /// (count in the window, mean, median, p95, p99, max) in microseconds.
    fn snapshot(&self) -> (u64, u64, u64, u64, u64, u64) {
        let mut w = self.inner.lock();
        w.rotate();
        let mut h = w.previous.clone();
        h.add(&w.current).expect("same bounds");
        if h.is_empty() {
            return (0, 0, 0, 0, 0, 0);
        }
        (
            h.len(),
            h.mean() as u64,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.95),
            h.value_at_quantile(0.99),
            h.max(),
        )
    }
}

impl WindowInner {
    fn rotate(&mut self) {
        let age = self.started.elapsed();
        if age < WINDOW {
            return;
        }
        if age < 2 * WINDOW {
            std::mem::swap(&mut self.previous, &mut self.current);
        } else {
            self.previous.reset();
        }
        self.current.reset();
        self.started = Instant::now();
    }
}

/// A cumulative counter.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every statistic a node keeps.
pub struct Stats {
    pub get_fsm: Window,
    pub put_fsm: Window,
    pub vnode_gets: Counter,
    pub vnode_puts: Counter,
    pub read_repairs: Counter,
    pub node_get_notfound: Counter,
    /// Writes passed to another node to coordinate (this node held no replica).
    pub forwarded_puts: Counter,
    pub tombstones_reaped: Counter,
    pub pbc_connects: Counter,
    pub pbc_active: AtomicU64,
    pub http_requests: Counter,
    pub errors: Counter,
    /// Per data type, in `DATATYPES` order.
    datatypes: [DatatypeStats; 5],
    started: Instant,
}

const DATATYPES: [Datatype; 5] = [
    Datatype::Counter,
    Datatype::Set,
    Datatype::Map,
    Datatype::Hll,
    Datatype::Gset,
];

/// What Riak reports per data type: fetch and update latencies, object sizes, actor counts.
struct DatatypeStats {
    fetch_time: Window,
    update_time: Window,
    objsize: Window,
    actors: Window,
}

impl DatatypeStats {
    fn new() -> Self {
        DatatypeStats {
            fetch_time: Window::new(),
            update_time: Window::new(),
            objsize: Window::new(),
            actors: Window::new(),
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            get_fsm: Window::new(),
            put_fsm: Window::new(),
            vnode_gets: Counter::default(),
            vnode_puts: Counter::default(),
            read_repairs: Counter::default(),
            node_get_notfound: Counter::default(),
            forwarded_puts: Counter::default(),
            tombstones_reaped: Counter::default(),
            pbc_connects: Counter::default(),
            pbc_active: AtomicU64::new(0),
            http_requests: Counter::default(),
            errors: Counter::default(),
            datatypes: std::array::from_fn(|_| DatatypeStats::new()),
            started: Instant::now(),
        }
    }
}

impl Stats {
    fn of(&self, dt: Datatype) -> &DatatypeStats {
        let i = DATATYPES.iter().position(|d| *d == dt).expect("every type");
        &self.datatypes[i]
    }

    /// A data-type fetch that took `elapsed` and found `state`.
    pub fn datatype_fetched(&self, dt: Datatype, elapsed: Duration, actors: Option<usize>) {
        let s = self.of(dt);
        s.fetch_time.record(elapsed);
        if let Some(actors) = actors {
            s.actors.record_value(actors as u64);
        }
    }

    /// A data-type update that took `elapsed` and stored an object of `size` bytes.
    pub fn datatype_updated(
        &self,
        dt: Datatype,
        elapsed: Duration,
        size: usize,
        actors: Option<usize>,
    ) {
        let s = self.of(dt);
        s.update_time.record(elapsed);
        s.objsize.record_value(size as u64);
        if let Some(actors) = actors {
            s.actors.record_value(actors as u64);
        }
    }

    /// Writes every statistic into `out` under Riak's names.
    pub fn report(&self, out: &mut Map<String, Value>) {
        for (dt, s) in DATATYPES.iter().zip(&self.datatypes) {
            let t = dt.as_str();
            let windows = [
                (format!("node_get_fsm_{t}_time"), &s.fetch_time),
                (format!("node_put_fsm_{t}_time"), &s.update_time),
                (format!("node_put_fsm_{t}_objsize"), &s.objsize),
                (format!("{t}_actor_counts"), &s.actors),
            ];
            for (name, w) in windows {
                let (_, mean, median, p95, p99, max) = w.snapshot();
                for (suffix, v) in [
                    ("mean", mean),
                    ("median", median),
                    ("95", p95),
                    ("99", p99),
                    ("100", max),
                ] {
                    out.insert(format!("{name}_{suffix}"), v.into());
                }
            }
            out.insert(
                format!("vnode_{t}_update_total"),
                s.update_time.total.load(Ordering::Relaxed).into(),
            );
        }
        for (prefix, w) in [("get", &self.get_fsm), ("put", &self.put_fsm)] {
            let (count, mean, median, p95, p99, max) = w.snapshot();
            out.insert(format!("node_{prefix}s"), count.into());
            out.insert(
                format!("node_{prefix}s_total"),
                w.total.load(Ordering::Relaxed).into(),
            );
            let name = |s: &str| format!("node_{prefix}_fsm_time_{s}");
            out.insert(name("mean"), mean.into());
            out.insert(name("median"), median.into());
            out.insert(name("95"), p95.into());
            out.insert(name("99"), p99.into());
            out.insert(name("100"), max.into());
        }
        out.insert("vnode_gets_total".into(), self.vnode_gets.get().into());
        out.insert("vnode_puts_total".into(), self.vnode_puts.get().into());
        out.insert("read_repairs_total".into(), self.read_repairs.get().into());
        out.insert(
            "node_get_notfound_total".into(),
            self.node_get_notfound.get().into(),
        );
        out.insert(
            "coord_redirs_total".into(),
            self.forwarded_puts.get().into(),
        );
        out.insert(
            "tombstones_reaped_total".into(),
            self.tombstones_reaped.get().into(),
        );
        out.insert("pbc_connects_total".into(), self.pbc_connects.get().into());
        out.insert(
            "pbc_active".into(),
            self.pbc_active.load(Ordering::Relaxed).into(),
        );
        out.insert(
            "http_requests_total".into(),
            self.http_requests.get().into(),
        );
        out.insert("errors_total".into(), self.errors.get().into());
        out.insert(
            "uptime_secs".into(),
            self.started.elapsed().as_secs().into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_reports_percentiles_of_what_was_recorded() {
        let w = Window::new();
        for ms in 1..=100u64 {
            w.record(Duration::from_millis(ms));
        }
        let (count, mean, median, p95, p99, max) = w.snapshot();
        assert_eq!(count, 100);
        // HDR histograms keep 3 significant digits.
        assert!((50_000..=51_000).contains(&mean), "mean {mean}");
        assert!((50_000..=50_100).contains(&median), "median {median}");
        assert!((95_000..=95_100).contains(&p95), "p95 {p95}");
        assert!((99_000..=99_100).contains(&p99), "p99 {p99}");
        assert!((100_000..=100_100).contains(&max), "max {max}");
    }

    #[test]
    fn report_uses_riak_names() {
        let s = Stats::default();
        s.get_fsm.record(Duration::from_micros(250));
        s.vnode_gets.inc();
        let mut m = Map::new();
        s.report(&mut m);
        assert_eq!(m["node_gets"], 1);
        assert_eq!(m["node_gets_total"], 1);
        assert_eq!(m["node_puts_total"], 0);
        assert_eq!(m["vnode_gets_total"], 1);
        assert!(m.contains_key("node_get_fsm_time_95"));
        assert!(m.contains_key("node_put_fsm_time_100"));
        assert_eq!(m["set_actor_counts_mean"], 0);
        assert_eq!(m["vnode_map_update_total"], 0);
    }
}
