//! Base-62 numerals (`0-9A-Za-z`) of 128-bit numbers: vtags and generated keys, which look
//! like Riak's (22 alphanumeric characters).
//!
//! Each 64-bit half takes 11 digits (62^11 > 2^64), so distinct numbers get distinct numerals
//! and only 64-bit arithmetic is needed: dividing a u128 costs a call to a slow software
//! routine per digit, and this runs on every write.

const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The length of every numeral.
pub const WIDTH: usize = 22;

/// The numeral of `n`: the high half's 11 digits, then the low half's, most significant first.
pub fn numeral(n: u128) -> [u8; WIDTH] {
    let mut out = [b'0'; WIDTH];
    write(&mut out[..WIDTH / 2], (n >> 64) as u64);
    write(&mut out[WIDTH / 2..], n as u64);
    out
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
        assert_eq!(&numeral(0), b"0000000000000000000000");
        assert_eq!(&numeral(61), b"000000000000000000000z");
        assert_eq!(&numeral(1 << 64), b"0000000000100000000000");
        // 2^64 - 1 in base 62, twice: the widest half fits its 11 digits.
        assert_eq!(&numeral(u128::MAX), b"LygHa16AHYFLygHa16AHYF");
    }

    proptest! {
        #[test]
        fn numerals_read_back_as_their_number(n in any::<u128>()) {
            let digits = numeral(n);
            let back = (value(&digits[..WIDTH / 2]) << 64) | value(&digits[WIDTH / 2..]);
            prop_assert_eq!(back, n);
            prop_assert!(digits.iter().all(u8::is_ascii_alphanumeric));
        }
    }
}
