//! `rill admin`: operator commands against a running node, through its loopback-only admin
//! endpoints — today the `bucket-type` family of `riak admin`.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The node's HTTP address.
    #[arg(long, env = "RILL_NODE", default_value = "127.0.0.1:8098")]
    node: String,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Bucket types: create, activate, update, list, status.
    #[command(name = "bucket-type", subcommand)]
    BucketType(TypeCommand),
}

#[derive(Subcommand, Debug)]
enum TypeCommand {
    /// Create a bucket type: `create NAME '{"props":{...}}'` (props optional).
    Create { name: String, props: Option<String> },
    /// Activate a created bucket type.
    Activate { name: String },
    /// Change a bucket type's properties: `update NAME '{"props":{...}}'`.
    Update { name: String, props: String },
    /// List bucket types and whether each is active.
    List,
    /// Show a bucket type's status and properties.
    Status { name: String },
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let base = format!("http://{}/admin/bucket-types", args.node);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let AdminCommand::BucketType(cmd) = args.command;
    match cmd {
        TypeCommand::Create { name, props } => {
            let body = props.unwrap_or_else(|| "{\"props\":{}}".into());
            check_json(&body)?;
            let resp = agent
                .post(&format!("{base}/{name}"))
                .content_type("application/json")
                .send(&body);
            expect(resp, &args.node)?;
            println!("{name} created");
        }
        TypeCommand::Activate { name } => {
            expect(
                agent.post(&format!("{base}/{name}/activate")).send_empty(),
                &args.node,
            )?;
            println!("{name} has been activated");
        }
        TypeCommand::Update { name, props } => {
            check_json(&props)?;
            let resp = agent
                .put(&format!("{base}/{name}"))
                .content_type("application/json")
                .send(&props);
            expect(resp, &args.node)?;
            println!("{name} updated");
        }
        TypeCommand::List => {
            let v = expect(agent.get(&base).call(), &args.node)?;
            for t in v["types"].as_array().into_iter().flatten() {
                let state = if t["active"] == true {
                    "active"
                } else {
                    "not active"
                };
                println!("{} ({state})", t["name"].as_str().unwrap_or("?"));
            }
        }
        TypeCommand::Status { name } => {
            let v = expect(agent.get(&format!("{base}/{name}")).call(), &args.node)?;
            let state = if v["active"] == true {
                "active"
            } else {
                "not active"
            };
            println!("{name} is {state}\n");
            for (k, val) in v["props"].as_object().into_iter().flatten() {
                println!("{k}: {val}");
            }
        }
    }
    Ok(())
}

fn check_json(body: &str) -> anyhow::Result<()> {
    let v: Value =
        serde_json::from_str(body).context("properties must be JSON like '{\"props\":{...}}'")?;
    if !v.get("props").is_some_and(Value::is_object) {
        bail!("properties must be JSON like '{{\"props\":{{...}}}}'");
    }
    Ok(())
}

/// Checks the node's answer: a 2xx (with a JSON body when there is one) or its error message.
fn expect(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    node: &str,
) -> anyhow::Result<Value> {
    let mut resp = resp.with_context(|| format!("cannot reach the node at {node}"))?;
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
