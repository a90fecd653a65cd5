//! Wire formats: checked zero-copy views of the headers the scrubber handles, with parse and
//! emit, and the Internet checksum.
//!
//! The layout follows smoltcp: each format has a `Packet<T: AsRef<[u8]>>`-style view whose
//! `new_checked` constructor validates the lengths once, so that every accessor is
//! infallible and cannot panic; setters are available when `T: AsMut<[u8]>`; and a `Repr`
//! struct holds the high-level fields with `parse` and `emit`.
//!
//! * [`checksum`] — RFC 1071 Internet checksum and RFC 1624 incremental update.
//! * [`ethernet`], [`arp`], [`ipv4`], [`ipv6`], [`tcp`], [`udp`], [`icmp`], [`icmpv6`] —
//!   per-format views.
//! * [`frame`] — the one-pass dissector the engine runs on every frame.
//! * [`builder`] — allocating frame construction for tests, tools and benchmarks.
//!
//! Nothing in this module (other than [`builder`]) allocates, and no function panics on any
//! input: malformed input yields a typed [`Error`].

pub mod arp;
pub mod builder;
pub mod checksum;
pub mod ethernet;
pub mod frame;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

/// Why a buffer could not be parsed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header (or the length a header field claims).
    #[error("truncated packet")]
    Truncated,
    /// A field holds a value that is not valid for the format.
    #[error("malformed packet")]
    Malformed,
    /// A checksum did not verify.
    #[error("bad checksum")]
    BadChecksum,
}

/// Result type of the wire parsers.
pub type Result<T> = core::result::Result<T, Error>;

/// EtherType of IPv4.
pub const ETH_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_IPV6: u16 = 0x86dd;
/// EtherType of ARP.
pub const ETH_ARP: u16 = 0x0806;
/// EtherType (TPID) of an IEEE 802.1Q VLAN tag.
pub const ETH_VLAN: u16 = 0x8100;
/// EtherType (TPID) of an IEEE 802.1ad (QinQ) service tag.
pub const ETH_QINQ: u16 = 0x88a8;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of ICMP (IPv4).
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// Big-endian u16 at `off`. Callers guarantee `off + 2 <= b.len()`.
#[inline(always)]
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Big-endian u32 at `off`. Callers guarantee `off + 4 <= b.len()`.
#[inline(always)]
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Writes a big-endian u16 at `off`. Callers guarantee `off + 2 <= b.len()`.
#[inline(always)]
pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian u32 at `off`. Callers guarantee `off + 4 <= b.len()`.
#[inline(always)]
pub(crate) fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}
