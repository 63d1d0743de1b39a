//! Conversions between Riak PB messages and the node's types: contents, quorum values, bucket
//! properties, preference lists.

use bytes::Bytes;
use rill_core::object::{Content, Link, Metadata, RiakObject};
use rill_core::props::{BucketProps, Quorum};
use rill_core::ring::PreflistEntry;
use serde_json::{Map, Value, json};

use super::riak::{
    RpbBucketKeyPreflistItem, RpbBucketProps, RpbCommitHook, RpbContent, RpbLink, RpbModFun,
    RpbPair,
};

/// A PB content as the node's content (a fresh write: the caller supplies vtag and time).
/// Fails, with the reason, when an index entry is invalid.
pub(crate) fn content_from_pb(c: RpbContent, vtag: Bytes, now_us: u64) -> Result<Content, String> {
    let mut indexes = c
        .indexes
        .into_iter()
        .map(|p| index_entry(p.key, p.value.unwrap_or_default()))
        .collect::<Result<Vec<_>, _>>()?;
    indexes.sort();
    indexes.dedup();
    Ok(Content {
        meta: Metadata {
            content_type: c
                .content_type
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| Bytes::from_static(b"application/octet-stream")),
            charset: c.charset,
            content_encoding: c.content_encoding,
            vtag,
            last_modified_us: now_us,
            usermeta: c
                .usermeta
                .into_iter()
                .map(|p| (p.key, p.value.unwrap_or_default()))
                .collect(),
            links: c
                .links
                .into_iter()
                .map(|l| Link {
                    bucket: l.bucket.unwrap_or_default(),
                    key: l.key.unwrap_or_default(),
                    tag: l.tag.unwrap_or_default(),
                })
                .collect(),
            indexes,
            deleted: c.deleted.unwrap_or(false),
        },
        value: c.value,
        dot: None,
    })
}

/// One secondary index entry, checked as Riak checks every write (its index precommit runs on
/// PB puts too): the field name is lower-cased and must end in `_bin` or `_int`, and an
/// `_int` value must be an integer. HTTP applies the same rules to its index headers.
fn index_entry(field: Bytes, value: Bytes) -> Result<(Bytes, Bytes), String> {
    let field = field.to_ascii_lowercase();
    let name = String::from_utf8_lossy(&field);
    let is_int = field.ends_with(b"_int");
    if !is_int && !field.ends_with(b"_bin") {
        return Err(format!(
            "Could not parse index fields: {name} must end in _bin or _int"
        ));
    }
    let integer = || std::str::from_utf8(&value).ok()?.parse::<i64>().ok();
    if is_int && integer().is_none() {
        return Err(format!(
            "Could not parse index fields: {name} value {} is not an integer",
            String::from_utf8_lossy(&value)
        ));
    }
    Ok((Bytes::from(field), value))
}

/// The node's content as a PB content; `head` leaves the value out.
pub(crate) fn content_to_pb(c: &Content, head: bool) -> RpbContent {
    let m = &c.meta;
    let pair = |(k, v): &(Bytes, Bytes)| RpbPair {
        key: k.clone(),
        value: Some(v.clone()),
    };
    RpbContent {
        value: if head { Bytes::new() } else { c.value.clone() },
        content_type: Some(m.content_type.clone()),
        charset: m.charset.clone(),
        content_encoding: m.content_encoding.clone(),
        vtag: Some(m.vtag.clone()),
        links: m
            .links
            .iter()
            .map(|l| RpbLink {
                bucket: Some(l.bucket.clone()),
                key: Some(l.key.clone()),
                tag: Some(l.tag.clone()),
            })
            .collect(),
        last_mod: Some((m.last_modified_us / 1_000_000) as u32),
        last_mod_usecs: Some((m.last_modified_us % 1_000_000) as u32),
        usermeta: m.usermeta.iter().map(pair).collect(),
        indexes: m.indexes.iter().map(pair).collect(),
        deleted: m.deleted.then_some(true),
    }
}

/// Every sibling of an object as PB contents.
pub(crate) fn contents_to_pb(obj: &RiakObject, head: bool) -> Vec<RpbContent> {
    obj.contents
        .iter()
        .map(|c| content_to_pb(c, head))
        .collect()
}

/// A PB quorum field (absent = the bucket's value).
pub(crate) fn quorum(v: Option<u32>) -> Option<Quorum> {
    v.map(Quorum::from_pb)
}

/// The PB bucket properties a client set, as the JSON patch the metadata layer validates, so
/// HTTP and PB changes go through one validation.
pub(crate) fn props_patch(p: &RpbBucketProps) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    let q = |v: u32| serde_json::to_value(Quorum::from_pb(v)).expect("quorum serializes");
    let text = |b: &Bytes| Value::String(String::from_utf8_lossy(b).into_owned());
    let modfun = |mf: &RpbModFun| json!({"mod": text(&mf.module), "fun": text(&mf.function)});
    let hooks = |hs: &[RpbCommitHook]| {
        Value::Array(
            hs.iter()
                .map(|h| match (&h.modfun, &h.name) {
                    (Some(mf), _) => modfun(mf),
                    (None, Some(name)) => json!({ "name": text(name) }),
                    (None, None) => Value::Null,
                })
                .collect(),
        )
    };
    if let Some(v) = p.n_val {
        put("n_val", v.into());
    }
    if let Some(v) = p.allow_mult {
        put("allow_mult", v.into());
    }
    if let Some(v) = p.last_write_wins {
        put("last_write_wins", v.into());
    }
    if p.has_precommit == Some(true) || !p.precommit.is_empty() {
        put("precommit", hooks(&p.precommit));
    }
    if p.has_postcommit == Some(true) || !p.postcommit.is_empty() {
        put("postcommit", hooks(&p.postcommit));
    }
    if let Some(mf) = &p.chash_keyfun {
        put("chash_keyfun", modfun(mf));
    }
    if let Some(mf) = &p.linkfun {
        put("linkfun", modfun(mf));
    }
    for (name, v) in [
        ("old_vclock", p.old_vclock),
        ("young_vclock", p.young_vclock),
        ("big_vclock", p.big_vclock),
        ("small_vclock", p.small_vclock),
        ("hll_precision", p.hll_precision),
    ] {
        if let Some(v) = v {
            put(name, v.into());
        }
    }
    for (name, v) in [
        ("pr", p.pr),
        ("r", p.r),
        ("w", p.w),
        ("pw", p.pw),
        ("dw", p.dw),
        ("rw", p.rw),
    ] {
        if let Some(v) = v {
            put(name, q(v));
        }
    }
    for (name, v) in [
        ("basic_quorum", p.basic_quorum),
        ("notfound_ok", p.notfound_ok),
        ("search", p.search),
        ("consistent", p.consistent),
        ("write_once", p.write_once),
    ] {
        if let Some(v) = v {
            put(name, v.into());
        }
    }
    if let Some(b) = &p.backend {
        put("backend", text(b));
    }
    if let Some(b) = &p.search_index {
        put("search_index", text(b));
    }
    if let Some(b) = &p.datatype {
        put("datatype", text(b));
    }
    if let Some(r) = p.repl {
        let mode = match r {
            1 => "realtime",
            2 => "fullsync",
            3 => "true",
            _ => "false",
        };
        put("repl", mode.into());
    }
    Value::Object(m)
}

/// Effective bucket properties as PB, from their JSON form (the one representation both APIs
/// share).
pub(crate) fn props_to_pb(props: &BucketProps) -> RpbBucketProps {
    let json = props.to_json(None);
    let j = &json["props"];
    let u = |k: &str| j.get(k).and_then(Value::as_u64).map(|v| v as u32);
    let b = |k: &str| j.get(k).and_then(Value::as_bool);
    let s = |k: &str| {
        j.get(k)
            .and_then(Value::as_str)
            .map(|v| Bytes::copy_from_slice(v.as_bytes()))
    };
    let q = |k: &str| {
        j.get(k)
            .and_then(|v| serde_json::from_value::<Quorum>(v.clone()).ok())
            .map(|q| q.to_pb())
    };
    let modfun = |k: &str| {
        let v = j.get(k)?;
        Some(RpbModFun {
            module: Bytes::copy_from_slice(v.get("mod")?.as_str()?.as_bytes()),
            function: Bytes::copy_from_slice(v.get("fun")?.as_str()?.as_bytes()),
        })
    };
    let hooks = |k: &str| -> Vec<RpbCommitHook> {
        j.get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|h| RpbCommitHook {
                modfun: match (
                    h.get("mod").and_then(Value::as_str),
                    h.get("fun").and_then(Value::as_str),
                ) {
                    (Some(m), Some(f)) => Some(RpbModFun {
                        module: Bytes::copy_from_slice(m.as_bytes()),
                        function: Bytes::copy_from_slice(f.as_bytes()),
                    }),
                    _ => None,
                },
                name: h
                    .get("name")
                    .and_then(Value::as_str)
                    .map(|n| Bytes::copy_from_slice(n.as_bytes())),
            })
            .collect()
    };
    let precommit = hooks("precommit");
    let postcommit = hooks("postcommit");
    RpbBucketProps {
        n_val: u("n_val"),
        allow_mult: b("allow_mult"),
        last_write_wins: b("last_write_wins"),
        has_precommit: Some(!precommit.is_empty()),
        precommit,
        has_postcommit: Some(!postcommit.is_empty()),
        postcommit,
        chash_keyfun: modfun("chash_keyfun"),
        linkfun: modfun("linkfun"),
        old_vclock: u("old_vclock"),
        young_vclock: u("young_vclock"),
        big_vclock: u("big_vclock"),
        small_vclock: u("small_vclock"),
        pr: q("pr"),
        r: q("r"),
        w: q("w"),
        pw: q("pw"),
        dw: q("dw"),
        rw: q("rw"),
        basic_quorum: b("basic_quorum"),
        notfound_ok: b("notfound_ok"),
        backend: s("backend"),
        search: b("search"),
        repl: j.get("repl").and_then(Value::as_str).map(|r| match r {
            "realtime" => 1,
            "fullsync" => 2,
            "true" => 3,
            _ => 0,
        }),
        search_index: s("search_index"),
        datatype: s("datatype"),
        consistent: b("consistent"),
        write_once: b("write_once"),
        hll_precision: u("hll_precision"),
    }
}

/// A preference-list entry as PB.
pub(crate) fn preflist_item(e: &PreflistEntry) -> RpbBucketKeyPreflistItem {
    RpbBucketKeyPreflistItem {
        partition: e.partition as i64,
        node: Bytes::from(e.node.to_string()),
        primary: e.primary,
    }
}
