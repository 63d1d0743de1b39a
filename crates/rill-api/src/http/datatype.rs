//! Data types over HTTP: `GET` and `POST /types/T/buckets/B/datatypes/K` (and `POST` without a
//! key), with Riak's JSON operations and responses.
//!
//! Operations: `{"increment": 5}` / `{"decrement": 2}` for counters; `{"add": m}`,
//! `{"add_all": [...]}`, `{"remove": m}`, `{"remove_all": [...]}` for sets (HLLs and gsets take
//! the adds); for maps `{"update": {"name_register": "x", "n_counter": {"increment": 1},
//! "on_flag": "enable", "tags_set": {...}, "inner_map": {...}}, "remove": ["old_set"]}`, where a
//! field's name ends in `_` and its type. `"context"` carries the opaque context of a fetch.
//! Responses: `{"type": "set", "value": [...], "context": "..."}`.

use axum::extract::Request;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use rill_core::bkey::BKey;
use rill_core::crdt::{
    Context, DtValue, Fetched, FieldKey, FieldKind, FieldOp, FieldView, MapOp, Op, SetOp,
};
use rill_core::props::Datatype;
use rill_node::request::{DtFetchOptions, DtUpdateOptions, DtUpdateRequest};
use serde_json::{Map, Value, json};

use super::object::{bucket_path, enc};
use super::params::Params;
use super::route::BucketRef;
use super::{Api, HttpError, bucket_of, respond};

/// The read options of a data-type fetch, from the query string.
fn fetch_options(params: &Params) -> Result<DtFetchOptions, HttpError> {
    Ok(DtFetchOptions {
        r: params.quorum("r")?,
        pr: params.quorum("pr")?,
        basic_quorum: params.flag("basic_quorum")?,
        notfound_ok: params.flag("notfound_ok")?,
        n_val: n_val(params)?,
        timeout: params.timeout()?,
    })
}

/// `GET .../datatypes/K`: 200 with the value, or 404 with the type.
pub(crate) async fn fetch(
    api: &Api,
    bref: &BucketRef,
    key: Bytes,
    params: &Params,
) -> Result<Response, HttpError> {
    let bkey = BKey::new(bucket_of(bref)?, key).map_err(bad)?;
    let opts = fetch_options(params)?;
    let include_context = params.flag("include_context")?.unwrap_or(true);
    match api.node.dt_fetch(&bkey, &opts).await? {
        (_, Some(state)) => Ok(json_response(
            StatusCode::OK,
            &value_json(&state, include_context),
        )),
        (dt, None) => Ok(json_response(
            StatusCode::NOT_FOUND,
            &json!({"type": dt.as_str(), "error": "notfound"}),
        )),
    }
}

/// `POST .../datatypes[/K]`: 204, or 200 with the new value (`returnbody=true`); 201 with a
/// Location and the value when the server chose the key.
pub(crate) async fn update(
    api: &Api,
    bref: &BucketRef,
    key: Option<Bytes>,
    params: &Params,
    req: Request,
) -> Result<Response, HttpError> {
    let bucket = bucket_of(bref)?;
    let dt = api
        .node
        .metadata()
        .bucket_props(&bucket)?
        .datatype
        .ok_or_else(|| {
            HttpError::bad_request("Bucket datatype `undefined` is not a supported type")
        })?;
    let raw = axum::body::to_bytes(req.into_body(), api.config.max_body)
        .await
        .map_err(|_| HttpError::status(StatusCode::PAYLOAD_TOO_LARGE, "Operation too large"))?;
    let body: Value = serde_json::from_slice(&raw)
        .map_err(|e| HttpError::bad_request(format!("invalid JSON operation: {e}")))?;
    let context = match body.get("context") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            let raw = B64
                .decode(s)
                .map_err(|_| HttpError::bad_request("the update context is invalid"))?;
            Some(Context::from_bytes(&raw).map_err(rill_node::NodeError::from)?)
        }
        Some(_) => return Err(HttpError::bad_request("context must be a string")),
    };
    let generated = key.is_none();
    let key = key.unwrap_or_else(|| api.node.generate_key());
    let req = DtUpdateRequest {
        bkey: BKey::new(bucket, key).map_err(bad)?,
        op: op_for(dt, &body)?,
        context,
    };
    let return_body = params.flag("returnbody")?.unwrap_or(false) || generated;
    let opts = DtUpdateOptions {
        w: params.quorum("w")?,
        dw: params.quorum("dw")?,
        pw: params.quorum("pw")?,
        n_val: n_val(params)?,
        return_body,
        timeout: params.timeout()?,
    };
    let include_context = params.flag("include_context")?.unwrap_or(true);
    let state = api.node.dt_update(&req, &opts).await?;
    let status = if generated {
        StatusCode::CREATED
    } else if state.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    };
    let mut resp = match &state {
        Some(state) => json_response(status, &value_json(state, include_context)),
        None => Response::builder()
            .status(status)
            .body(axum::body::Body::empty())
            .expect("valid"),
    };
    if generated {
        let location = format!(
            "{}/datatypes/{}",
            bucket_path(bref.family, &req.bkey.bucket),
            enc(&req.bkey.key)
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(resp)
}

/// `GET /buckets/B/counters/K`: the value as text, or 404.
pub(crate) async fn counter_get(
    api: &Api,
    bref: &BucketRef,
    key: Bytes,
    params: &Params,
) -> Result<Response, HttpError> {
    let bkey = BKey::new(bucket_of(bref)?, key).map_err(bad)?;
    let opts = fetch_options(params)?;
    match api.node.counter_fetch(&bkey, &opts).await? {
        Some(n) => Ok(respond(StatusCode::OK, "text/plain", n.to_string())),
        None => Err(HttpError::status(StatusCode::NOT_FOUND, "not found")),
    }
}

/// `POST /buckets/B/counters/K` with the amount as the body: 204, or 200 with the new value
/// (`returnvalue=true`).
pub(crate) async fn counter_update(
    api: &Api,
    bref: &BucketRef,
    key: Bytes,
    params: &Params,
    req: Request,
) -> Result<Response, HttpError> {
    let bkey = BKey::new(bucket_of(bref)?, key).map_err(bad)?;
    let raw = axum::body::to_bytes(req.into_body(), 64)
        .await
        .map_err(|_| HttpError::bad_request("a counter amount is an integer"))?;
    let amount: i64 = std::str::from_utf8(&raw)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| HttpError::bad_request("a counter amount is an integer"))?;
    let opts = DtUpdateOptions {
        w: params.quorum("w")?,
        dw: params.quorum("dw")?,
        pw: params.quorum("pw")?,
        n_val: n_val(params)?,
        return_body: params.flag("returnvalue")?.unwrap_or(false),
        timeout: params.timeout()?,
    };
    Ok(match api.node.counter_update(&bkey, amount, &opts).await? {
        Some(n) => respond(StatusCode::OK, "text/plain", n.to_string()),
        None => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(axum::body::Body::empty())
            .expect("valid"),
    })
}

fn n_val(params: &Params) -> Result<Option<u32>, HttpError> {
    params
        .get("n_val")
        .map(|v| {
            v.parse()
                .map_err(|_| HttpError::bad_request(format!("invalid n_val {v}")))
        })
        .transpose()
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    respond(status, "application/json", v.to_string())
}

fn bad(e: impl std::fmt::Display) -> HttpError {
    HttpError::bad_request(e.to_string())
}

fn op_err(msg: impl Into<String>) -> HttpError {
    HttpError::bad_request(msg)
}

/// The operation a JSON body describes for a bucket of type `dt`.
fn op_for(dt: Datatype, body: &Value) -> Result<Op, HttpError> {
    Ok(match dt {
        Datatype::Counter => Op::Counter(counter_op(body)?),
        Datatype::Set => Op::Set(set_op(body)?),
        Datatype::Map => Op::Map(map_op(body)?),
        Datatype::Hll => Op::Hll(set_op(body)?.adds),
        Datatype::Gset => Op::Gset(set_op(body)?.adds),
    })
}

fn counter_op(v: &Value) -> Result<i64, HttpError> {
    let amount = |v: &Value| {
        v.as_i64()
            .ok_or_else(|| op_err("counter amounts are integers"))
    };
    match v {
        Value::Number(_) => amount(v),
        Value::String(s) if s == "increment" => Ok(1),
        Value::String(s) if s == "decrement" => Ok(-1),
        Value::Object(o) => match (o.get("increment"), o.get("decrement")) {
            (Some(n), None) => amount(n),
            (None, Some(n)) => amount(n).map(|n| -n),
            _ => Err(op_err(
                "a counter operation is {\"increment\": N} or {\"decrement\": N}",
            )),
        },
        _ => Err(op_err(
            "a counter operation is {\"increment\": N} or {\"decrement\": N}",
        )),
    }
}

fn member(v: &Value) -> Result<Bytes, HttpError> {
    v.as_str()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .ok_or_else(|| op_err("set members are strings"))
}

fn members(v: &Value) -> Result<Vec<Bytes>, HttpError> {
    v.as_array()
        .ok_or_else(|| op_err("add_all and remove_all take a list"))?
        .iter()
        .map(member)
        .collect()
}

fn set_op(v: &Value) -> Result<SetOp, HttpError> {
    let o = v.as_object().ok_or_else(|| {
        op_err("a set operation is an object of add, add_all, remove, remove_all")
    })?;
    let mut op = SetOp::default();
    for (k, v) in o {
        match k.as_str() {
            "add" => op.adds.push(member(v)?),
            "add_all" => op.adds.extend(members(v)?),
            "remove" => op.removes.push(member(v)?),
            "remove_all" => op.removes.extend(members(v)?),
            "context" => {}
            other => return Err(op_err(format!("unknown set operation {other:?}"))),
        }
    }
    Ok(op)
}

/// `name_type` → field key.
fn field_key(s: &str) -> Result<FieldKey, HttpError> {
    let (name, kind) = s
        .rsplit_once('_')
        .ok_or_else(|| op_err(format!("map field {s:?} does not end in _TYPE")))?;
    let kind = [
        FieldKind::Counter,
        FieldKind::Set,
        FieldKind::Register,
        FieldKind::Flag,
        FieldKind::Map,
    ]
    .into_iter()
    .find(|k| k.suffix() == kind)
    .ok_or_else(|| op_err(format!("map field {s:?} has an unknown type")))?;
    Ok(FieldKey::new(Bytes::copy_from_slice(name.as_bytes()), kind))
}

fn map_op(v: &Value) -> Result<MapOp, HttpError> {
    let o = v
        .as_object()
        .ok_or_else(|| op_err("a map operation is an object of update, remove"))?;
    let mut op = MapOp::default();
    for (k, v) in o {
        match k.as_str() {
            "remove" => {
                let list = match v {
                    Value::Array(a) => a.iter().collect(),
                    one => vec![one],
                };
                for f in list {
                    op.removes.push(field_key(
                        f.as_str()
                            .ok_or_else(|| op_err("field names are strings"))?,
                    )?);
                }
            }
            "update" => {
                let updates = v
                    .as_object()
                    .ok_or_else(|| op_err("update takes an object"))?;
                for (f, fop) in updates {
                    let key = field_key(f)?;
                    let fop = field_op(key.kind, fop)?;
                    op.updates.push((key, fop));
                }
            }
            // Adding a field is updating it with nothing (Riak 2 maps create fields on update).
            "add" => {
                let list = match v {
                    Value::Array(a) => a.iter().collect(),
                    one => vec![one],
                };
                for f in list {
                    let key = field_key(
                        f.as_str()
                            .ok_or_else(|| op_err("field names are strings"))?,
                    )?;
                    let fop = match key.kind {
                        FieldKind::Counter => FieldOp::Counter(0),
                        FieldKind::Set => FieldOp::Set(SetOp::default()),
                        FieldKind::Map => FieldOp::Map(MapOp::default()),
                        FieldKind::Flag => FieldOp::Flag(false),
                        FieldKind::Register => {
                            return Err(op_err("a register is added by assigning it"));
                        }
                    };
                    op.updates.push((key, fop));
                }
            }
            "context" => {}
            other => return Err(op_err(format!("unknown map operation {other:?}"))),
        }
    }
    Ok(op)
}

fn field_op(kind: FieldKind, v: &Value) -> Result<FieldOp, HttpError> {
    Ok(match kind {
        FieldKind::Counter => FieldOp::Counter(counter_op(v)?),
        FieldKind::Set => FieldOp::Set(set_op(v)?),
        FieldKind::Register => FieldOp::Register(match v {
            Value::Object(o) if o.contains_key("assign") => member(&o["assign"])?,
            v => member(v).map_err(|_| op_err("a register takes a string"))?,
        }),
        FieldKind::Flag => match v.as_str() {
            Some("enable") => FieldOp::Flag(true),
            Some("disable") => FieldOp::Flag(false),
            _ => return Err(op_err("a flag operation is \"enable\" or \"disable\"")),
        },
        FieldKind::Map => FieldOp::Map(map_op(v)?),
    })
}

fn text(b: &Bytes) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

/// Riak's JSON for a state: type, value, and (sets and maps) the context.
fn value_json(state: &Fetched, include_context: bool) -> Value {
    let value = match state.value() {
        DtValue::Counter(n) => json!(n),
        DtValue::Set(m) | DtValue::Gset(m) => Value::Array(m.iter().map(text).collect()),
        DtValue::Map(fields) => map_json(fields),
        DtValue::Hll(n) => json!(n),
    };
    let mut out = Map::new();
    out.insert("type".into(), state.datatype().as_str().into());
    out.insert("value".into(), value);
    if include_context && let Some(ctx) = state.context() {
        out.insert("context".into(), B64.encode(ctx.to_bytes()).into());
    }
    Value::Object(out)
}

fn map_json(fields: Vec<(FieldKey, FieldView)>) -> Value {
    let mut out = Map::new();
    for (key, view) in fields {
        let name = format!(
            "{}_{}",
            String::from_utf8_lossy(&key.name),
            key.kind.suffix()
        );
        let v = match view {
            FieldView::Counter(n) => json!(n),
            FieldView::Set(m) => Value::Array(m.iter().map(text).collect()),
            FieldView::Register(r) => text(&r),
            FieldView::Flag(f) => json!(f),
            FieldView::Map(inner) => map_json(inner),
        };
        out.insert(name, v);
    }
    Value::Object(out)
}
