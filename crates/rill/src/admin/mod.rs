//! `rill admin`: operator commands against a running node, through its loopback-only admin
//! endpoints — the `bucket-type` and `cluster` families of `riak admin`, `member-status`,
//! `ring-status`, `transfers`, `transfer-limit` and `down`. Output reads like Riak's; every
//! command also answers `--json` (the node's answer as is).

mod show;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The node's HTTP address.
    #[arg(long, env = "RILL_NODE", default_value = "127.0.0.1:8098")]
    node: String,
    /// Print the node's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Bucket types: create, activate, update, list, status.
    #[command(name = "bucket-type", subcommand)]
    BucketType(TypeCommand),
    /// Cluster membership: join, leave, plan, commit, ...
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// The members, their status and their share of the ring.
    MemberStatus,
    /// The claimant, pending ownership handoffs, unreachable nodes.
    RingStatus,
    /// Active and waiting transfers.
    Transfers,
    /// Show, or set, how many transfers the node sends at once.
    TransferLimit { limit: Option<usize> },
    /// Mark an unreachable node down, so cluster changes can proceed without it.
    Down { node: String },
}

#[derive(Subcommand, Debug)]
enum TypeCommand {
    /// Create a bucket type: `create NAME '{"props":{...}}'` (props optional).
    Create { name: String, props: Option<String> },
    /// Activate a created bucket type (every member must have it).
    Activate { name: String },
    /// Change a bucket type's properties: `update NAME '{"props":{...}}'`.
    Update { name: String, props: String },
    /// List bucket types and whether each is active.
    List,
    /// Show a bucket type's status and properties.
    Status { name: String },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Join the cluster of TARGET: a node name (`dev1@10.0.0.1`, internode port 8099) or an
    /// internode address (`HOST:PORT`). Run it on the joining node; then plan and commit.
    Join { target: String },
    /// Stage the departure of NODE (default: the node addressed), with handoff.
    Leave { node: Option<String> },
    /// Stage the removal of NODE without handoff (for a node that is gone for good).
    ForceRemove { node: String },
    /// Stage handing every partition of NODE1 to the joining NODE2.
    Replace { node: String, with: String },
    /// Stage giving NODE1's partitions to the joining NODE2 without handoff.
    ForceReplace { node: String, with: String },
    /// Show the staged changes and what committing them would do.
    Plan,
    /// Apply the plan.
    Commit,
    /// Drop the staged changes.
    Clear,
    /// Members, claimant and staged changes.
    Status,
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.node);
    let json_out = args.json;
    let print = |v: &Value, text: String| {
        if json_out {
            println!("{v}");
        } else {
            print!("{text}");
        }
    };
    match args.command {
        AdminCommand::BucketType(cmd) => bucket_type(&client, cmd, json_out)?,
        AdminCommand::Cluster(cmd) => {
            let (v, text) = cluster(&client, cmd)?;
            print(&v, text);
        }
        AdminCommand::MemberStatus => {
            let v = client.get("/admin/member-status")?;
            print(&v, show::member_status(&v));
        }
        AdminCommand::RingStatus => {
            let v = client.get("/admin/ring-status")?;
            print(&v, show::ring_status(&v));
        }
        AdminCommand::Transfers => {
            let v = client.get("/admin/transfers")?;
            print(&v, show::transfers(&v));
        }
        AdminCommand::TransferLimit { limit } => {
            let v = match limit {
                Some(n) => client.send("PUT", "/admin/transfer-limit", json!({ "limit": n }))?,
                None => client.get("/admin/transfer-limit")?,
            };
            print(&v, format!("Transfer limit: {}\n", v["limit"]));
        }
        AdminCommand::Down { node } => {
            let v = client.send("POST", "/admin/down", json!({ "node": node }))?;
            print(&v, format!("Success: {node:?} marked as down\n"));
        }
    }
    Ok(())
}

fn cluster(client: &Client, cmd: ClusterCommand) -> anyhow::Result<(Value, String)> {
    let stage = |path: &str, body: Value, what: String| -> anyhow::Result<(Value, String)> {
        let v = client.send("POST", path, body)?;
        Ok((v, format!("Success: {what}\n")))
    };
    match cmd {
        ClusterCommand::Join { target } => {
            let v = client.send("POST", "/admin/cluster/join", json!({ "target": target }))?;
            Ok((
                v,
                format!(
                    "Success: staged join request for {:?} to {target}\n",
                    client.node
                ),
            ))
        }
        ClusterCommand::Leave { node } => {
            let what = match &node {
                Some(n) => format!("{n:?} staged for leave"),
                None => format!("the node at {} staged for leave", client.node),
            };
            stage("/admin/cluster/leave", json!({ "node": node }), what)
        }
        ClusterCommand::ForceRemove { node } => stage(
            "/admin/cluster/force-remove",
            json!({ "node": node }),
            format!("{node:?} staged for removal"),
        ),
        ClusterCommand::Replace { node, with } => stage(
            "/admin/cluster/replace",
            json!({ "node": node, "with": with }),
            format!("{node:?} staged for replacement by {with:?}"),
        ),
        ClusterCommand::ForceReplace { node, with } => stage(
            "/admin/cluster/force-replace",
            json!({ "node": node, "with": with }),
            format!("{node:?} staged for forced replacement by {with:?}"),
        ),
        ClusterCommand::Plan => {
            let v = client.get("/admin/cluster/plan")?;
            let text = show::plan(&v);
            Ok((v, text))
        }
        ClusterCommand::Commit => {
            let v = client.send("POST", "/admin/cluster/commit", json!({}))?;
            Ok((v, "Cluster changes committed\n".into()))
        }
        ClusterCommand::Clear => {
            let v = client.send("POST", "/admin/cluster/clear", json!({}))?;
            Ok((v, "Cleared staged cluster changes\n".into()))
        }
        ClusterCommand::Status => {
            let v = client.get("/admin/cluster/status")?;
            let text = show::cluster_status(&v);
            Ok((v, text))
        }
    }
}

fn bucket_type(client: &Client, cmd: TypeCommand, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        TypeCommand::Create { name, props } => {
            let body = props.unwrap_or_else(|| "{\"props\":{}}".into());
            client.create_type(&name, &check_json(&body)?)?;
            println!("{name} created");
        }
        TypeCommand::Activate { name } => {
            client.activate_type(&name)?;
            println!("{name} has been activated");
        }
        TypeCommand::Update { name, props } => {
            let v = check_json(&props)?;
            client.send("PUT", &type_path(&name), v)?;
            println!("{name} updated");
        }
        TypeCommand::List => {
            let v = client.get(TYPES)?;
            if json_out {
                println!("{v}");
                return Ok(());
            }
            for (name, active) in type_list(&v) {
                let state = if active { "active" } else { "not active" };
                println!("{name} ({state})");
            }
        }
        TypeCommand::Status { name } => {
            let v = client.type_status(&name)?;
            if json_out {
                println!("{v}");
                return Ok(());
            }
            let state = if v["active"] == true {
                "active"
            } else {
                "not active"
            };
            println!("{name} is {state}\n");
            let lacking: Vec<&str> = v["lacking"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !lacking.is_empty() {
                println!("Not yet on: {}\n", lacking.join(", "));
            }
            for (k, val) in v["props"].as_object().into_iter().flatten() {
                println!("{k}: {val}");
            }
        }
    }
    Ok(())
}

/// The bucket-type admin endpoint.
const TYPES: &str = "/admin/bucket-types";

fn type_path(name: &str) -> String {
    format!("{TYPES}/{name}")
}

/// `(name, active)` of each type in the node's list.
fn type_list(v: &Value) -> Vec<(String, bool)> {
    v["types"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let name = t["name"].as_str().unwrap_or("?").to_owned();
            (name, t["active"] == true)
        })
        .collect()
}

fn check_json(body: &str) -> anyhow::Result<Value> {
    let v: Value =
        serde_json::from_str(body).context("properties must be JSON like '{\"props\":{...}}'")?;
    if !v.get("props").is_some_and(Value::is_object) {
        bail!("properties must be JSON like '{{\"props\":{{...}}}}'");
    }
    Ok(v)
}

/// The node's admin endpoints over HTTP (also used by `rill bench` to set up the bucket types
/// of its data-type operations).
pub(crate) struct Client {
    node: String,
    agent: ureq::Agent,
}

impl Client {
    pub(crate) fn new(node: &str) -> Client {
        Client {
            node: node.to_string(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(std::time::Duration::from_secs(120)))
                .build()
                .into(),
        }
    }

    /// Every bucket type, with whether it is active.
    pub(crate) fn list_types(&self) -> anyhow::Result<Vec<(String, bool)>> {
        Ok(type_list(&self.get(TYPES)?))
    }

    /// A bucket type's status: `active`, `props`, and the members `lacking` it.
    pub(crate) fn type_status(&self, name: &str) -> anyhow::Result<Value> {
        self.get(&type_path(name))
    }

    /// Creates a bucket type; `props` is `{"props":{...}}`.
    pub(crate) fn create_type(&self, name: &str, props: &Value) -> anyhow::Result<()> {
        self.send("POST", &type_path(name), props.clone()).map(drop)
    }

    /// Activates a created bucket type.
    pub(crate) fn activate_type(&self, name: &str) -> anyhow::Result<()> {
        self.send("POST", &format!("{}/activate", type_path(name)), json!({}))
            .map(drop)
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.expect(self.agent.get(&self.url(path)).call())
    }

    fn send(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = self.url(path);
        let text = body.to_string();
        let resp = match method {
            "PUT" => self
                .agent
                .put(&url)
                .content_type("application/json")
                .send(&text),
            _ => self
                .agent
                .post(&url)
                .content_type("application/json")
                .send(&text),
        };
        self.expect(resp)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node)
    }

    /// Checks the node's answer: a 2xx (with a JSON body when there is one) or its error message.
    fn expect(
        &self,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut resp = resp.with_context(|| format!("cannot reach the node at {}", self.node))?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if !status.is_success() {
            bail!("{} ({status})", text.trim());
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the node answered with malformed JSON")
    }
}
