//! Key-range arithmetic shared by the backends' scans.
//!
//! A prefix scan is a range scan over `[prefix, prefix_end)`, where `prefix_end` is the
//! smallest key above every key that starts with `prefix`. Paging (`start_after`) raises the
//! lower bound. Computing the range once here keeps both backends' scan semantics identical and
//! avoids inverted ranges, which `BTreeMap::range` would panic on.
//!
//! Bounds never exceed [`MAX_KEY_LEN`] (fjall panics on longer bound keys): a longer prefix
//! matches no storable key, and a longer `start_after` is cut to its first `MAX_KEY_LEN` bytes,
//! which selects the same storable keys (a key `k` no longer than the cut `t` is greater than
//! the full `start_after` exactly when it is greater than `t`).

use std::ops::Bound;

use crate::MAX_KEY_LEN;

/// Lower and upper bound of a key range, usable with `BTreeMap::range` and fjall's `range`.
pub(crate) type KeyBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The smallest key greater than every key starting with `prefix`, or `None` when there is
/// none (the prefix is empty or all `0xFF`, so the range is unbounded above).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The range of keys that start with `prefix` and sort strictly after `start_after` (when
/// given), or `None` when that range is empty.
pub(crate) fn scan_bounds(prefix: &[u8], start_after: Option<&[u8]>) -> Option<KeyBounds> {
    bounds_within(prefix, start_after, MAX_KEY_LEN)
}

/// [`scan_bounds`] for keys of at most `max_len` bytes.
fn bounds_within(prefix: &[u8], start_after: Option<&[u8]>, max_len: usize) -> Option<KeyBounds> {
    if prefix.len() > max_len {
        return None;
    }
    let start_after = start_after.map(|after| &after[..after.len().min(max_len)]);
    let upper = match prefix_end(prefix) {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
        _ => Bound::Included(prefix.to_vec()),
    };
    if let (Bound::Included(low) | Bound::Excluded(low), Bound::Excluded(high)) = (&lower, &upper)
        && low >= high
    {
        return None;
    }
    Some((lower, upper))
}

/// The bounds to resume a scan after having returned `last`, within the same upper bound.
pub(crate) fn resume_after(last: &[u8], upper: &Bound<Vec<u8>>) -> KeyBounds {
    (Bound::Excluded(last.to_vec()), upper.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::ops::RangeBounds;

    #[test]
    fn prefix_end_carries_past_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn start_after_beyond_prefix_is_empty() {
        assert_eq!(scan_bounds(b"ab", Some(b"ac")), None);
        assert_eq!(scan_bounds(b"ab", Some(b"b")), None);
        assert!(scan_bounds(b"ab", Some(b"aa")).is_some());
    }

    /// A small stand-in for `MAX_KEY_LEN`, so generated keys exceed it often.
    const MAX_LEN: usize = 3;

    /// Keys over a tiny alphabet with the interesting byte values, so prefixes and carries
    /// collide often.
    fn short_key(
        len: impl Into<proptest::collection::SizeRange>,
    ) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xfe), Just(0xff)], len)
    }

    proptest! {
        /// A storable key is inside the computed range exactly when it has the prefix and sorts
        /// after `start_after`; bounds never exceed the key length limit.
        #[test]
        fn bounds_match_the_definition(
            prefix in short_key(0..5),
            after in proptest::option::of(short_key(0..6)),
            key in short_key(0..=MAX_LEN),
        ) {
            let expected = key.starts_with(&prefix)
                && after.as_ref().is_none_or(|a| key > *a);
            let bounds = bounds_within(&prefix, after.as_deref(), MAX_LEN);
            let inside = bounds.as_ref().is_some_and(|bounds| bounds.contains(&key));
            prop_assert_eq!(inside, expected);
            if let Some((low, high)) = bounds {
                for bound in [low, high] {
                    if let Bound::Included(k) | Bound::Excluded(k) = bound {
                        prop_assert!(k.len() <= MAX_LEN);
                    }
                }
            }
        }
    }
}
