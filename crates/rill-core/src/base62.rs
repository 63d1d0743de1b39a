//! Base-62 numerals (`0-9A-Za-z`) of 128-bit numbers: vtags and generated keys, which look
//! like Riak's.
//!
//! A 128-bit number takes at most 22 digits. They are computed in three chunks of at most ten
//! digits, each small enough for 64-bit arithmetic: two 128-bit divisions per numeral instead
//! of one per digit (this runs on every write).

const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The most digits a 128-bit number needs.
pub const WIDTH: usize = 22;

/// 62^10, the largest power of 62 whose digits fit a u64 chunk.
const CHUNK: u128 = 839_299_365_868_340_224;

/// `n` in base 62, most significant digit first, padded with zeros to [`WIDTH`] digits.
pub fn fixed(n: u128) -> [u8; WIDTH] {
    let mut out = [b'0'; WIDTH];
    let (high, rest) = (n / (CHUNK * CHUNK), n % (CHUNK * CHUNK));
    write(&mut out[12..], (rest % CHUNK) as u64);
    write(&mut out[2..12], (rest / CHUNK) as u64);
    write(&mut out[..2], high as u64);
    out
}

/// `n` in base 62 without leading zeros (`"0"` for zero).
pub fn minimal(n: u128) -> String {
    let digits = fixed(n);
    let first = digits.iter().position(|&d| d != b'0').unwrap_or(WIDTH - 1);
    digits[first..].iter().map(|&d| char::from(d)).collect()
}

fn write(slot: &mut [u8], mut n: u64) {
    for d in slot.iter_mut().rev() {
        *d = DIGITS[(n % 62) as usize];
        n /= 62;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value(digits: &[u8]) -> u128 {
        digits.iter().fold(0u128, |n, d| {
            n * 62 + DIGITS.iter().position(|x| x == d).unwrap() as u128
        })
    }

    #[test]
    fn known_numerals() {
        assert_eq!(minimal(0), "0");
        assert_eq!(minimal(61), "z");
        assert_eq!(minimal(62), "10");
        assert_eq!(CHUNK, 62u128.pow(10));
        // 2^128 - 1, the widest numeral.
        assert_eq!(&fixed(u128::MAX), b"7n42DGM5Tflk9n8mt7Fhc7");
    }

    proptest! {
        #[test]
        fn numerals_read_back_as_their_number(n in any::<u128>()) {
            prop_assert_eq!(value(&fixed(n)), n);
            let m = minimal(n);
            prop_assert!(n == 0 || !m.starts_with('0'));
            prop_assert_eq!(value(m.as_bytes()), n);
        }
    }
}
