//! Criterion benchmarks of the core's per-request work: object encode/decode, the coordinated
//! put merge, clock merge, and ring placement. Each request runs these several times (once per
//! replica), so regressions here show directly in throughput.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use rill_core::bkey::{BKey, Bucket};
use rill_core::codec;
use rill_core::merge::{self, MergeOptions};
use rill_core::object::{Content, Metadata, RiakObject};
use rill_core::ring::{NodeName, Ring};
use rill_core::vclock::{Actor, VClock};

const OPTS: MergeOptions = MergeOptions {
    allow_mult: false,
    last_write_wins: false,
    dvv_enabled: false,
    datatype: None,
};

fn content(value: &'static [u8]) -> Content {
    Content::new(
        Bytes::from_static(value),
        Metadata {
            content_type: Bytes::from_static(b"text/plain"),
            ..Metadata::default()
        },
    )
}

/// A typical stored object: 100-byte value, written by three replicas' actors.
fn typical() -> RiakObject {
    let mut obj = None;
    for (i, actor) in [1u8, 2, 3].into_iter().enumerate() {
        let ctx = obj
            .as_ref()
            .map(|o: &RiakObject| o.vclock.clone())
            .unwrap_or_default();
        obj = Some(merge::coordinate_put(
            obj.as_ref(),
            &ctx,
            content(&[b'x'; 100]),
            Actor([actor; 8]),
            1_700_000_000_000_000 + i as u64,
            &OPTS,
        ));
    }
    obj.expect("three writes")
}

fn codec_benches(c: &mut Criterion) {
    let obj = typical();
    let raw = Bytes::from(codec::encode(&obj));
    c.bench_function("codec/encode", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            codec::encode_into(black_box(&obj), &mut out);
        })
    });
    c.bench_function("codec/decode_bytes", |b| {
        b.iter(|| codec::decode_bytes(black_box(raw.clone())).expect("valid"))
    });
}

fn merge_benches(c: &mut Criterion) {
    let obj = typical();
    c.bench_function("merge/coordinate_put_over_existing", |b| {
        b.iter(|| {
            merge::coordinate_put(
                Some(black_box(&obj)),
                &obj.vclock,
                content(b"new value"),
                Actor([1; 8]),
                1_700_000_001_000_000,
                &OPTS,
            )
        })
    });
    let other = merge::coordinate_put(
        Some(&obj),
        &obj.vclock,
        content(b"next"),
        Actor([4; 8]),
        1_700_000_002_000_000,
        &OPTS,
    );
    c.bench_function("merge/replica_merge_descendant", |b| {
        b.iter(|| merge::replica_merge(Some(black_box(&obj)), black_box(&other), &OPTS))
    });
    c.bench_function("vclock/merge", |b| {
        b.iter(|| black_box(&obj.vclock).merge(black_box(&other.vclock)))
    });
    let empty = VClock::new();
    c.bench_function("vclock/descends", |b| {
        b.iter(|| black_box(&other.vclock).descends(black_box(&empty)))
    });
}

fn ring_benches(c: &mut Criterion) {
    let ring = Ring::new_single(64, NodeName::from("rill@127.0.0.1")).expect("valid ring");
    let bkey = BKey::new(
        Bucket::default_type("bucket").expect("bucket"),
        "some-key-0042",
    )
    .expect("key");
    c.bench_function("ring/chash", |b| b.iter(|| black_box(&bkey).chash()));
    let hash = bkey.chash();
    c.bench_function("ring/apl_n3", |b| {
        b.iter(|| ring.apl(black_box(&hash), 3, |_| true))
    });
}

criterion_group!(benches, codec_benches, merge_benches, ring_benches);
criterion_main!(benches);
