//! Administration over HTTP, for `rill admin`: bucket types (create, activate, update, list,
//! status) and, in test builds, fault-injection points. Served only to loopback peers unless the
//! node is configured otherwise, because Riak's equivalents are operator commands, not client API.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{Method, StatusCode};
use rill_node::metadata::TypeStatus;
use serde_json::{Value, json};

#[cfg(feature = "failpoints")]
use super::body;
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
            let lacking: Vec<String> = api
                .node
                .members_lacking_type(&name)
                .await
                .iter()
                .map(ToString::to_string)
                .collect();
            let body = json!({
                "name": name,
                "active": status == TypeStatus::Active,
                "props": props.to_json(None)["props"],
                "lacking": lacking,
            });
            Ok(respond(
                StatusCode::OK,
                "application/json",
                body.to_string(),
            ))
        }
        (Some(name), false, Method::POST) => {
            let patch = props_body(api, req).await?;
            meta.create_type(&name, &patch)?;
            Ok(respond(StatusCode::CREATED, "text/plain", Body::empty()))
        }
        (Some(name), false, Method::PUT) => {
            let patch = props_body(api, req).await?;
            meta.update_type(&name, &patch)?;
            Ok(respond(StatusCode::NO_CONTENT, "text/plain", Body::empty()))
        }
        (Some(name), true, Method::POST) => {
            api.node.activate_type(&name).await?;
            Ok(respond(StatusCode::NO_CONTENT, "text/plain", Body::empty()))
        }
        _ => Err(HttpError::status(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        )),
    }
}

/// `PUT /admin/failpoints/NAME` with an action (`return`, `2*return`, `off`, ...) in the body;
/// `DELETE` removes it. Only in builds with the `failpoints` feature (tests).
#[cfg(feature = "failpoints")]
pub(crate) async fn failpoint(
    api: &Api,
    name: &str,
    method: Method,
    req: Request,
) -> Result<Response, HttpError> {
    match method {
        Method::PUT => {
            let raw = body::read(api, req, 4096).await?;
            let action = String::from_utf8_lossy(&raw.bytes);
            fail::cfg(name, action.trim()).map_err(HttpError::bad_request)?;
            Ok(respond(StatusCode::NO_CONTENT, "text/plain", Body::empty()))
        }
        Method::DELETE => {
            fail::remove(name);
            Ok(respond(StatusCode::NO_CONTENT, "text/plain", Body::empty()))
        }
        _ => Err(HttpError::status(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        )),
    }
}

/// Without the `failpoints` feature there are no fault-injection points to set.
#[cfg(not(feature = "failpoints"))]
pub(crate) async fn failpoint(
    _: &Api,
    _: &str,
    _: Method,
    _: Request,
) -> Result<Response, HttpError> {
    Err(HttpError::status(
        StatusCode::NOT_FOUND,
        "this build has no fault-injection points (build with --features failpoints)",
    ))
}
