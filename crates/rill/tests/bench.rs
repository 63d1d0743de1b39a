//! `rill bench` against a real node, over PB and over HTTP: the run completes without errors,
//! writes its three files, and — checked independently of the bench's own bookkeeping — the
//! GETs and PUTs it reports are exactly the ones the server counted; for the data-type
//! operations, the counters, sets and maps the server holds afterwards must add up to the
//! increments and adds the bench reports.

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
    // With data types the bucket-type check comes first; an unreachable server is still
    // reported as such, not as a missing type.
    for mix in ["get=1", "counter=1"] {
        let output = Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(["bench", "--duration", "1s", "--targets", &addr.to_string()])
            .args(["--mix", mix, "--admin-node", &addr.to_string()])
            .output()
            .expect("running rill bench");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("connecting to {addr}")),
            "{mix}: {stderr}"
        );
    }
}

/// A data type's JSON value over HTTP, `None` if the key does not exist.
fn dt_value(node: &TestNode, btype: &str, key: u64) -> Option<Value> {
    let path = format!("/types/{btype}/buckets/bench/datatypes/{key}");
    let resp = http().get(&node.url(&path)).call().expect("GET datatype");
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().expect("datatype body");
    match status {
        200 => Some(serde_json::from_str::<Value>(&text).expect("datatype JSON")["value"].clone()),
        404 => None,
        other => panic!("GET {path}: {other} {text}"),
    }
}

/// Runs `rill bench ARGS` and returns (success, stdout, stderr).
fn run_bench(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_rill"))
        .arg("bench")
        .args(args)
        .output()
        .expect("running rill bench");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A short data-type run on a fresh node (which has none of the bucket types: the bench creates
/// them), then the server's counters, sets and maps are read back over HTTP and must hold
/// exactly what the bench reports having done.
fn check_data_type_run(protocol: &str, sets: u64) {
    const KEYS: u64 = 20;
    const SET_SIZE: u64 = 200;
    let node = TestNode::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let target = match protocol {
        "pb" => node.pb.to_string(),
        _ => node.http.to_string(),
    };
    let (keys, sets_arg, set_size) = (KEYS.to_string(), sets.to_string(), SET_SIZE.to_string());
    let out = dir.path().to_str().unwrap();
    let (ok, stdout, stderr) = run_bench(&[
        "--protocol",
        protocol,
        "--targets",
        &target,
        "--admin-node",
        &node.http.to_string(),
        "--mix",
        "counter=1,set_add=1,map_update=1,set_fetch=1",
        "--set-size",
        &set_size,
        "--sets",
        &sets_arg,
        "--keys",
        &keys,
        "--duration",
        "3s",
        "--concurrency",
        "3",
        "--seed",
        "11",
        "--out",
        out,
    ]);
    assert!(ok, "bench failed:\n{stdout}\n{stderr}");
    for dt in ["counter", "set", "map"] {
        assert!(
            stderr.contains(&format!(
                "created and activated bucket type {dt}s (datatype {dt})"
            )),
            "{dt} type created:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("set preload:"),
        "preload reported:\n{stderr}"
    );
    for op in ["counter", "set_add", "map_update", "set_fetch"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(op)),
            "{op} row:\n{stdout}"
        );
    }
    let text = std::fs::read_to_string(dir.path().join("summary.json")).expect("summary.json");
    let summary: Value = serde_json::from_str(&text).expect("summary.json parses");
    assert_eq!(summary["total"]["errors"], 0, "{summary}");
    for op in ["counter", "set_add", "map_update", "set_fetch"] {
        assert!(count(&summary, op, "count") > 0, "{op} ran: {summary}");
    }
    // Every set was preloaded, so every fetch found its set.
    assert_eq!(count(&summary, "set_fetch", "notfound"), 0);
    let preload = &summary["set_preload"];
    assert_eq!(preload["added"], sets * SET_SIZE, "{preload}");
    assert_eq!(preload["existing"], 0, "{preload}");
    // 1000 members per update: one update per set of 200.
    assert_eq!(preload["update"]["count"], sets, "{preload}");

    // Every increment reached the server once: the counters add up to the counter ops.
    let counted: i64 = (0..KEYS)
        .filter_map(|k| dt_value(&node, "counters", k))
        .map(|v| v.as_i64().expect("counter value"))
        .sum();
    assert_eq!(counted as u64, count(&summary, "counter", "count"));
    // Each map update incremented its map's counter field once.
    let visits: i64 = (0..KEYS)
        .filter_map(|k| dt_value(&node, "maps", k))
        .map(|v| v["visits_counter"].as_i64().expect("visits_counter"))
        .sum();
    assert_eq!(visits as u64, count(&summary, "map_update", "count"));
    // The sets hold the preloaded members plus one new member per add, and only sets 0..N
    // were touched.
    let members: u64 = (0..sets)
        .map(|k| {
            let set = dt_value(&node, "sets", k).expect("every set exists");
            set.as_array().expect("set members").len() as u64
        })
        .sum();
    assert_eq!(
        members,
        sets * SET_SIZE + count(&summary, "set_add", "count"),
        "members vs preload + set_add"
    );
    assert!(
        dt_value(&node, "sets", sets).is_none(),
        "set {sets} untouched"
    );
}

#[test]
fn data_type_bench_over_pb_matches_the_server() {
    check_data_type_run("pb", 1);
}

#[test]
fn data_type_bench_over_http_matches_the_server() {
    check_data_type_run("http", 2);
}

#[test]
fn data_type_bench_refuses_unusable_bucket_types_before_loading() {
    let node = TestNode::start(&[]);
    // A "sets" type of the wrong datatype is refused, not replaced.
    node.create_bucket_type("sets", r#"{"datatype":"map"}"#);
    let pb = node.pb.to_string();
    let admin = node.http.to_string();
    let (ok, _, stderr) = run_bench(&[
        "--targets",
        &pb,
        "--admin-node",
        &admin,
        "--mix",
        "set_add=1",
        "--duration",
        "1s",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("bucket type sets has datatype map") && stderr.contains("--set-type"),
        "{stderr}"
    );
    // Without reachable admin endpoints a missing type stops the run with the commands to run;
    // one that exists is found over the protocol instead.
    let dead = {
        let mut gone = TestNode::start(&[]);
        let addr = gone.http;
        gone.kill9();
        addr.to_string()
    };
    let (ok, _, stderr) = run_bench(&[
        "--targets",
        &pb,
        "--admin-node",
        &dead,
        "--mix",
        "counter=1",
        "--duration",
        "1s",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "rill admin --node {dead} bucket-type create counters '{{\"props\":{{\"datatype\":\"counter\"}}}}'"
        )),
        "{stderr}"
    );
    node.create_bucket_type("counters", r#"{"datatype":"counter"}"#);
    let (ok, stdout, stderr) = run_bench(&[
        "--targets",
        &pb,
        "--admin-node",
        &dead,
        "--mix",
        "counter=1",
        "--duration",
        "1s",
        "--concurrency",
        "1",
        "--keys",
        "5",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("counter")), "{stdout}");
}
