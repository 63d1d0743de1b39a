//! Riak's URL scheme, parsed into the resource a request addresses.
//!
//! Riak serves the same resources under three URL families — `/types/T/buckets/B/...`,
//! `/buckets/B/...` (the default type) and the legacy `/riak/B/K` — and keys and bucket names are
//! arbitrary bytes, percent-encoded. Parsing the raw path ourselves (rather than through a string
//! router) keeps non-UTF-8 names intact and puts the whole scheme in one testable function.

use bytes::Bytes;
use percent_encoding::percent_decode;
use rill_core::bkey::DEFAULT_TYPE;

/// Which URL family a request used; responses echo it (Location, Link headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `/types/T/buckets/B/...`
    Typed,
    /// `/buckets/B/...`
    Buckets,
    /// `/riak/B/K`
    Legacy,
}

/// A bucket as named in a URL (type and name are raw bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketRef {
    pub btype: Bytes,
    pub name: Bytes,
    pub family: Family,
}

/// What a request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `GET /`
    Root,
    Ping,
    Stats,
    /// An object: `.../keys/K`, `/riak/B/K`.
    Object {
        bucket: BucketRef,
        key: Bytes,
    },
    /// A bucket's key collection: `.../keys` (list with `?keys=`, POST creates a key).
    Keys {
        bucket: BucketRef,
    },
    /// `.../datatypes/K` (`key` is `None` for `.../datatypes`, where a POST creates a key).
    Datatype {
        bucket: BucketRef,
        key: Option<Bytes>,
    },
    /// `/buckets/B/counters/K`: a Riak 1.4 counter.
    Counter {
        bucket: BucketRef,
        key: Bytes,
    },
    /// `.../props`
    BucketProps {
        bucket: BucketRef,
    },
    /// `/riak/B`: legacy bucket resource (props and keys; POST creates a key).
    LegacyBucket {
        bucket: BucketRef,
    },
    /// `/types/T/props`
    TypeProps {
        btype: Bytes,
    },
    /// `/types/T/buckets`, `/buckets`, `/riak` (list with `?buckets=`).
    Buckets {
        btype: Bytes,
    },
    /// `.../keys/K/preflist`
    Preflist {
        bucket: BucketRef,
        key: Bytes,
    },
    /// `/admin/bucket-types[/NAME[/activate]]` (loopback-only administration).
    AdminTypes {
        name: Option<String>,
        activate: bool,
    },
    /// `/admin/failpoints/NAME`: fault injection, in builds with the `failpoints` feature.
    AdminFailpoint {
        name: String,
    },
    /// `/admin/cluster/OP`, `/admin/member-status`, `/admin/ring-status`, `/admin/transfers`,
    /// `/admin/transfer-limit`, `/admin/down`: cluster administration (loopback-only).
    AdminCluster {
        op: String,
    },
    NotFound,
}

/// Parses a request path (without the query string).
pub fn parse(path: &str) -> Resource {
    let segs: Vec<Bytes> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect();
    let s: Vec<&[u8]> = segs.iter().map(|b| b.as_ref()).collect();
    let default = || Bytes::from_static(DEFAULT_TYPE.as_bytes());
    let bref = |btype: Bytes, name: &Bytes, family| BucketRef {
        btype,
        name: name.clone(),
        family,
    };
    match s.as_slice() {
        [] => Resource::Root,
        [b"ping"] => Resource::Ping,
        [b"stats"] => Resource::Stats,
        [b"types", _, b"props"] => Resource::TypeProps {
            btype: segs[1].clone(),
        },
        [b"types", _, b"buckets"] => Resource::Buckets {
            btype: segs[1].clone(),
        },
        [b"types", _, b"buckets", _, rest @ ..] => bucket_resource(
            bref(segs[1].clone(), &segs[3], Family::Typed),
            rest,
            &segs[4..],
        ),
        [b"buckets"] => Resource::Buckets { btype: default() },
        [b"buckets", _, rest @ ..] => {
            bucket_resource(bref(default(), &segs[1], Family::Buckets), rest, &segs[2..])
        }
        [b"riak"] => Resource::Buckets { btype: default() },
        [b"riak", _] => Resource::LegacyBucket {
            bucket: bref(default(), &segs[1], Family::Legacy),
        },
        [b"riak", _, _] => Resource::Object {
            bucket: bref(default(), &segs[1], Family::Legacy),
            key: segs[2].clone(),
        },
        [b"admin", b"bucket-types"] => Resource::AdminTypes {
            name: None,
            activate: false,
        },
        [b"admin", b"bucket-types", name] => Resource::AdminTypes {
            name: Some(String::from_utf8_lossy(name).into_owned()),
            activate: false,
        },
        [b"admin", b"failpoints", name] => Resource::AdminFailpoint {
            name: String::from_utf8_lossy(name).into_owned(),
        },
        [b"admin", b"bucket-types", name, b"activate"] => Resource::AdminTypes {
            name: Some(String::from_utf8_lossy(name).into_owned()),
            activate: true,
        },
        [b"admin", b"cluster", op] => Resource::AdminCluster {
            op: format!("cluster/{}", String::from_utf8_lossy(op)),
        },
        [
            b"admin",
            op @ (b"member-status" | b"ring-status" | b"transfers" | b"transfer-limit" | b"down"),
        ] => Resource::AdminCluster {
            op: String::from_utf8_lossy(op).into_owned(),
        },
        _ => Resource::NotFound,
    }
}

/// Decodes one path segment: `+` is a space (clients `quote_plus` names, and Riak decodes it
/// so), `%XX` a byte.
fn decode_segment(seg: &str) -> Bytes {
    let plus_as_space = seg.replace('+', " ");
    Bytes::from(percent_decode(plus_as_space.as_bytes()).collect::<Vec<u8>>())
}

/// The part after `.../buckets/B`: `keys`, `keys/K`, `keys/K/preflist`, `props`. `rest` and
/// `owned` are the same segments, borrowed for matching and owned for keeping.
fn bucket_resource(bucket: BucketRef, rest: &[&[u8]], owned: &[Bytes]) -> Resource {
    match rest {
        [b"keys"] => Resource::Keys { bucket },
        [b"keys", _] => Resource::Object {
            bucket,
            key: owned[1].clone(),
        },
        [b"keys", _, b"preflist"] => Resource::Preflist {
            bucket,
            key: owned[1].clone(),
        },
        [b"props"] => Resource::BucketProps { bucket },
        [b"datatypes"] => Resource::Datatype { bucket, key: None },
        [b"counters", _] => Resource::Counter {
            bucket,
            key: owned[1].clone(),
        },
        [b"datatypes", _] => Resource::Datatype {
            bucket,
            key: Some(owned[1].clone()),
        },
        _ => Resource::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn the_three_url_families_address_the_same_object() {
        let typed = parse("/types/t/buckets/b/keys/k");
        assert_eq!(
            typed,
            Resource::Object {
                bucket: BucketRef {
                    btype: b("t"),
                    name: b("b"),
                    family: Family::Typed
                },
                key: b("k")
            }
        );
        for (path, family) in [
            ("/buckets/b/keys/k", Family::Buckets),
            ("/riak/b/k", Family::Legacy),
        ] {
            assert_eq!(
                parse(path),
                Resource::Object {
                    bucket: BucketRef {
                        btype: b("default"),
                        name: b("b"),
                        family
                    },
                    key: b("k")
                }
            );
        }
    }

    #[test]
    fn names_are_percent_decoded_to_raw_bytes() {
        match parse("/buckets/a%2Fb/keys/%FF%00x") {
            Resource::Object { bucket, key } => {
                assert_eq!(bucket.name, b("a/b"));
                assert_eq!(key.as_ref(), &[0xFF, 0x00, b'x']);
            }
            other => panic!("{other:?}"),
        }
    }

    proptest::proptest! {
        /// Any path a client sends parses to some resource without panicking, and the
        /// object paths built from arbitrary segments address exactly those bytes.
        #[test]
        fn arbitrary_paths_never_panic(segs in proptest::collection::vec("[a-z%+/0-9A-F]{0,6}", 0..8)) {
            let _ = parse(&format!("/{}", segs.join("/")));
        }

        #[test]
        fn encoded_names_round_trip(bucket in proptest::collection::vec(proptest::num::u8::ANY, 1..12),
                                    key in proptest::collection::vec(proptest::num::u8::ANY, 1..12)) {
            let enc = |b: &[u8]| percent_encoding::percent_encode(b, percent_encoding::NON_ALPHANUMERIC).to_string();
            let path = format!("/types/t/buckets/{}/keys/{}", enc(&bucket), enc(&key));
            match parse(&path) {
                Resource::Object { bucket: b, key: k } => {
                    proptest::prop_assert_eq!(b.name.as_ref(), &bucket[..]);
                    proptest::prop_assert_eq!(k.as_ref(), &key[..]);
                }
                other => proptest::prop_assert!(false, "{:?}", other),
            }
        }
    }

    #[test]
    fn plus_is_a_space_and_encoded_plus_is_a_plus() {
        match parse("/buckets/a+b/keys/c%2Bd") {
            Resource::Object { bucket, key } => {
                assert_eq!(bucket.name, b("a b"));
                assert_eq!(key, b("c+d"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bucket_level_resources() {
        assert!(matches!(
            parse("/types/t/buckets/b/keys"),
            Resource::Keys { .. }
        ));
        assert!(matches!(
            parse("/buckets/b/props"),
            Resource::BucketProps { .. }
        ));
        assert!(matches!(
            parse("/types/t/props"),
            Resource::TypeProps { .. }
        ));
        assert_eq!(
            parse("/types/t/buckets"),
            Resource::Buckets { btype: b("t") }
        );
        assert_eq!(
            parse("/buckets"),
            Resource::Buckets {
                btype: b("default")
            }
        );
        assert!(matches!(
            parse("/buckets/b/keys/k/preflist"),
            Resource::Preflist { .. }
        ));
        assert!(matches!(parse("/riak/b"), Resource::LegacyBucket { .. }));
        assert_eq!(parse("/"), Resource::Root);
        assert_eq!(parse("/ping"), Resource::Ping);
        assert_eq!(parse("/stats"), Resource::Stats);
        assert_eq!(parse("/nope/x"), Resource::NotFound);
        assert_eq!(parse("/buckets/b/keys/k/extra"), Resource::NotFound);
        assert_eq!(
            parse("/admin/bucket-types/t/activate"),
            Resource::AdminTypes {
                name: Some("t".into()),
                activate: true
            }
        );
    }
}
