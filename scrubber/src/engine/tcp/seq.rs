//! TCP sequence numbers: 32-bit values compared and added modulo 2³² (RFC 9293 §3.4).

use core::ops::{Add, Sub};

/// A TCP sequence (or acknowledgement) number.
///
/// Ordering is modular: `a.after(b)` when `a − b`, read as a signed 32-bit distance, is
/// positive. It is not a total order (a and a + 2³¹ are each "after" the other's
/// predecessor), which is why the type implements neither `Ord` nor `PartialOrd`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
#[repr(transparent)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Whether `self` comes after `other` in sequence space.
    #[inline]
    pub fn after(self, other: SeqNumber) -> bool {
        (self.0.wrapping_sub(other.0) as i32) > 0
    }

    /// The distance between the two numbers, the shorter way round the circle.
    #[inline]
    pub fn distance(self, other: SeqNumber) -> u32 {
        let d = self.0.wrapping_sub(other.0);
        d.min(d.wrapping_neg())
    }

    /// Whether `self` lies in `[lo, lo + len]`, modulo 2³².
    #[inline]
    pub fn within(self, lo: SeqNumber, len: u32) -> bool {
        self.0.wrapping_sub(lo.0) <= len
    }

    /// The later of the two (`self` when neither is after the other).
    #[inline]
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if other.after(self) {
            other
        } else {
            self
        }
    }
}

impl Add<u32> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn add(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(n))
    }
}

impl Sub<u32> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn sub(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(n))
    }
}

impl Sub<SeqNumber> for SeqNumber {
    /// The offset that maps `rhs` onto `self` (wrapping).
    type Output = u32;
    #[inline]
    fn sub(self, rhs: SeqNumber) -> u32 {
        self.0.wrapping_sub(rhs.0)
    }
}

impl From<u32> for SeqNumber {
    fn from(v: u32) -> Self {
        SeqNumber(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modular_order_and_distance() {
        let a = SeqNumber(u32::MAX - 5);
        let b = a + 10; // wrapped past zero
        assert_eq!(b, SeqNumber(4));
        assert!(b.after(a) && !a.after(b) && !a.after(a));
        assert_eq!(a.distance(b), 10);
        assert_eq!(b.distance(a), 10);
        assert_eq!(b - a, 10);
        assert_eq!(b - 10, a);
        assert_eq!(a.max(b), b);
        assert_eq!(b.max(a), b);
        assert!(SeqNumber(3).within(a, 10) && !SeqNumber(5).within(a, 10));
        // Half the circle away: the shorter way is 2^31 either way.
        assert_eq!(SeqNumber(0).distance(SeqNumber(1 << 31)), 1 << 31);
    }
}
