//! Object addresses — bucket type, bucket, key — and their two byte encodings:
//! the ring hash (where a key lives) and the storage key (how a vnode files it).
//!
//! The ring hash is SHA-1 over the same bytes Riak hashes (`term_to_binary({Bucket, Key})`,
//! with `{Type, Bucket}` in place of `Bucket` for non-default types), so a key lands on the same
//! partitions in Rill as in Riak. The storage key is an order-preserving, self-delimiting
//! encoding: all keys of one bucket are contiguous and sorted, which makes key listing a
//! prefix scan and bucket listing a skip-scan.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// The bucket type every bucket belongs to unless a request names another.
pub const DEFAULT_TYPE: &str = "default";

/// Longest bucket type or bucket name accepted (the storage key stores a 16-bit length).
pub const MAX_NAME_LEN: usize = u16::MAX as usize;

/// A bucket within its bucket type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Bucket {
    /// The bucket type's name (`default` for the default type).
    pub btype: Bytes,
    /// The bucket's name.
    pub name: Bytes,
}

/// The full address of an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BKey {
    pub bucket: Bucket,
    pub key: Bytes,
}

/// Longest storage key (what the storage engines accept).
pub const MAX_STORAGE_KEY_LEN: usize = u16::MAX as usize;

/// Why an address or a storage key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("bucket type name is empty")]
    EmptyType,
    #[error("bucket name is empty")]
    EmptyBucket,
    #[error("key is empty")]
    EmptyKey,
    #[error("name longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error(
        "key too long: bucket type, bucket and key together exceed {MAX_STORAGE_KEY_LEN} bytes"
    )]
    KeyTooLong,
    #[error("malformed storage key")]
    Malformed,
}

impl Bucket {
    /// A bucket, checked: names must be non-empty and fit the storage key's length field.
    pub fn new(btype: impl Into<Bytes>, name: impl Into<Bytes>) -> Result<Self, AddressError> {
        let (btype, name) = (btype.into(), name.into());
        if btype.is_empty() {
            return Err(AddressError::EmptyType);
        }
        if name.is_empty() {
            return Err(AddressError::EmptyBucket);
        }
        if btype.len() > MAX_NAME_LEN || name.len() > MAX_NAME_LEN {
            return Err(AddressError::TooLong);
        }
        Ok(Bucket { btype, name })
    }

    /// A bucket of the default type.
    pub fn default_type(name: impl Into<Bytes>) -> Result<Self, AddressError> {
        Bucket::new(Bytes::from_static(DEFAULT_TYPE.as_bytes()), name)
    }

    pub fn is_default_type(&self) -> bool {
        self.btype.as_ref() == DEFAULT_TYPE.as_bytes()
    }

    /// The storage-key prefix shared by every key of this bucket.
    pub fn storage_prefix(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.btype.len() + self.name.len());
        put_name(&mut out, &self.btype);
        put_name(&mut out, &self.name);
        out
    }

    /// Decodes a prefix written by [`Bucket::storage_prefix`] (nothing may follow it).
    pub fn from_storage_prefix(raw: &[u8]) -> Result<Self, AddressError> {
        let (btype, rest) = take_name(raw)?;
        let (name, rest) = take_name(rest)?;
        if !rest.is_empty() {
            return Err(AddressError::Malformed);
        }
        Bucket::new(Bytes::copy_from_slice(btype), Bytes::copy_from_slice(name))
            .map_err(|_| AddressError::Malformed)
    }

    /// The storage-key prefix shared by every bucket of a type.
    pub fn type_prefix(btype: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + btype.len());
        put_name(&mut out, btype);
        out
    }
}

impl BKey {
    /// An object address, checked (the key must be non-empty).
    pub fn new(bucket: Bucket, key: impl Into<Bytes>) -> Result<Self, AddressError> {
        let key = key.into();
        if key.is_empty() {
            return Err(AddressError::EmptyKey);
        }
        // The whole storage key (two length fields, type, bucket, key) must fit a 16-bit length.
        if 4 + bucket.btype.len() + bucket.name.len() + key.len() > MAX_STORAGE_KEY_LEN {
            return Err(AddressError::KeyTooLong);
        }
        Ok(BKey { bucket, key })
    }

    /// The 160-bit ring position of this key: SHA-1 over Erlang's external term format of
    /// `{Bucket, Key}` (or `{{Type, Bucket}, Key}`), exactly the bytes Riak hashes.
    pub fn chash(&self) -> [u8; 20] {
        const VERSION: u8 = 131;
        const SMALL_TUPLE: u8 = 104;
        const BINARY: u8 = 109;
        fn binary(h: &mut Sha1, b: &[u8]) {
            h.update([BINARY]);
            h.update((b.len() as u32).to_be_bytes());
            h.update(b);
        }
        let mut h = Sha1::new();
        h.update([VERSION, SMALL_TUPLE, 2]);
        if self.bucket.is_default_type() {
            binary(&mut h, &self.bucket.name);
        } else {
            h.update([SMALL_TUPLE, 2]);
            binary(&mut h, &self.bucket.btype);
            binary(&mut h, &self.bucket.name);
        }
        binary(&mut h, &self.key);
        h.finalize().into()
    }

    /// The order-preserving storage key: `len16 type | len16 bucket | key`.
    pub fn storage_key(&self) -> Vec<u8> {
        let mut out = self.bucket.storage_prefix();
        out.extend_from_slice(&self.key);
        out
    }

    /// Decodes a storage key written by [`BKey::storage_key`].
    pub fn from_storage_key(raw: &[u8]) -> Result<Self, AddressError> {
        let (btype, rest) = take_name(raw)?;
        let (name, key) = take_name(rest)?;
        if key.is_empty() || btype.is_empty() || name.is_empty() {
            return Err(AddressError::Malformed);
        }
        Ok(BKey {
            bucket: Bucket {
                btype: Bytes::copy_from_slice(btype),
                name: Bytes::copy_from_slice(name),
            },
            key: Bytes::copy_from_slice(key),
        })
    }
}

/// The parts of a storage key, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageKeyParts<'a> {
    pub btype: &'a [u8],
    pub name: &'a [u8],
    pub key: &'a [u8],
}

/// Splits a storage key into bucket type, bucket and key, without copying.
pub fn split_storage_key(raw: &[u8]) -> Result<StorageKeyParts<'_>, AddressError> {
    let (btype, rest) = take_name(raw)?;
    let (name, key) = take_name(rest)?;
    Ok(StorageKeyParts { btype, name, key })
}

fn put_name(out: &mut Vec<u8>, name: &[u8]) {
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(name);
}

fn take_name(raw: &[u8]) -> Result<(&[u8], &[u8]), AddressError> {
    let len_bytes: [u8; 2] = raw
        .get(..2)
        .and_then(|s| s.try_into().ok())
        .ok_or(AddressError::Malformed)?;
    let len = u16::from_be_bytes(len_bytes) as usize;
    let rest = &raw[2..];
    if rest.len() < len {
        return Err(AddressError::Malformed);
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bkey(t: &[u8], b: &[u8], k: &[u8]) -> BKey {
        BKey::new(
            Bucket::new(Bytes::copy_from_slice(t), Bytes::copy_from_slice(b)).unwrap(),
            Bytes::copy_from_slice(k),
        )
        .unwrap()
    }

    #[test]
    fn chash_matches_riak_term_encoding() {
        // sha1(term_to_binary({<<"b">>, <<"k">>})) computed by hand from the term format:
        // 131,104,2,109,0,0,0,1,"b",109,0,0,0,1,"k".
        let mut h = Sha1::new();
        h.update([131, 104, 2, 109, 0, 0, 0, 1, b'b', 109, 0, 0, 0, 1, b'k']);
        let expected: [u8; 20] = h.finalize().into();
        assert_eq!(bkey(b"default", b"b", b"k").chash(), expected);
        // A typed bucket hashes {{T, B}, K}, so it differs from the default type's.
        assert_ne!(bkey(b"t", b"b", b"k").chash(), expected);
    }

    #[test]
    fn empty_names_are_refused() {
        assert_eq!(Bucket::new("", "b"), Err(AddressError::EmptyType));
        assert_eq!(Bucket::new("t", ""), Err(AddressError::EmptyBucket));
        let b = Bucket::new("t", "b").unwrap();
        assert_eq!(BKey::new(b.clone(), ""), Err(AddressError::EmptyKey));
        assert_eq!(
            BKey::new(b.clone(), vec![b'k'; 65_531 - 2]).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            BKey::new(b, vec![b'k'; 65_531 - 1]),
            Err(AddressError::KeyTooLong)
        );
    }

    #[test]
    fn malformed_storage_keys_are_errors() {
        assert!(BKey::from_storage_key(&[]).is_err());
        assert!(BKey::from_storage_key(&[0, 5, b'a']).is_err());
        assert!(BKey::from_storage_key(&[0, 1, b'a', 0, 1, b'b']).is_err());
        // Each part must be non-empty on its own.
        assert!(BKey::from_storage_key(&[0, 0, 0, 1, b'b', b'k']).is_err());
        assert!(BKey::from_storage_key(&[0, 1, b'a', 0, 0, b'k']).is_err());
        assert_eq!(
            BKey::from_storage_key(&[0, 1, b'a', 0, 1, b'b', b'k']),
            Ok(bkey(b"a", b"b", b"k"))
        );
    }

    proptest! {
        #[test]
        fn storage_key_round_trips(t in prop::collection::vec(any::<u8>(), 1..20),
                                   b in prop::collection::vec(any::<u8>(), 1..20),
                                   k in prop::collection::vec(any::<u8>(), 1..40)) {
            let bk = bkey(&t, &b, &k);
            prop_assert_eq!(BKey::from_storage_key(&bk.storage_key()).unwrap(), bk.clone());
            prop_assert_eq!(Bucket::from_storage_prefix(&bk.bucket.storage_prefix()).unwrap(), bk.bucket);
        }

        #[test]
        fn keys_of_a_bucket_share_its_prefix_and_sort_by_key(
            b in prop::collection::vec(any::<u8>(), 1..10),
            k1 in prop::collection::vec(any::<u8>(), 1..10),
            k2 in prop::collection::vec(any::<u8>(), 1..10)) {
            let a = bkey(b"t", &b, &k1);
            let c = bkey(b"t", &b, &k2);
            let prefix = a.bucket.storage_prefix();
            prop_assert!(a.storage_key().starts_with(&prefix));
            prop_assert_eq!(a.storage_key().cmp(&c.storage_key()), k1.cmp(&k2));
        }

        #[test]
        fn buckets_of_a_type_and_only_they_share_its_prefix(
            t in prop::collection::vec(any::<u8>(), 1..10),
            other in prop::collection::vec(any::<u8>(), 1..10),
            b in prop::collection::vec(any::<u8>(), 1..10)) {
            let prefix = Bucket::type_prefix(&t);
            prop_assert_eq!(prefix.len(), 2 + t.len());
            prop_assert!(bkey(&t, &b, b"k").storage_key().starts_with(&prefix));
            prop_assert_eq!(
                bkey(&other, &b, b"k").storage_key().starts_with(&prefix),
                other == t
            );
        }
    }
}
