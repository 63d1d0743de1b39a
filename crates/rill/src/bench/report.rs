//! The results of a run, for people and for programs: the terminal table, `summary.json`
//! (configuration and per-operation statistics), `timeseries.csv` (per second and operation) and
//! `chart.svg` (see [`super::chart`]).
//!
//! Latencies are kept in microseconds in the files and shown in milliseconds (three decimals,
//! i.e. microsecond precision) in the table and the CSV. Throughput counts successful operations
//! (a not-found read is a success); errors are counted beside them.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;

use super::chart;
use super::driver::RunResult;
use super::options::{Config, Protocol};
use super::stats::{ErrorMessage, OpStats, Row};
use super::workload::{DataType, KeyDist, Op};

/// Latency statistics in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Latency {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency {
                min: 0,
                mean: 0.0,
                p50: 0,
                p95: 0,
                p99: 0,
                p999: 0,
                max: 0,
            };
        }
        Latency {
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.5),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// One operation's (or the total's) results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpReport {
    /// Successful operations, not-found reads included.
    pub count: u64,
    pub notfound: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub latency_us: Latency,
    pub error_messages: Vec<ErrorMessage>,
}

impl OpReport {
    pub fn of(stats: &OpStats, elapsed_s: f64) -> OpReport {
        let rate = if elapsed_s > 0.0 {
            stats.count() as f64 / elapsed_s
        } else {
            0.0
        };
        OpReport {
            count: stats.count(),
            notfound: stats.notfound,
            errors: stats.errors,
            ops_per_sec: (rate * 100.0).round() / 100.0,
            latency_us: Latency::of(&stats.latency),
            error_messages: stats.messages.clone(),
        }
    }
}

/// Operations the report lists: the mix's, then any others that were recorded.
fn listed_ops(config: &Config, result: &RunResult) -> Vec<Op> {
    let mut ops: Vec<Op> = config.mix.ops().collect();
    for (op, _) in result.totals.recorded() {
        if !ops.contains(&op) {
            ops.push(op);
        }
    }
    ops
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// The results table: one row per operation and a total row.
pub fn table(config: &Config, result: &RunResult) -> String {
    let elapsed = result.elapsed.as_secs_f64();
    let mut rows: Vec<(String, OpReport)> = listed_ops(config, result)
        .into_iter()
        .map(|op| {
            (
                op.name().to_owned(),
                OpReport::of(result.totals.op(op), elapsed),
            )
        })
        .collect();
    rows.push((
        "total".into(),
        OpReport::of(&result.totals.combined(), elapsed),
    ));
    let mut out = format!(
        "{:<13} {:>10} {:>9} {:>7} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}\n",
        "op",
        "count",
        "notfound",
        "errors",
        "ops/s",
        "min ms",
        "mean ms",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    );
    for (name, r) in rows {
        let l = &r.latency_us;
        let _ = writeln!(
            out,
            "{:<13} {:>10} {:>9} {:>7} {:>11.1} {:>8} {:>8.3} {:>8} {:>8} {:>8} {:>9} {:>9}",
            name,
            r.count,
            r.notfound,
            r.errors,
            r.ops_per_sec,
            ms(l.min),
            l.mean / 1000.0,
            ms(l.p50),
            ms(l.p95),
            ms(l.p99),
            ms(l.p999),
            ms(l.max)
        );
    }
    out
}

/// Everything after the table: error messages, preload, warnings.
pub fn notes(config: &Config, result: &RunResult) -> String {
    let mut out = String::new();
    for op in listed_ops(config, result) {
        for m in &result.totals.op(op).messages {
            let _ = writeln!(out, "{} error (x{}): {}", op.name(), m.count, m.message);
        }
    }
    if let Some(p) = &result.preload {
        let _ = writeln!(
            out,
            "preload: {} keys in {:.1}s, {} errors",
            p.stats.count() + p.stats.errors,
            p.elapsed.as_secs_f64(),
            p.stats.errors
        );
        for m in &p.stats.messages {
            let _ = writeln!(out, "preload error (x{}): {}", m.count, m.message);
        }
    }
    if let Some(p) = &result.set_preload {
        let sets = if p.sets == 1 { "set" } else { "sets" };
        let _ = writeln!(
            out,
            "set preload: {} {sets} to {} members in {:.2}s ({} members added in {} updates, {} were there)",
            p.sets,
            p.size,
            p.elapsed.as_secs_f64(),
            p.added,
            p.updates.count(),
            p.existing
        );
        // The adds of the run grow the sets it measures: say by how much, so a short run on
        // small sets is not mistaken for one at the preloaded size.
        let adds = result.totals.op(Op::SetAdd).count();
        if adds > 0 {
            let _ = writeln!(
                out,
                "set_add grew the sets by {adds} members during the run: from {} to about {} members each",
                p.size,
                p.size + adds / p.sets.max(1)
            );
        }
        if p.oversized > 0 {
            let _ = writeln!(
                out,
                "warning: {} of the sets already had more than {} members; they were measured at their own size",
                p.oversized, p.size
            );
        }
    }
    if let Some(dropped) = result.dropped.filter(|d| *d > 0) {
        let _ = writeln!(
            out,
            "warning: the server did not keep up with --rate: {dropped} scheduled operations were never started"
        );
    }
    if result.interrupted {
        let _ = writeln!(out, "note: interrupted before the end of the run");
    }
    out
}

/// `summary.json`: the configuration, per-operation results and the run's circumstances.
pub fn summary(config: &Config, result: &RunResult) -> serde_json::Value {
    let elapsed = result.elapsed.as_secs_f64();
    let ops: serde_json::Map<String, serde_json::Value> = listed_ops(config, result)
        .into_iter()
        .map(|op| {
            let r = OpReport::of(result.totals.op(op), elapsed);
            (op.name().to_owned(), json!(r))
        })
        .collect();
    let preload = result.preload.as_ref().map(|p| {
        json!({
            "keys": p.stats.count() + p.stats.errors,
            "errors": p.stats.errors,
            "elapsed_secs": p.elapsed.as_secs_f64(),
            "put": OpReport::of(&p.stats, p.elapsed.as_secs_f64()),
        })
    });
    let set_preload = result.set_preload.as_ref().map(|p| {
        json!({
            "sets": p.sets,
            "set_size": p.size,
            "existing": p.existing,
            "added": p.added,
            "oversized": p.oversized,
            "elapsed_secs": p.elapsed.as_secs_f64(),
            "update": OpReport::of(&p.updates, p.elapsed.as_secs_f64()),
        })
    });
    json!({
        "tool": "rill bench",
        "rill_version": env!("CARGO_PKG_VERSION"),
        "config": config,
        "elapsed_secs": elapsed,
        "interrupted": result.interrupted,
        "warmup_ops": result.warmup_ops,
        "dropped_ops": result.dropped,
        "preload": preload,
        "set_preload": set_preload,
        "ops": ops,
        "total": OpReport::of(&result.totals.combined(), elapsed),
    })
}

/// `timeseries.csv`: one line per interval and listed operation (zeros when it had none;
/// latencies empty when nothing succeeded).
pub fn timeseries_csv(ops: &[Op], series: &[Row]) -> String {
    let mut out = String::from("t_s,interval_s,op,ops,ops_per_sec,errors,p50_ms,p99_ms\n");
    for row in series {
        for &op in ops {
            let point = row.points.iter().find(|(o, _)| *o == op).map(|(_, p)| p);
            let (n, errors) = point.map_or((0, 0), |p| (p.ops, p.errors));
            let latency = |us: fn(&super::stats::Point) -> u64| match point {
                Some(p) if p.ops > 0 => ms(us(p)),
                _ => String::new(),
            };
            let rate = if row.interval_s > 0.0 {
                n as f64 / row.interval_s
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "{:.3},{:.3},{},{n},{rate:.1},{errors},{},{}",
                row.end_s,
                row.interval_s,
                op.name(),
                latency(|p| p.p50_us),
                latency(|p| p.p99_us)
            );
        }
    }
    out
}

/// Writes summary.json, timeseries.csv and chart.svg into `dir` (created if missing).
pub fn write_files(dir: &Path, config: &Config, result: &RunResult) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ops = listed_ops(config, result);
    let files = [
        (
            "summary.json",
            serde_json::to_string_pretty(&summary(config, result))? + "\n",
        ),
        ("timeseries.csv", timeseries_csv(&ops, &result.series)),
        (
            "chart.svg",
            chart::svg(
                &chart_title(config),
                &chart_subtitle(config),
                &ops,
                &result.series,
            ),
        ),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The chart's title line: what was loaded, how.
fn chart_title(config: &Config) -> String {
    let mode = match config.rate {
        Some(rate) => format!("fixed rate {rate} ops/s"),
        None => "closed loop".into(),
    };
    let protocol = match config.protocol {
        Protocol::Pb => "pb",
        Protocol::Http => "http",
    };
    format!(
        "rill bench: {protocol} {}, {} workers, {mode}",
        config.targets.join(","),
        config.concurrency,
    )
}

/// The chart's second line: the workload.
fn chart_subtitle(config: &Config) -> String {
    let dist = match config.key_dist {
        KeyDist::Uniform => "uniform",
        KeyDist::Pareto => "pareto",
        KeyDist::Sequential => "sequential",
    };
    let values = if config.value_size_min == config.value_size_max {
        format!("{} B", config.value_size_max)
    } else {
        format!("{}-{} B", config.value_size_min, config.value_size_max)
    };
    let mut text = format!(
        "mix {}, {} keys ({dist}), values {values}, bucket {}",
        config.mix, config.keys, config.bucket
    );
    if config.mix.data_types().contains(&DataType::Set) {
        let _ = write!(
            text,
            ", {} sets of {}+ members",
            config.sets, config.set_size
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::options::{PropsSetup, TypeNames};
    use crate::bench::stats::{OpSet, Outcome, Point};
    use crate::bench::workload::OpMix;
    use std::time::Duration;

    fn config() -> Config {
        Config {
            targets: vec!["127.0.0.1:8087".into()],
            protocol: Protocol::Pb,
            duration: Duration::from_secs(2),
            concurrency: 4,
            mix: OpMix::parse("get=4,put=1").unwrap(),
            keys: 1000,
            key_dist: KeyDist::Uniform,
            value_size_min: 100,
            value_size_max: 100,
            bucket: "bench".into(),
            bucket_type: None,
            types: TypeNames {
                counter: "counters".into(),
                set: "sets".into(),
                map: "maps".into(),
            },
            sets: 1,
            set_size: 0,
            admin_node: "127.0.0.1:8098".into(),
            props: PropsSetup::default(),
            preload: false,
            rate: None,
            warmup: Duration::ZERO,
            seed: 1,
            out: None,
            timeout: Duration::from_secs(30),
        }
    }

    fn result() -> RunResult {
        let mut totals = OpSet::default();
        for us in [1000u64, 1200, 1400, 1600] {
            totals
                .op_mut(Op::Get)
                .record(Outcome::Ok, Duration::from_micros(us));
        }
        totals
            .op_mut(Op::Get)
            .record(Outcome::NotFound, Duration::from_micros(500));
        totals.op_mut(Op::Put).record(
            Outcome::Error("HTTP 503: overloaded".into()),
            Duration::ZERO,
        );
        let point = |ops, p50_us, p99_us| Point {
            ops,
            errors: 0,
            p50_us,
            p99_us,
        };
        RunResult {
            totals,
            series: vec![
                Row {
                    end_s: 1.0,
                    interval_s: 1.0,
                    points: vec![(Op::Get, point(3, 2000, 3000))],
                },
                Row {
                    end_s: 1.5,
                    interval_s: 0.5,
                    points: vec![(Op::Get, point(2, 1500, 4000))],
                },
            ],
            elapsed: Duration::from_millis(2500),
            warmup_ops: 0,
            dropped: None,
            interrupted: false,
            preload: None,
            set_preload: None,
        }
    }

    #[test]
    fn latency_summary_reads_the_histogram() {
        let r = OpReport::of(result().totals.op(Op::Get), 2.5);
        assert_eq!((r.count, r.notfound, r.errors), (5, 1, 0));
        assert_eq!(r.ops_per_sec, 2.0);
        assert_eq!(r.latency_us.min, 500);
        assert_eq!(r.latency_us.p50, 1200);
        assert_eq!(r.latency_us.max, 1600);
        assert_eq!(r.latency_us.mean, 1140.0);
    }

    #[test]
    fn table_has_a_row_per_mix_op_and_a_total() {
        let t = table(&config(), &result());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("op") && lines[0].contains("p99.9 ms"));
        let get: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&get[..4], &["get", "5", "1", "0"]);
        assert_eq!(get[5], "0.500", "min in ms");
        assert_eq!(get[11], "1.600", "max in ms");
        let put: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(&put[..4], &["put", "0", "0", "1"]);
        assert!(lines[3].starts_with("total"));
    }

    #[test]
    fn notes_list_error_messages() {
        let n = notes(&config(), &result());
        assert!(n.contains("put error (x1): HTTP 503: overloaded"), "{n}");
    }

    #[test]
    fn summary_json_holds_config_and_per_op_stats() {
        let v = summary(&config(), &result());
        assert_eq!(v["config"]["concurrency"], 4);
        assert_eq!(v["config"]["mix"], "get=4,put=1");
        assert_eq!(v["ops"]["get"]["count"], 5);
        assert_eq!(v["ops"]["get"]["notfound"], 1);
        assert_eq!(v["ops"]["get"]["latency_us"]["p99"], 1600);
        assert_eq!(v["ops"]["put"]["errors"], 1);
        assert_eq!(
            v["ops"]["put"]["error_messages"][0]["message"],
            "HTTP 503: overloaded"
        );
        assert_eq!(v["total"]["count"], 5);
        assert_eq!(v["elapsed_secs"], 2.5);
        assert!(v["preload"].is_null());
        // Round-trips through text.
        let text = serde_json::to_string_pretty(&v).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
    }

    #[test]
    fn csv_has_a_line_per_interval_and_op() {
        let csv = timeseries_csv(&[Op::Get, Op::Put], &result().series);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines,
            vec![
                "t_s,interval_s,op,ops,ops_per_sec,errors,p50_ms,p99_ms",
                "1.000,1.000,get,3,3.0,0,2.000,3.000",
                "1.000,1.000,put,0,0.0,0,,",
                "1.500,0.500,get,2,4.0,0,1.500,4.000",
                "1.500,0.500,put,0,0.0,0,,",
            ]
        );
    }

    #[test]
    fn chart_title_names_the_run() {
        assert_eq!(
            chart_title(&config()),
            "rill bench: pb 127.0.0.1:8087, 4 workers, closed loop"
        );
        assert_eq!(
            chart_subtitle(&config()),
            "mix get=4,put=1, 1000 keys (uniform), values 100 B, bucket bench"
        );
    }

    #[test]
    fn files_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/results");
        write_files(&out, &config(), &result()).unwrap();
        for name in ["summary.json", "timeseries.csv", "chart.svg"] {
            let text = std::fs::read_to_string(out.join(name)).unwrap();
            assert!(!text.is_empty(), "{name}");
        }
    }

    #[test]
    fn the_set_preload_is_reported() {
        use crate::bench::driver::SetPreloadResult;
        let mut updates = OpStats::default();
        for _ in 0..3 {
            updates.record(Outcome::Ok, Duration::from_millis(40));
        }
        let mut r = result();
        r.set_preload = Some(SetPreloadResult {
            sets: 2,
            size: 1500,
            existing: 1600,
            added: 1400,
            oversized: 1,
            updates,
            elapsed: Duration::from_millis(1500),
        });
        let mut c = config();
        c.mix = OpMix::parse("set_add=1").unwrap();
        let n = notes(&c, &r);
        assert!(
            n.contains("set preload: 2 sets to 1500 members in 1.50s (1400 members added in 3 updates, 1600 were there)"),
            "{n}"
        );
        assert!(!n.contains("grew"), "no set_add in the run: {n}");
        for _ in 0..10 {
            r.totals
                .op_mut(Op::SetAdd)
                .record(Outcome::Ok, Duration::from_millis(2));
        }
        let n = notes(&c, &r);
        assert!(
            n.contains("set_add grew the sets by 10 members during the run: from 1500 to about 1505 members each"),
            "{n}"
        );
        assert!(
            n.contains("warning: 1 of the sets already had more than 1500"),
            "{n}"
        );
        let v = summary(&c, &r);
        assert_eq!(v["set_preload"]["set_size"], 1500);
        assert_eq!(v["set_preload"]["added"], 1400);
        assert_eq!(v["set_preload"]["update"]["count"], 3);
        assert!(
            chart_subtitle(&c).ends_with(", 1 sets of 0+ members"),
            "{}",
            chart_subtitle(&c)
        );
    }

    #[test]
    fn long_op_names_keep_the_columns() {
        let mut r = result();
        r.totals
            .op_mut(Op::CounterFetch)
            .record(Outcome::Ok, Duration::from_micros(700));
        let t = table(&config(), &r);
        let row = t.lines().find(|l| l.starts_with("counter_fetch")).unwrap();
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&fields[..4], &["counter_fetch", "1", "0", "0"]);
        assert_eq!(
            row.len(),
            t.lines().next().unwrap().len(),
            "aligned with the header"
        );
    }
}
