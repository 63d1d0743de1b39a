//! Size limits on keys and values, enforced identically by every backend.
//!
//! fjall stores key lengths in 16 bits and value lengths in 32 bits, and it *panics* on an
//! empty or oversized key (after having written the record to its journal). Input reaches
//! us from the network, so we check before calling it: a write that cannot be stored is an
//! [`ErrorKind::InvalidInput`] error, and a key that cannot be stored is simply absent for
//! reads and deletes. The memory backend applies the same rules so both behave alike.

use crate::{ErrorKind, StorageError};

/// Longest key a store accepts, in bytes. Keys must also be non-empty.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;

/// Largest value a store accepts, in bytes.
pub const MAX_VALUE_LEN: usize = u32::MAX as usize;

/// Whether `key` could ever be stored (so reads and deletes of other keys are no-ops).
pub(crate) fn storable_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN
}

/// Checks a key and value before a put.
pub(crate) fn check_put(key: &[u8], value: &[u8]) -> Result<(), StorageError> {
    if !storable_key(key) {
        return Err(StorageError::new(
            ErrorKind::InvalidInput,
            format!("key length {} is outside 1..={MAX_KEY_LEN}", key.len()),
        ));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(StorageError::new(
            ErrorKind::InvalidInput,
            format!("value length {} exceeds {MAX_VALUE_LEN}", value.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_oversized_keys_are_rejected() {
        assert_eq!(
            check_put(b"", b"v").map_err(|e| e.kind()),
            Err(ErrorKind::InvalidInput)
        );
        let long = vec![b'k'; MAX_KEY_LEN + 1];
        assert_eq!(
            check_put(&long, b"v").map_err(|e| e.kind()),
            Err(ErrorKind::InvalidInput)
        );
        assert!(check_put(&long[..MAX_KEY_LEN], b"").is_ok());
    }
}
