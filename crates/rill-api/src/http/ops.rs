//! Operational endpoints: `/ping`, `/stats` and the resource map at `/`.

use axum::extract::Request;
use axum::response::Response;
use http::{StatusCode, header};
use serde_json::{Map, Value, json};

use super::{Api, respond};
use crate::{RIAK_API_VERSION, RILL_VERSION};

/// `GET /ping` → `OK`.
pub(crate) fn ping() -> Response {
    respond(StatusCode::OK, "text/plain", "OK")
}

/// `GET /stats`: the node's statistics under Riak's names, plus what clients read to detect
/// features (`riak_kv_version`).
pub(crate) fn stats(api: &Api) -> Response {
    let node = &api.node;
    let mut m = Map::new();
    m.insert("nodename".into(), node.name().to_string().into());
    m.insert("riak_kv_version".into(), RIAK_API_VERSION.into());
    m.insert("rill_version".into(), RILL_VERSION.into());
    m.insert("storage_backend".into(), node.backend_name().into());
    node.cluster_report(&mut m);
    node.stats().report(&mut m);
    node.memory_report(&mut m);
    api.config.clients.report(&mut m);
    respond(
        StatusCode::OK,
        "application/json",
        Value::Object(m).to_string(),
    )
}

/// The resources Riak lists at `/`: clients use it to pick URL schemes and features.
const RESOURCES: &[(&str, &str)] = &[
    ("riak_kv_wm_bucket_type", "/types"),
    ("riak_kv_wm_buckets", "/buckets"),
    ("riak_kv_wm_counter", "/buckets"),
    ("riak_kv_wm_index", "/buckets"),
    ("riak_kv_wm_keylist", "/buckets"),
    ("riak_kv_wm_link_walker", "/riak"),
    ("riak_kv_wm_mapred", "/mapred"),
    ("riak_kv_wm_object", "/buckets"),
    ("riak_kv_wm_ping", "/ping"),
    ("riak_kv_wm_preflist", "/buckets"),
    ("riak_kv_wm_props", "/buckets"),
    ("riak_kv_wm_raw", "/riak"),
    ("riak_kv_wm_stats", "/stats"),
];

/// `GET /`: JSON when the client accepts it, else a page of links.
pub(crate) fn resource_map(req: &Request) -> Response {
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        let map: Map<String, Value> = RESOURCES
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        return respond(
            StatusCode::OK,
            "application/json",
            Value::Object(map).to_string(),
        );
    }
    let mut html = String::from("<html><body><ul>");
    for (name, path) in RESOURCES {
        html.push_str(&format!("<li><a href=\"{path}\">{name}</a></li>"));
    }
    html.push_str("</ul></body></html>");
    respond(StatusCode::OK, "text/html", html)
}
