//! A cluster of real `rill start` processes on loopback, for the clustering tests: nodes with
//! devrel-style names on free ports, formed with the real `rill admin` commands.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{TestNode, http};

/// The secret every test cluster shares.
pub const SECRET: &str = "test-cluster-secret";

/// A node of a test cluster.
pub struct ClusterNode {
    pub name: String,
    pub node: TestNode,
    pub extra: Vec<String>,
}

impl ClusterNode {
    /// Starts `devI@127.0.0.1` on fresh ports, with a fresh data directory.
    pub fn start(i: usize, extra: &[&str]) -> ClusterNode {
        let name = format!("dev{i}@127.0.0.1");
        let mut args: Vec<String> = vec![
            "--name".into(),
            name.clone(),
            "--cluster-secret".into(),
            SECRET.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ClusterNode {
            name,
            node: TestNode::start(&refs),
            extra: args,
        }
    }

    /// Restarts the node on its data directory (after a kill), on new client ports and its
    /// old internode port, so peers find it where they left it.
    pub fn restart(&mut self) {
        self.node.kill9();
        let mut args = self.extra.clone();
        args.extend(["--internode".into(), self.node.internode.to_string()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let dir = self.node.data_dir.clone();
        let tmp = self.node._tmp.take();
        let mut fresh = TestNode::start_in(&dir, &refs);
        fresh._tmp = tmp;
        self.node = fresh;
    }

    /// `rill admin --node HTTP ARGS...`: its stdout, or a panic with its stderr.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = self.admin_raw(args);
        assert!(
            out.status.success(),
            "rill admin {args:?} on {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn admin_raw(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .arg("admin")
            .arg("--node")
            .arg(self.node.http.to_string())
            .args(args)
            .output()
            .expect("running rill admin")
    }

    /// An admin endpoint's JSON answer.
    pub fn admin_json(&self, path: &str) -> Value {
        let mut resp = http()
            .get(&self.node.url(path))
            .call()
            .expect("admin request");
        assert_eq!(resp.status(), 200, "{path} on {}", self.name);
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    }

    pub fn stats(&self) -> Value {
        self.admin_json("/stats")
    }
}

/// Starts `n` nodes (with `extra` flags each) and forms them into one cluster through
/// `rill admin cluster join/plan/commit`, then waits until it settles.
pub fn form(n: usize, extra: &[&str]) -> Vec<ClusterNode> {
    let nodes: Vec<ClusterNode> = (1..=n).map(|i| ClusterNode::start(i, extra)).collect();
    for joiner in &nodes[1..] {
        join(joiner, &nodes[0]);
    }
    if n > 1 {
        commit(&nodes[0], n);
    }
    settle(&nodes);
    nodes
}

/// `joiner` joins the cluster of `target`.
pub fn join(joiner: &ClusterNode, target: &ClusterNode) {
    joiner.admin(&["cluster", "join", &target.node.internode.to_string()]);
}

/// Plans and commits once `members` nodes are known to `claimant`.
pub fn commit(claimant: &ClusterNode, members: usize) {
    wait_for(
        "every join to reach the claimant",
        Duration::from_secs(20),
        || {
            claimant
                .admin_json("/admin/member-status")
                .as_array()
                .unwrap()
                .len()
                >= members
        },
    );
    claimant.admin(&["cluster", "plan"]);
    claimant.admin(&["cluster", "commit"]);
}

/// Waits until no transfer is pending and every member agrees on the state.
pub fn settle(nodes: &[ClusterNode]) {
    wait_for("the cluster to settle", Duration::from_secs(120), || {
        nodes.iter().all(|n| {
            let r = n.admin_json("/admin/ring-status");
            r["pending"].as_array().unwrap().is_empty() && r["ring_ready"] == true
        })
    });
}

/// Polls `check` every 100 ms until it holds, or panics after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// Whether `node` shows `peer` as reachable in member-status.
pub fn sees_reachable(node: &ClusterNode, peer: &str) -> bool {
    node.admin_json("/admin/member-status")
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["node"] == peer && m["reachable"] == true)
}
