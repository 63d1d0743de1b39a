//! Riak's data-type messages (`DtFetchReq`/`DtUpdateReq` and their responses) to and from the
//! core's operations and values.

use bytes::Bytes;
use rill_core::crdt::{
    Context, DtValue, Fetched, FieldKey, FieldKind, FieldOp, FieldView, MapOp, Op, SetOp,
};
use rill_core::props::Datatype;
use rill_node::error::NodeError;

use super::riak::{
    self, DtOp, DtUpdateResp, DtValue as PbValue, MapEntry, MapField, MapUpdate,
    dt_fetch_resp::DataType, map_field::MapFieldType, map_update::FlagOp,
};

/// The operation a `DtOp` carries (exactly one of its fields should be set).
pub(crate) fn op_from_pb(op: DtOp) -> Result<Op, NodeError> {
    Ok(if let Some(c) = op.counter_op {
        Op::Counter(c.increment.unwrap_or(1))
    } else if let Some(s) = op.set_op {
        Op::Set(set_op(s))
    } else if let Some(m) = op.map_op {
        Op::Map(map_op(m)?)
    } else if let Some(h) = op.hll_op {
        Op::Hll(h.adds)
    } else if let Some(g) = op.gset_op {
        Op::Gset(g.adds)
    } else {
        return Err(NodeError::BadRequest("DtOp carries no operation".into()));
    })
}

fn set_op(s: riak::SetOp) -> SetOp {
    SetOp {
        adds: s.adds,
        removes: s.removes,
    }
}

fn map_op(m: riak::MapOp) -> Result<MapOp, NodeError> {
    Ok(MapOp {
        removes: m
            .removes
            .into_iter()
            .map(field_key)
            .collect::<Result<_, _>>()?,
        updates: m
            .updates
            .into_iter()
            .map(map_update)
            .collect::<Result<_, _>>()?,
    })
}

fn field_key(f: MapField) -> Result<FieldKey, NodeError> {
    let kind = u8::try_from(f.r#type)
        .ok()
        .and_then(FieldKind::from_code)
        .ok_or_else(|| NodeError::BadRequest(format!("unknown map field type {}", f.r#type)))?;
    Ok(FieldKey::new(f.name, kind))
}

fn map_update(u: MapUpdate) -> Result<(FieldKey, FieldOp), NodeError> {
    let key = field_key(u.field)?;
    let missing = || {
        NodeError::BadRequest(format!(
            "MapUpdate of {} field {:?} has no {}_op",
            key.kind.suffix(),
            String::from_utf8_lossy(&key.name),
            key.kind.suffix()
        ))
    };
    let op = match key.kind {
        FieldKind::Counter => {
            FieldOp::Counter(u.counter_op.ok_or_else(missing)?.increment.unwrap_or(1))
        }
        FieldKind::Set => FieldOp::Set(set_op(u.set_op.ok_or_else(missing)?)),
        FieldKind::Register => FieldOp::Register(u.register_op.ok_or_else(missing)?),
        FieldKind::Flag => match u.flag_op.map(FlagOp::try_from) {
            Some(Ok(FlagOp::Enable)) => FieldOp::Flag(true),
            Some(Ok(FlagOp::Disable)) => FieldOp::Flag(false),
            _ => return Err(missing()),
        },
        FieldKind::Map => FieldOp::Map(map_op(u.map_op.ok_or_else(missing)?)?),
    };
    Ok((key, op))
}

/// The client's context bytes; empty means none, as Riak treats it.
pub(crate) fn context_from_pb(raw: Option<Bytes>) -> Result<Option<Context>, NodeError> {
    match raw {
        Some(raw) if !raw.is_empty() => Ok(Some(Context::from_bytes(&raw)?)),
        _ => Ok(None),
    }
}

pub(crate) fn data_type(dt: Datatype) -> DataType {
    match dt {
        Datatype::Counter => DataType::Counter,
        Datatype::Set => DataType::Set,
        Datatype::Map => DataType::Map,
        Datatype::Hll => DataType::Hll,
        Datatype::Gset => DataType::Gset,
    }
}

pub(crate) fn value_to_pb(state: &Fetched) -> PbValue {
    let mut v = PbValue::default();
    match state.value() {
        DtValue::Counter(n) => v.counter_value = Some(n),
        DtValue::Set(members) => v.set_value = members,
        DtValue::Map(fields) => v.map_value = entries(fields),
        DtValue::Hll(n) => v.hll_value = Some(n),
        DtValue::Gset(members) => v.gset_value = members,
    }
    v
}

/// The context to hand back, when the type has one and the client wants it.
pub(crate) fn context_to_pb(state: &Fetched, include: bool) -> Option<Bytes> {
    include
        .then(|| state.context())
        .flatten()
        .map(|c| c.to_bytes())
}

pub(crate) fn update_resp(
    key: Option<Bytes>,
    state: Option<&Fetched>,
    include_ctx: bool,
) -> DtUpdateResp {
    let mut resp = DtUpdateResp {
        key,
        ..DtUpdateResp::default()
    };
    if let Some(state) = state {
        let v = value_to_pb(state);
        resp.context = context_to_pb(state, include_ctx);
        resp.counter_value = v.counter_value;
        resp.set_value = v.set_value;
        resp.map_value = v.map_value;
        resp.hll_value = v.hll_value;
        resp.gset_value = v.gset_value;
    }
    resp
}

fn entries(fields: Vec<(FieldKey, FieldView)>) -> Vec<MapEntry> {
    fields
        .into_iter()
        .map(|(key, view)| {
            let mut e = MapEntry {
                field: MapField {
                    name: key.name,
                    r#type: field_type(key.kind) as i32,
                },
                ..MapEntry::default()
            };
            match view {
                FieldView::Counter(n) => e.counter_value = Some(n),
                FieldView::Set(members) => e.set_value = members,
                FieldView::Register(v) => e.register_value = Some(v),
                FieldView::Flag(f) => e.flag_value = Some(f),
                FieldView::Map(inner) => e.map_value = entries(inner),
            }
            e
        })
        .collect()
}

fn field_type(kind: FieldKind) -> MapFieldType {
    match kind {
        FieldKind::Counter => MapFieldType::Counter,
        FieldKind::Set => MapFieldType::Set,
        FieldKind::Register => MapFieldType::Register,
        FieldKind::Flag => MapFieldType::Flag,
        FieldKind::Map => MapFieldType::Map,
    }
}
