//! Administration over HTTP, for `rill admin`: bucket types (create, activate, update, list,
//! status). Served only to loopback peers unless the node is configured otherwise, because
//! Riak's equivalents are operator commands, not client API.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{Method, StatusCode};
use rill_node::metadata::TypeStatus;
use serde_json::{Value, json};

use super::bucket::props_body;
use super::{Api, HttpError, respond};

pub(crate) async fn handle(
    api: &Api,
    name: Option<String>,
    activate: bool,
    method: Method,
    req: Request,
) -> Result<Response, HttpError> {
    let meta = api.node.metadata();
    match (name, activate, method) {
        (None, false, Method::GET) => {
            let types: Vec<Value> = meta
                .list_types()
                .into_iter()
                .map(|(n, s)| json!({ "name": n, "active": s == TypeStatus::Active }))
                .collect();
            Ok(respond(
                StatusCode::OK,
                "application/json",
                json!({ "types": types }).to_string(),
            ))
        }
        (Some(name), false, Method::GET) => {
            let (props, status) = meta.type_props(&name)?;
            let body = json!({ "name": name, "active": status == TypeStatus::Active, "props": props.to_json(None)["props"] });
            Ok(respond(
                StatusCode::OK,
                "application/json",
                body.to_string(),
            ))
        }
        (Some(name), false, Method::POST) => {
            let patch = props_body(req).await?;
            meta.create_type(&name, &patch)?;
            Ok(respond(StatusCode::CREATED, "text/plain", Body::empty()))
        }
        (Some(name), false, Method::PUT) => {
            let patch = props_body(req).await?;
            meta.update_type(&name, &patch)?;
            Ok(respond(StatusCode::NO_CONTENT, "text/plain", Body::empty()))
        }
        (Some(name), true, Method::POST) => {
            meta.activate_type(&name)?;
            Ok(respond(StatusCode::NO_CONTENT, "text/plain", Body::empty()))
        }
        _ => Err(HttpError::status(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        )),
    }
}
