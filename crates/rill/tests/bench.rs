//! `rill bench` against a real node, over PB and over HTTP: the run completes without errors,
//! writes its three files, and — checked independently of the bench's own bookkeeping — the
//! GETs and PUTs it reports are exactly the ones the server counted.

mod common;

use std::path::Path;
use std::process::Command;

use common::{TestNode, http};
use serde_json::Value;

/// The node's cumulative (GETs, PUTs) from `GET /stats`.
fn server_counts(node: &TestNode) -> (u64, u64) {
    let resp = http().get(&node.url("/stats")).call().expect("GET /stats");
    let text = resp.into_body().read_to_string().expect("stats body");
    let stats: Value = serde_json::from_str(&text).expect("stats JSON");
    let get = |name: &str| {
        stats[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in /stats"))
    };
    (get("node_gets_total"), get("node_puts_total"))
}

/// Runs a 5-second bench (the smoke run CI does over each protocol) and returns its summary.json.
fn bench(protocol: &str, target: &str, out: &Path) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["bench", "--protocol", protocol, "--targets", target])
        .args(["--duration", "5s", "--concurrency", "4"])
        .args(["--mix", "get=2,put=1,update=1", "--keys", "500"])
        .args(["--key-dist", "pareto", "--value-size", "10-200"])
        .args(["--n-val", "3", "--r", "2", "--w", "2", "--preload"])
        .args(["--seed", "7", "--out"])
        .arg(out)
        .output()
        .expect("running rill bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("p99.9 ms"), "table header:\n{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("total")),
        "total row:\n{stdout}"
    );
    assert!(stderr.contains("ops/s"), "progress lines:\n{stderr}");
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json parses")
}

fn count(summary: &Value, op: &str, field: &str) -> u64 {
    summary["ops"][op][field]
        .as_u64()
        .unwrap_or_else(|| panic!("ops.{op}.{field} in summary"))
}

fn check_run(node: &TestNode, protocol: &str, target: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = server_counts(node);
    let summary = bench(protocol, target, dir.path());
    let after = server_counts(node);

    assert_eq!(summary["config"]["protocol"], protocol);
    assert!(summary["total"]["count"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["total"]["errors"], 0, "{summary}");
    assert_eq!(summary["preload"]["keys"], 500);
    assert_eq!(summary["preload"]["errors"], 0);
    for op in ["get", "put", "update"] {
        assert!(count(&summary, op, "count") > 0, "{op} ran");
        assert_eq!(count(&summary, op, "errors"), 0, "{op} errors");
    }
    // Every key was preloaded, so nothing is missing.
    assert_eq!(count(&summary, "get", "notfound"), 0);

    // The independent check: an update is one GET and one PUT; the preload is one PUT per key;
    // setting bucket properties is neither.
    let bench_gets = count(&summary, "get", "count") + count(&summary, "update", "count");
    let bench_puts = count(&summary, "put", "count") + count(&summary, "update", "count") + 500;
    assert_eq!(after.0 - before.0, bench_gets, "server GETs vs bench");
    assert_eq!(after.1 - before.1, bench_puts, "server PUTs vs bench");

    let csv = std::fs::read_to_string(dir.path().join("timeseries.csv")).expect("csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("t_s,interval_s,op,ops,ops_per_sec,errors,p50_ms,p99_ms")
    );
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() >= 6, "at least 2 seconds x 3 ops:\n{csv}");
    let csv_ops: u64 = rows
        .iter()
        .map(|r| r.split(',').nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        csv_ops,
        summary["total"]["count"].as_u64().unwrap(),
        "series adds up"
    );

    let svg = std::fs::read_to_string(dir.path().join("chart.svg")).expect("svg");
    assert!(svg.starts_with("<svg"), "svg start");
    assert!(svg.trim_end().ends_with("</svg>"), "svg end");
    assert!(svg.contains("<path"), "svg has lines");
}

#[test]
fn bench_over_pb_matches_the_server_counters() {
    let node = TestNode::start(&[]);
    check_run(&node, "pb", &node.pb.to_string());
}

#[test]
fn bench_over_http_matches_the_server_counters() {
    let node = TestNode::start(&[]);
    check_run(&node, "http", &node.http.to_string());
}

#[test]
fn bench_refuses_an_unreachable_target() {
    // A port from a node that has exited: nothing listens there any more.
    let addr = {
        let mut node = TestNode::start(&[]);
        let addr = node.pb;
        node.kill9();
        addr
    };
    let output = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["bench", "--duration", "1s", "--targets", &addr.to_string()])
        .output()
        .expect("running rill bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("connecting to {addr}")),
        "{stderr}"
    );
}
