//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums are carried as `u32` values that have not been complemented. [`sum`] returns a value
//! already folded to at most `0xffff`, so that a handful of sums (the pseudo-header, the
//! segment) can be added together in a `u32` without any risk of overflow; [`fold`] and
//! [`finish`] reduce a sum to 16 bits.
//!
//! Addresses follow the crate-wide convention (see [`crate::FlowKey`]): an IPv4 address
//! occupies the first four bytes of a `[u8; 16]`, the other twelve are ignored.

/// One's-complement sum of `data` taken as big-endian 16-bit words (a trailing odd byte is
/// padded with a zero byte on the right).
///
/// The result is congruent (mod `0xffff`) to the full sum and is at most `0xffff`; it is not
/// complemented. It is `0` only when every byte of `data` is zero. Inputs of any length
/// (well beyond 64 KiB) cannot overflow the accumulator.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // Accumulate 32-bit words in a u64: 2^32 words are needed to overflow.
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder();
    if rest.len() >= 4 {
        acc += u64::from(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let Some(&b) = rest.first() {
        acc += u64::from(b) << 8;
    }
    // 2^32 ≡ 2^16 ≡ 1 (mod 0xffff): fold 64 → 32 → 16 bits, keeping every carry.
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    fold_u64(acc)
}

#[inline(always)]
fn fold_u64(mut s: u64) -> u32 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u32
}

/// Folds the carries of a one's-complement sum into 16 bits. The result is **not**
/// complemented.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The checksum to store for a sum: `!fold(sum)`.
#[inline]
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// Sum of the IPv4 pseudo-header (RFC 793 / RFC 768): source and destination addresses, the
/// protocol number and the upper-layer length.
#[inline]
pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u32 {
    u32::from(u16::from_be_bytes([src[0], src[1]]))
        + u32::from(u16::from_be_bytes([src[2], src[3]]))
        + u32::from(u16::from_be_bytes([dst[0], dst[1]]))
        + u32::from(u16::from_be_bytes([dst[2], dst[3]]))
        + u32::from(proto)
        + u32::from(len)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): source and destination addresses, the
/// 32-bit upper-layer length and the next-header value.
#[inline]
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u32) -> u32 {
    sum(src) + sum(dst) + (len >> 16) + (len & 0xffff) + u32::from(proto)
}

/// Incrementally updates checksum `check` for a 16-bit field of the covered data changing
/// from `old` to `new` (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`).
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// Incrementally updates checksum `check` for a 32-bit (16-bit aligned) field of the
/// covered data changing from `old` to `new` (RFC 1624 eqn. 3 applied to both halves).
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let s =
        u32::from(!check) + u32::from(!(old >> 16) as u16) + u32::from(!(old as u16)) + (new >> 16) + (new & 0xffff);
    !fold(s)
}

#[inline(always)]
fn pseudo(src: &[u8; 16], dst: &[u8; 16], v6: bool, proto: u8, len: usize) -> u32 {
    if v6 {
        pseudo_v6(src, dst, proto, len as u32)
    } else {
        pseudo_v4([src[0], src[1], src[2], src[3]], [dst[0], dst[1], dst[2], dst[3]], proto, len as u16)
    }
}

/// The checksum of an upper-layer segment `l4` (header and payload) under the IPv4 (`v6 ==
/// false`, addresses in the first four bytes) or IPv6 pseudo-header.
///
/// This computes the value to store when the checksum field is zero: either zero the field in
/// `l4` first, or account for its contents yourself. The length used in the pseudo-header is
/// `l4.len()` (truncated to 16 bits for IPv4). For UDP a result of `0` must be transmitted as
/// `0xffff` (see [`crate::wire::udp`]).
#[inline]
pub fn l4_checksum(src: &[u8; 16], dst: &[u8; 16], v6: bool, proto: u8, l4: &[u8]) -> u16 {
    finish(pseudo(src, dst, v6, proto, l4.len()) + sum(l4))
}

/// Whether the checksum stored in segment `l4` is correct: the sum of the pseudo-header and
/// the whole segment, checksum field included, folds to `0xffff`.
#[inline]
pub fn verify_l4(src: &[u8; 16], dst: &[u8; 16], v6: bool, proto: u8, l4: &[u8]) -> bool {
    fold(pseudo(src, dst, v6, proto, l4.len()) + sum(l4)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference implementation: RFC 1071 word by word.
    fn naive(data: &[u8]) -> u16 {
        let mut s: u64 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            s += u64::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            s += u64::from(data[i]) << 8;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d)), 0xddf2);
        assert_eq!(finish(sum(&d)), !0xddf2);
    }

    #[test]
    fn ipv4_header_checksum() {
        // A real IPv4 header (wikipedia example) with checksum b861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(fold(sum(&h)), 0xffff);
        let mut z = h;
        z[10] = 0;
        z[11] = 0;
        assert_eq!(finish(sum(&z)), 0xb861);
    }

    #[test]
    fn large_input_does_not_overflow() {
        let d = vec![0xffu8; 70_000];
        assert_eq!(fold(sum(&d)), naive(&d));
        let d = vec![0xffu8; 65_535];
        assert_eq!(fold(sum(&d)), naive(&d));
    }

    #[test]
    fn odd_lengths() {
        for n in 0..40 {
            let d: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(fold(sum(&d)), naive(&d), "len {n}");
        }
    }

    proptest! {
        #[test]
        fn sum_matches_naive(d in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(fold(sum(&d)), naive(&d));
        }

        #[test]
        fn incremental_update16(
            mut d in proptest::collection::vec(any::<u8>(), 2..512),
            pos in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            // A constant non-zero word (like a pseudo-header) keeps the sum away from the
            // all-zero-data corner where +0 and -0 differ.
            let before = finish(sum(&d) + 1);
            let i = pos.index(d.len() / 2) * 2;
            let old = u16::from_be_bytes([d[i], d[i + 1]]);
            d[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let after = finish(sum(&d) + 1);
            prop_assert_eq!(update16(before, old, new), after);
        }

        #[test]
        fn incremental_update32(
            mut d in proptest::collection::vec(any::<u8>(), 4..512),
            pos in any::<prop::sample::Index>(),
            new in any::<u32>(),
        ) {
            let before = finish(sum(&d) + 1);
            let i = pos.index(d.len() / 2 - 1) * 2;
            let old = u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
            d[i..i + 4].copy_from_slice(&new.to_be_bytes());
            let after = finish(sum(&d) + 1);
            prop_assert_eq!(update32(before, old, new), after);
        }

        #[test]
        fn l4_checksum_verifies(
            mut d in proptest::collection::vec(any::<u8>(), 8..300),
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            v6 in any::<bool>(),
        ) {
            d[6] = 0;
            d[7] = 0;
            let c = l4_checksum(&src, &dst, v6, 17, &d);
            d[6..8].copy_from_slice(&c.to_be_bytes());
            prop_assert!(verify_l4(&src, &dst, v6, 17, &d));
        }
    }
}
