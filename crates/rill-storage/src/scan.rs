//! Key-range arithmetic shared by the backends' scans.
//!
//! A prefix scan is a range scan over `[prefix, prefix_end)`, where `prefix_end` is the
//! smallest key above every key that starts with `prefix`. Paging (`start_after`) raises the
//! lower bound. Computing the range once here keeps both backends' scan semantics identical and
//! avoids inverted ranges, which `BTreeMap::range` would panic on.

use std::ops::Bound;

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

    proptest! {
        /// A key is inside the computed range exactly when it has the prefix and sorts after
        /// `start_after`.
        #[test]
        fn bounds_match_the_definition(
            prefix in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xfe), Just(0xff)], 0..4),
            after in proptest::option::of(proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xfe), Just(0xff)], 0..5)),
            key in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xfe), Just(0xff)], 0..5),
        ) {
            let expected = key.starts_with(&prefix)
                && after.as_ref().is_none_or(|a| key > *a);
            let inside = scan_bounds(&prefix, after.as_deref())
                .is_some_and(|bounds| bounds.contains(&key));
            prop_assert_eq!(inside, expected);
        }
    }
}
