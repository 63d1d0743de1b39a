//! Riak-style text for the cluster commands' JSON answers: the same sections, columns and
//! phrases an operator knows from `riak admin`.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

const WIDTH: usize = 79;

fn title(out: &mut String, name: &str) {
    let name = format!(" {name} ");
    let left = (WIDTH - name.len()) / 2;
    let right = WIDTH - name.len() - left;
    let _ = writeln!(out, "{}{name}{}", "=".repeat(left), "=".repeat(right));
}

fn rule(out: &mut String) {
    let _ = writeln!(out, "{}", "-".repeat(WIDTH));
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

fn status(v: &Value) -> String {
    s(v).to_lowercase()
}

/// The membership table and its totals line, from rows of (status, ring %, pending %, node,
/// reachable).
fn membership(out: &mut String, rows: &[(String, f64, Option<f64>, String, bool)]) {
    title(out, "Membership");
    let _ = writeln!(out, "Status     Ring    Pending    Node");
    rule(out);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (st, ring, pending, node, reachable) in rows {
        *counts.entry(st.as_str()).or_default() += 1;
        let pending = pending.map_or_else(|| "--".to_string(), |p| format!("{p:.1}%"));
        let note = if *reachable { "" } else { "  (unreachable)" };
        let _ = writeln!(
            out,
            "{st:<10} {:>6}    {pending:>7}    '{node}'{note}",
            format!("{ring:.1}%")
        );
    }
    rule(out);
    let c = |k: &str| counts.get(k).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "Valid:{} / Leaving:{} / Exiting:{} / Joining:{} / Down:{}",
        c("valid"),
        c("leaving"),
        c("exiting"),
        c("joining"),
        c("down")
    );
}

/// `member-status`.
pub fn member_status(v: &Value) -> String {
    let rows: Vec<_> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                status(&m["status"]),
                m["ring_pct"].as_f64().unwrap_or(0.0),
                m["pending_pct"].as_f64(),
                s(&m["node"]).to_string(),
                m["reachable"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let mut out = String::new();
    membership(&mut out, &rows);
    out
}

/// `ring-status`.
pub fn ring_status(v: &Value) -> String {
    let mut out = String::new();
    title(&mut out, "Claimant");
    let _ = writeln!(out, "Claimant:  '{}'", s(&v["claimant"]));
    let up = if v["claimant_up"] == true {
        "up"
    } else {
        "down"
    };
    let _ = writeln!(out, "Status:     {up}");
    let _ = writeln!(out, "Ring Ready: {}\n", v["ring_ready"] == true);
    title(&mut out, "Ownership Handoff");
    let pending = v["pending"].as_array().cloned().unwrap_or_default();
    if pending.is_empty() {
        let _ = writeln!(out, "No pending changes.");
    } else {
        let mut by_pair: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
        for p in &pending {
            by_pair
                .entry((s(&p["owner"]).into(), s(&p["next_owner"]).into()))
                .or_default()
                .push(p);
        }
        for ((owner, next), parts) in by_pair {
            let _ = writeln!(out, "Owner:      {owner}");
            let _ = writeln!(out, "Next Owner: {next}\n");
            for p in parts {
                let _ = writeln!(out, "Index: {}", s(&p["index"]));
                let _ = writeln!(out, "  Waiting on: [riak_kv_vnode]");
            }
            rule(&mut out);
        }
    }
    let _ = writeln!(out);
    title(&mut out, "Unreachable Nodes");
    let unreachable: Vec<&str> = v["unreachable"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    if unreachable.is_empty() {
        let _ = writeln!(out, "All nodes are up and reachable");
    } else {
        let _ = writeln!(out, "The following nodes are unreachable: {unreachable:?}");
    }
    out
}

fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

/// `transfers`.
pub fn transfers(v: &Value) -> String {
    let mut out = String::new();
    for w in v["waiting"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "'{}' waiting to handoff {} partitions",
            s(&w[0]),
            w[1].as_u64().unwrap_or(0)
        );
    }
    for u in v["unreachable"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "'{}' could not be asked (unreachable)", s(u));
    }
    let active = v["active"].as_array().cloned().unwrap_or_default();
    if active.is_empty() {
        let _ = writeln!(out, "\nNo transfers active");
        return out;
    }
    let _ = writeln!(out, "\nActive Transfers:\n");
    for t in active {
        let sent = t["keys_sent"].as_u64().unwrap_or(0);
        let total = t["keys_total"].as_u64().unwrap_or(0).max(sent).max(1);
        let bytes = t["bytes_sent"].as_u64().unwrap_or(0) as f64;
        let secs = (t["elapsed_ms"].as_u64().unwrap_or(0) as f64 / 1000.0).max(0.001);
        let rate = bytes / secs;
        let keys_rate = sent as f64 / secs;
        let left = if keys_rate > 0.0 {
            format!("{:.0} s", (total - sent) as f64 / keys_rate)
        } else {
            "--".into()
        };
        let pct = 100.0 * sent as f64 / total as f64;
        let filled = (pct / 2.0).round() as usize;
        let _ = writeln!(out, "transfer type: {}", s(&t["kind"]));
        let _ = writeln!(out, "vnode type: riak_kv_vnode");
        let _ = writeln!(out, "partition: {}", t["partition"]);
        let _ = writeln!(out, "phase: {}", s(&t["phase"]));
        if t["resumed"] == true || t["attempts"].as_u64().unwrap_or(1) > 1 {
            let _ = writeln!(
                out,
                "attempt {} (resumed where the last one stopped)",
                t["attempts"]
            );
        }
        let _ = writeln!(
            out,
            "objects transferred: {sent} of ~{total}, {} sent",
            human_bytes(bytes)
        );
        let _ = writeln!(
            out,
            "  |{}{}| {pct:>3.0}%",
            "=".repeat(filled.min(50)),
            " ".repeat(50 - filled.min(50))
        );
        let _ = writeln!(
            out,
            "  '{}' =======> '{}'   {}/s, {keys_rate:.0} objects/s, {left} left\n",
            s(&t["from"]),
            s(&t["to"]),
            human_bytes(rate)
        );
    }
    out
}

/// `cluster plan`.
pub fn plan(v: &Value) -> String {
    let mut out = String::new();
    title(&mut out, "Staged Changes");
    let _ = writeln!(out, "{:<14} Details(s)", "Action");
    rule(&mut out);
    let actions = v["actions"].as_array().cloned().unwrap_or_default();
    for a in &actions {
        let other = a[2]
            .as_str()
            .map(|o| format!(" with '{o}'"))
            .unwrap_or_default();
        let _ = writeln!(out, "{:<14} '{}'{other}", s(&a[0]), s(&a[1]));
    }
    rule(&mut out);
    let _ = writeln!(
        out,
        "\n\nNOTE: Applying these changes will result in 1 cluster transition\n"
    );
    let _ = writeln!(out, "{}", "#".repeat(WIDTH));
    let _ = writeln!(out, "{:^79}", "After cluster transition 1/1");
    let _ = writeln!(out, "{}\n", "#".repeat(WIDTH));
    let size: u64 = v["owners"].as_array().map_or(0, |o| o.len() as u64).max(1);
    let leaving: Vec<&str> = actions
        .iter()
        .filter(|a| matches!(s(&a[0]), "leave" | "replace"))
        .map(|a| s(&a[1]))
        .collect();
    let removed: Vec<&str> = actions
        .iter()
        .filter(|a| matches!(s(&a[0]), "force-remove" | "force-replace"))
        .map(|a| s(&a[1]))
        .collect();
    let mut rows = Vec::new();
    for (node, share) in v["shares"].as_object().into_iter().flatten() {
        if removed.contains(&node.as_str()) {
            continue;
        }
        let now = share[0].as_u64().unwrap_or(0) as f64;
        let after = share[1].as_u64().unwrap_or(0) as f64;
        let st = if leaving.contains(&node.as_str()) {
            "leaving"
        } else {
            "valid"
        };
        rows.push((
            st.to_string(),
            100.0 * now / size as f64,
            Some(100.0 * after / size as f64),
            node.clone(),
            true,
        ));
    }
    membership(&mut out, &rows);
    for w in v["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "\nWARNING: {}", s(w));
    }
    let moves = v["moves"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(
        out,
        "\nTransfers resulting from cluster changes: {}",
        moves.len()
    );
    let mut pairs: BTreeMap<(String, String, bool), usize> = BTreeMap::new();
    for m in &moves {
        *pairs
            .entry((
                s(&m["from"]).into(),
                s(&m["to"]).into(),
                m["handoff"] == true,
            ))
            .or_default() += 1;
    }
    for ((from, to, handoff), n) in pairs {
        let how = if handoff {
            "transfers"
        } else {
            "reassigned (no handoff)"
        };
        let _ = writeln!(out, "  {n} {how} from '{from}' to '{to}'");
    }
    out
}

/// `cluster status`.
pub fn cluster_status(v: &Value) -> String {
    let mut out = String::new();
    title(&mut out, "Cluster");
    let _ = writeln!(out, "Claimant:  '{}'", s(&v["claimant"]));
    let _ = writeln!(out, "Ring size: {}\n", v["ring_size"]);
    out.push_str(&member_status(&v["members"]));
    let staged = v["staged"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out);
    if staged.is_empty() {
        let _ = writeln!(out, "No staged changes (joining nodes are staged joins)");
    } else {
        title(&mut out, "Staged Changes");
        for c in staged {
            let _ = writeln!(out, "{c}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn member_status_reads_like_riak() {
        let v = json!([
            {"node": "dev1@127.0.0.1", "status": "Valid", "ring_pct": 50.0, "pending_pct": null, "reachable": true},
            {"node": "dev2@127.0.0.1", "status": "Joining", "ring_pct": 0.0, "pending_pct": 25.0, "reachable": false},
        ]);
        let text = member_status(&v);
        assert!(
            text.contains("Status     Ring    Pending    Node"),
            "{text}"
        );
        assert!(
            text.contains("valid       50.0%         --    'dev1@127.0.0.1'"),
            "{text}"
        );
        assert!(
            text.contains("joining      0.0%      25.0%    'dev2@127.0.0.1'  (unreachable)"),
            "{text}"
        );
        assert!(
            text.contains("Valid:1 / Leaving:0 / Exiting:0 / Joining:1 / Down:0"),
            "{text}"
        );
    }

    #[test]
    fn ring_status_without_changes_says_so() {
        let v = json!({"claimant": "a@h", "claimant_up": true, "ring_ready": true, "pending": [], "unreachable": []});
        let text = ring_status(&v);
        assert!(text.contains("Ring Ready: true"));
        assert!(text.contains("No pending changes."));
        assert!(text.contains("All nodes are up and reachable"));
    }

    #[test]
    fn idle_transfers_say_so_and_active_ones_show_progress() {
        let idle = transfers(&json!({"active": [], "waiting": [], "unreachable": []}));
        assert!(idle.contains("No transfers active"));
        let busy = transfers(&json!({
            "active": [{"partition": 3, "from": "a", "to": "b", "kind": "ownership", "phase": "sending",
                        "keys_sent": 50, "keys_total": 100, "bytes_sent": 2048, "elapsed_ms": 1000,
                        "resumed": true, "attempts": 2, "last_error": null}],
            "waiting": [["a", 4]], "unreachable": []
        }));
        assert!(
            busy.contains("'a' waiting to handoff 4 partitions"),
            "{busy}"
        );
        assert!(busy.contains(" 50%"), "{busy}");
        assert!(busy.contains("resumed"), "{busy}");
        assert!(busy.contains("50 objects/s"), "{busy}");
    }

    #[test]
    fn a_plan_lists_changes_shares_and_transfers() {
        let v = json!({
            "actions": [["join", "b@h", null]],
            "owners": ["a@h", "b@h", "a@h", "b@h"],
            "moves": [{"partition": 1, "from": "a@h", "to": "b@h", "handoff": true},
                      {"partition": 3, "from": "a@h", "to": "b@h", "handoff": true}],
            "shares": {"a@h": [4, 2], "b@h": [0, 2]},
            "warnings": ["spacing"],
        });
        let text = plan(&v);
        assert!(text.contains("join           'b@h'"), "{text}");
        assert!(
            text.contains("valid      100.0%      50.0%    'a@h'"),
            "{text}"
        );
        assert!(
            text.contains("Transfers resulting from cluster changes: 2"),
            "{text}"
        );
        assert!(text.contains("2 transfers from 'a@h' to 'b@h'"), "{text}");
        assert!(text.contains("WARNING: spacing"));
    }
}
