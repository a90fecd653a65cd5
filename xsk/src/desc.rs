//! Frame descriptors and sides: the leaf types every other module of this crate uses.

/// One of the pair's two interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Facing the internet.
    Ext = 0,
    /// Facing the protected servers.
    Int = 1,
}

impl Side {
    /// The other side.
    #[inline]
    pub fn other(self) -> Side {
        match self {
            Side::Ext => Side::Int,
            Side::Int => Side::Ext,
        }
    }

    /// Both sides, ext first.
    pub const BOTH: [Side; 2] = [Side::Ext, Side::Int];

    #[inline]
    pub(crate) fn idx(self) -> usize {
        self as usize
    }
}

/// A frame in the worker loop's hands: where its packet starts in the UMEM and how long it is.
///
/// Obtained from [`crate::SocketPair::rx_batch`] or [`crate::SocketPair::alloc_frame`]; given back with
/// [`crate::SocketPair::tx_batch`] or [`crate::SocketPair::recycle`]. The pair tracks which frames are in hand, so a
/// stale or copied descriptor is refused rather than handed to the kernel twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Desc {
    pub(crate) addr: u64,
    pub(crate) len: u32,
}

impl Desc {
    pub(crate) fn new(addr: u64, len: u32) -> Desc {
        Desc { addr, len }
    }

    /// Packet length in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Set the packet length (after rewriting the frame). Checked when transmitted: it must stay
    /// within the frame ([`crate::SocketPair::capacity`]) and be at least an Ethernet header (14 bytes).
    #[inline]
    pub fn set_len(&mut self, len: usize) {
        self.len = u32::try_from(len).unwrap_or(u32::MAX);
    }

    /// The packet's offset in the UMEM (for diagnostics).
    #[inline]
    pub fn addr(&self) -> u64 {
        self.addr
    }
}
