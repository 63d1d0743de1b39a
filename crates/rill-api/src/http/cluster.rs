//! Cluster administration over HTTP, for `rill admin cluster …`, `member-status`,
//! `ring-status`, `transfers`, `transfer-limit` and `down`. Every answer is JSON; the command
//! line turns it into Riak's tables. Served only to loopback peers unless configured otherwise.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::response::Response;
use http::{Method, StatusCode};
use rill_core::cluster::Change;
use rill_core::ring::NodeName;
use serde_json::{Value, json};

use super::{Api, HttpError, body, respond};

/// Riak's default internode (handoff) port, used when a target is given as a node name.
const DEFAULT_INTERNODE_PORT: u16 = 8099;

pub(crate) async fn handle(
    api: &Api,
    op: &str,
    method: Method,
    req: Request,
) -> Result<Response, HttpError> {
    let node = &api.node;
    let body = match method {
        Method::POST | Method::PUT => json_body(api, req).await?,
        _ => Value::Null,
    };
    let answer: Value = match (op, method) {
        ("cluster/join", Method::POST) => {
            let target = resolve_target(str_field(&body, "target")?).await?;
            node.join(target).await?;
            json!({ "joined": target.to_string() })
        }
        ("cluster/leave", Method::POST) => {
            let who = opt_node(&body, "node").unwrap_or_else(|| node.name().clone());
            staged(node.stage(Change::Leave(who)).await?)
        }
        ("cluster/force-remove", Method::POST) => staged(
            node.stage(Change::ForceRemove(node_field(&body, "node")?))
                .await?,
        ),
        ("cluster/replace", Method::POST) => staged(
            node.stage(Change::Replace {
                node: node_field(&body, "node")?,
                with: node_field(&body, "with")?,
            })
            .await?,
        ),
        ("cluster/force-replace", Method::POST) => staged(
            node.stage(Change::ForceReplace {
                node: node_field(&body, "node")?,
                with: node_field(&body, "with")?,
            })
            .await?,
        ),
        ("cluster/plan", Method::GET) => serde_json::to_value(node.plan().await?).expect("json"),
        ("cluster/commit", Method::POST) => {
            node.commit_plan().await?;
            json!({ "committed": true })
        }
        ("cluster/clear", Method::POST) => {
            node.clear_staged().await?;
            json!({ "cleared": true })
        }
        ("cluster/status", Method::GET) => {
            serde_json::to_value(node.cluster_status().await?).expect("json")
        }
        ("member-status", Method::GET) => serde_json::to_value(node.member_status()).expect("json"),
        ("ring-status", Method::GET) => serde_json::to_value(node.ring_status()).expect("json"),
        ("transfers", Method::GET) => {
            serde_json::to_value(node.transfers_report().await).expect("json")
        }
        ("transfer-limit", Method::GET) => json!({ "limit": node.transfer_limit() }),
        ("transfer-limit", Method::PUT) => {
            let limit = body
                .get("limit")
                .and_then(Value::as_u64)
                .ok_or_else(|| HttpError::bad_request("expected {\"limit\": N}"))?;
            node.set_transfer_limit(limit as usize);
            json!({ "limit": node.transfer_limit() })
        }
        ("down", Method::POST) => {
            let who = node_field(&body, "node")?;
            node.mark_down(&who).await?;
            json!({ "down": who.to_string() })
        }
        (op, _) if is_known(op) => {
            return Err(HttpError::status(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
            ));
        }
        _ => return Err(HttpError::status(StatusCode::NOT_FOUND, "not found")),
    };
    Ok(respond(
        StatusCode::OK,
        "application/json",
        answer.to_string(),
    ))
}

fn is_known(op: &str) -> bool {
    matches!(
        op,
        "cluster/join"
            | "cluster/leave"
            | "cluster/force-remove"
            | "cluster/replace"
            | "cluster/force-replace"
            | "cluster/plan"
            | "cluster/commit"
            | "cluster/clear"
            | "cluster/status"
            | "member-status"
            | "ring-status"
            | "transfers"
            | "transfer-limit"
            | "down"
    )
}

fn staged(changes: Vec<Change>) -> Value {
    json!({ "staged": changes })
}

async fn json_body(api: &Api, req: Request) -> Result<Value, HttpError> {
    let raw = body::read(api, req, 64 * 1024).await?;
    if raw.bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&raw.bytes)
        .map_err(|e| HttpError::bad_request(format!("malformed JSON: {e}")))
}

fn str_field<'a>(body: &'a Value, name: &str) -> Result<&'a str, HttpError> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| HttpError::bad_request(format!("missing \"{name}\"")))
}

fn node_field(body: &Value, name: &str) -> Result<NodeName, HttpError> {
    str_field(body, name).map(NodeName::from)
}

fn opt_node(body: &Value, name: &str) -> Option<NodeName> {
    str_field(body, name).ok().map(NodeName::from)
}

/// A join target: a node name (`dev1@10.0.0.1`, reached at the host after `@` on Riak's
/// default internode port) or an internode address (`HOST:PORT`).
async fn resolve_target(target: &str) -> Result<SocketAddr, HttpError> {
    let (host, port) = match target.rsplit_once('@') {
        Some((_, host)) => (host.to_string(), DEFAULT_INTERNODE_PORT),
        None => match target.rsplit_once(':') {
            Some((host, port)) => {
                let port = port.parse::<u16>().map_err(|_| {
                    HttpError::bad_request(format!("{target}: not a NAME@HOST or HOST:PORT"))
                })?;
                (host.trim_matches(['[', ']']).to_string(), port)
            }
            None => {
                return Err(HttpError::bad_request(format!(
                    "{target}: not a NAME@HOST or HOST:PORT"
                )));
            }
        },
    };
    let mut addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| HttpError::bad_request(format!("cannot resolve {host}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| HttpError::bad_request(format!("{host} resolves to no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn targets_are_names_or_addresses() {
        assert_eq!(
            resolve_target("dev1@127.0.0.1").await.unwrap(),
            "127.0.0.1:8099".parse().unwrap()
        );
        assert_eq!(
            resolve_target("127.0.0.1:10019").await.unwrap(),
            "127.0.0.1:10019".parse().unwrap()
        );
        assert_eq!(
            resolve_target("[::1]:7").await.unwrap(),
            "[::1]:7".parse().unwrap()
        );
        for bad in ["nonsense", "host:port", ""] {
            assert!(resolve_target(bad).await.is_err(), "{bad}");
        }
    }
}
