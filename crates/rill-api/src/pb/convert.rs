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

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::props::{Hook, ModFun};
    use rill_core::ring::NodeName;
    use rill_core::vclock::VClock;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn pair(k: &str, v: &str) -> RpbPair {
        RpbPair {
            key: b(k),
            value: Some(b(v)),
        }
    }

    #[test]
    fn a_pb_content_becomes_a_fresh_write_with_riaks_defaults() {
        let c = RpbContent {
            value: b("v"),
            content_type: Some(Bytes::new()),
            charset: Some(b("utf-8")),
            content_encoding: Some(b("gzip")),
            vtag: Some(b("client-vtag")),
            links: vec![
                RpbLink {
                    bucket: Some(b("b")),
                    key: Some(b("k")),
                    tag: Some(b("t")),
                },
                RpbLink::default(),
            ],
            last_mod: Some(1),
            usermeta: vec![pair("m", "1")],
            indexes: vec![pair("Z_BIN", "b"), pair("a_int", "7"), pair("z_bin", "b")],
            deleted: None,
            ..RpbContent::default()
        };
        let got = content_from_pb(c, b("vt"), 1_500_000).unwrap();
        let m = &got.meta;
        assert_eq!(got.value, b("v"));
        assert_eq!(m.content_type, b("application/octet-stream"), "empty type");
        assert_eq!(m.charset, Some(b("utf-8")));
        assert_eq!(m.content_encoding, Some(b("gzip")));
        assert_eq!(m.vtag, b("vt"), "the server's vtag, not the client's");
        assert_eq!(m.last_modified_us, 1_500_000, "the server's time");
        assert_eq!(m.usermeta, [(b("m"), b("1"))]);
        assert_eq!(
            m.links,
            [
                Link {
                    bucket: b("b"),
                    key: b("k"),
                    tag: b("t")
                },
                Link {
                    bucket: Bytes::new(),
                    key: Bytes::new(),
                    tag: Bytes::new()
                },
            ]
        );
        assert_eq!(
            m.indexes,
            [(b("a_int"), b("7")), (b("z_bin"), b("b"))],
            "lower-cased, sorted, de-duplicated"
        );
        assert!(!m.deleted);
        assert_eq!(got.dot, None);

        let c = RpbContent {
            content_type: Some(b("text/plain")),
            deleted: Some(true),
            ..RpbContent::default()
        };
        let got = content_from_pb(c, b("vt"), 0).unwrap();
        assert_eq!(got.meta.content_type, b("text/plain"));
        assert!(got.meta.deleted);
    }

    #[test]
    fn invalid_index_entries_refuse_the_write() {
        let with = |k: &str, v: &str| {
            content_from_pb(
                RpbContent {
                    indexes: vec![pair(k, v)],
                    ..RpbContent::default()
                },
                b("vt"),
                0,
            )
        };
        assert_eq!(
            with("Age_INT", "old").unwrap_err(),
            "Could not parse index fields: age_int value old is not an integer"
        );
        assert_eq!(
            with("age", "1").unwrap_err(),
            "Could not parse index fields: age must end in _bin or _int"
        );
        assert_eq!(
            with("age_int", "-3").unwrap().meta.indexes,
            [(b("age_int"), b("-3"))]
        );
        assert_eq!(
            with("n_bin", "old").unwrap().meta.indexes,
            [(b("n_bin"), b("old"))]
        );
    }

    #[test]
    fn a_content_as_pb_splits_the_time_and_a_head_leaves_the_value_out() {
        let meta = Metadata {
            content_type: b("text/plain"),
            charset: Some(b("utf-8")),
            content_encoding: None,
            vtag: b("vt"),
            last_modified_us: 1_234_567_890,
            usermeta: vec![(b("m"), b("1"))],
            links: vec![Link {
                bucket: b("b"),
                key: b("k"),
                tag: b("t"),
            }],
            indexes: vec![(b("i_bin"), b("x"))],
            deleted: false,
        };
        let c = Content::new(b("value"), meta.clone());
        let pb = content_to_pb(&c, false);
        assert_eq!(pb.value, b("value"));
        assert_eq!(pb.content_type, Some(b("text/plain")));
        assert_eq!(pb.charset, Some(b("utf-8")));
        assert_eq!(pb.content_encoding, None);
        assert_eq!(pb.vtag, Some(b("vt")));
        assert_eq!(pb.last_mod, Some(1234));
        assert_eq!(pb.last_mod_usecs, Some(567_890));
        assert_eq!(pb.usermeta, [pair("m", "1")]);
        assert_eq!(pb.indexes, [pair("i_bin", "x")]);
        assert_eq!(
            pb.links,
            [RpbLink {
                bucket: Some(b("b")),
                key: Some(b("k")),
                tag: Some(b("t")),
            }]
        );
        assert_eq!(pb.deleted, None, "only a tombstone says deleted");
        assert_eq!(content_to_pb(&c, true).value, Bytes::new());

        let tomb = Content::new(
            Bytes::new(),
            Metadata {
                deleted: true,
                vtag: b("vt2"),
                ..meta
            },
        );
        assert_eq!(content_to_pb(&tomb, false).deleted, Some(true));
        let obj = RiakObject {
            vclock: VClock::new(),
            contents: vec![c, tomb],
        };
        let all = contents_to_pb(&obj, true);
        assert_eq!(
            all.iter().map(|c| c.vtag.clone()).collect::<Vec<_>>(),
            [Some(b("vt")), Some(b("vt2"))],
            "every sibling, in order"
        );
        assert!(all.iter().all(|c| c.value.is_empty()), "head throughout");
    }

    #[test]
    fn pb_quorum_fields_decode_their_symbolic_values() {
        assert_eq!(quorum(None), None);
        assert_eq!(quorum(Some(Quorum::PB_ALL)), Some(Quorum::All));
        assert_eq!(quorum(Some(2)), Some(Quorum::N(2)));
    }

    #[test]
    fn pb_bucket_properties_become_the_json_patch_of_the_fields_set() {
        let mf = |m: &str, f: &str| RpbModFun {
            module: b(m),
            function: b(f),
        };
        let p = RpbBucketProps {
            n_val: Some(5),
            allow_mult: Some(true),
            last_write_wins: Some(false),
            has_precommit: Some(true),
            postcommit: vec![
                RpbCommitHook {
                    modfun: Some(mf("m", "f")),
                    name: Some(b("ignored")),
                },
                RpbCommitHook {
                    modfun: None,
                    name: Some(b("js")),
                },
                RpbCommitHook::default(),
            ],
            chash_keyfun: Some(mf("ck", "cf")),
            linkfun: Some(mf("lk", "lf")),
            old_vclock: Some(1),
            young_vclock: Some(2),
            big_vclock: Some(3),
            small_vclock: Some(4),
            hll_precision: Some(12),
            pr: Some(Quorum::PB_ONE),
            r: Some(Quorum::PB_QUORUM),
            w: Some(Quorum::PB_ALL),
            pw: Some(Quorum::PB_DEFAULT),
            dw: Some(2),
            rw: Some(0),
            basic_quorum: Some(true),
            notfound_ok: Some(false),
            search: Some(false),
            consistent: Some(true),
            write_once: Some(false),
            backend: Some(b("be")),
            search_index: Some(b("idx")),
            datatype: Some(b("set")),
            repl: Some(2),
            ..RpbBucketProps::default()
        };
        assert_eq!(
            props_patch(&p),
            json!({
                "n_val": 5, "allow_mult": true, "last_write_wins": false,
                "precommit": [],
                "postcommit": [{"mod": "m", "fun": "f"}, {"name": "js"}, null],
                "chash_keyfun": {"mod": "ck", "fun": "cf"},
                "linkfun": {"mod": "lk", "fun": "lf"},
                "old_vclock": 1, "young_vclock": 2, "big_vclock": 3, "small_vclock": 4,
                "hll_precision": 12,
                "pr": "one", "r": "quorum", "w": "all", "pw": "default", "dw": 2, "rw": 0,
                "basic_quorum": true, "notfound_ok": false, "search": false,
                "consistent": true, "write_once": false,
                "backend": "be", "search_index": "idx", "datatype": "set",
                "repl": "fullsync",
            })
        );
        assert_eq!(
            props_patch(&RpbBucketProps::default()),
            json!({}),
            "nothing set, nothing changed"
        );
        let hooks_off = RpbBucketProps {
            has_precommit: Some(false),
            has_postcommit: Some(false),
            ..RpbBucketProps::default()
        };
        assert_eq!(props_patch(&hooks_off), json!({}));
        let hooks_cleared = RpbBucketProps {
            has_postcommit: Some(true),
            precommit: vec![RpbCommitHook {
                modfun: None,
                name: Some(b("x")),
            }],
            ..RpbBucketProps::default()
        };
        assert_eq!(
            props_patch(&hooks_cleared),
            json!({"precommit": [{"name": "x"}], "postcommit": []})
        );
        for (code, mode) in [
            (1, "realtime"),
            (2, "fullsync"),
            (3, "true"),
            (0, "false"),
            (9, "false"),
        ] {
            let p = RpbBucketProps {
                repl: Some(code),
                ..RpbBucketProps::default()
            };
            assert_eq!(props_patch(&p), json!({ "repl": mode }), "repl {code}");
        }
    }

    #[test]
    fn bucket_properties_as_pb_carry_every_field_riak_shows() {
        let mut props = BucketProps::default_type();
        props.n_val = 4;
        props.allow_mult = true;
        props.r = Quorum::One;
        props.w = Quorum::All;
        props.pr = Quorum::N(1);
        props.dw = Quorum::Default;
        props.basic_quorum = true;
        props.notfound_ok = false;
        props.old_vclock = 1000;
        props.young_vclock = 10;
        props.big_vclock = 60;
        props.small_vclock = 40;
        props.precommit = vec![
            Hook::ModFun(ModFun::new("pm", "pf")),
            Hook::Named("js".into()),
        ];
        props.consistent = true;
        props.write_once = true;
        props.backend = Some("be".into());
        props.extra.insert("search_index".into(), "\"idx\"".into());
        props.extra.insert("search".into(), "true".into());
        props.extra.insert("repl".into(), "\"realtime\"".into());
        let pb = props_to_pb(&props);
        let mf = |m: &str, f: &str| {
            Some(RpbModFun {
                module: b(m),
                function: b(f),
            })
        };
        assert_eq!(pb.n_val, Some(4));
        assert_eq!(pb.allow_mult, Some(true));
        assert_eq!(pb.last_write_wins, Some(false));
        assert_eq!(pb.has_precommit, Some(true));
        assert_eq!(
            pb.precommit,
            [
                RpbCommitHook {
                    modfun: mf("pm", "pf"),
                    name: None,
                },
                RpbCommitHook {
                    modfun: None,
                    name: Some(b("js")),
                },
            ]
        );
        assert_eq!(pb.has_postcommit, Some(false));
        assert!(pb.postcommit.is_empty());
        assert_eq!(pb.chash_keyfun, mf("riak_core_util", "chash_std_keyfun"));
        assert_eq!(
            pb.linkfun,
            mf("riak_kv_wm_link_walker", "mapreduce_linkfun")
        );
        assert_eq!(
            (
                pb.old_vclock,
                pb.young_vclock,
                pb.big_vclock,
                pb.small_vclock
            ),
            (Some(1000), Some(10), Some(60), Some(40))
        );
        assert_eq!(pb.r, Some(Quorum::PB_ONE));
        assert_eq!(pb.w, Some(Quorum::PB_ALL));
        assert_eq!(pb.pr, Some(1));
        assert_eq!(pb.dw, Some(Quorum::PB_DEFAULT));
        assert_eq!(pb.pw, Some(0));
        assert_eq!(pb.rw, Some(Quorum::PB_QUORUM));
        assert_eq!(pb.basic_quorum, Some(true));
        assert_eq!(pb.notfound_ok, Some(false));
        assert_eq!(pb.backend, Some(b("be")));
        assert_eq!(pb.search, Some(true));
        assert_eq!(pb.search_index, Some(b("idx")));
        assert_eq!(pb.repl, Some(1));
        assert_eq!(pb.consistent, Some(true));
        assert_eq!(pb.write_once, Some(true));
        assert_eq!(pb.datatype, None);
        assert_eq!(pb.hll_precision, None);

        let mut hll = BucketProps::new_type_defaults();
        hll.datatype = Some(rill_core::props::Datatype::Hll);
        hll.hll_precision = Some(12);
        let pb = props_to_pb(&hll);
        assert_eq!(pb.datatype, Some(b("hll")));
        assert_eq!(pb.hll_precision, Some(12));
        for (mode, code) in [("fullsync", 2), ("true", 3), ("false", 0)] {
            let mut p = BucketProps::default_type();
            p.extra.insert("repl".into(), format!("\"{mode}\""));
            assert_eq!(props_to_pb(&p).repl, Some(code), "repl {mode}");
        }
    }

    #[test]
    fn a_preflist_entry_as_pb() {
        let e = PreflistEntry {
            partition: 7,
            node: NodeName::new("n1@host"),
            primary: true,
        };
        let pb = preflist_item(&e);
        assert_eq!((pb.partition, pb.node, pb.primary), (7, b("n1@host"), true));
        let e = PreflistEntry {
            primary: false,
            ..e
        };
        assert!(!preflist_item(&e).primary);
    }
}
