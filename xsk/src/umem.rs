//! The UMEM area and the bookkeeping of its frames.
//!
//! Every frame is at all times in exactly one of these places:
//!
//! | place | who holds it | counted by |
//! |---|---|---|
//! | free list | us, idle | the free-frame stack |
//! | fill ring → kernel → rx ring | the kernel (receive side of one socket) | fill submitted − rx read |
//! | our hands | the worker loop, as a [`crate::Desc`] | ownership bitmap |
//! | tx ring → kernel → completion ring | the kernel (transmit side of one socket) | tx queued − completions read |
//!
//! [`FrameAccount`] adds these up; [`crate::SocketPair::check_accounting`] verifies that they sum to
//! the frame count and that the bitmap and the free list agree.

use std::ptr::NonNull;

use crate::{last_err, XskError};

/// Bytes the kernel leaves in front of a received frame (XDP_PACKET_HEADROOM): a received
/// descriptor's address is its frame's start plus this.
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// An anonymous, private, pre-faulted memory mapping holding the frames.
#[derive(Debug)]
pub(crate) struct UmemArea {
    ptr: NonNull<u8>,
    len: usize,
}

impl UmemArea {
    /// Map `len` bytes (page aligned by mmap).
    pub(crate) fn new(len: usize) -> Result<UmemArea, XskError> {
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(XskError::Config(format!("cannot map a {len}-byte UMEM: {}", last_err())));
        }
        match NonNull::new(p.cast::<u8>()) {
            Some(ptr) => Ok(UmemArea { ptr, len }),
            None => Err(XskError::Config("mmap returned a null UMEM".into())),
        }
    }

    /// The whole area as a raw slice pointer, for registration with the kernel.
    pub(crate) fn as_raw(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for UmemArea {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping created in `new`, unmapped once, here.
        // The kernel keeps its own page references for as long as a socket still uses them.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Where the frames are, as counted by [`crate::SocketPair::frame_account`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameAccount {
    /// Frames in the UMEM.
    pub total: u64,
    /// On the free list.
    pub free: u64,
    /// In the worker loop's hands (received or allocated, not yet queued or recycled).
    pub in_hand: u64,
    /// Held by the kernel for receiving, per side (`[ext, int]`): fill ring, driver, rx ring.
    pub kernel_rx: [u64; 2],
    /// Held by the kernel for transmitting, per side: tx ring, driver, completion ring.
    pub kernel_tx: [u64; 2],
    /// Received descriptors that did not name a frame we had given the kernel (never expected;
    /// a kernel bug), so their frame is counted as lost.
    pub lost: u64,
}

impl FrameAccount {
    /// Sum of all places.
    pub fn placed(&self) -> u64 {
        self.free + self.in_hand + self.kernel_rx.iter().sum::<u64>() + self.kernel_tx.iter().sum::<u64>() + self.lost
    }
}

/// Frame geometry, the free list and the ownership bitmap.
#[derive(Debug)]
pub(crate) struct FramePool {
    area: UmemArea,
    frame_size: u64,
    shift: u32,
    frames: u64,
    /// Frame base addresses (UMEM offsets) not in use.
    free: Vec<u64>,
    /// One byte per frame: 1 while the frame is in our hands.
    owned: Vec<u8>,
    in_hand: u64,
}

impl FramePool {
    /// A pool over `area` cut into `frames` frames of `frame_size` (a power of two) bytes, all
    /// initially free.
    pub(crate) fn new(area: UmemArea, frame_size: u32, frames: u32) -> FramePool {
        let frame_size = u64::from(frame_size);
        debug_assert!(frame_size.is_power_of_two());
        debug_assert!(frame_size * u64::from(frames) <= area.len() as u64);
        // Pop order: lowest addresses first.
        let free = (0..u64::from(frames)).rev().map(|i| i * frame_size).collect();
        FramePool {
            area,
            frame_size,
            shift: frame_size.trailing_zeros(),
            frames: u64::from(frames),
            free,
            owned: vec![0; frames as usize],
            in_hand: 0,
        }
    }

    pub(crate) fn frame_size(&self) -> u64 {
        self.frame_size
    }

    pub(crate) fn frames(&self) -> u64 {
        self.frames
    }

    /// Frame index of a UMEM address, if inside the UMEM.
    #[inline]
    fn index(&self, addr: u64) -> Option<usize> {
        let i = addr >> self.shift;
        (i < self.frames).then_some(i as usize)
    }

    /// Base address of the frame holding `addr`.
    #[inline]
    pub(crate) fn base(&self, addr: u64) -> u64 {
        addr & !(self.frame_size - 1)
    }

    /// Whether `addr..addr+len` lies inside one frame.
    #[inline]
    pub(crate) fn fits(&self, addr: u64, len: u64) -> bool {
        self.index(addr).is_some() && (addr - self.base(addr)) + len <= self.frame_size
    }

    /// Take a free frame into our hands; returns its base address.
    #[inline]
    pub(crate) fn alloc(&mut self) -> Option<u64> {
        let base = self.free.pop()?;
        let i = (base >> self.shift) as usize;
        self.owned[i] = 1;
        self.in_hand += 1;
        Some(base)
    }

    /// Take a free frame to give to the kernel (fill ring); it stays unowned.
    #[inline]
    pub(crate) fn pop_free(&mut self) -> Option<u64> {
        self.free.pop()
    }

    /// Number of free frames.
    #[inline]
    pub(crate) fn free_len(&self) -> usize {
        self.free.len()
    }

    /// Put back a frame popped with [`FramePool::pop_free`] (tests only).
    #[cfg(test)]
    pub(crate) fn unpop_free(&mut self, base: u64) {
        self.free.push(base);
    }

    /// A frame came back from the kernel's receive side into our hands. False if `addr` names
    /// no frame or a frame already in our hands (a descriptor we cannot trust).
    #[inline]
    pub(crate) fn take_from_kernel(&mut self, addr: u64) -> bool {
        match self.index(addr) {
            Some(i) if self.owned[i] == 0 => {
                self.owned[i] = 1;
                self.in_hand += 1;
                true
            }
            _ => false,
        }
    }

    /// A frame completed transmission: back onto the free list. False if `addr` names no frame.
    #[inline]
    pub(crate) fn complete(&mut self, addr: u64) -> bool {
        if self.index(addr).is_none() {
            return false;
        }
        let base = self.base(addr);
        self.free.push(base);
        true
    }

    /// Whether the frame holding `addr` is in our hands.
    #[inline]
    pub(crate) fn is_owned(&self, addr: u64) -> bool {
        matches!(self.index(addr), Some(i) if self.owned[i] == 1)
    }

    /// The frame leaves our hands (queued for transmit). False if it was not ours.
    #[inline]
    pub(crate) fn give_up(&mut self, addr: u64) -> bool {
        match self.index(addr) {
            Some(i) if self.owned[i] == 1 => {
                self.owned[i] = 0;
                self.in_hand -= 1;
                true
            }
            _ => false,
        }
    }

    /// Our frame goes back onto the free list. False if it was not ours.
    #[inline]
    pub(crate) fn release(&mut self, addr: u64) -> bool {
        if !self.give_up(addr) {
            return false;
        }
        let base = self.base(addr);
        self.free.push(base);
        true
    }

    /// Frames in our hands, by counter.
    pub(crate) fn in_hand(&self) -> u64 {
        self.in_hand
    }

    /// Bytes `addr .. addr+len` of a frame in our hands, or `None` when the frame is not ours or
    /// the range leaves the frame.
    #[inline]
    pub(crate) fn bytes_mut(&mut self, addr: u64, len: u64) -> Option<&mut [u8]> {
        if !self.is_owned(addr) || !self.fits(addr, len) {
            return None;
        }
        // SAFETY: `addr + len` lies inside one frame of the mapping (checked by `fits`, and the
        // mapping holds `frames * frame_size` bytes), so the pointer stays in bounds. The frame
        // is in our hands (ownership byte set): the kernel has no descriptor for it and will not
        // touch it, and `&mut self` makes this the only live borrow of UMEM bytes.
        Some(unsafe { std::slice::from_raw_parts_mut(self.area.ptr.as_ptr().add(addr as usize), len as usize) })
    }

    /// Two distinct frames in our hands, mutably at once.
    pub(crate) fn two_mut(&mut self, a: (u64, u64), b: (u64, u64)) -> Option<(&mut [u8], &mut [u8])> {
        if self.base(a.0) == self.base(b.0) {
            return None;
        }
        for (addr, len) in [a, b] {
            if !self.is_owned(addr) || !self.fits(addr, len) {
                return None;
            }
        }
        let p = self.area.ptr.as_ptr();
        // SAFETY: both ranges are inside the mapping and inside two *different* frames (bases
        // differ, each range fits its frame), so they do not overlap; both frames are ours (see
        // `bytes_mut`), and `&mut self` excludes any other borrow.
        unsafe {
            Some((
                std::slice::from_raw_parts_mut(p.add(a.0 as usize), a.1 as usize),
                std::slice::from_raw_parts_mut(p.add(b.0 as usize), b.1 as usize),
            ))
        }
    }

    /// Several distinct frames in our hands, mutably at once: `out[k]` gets `ranges[k]`. `false`
    /// (and `out` untouched) when a frame is not ours, a range leaves its frame, or two ranges
    /// share a frame.
    pub(crate) fn many_mut<'a>(&'a mut self, ranges: &[(u64, u64)], out: &mut [&'a mut [u8]]) -> bool {
        if ranges.len() > out.len() {
            return false;
        }
        // Mark each frame (1 → 2) while checking, so that a frame named twice is caught; then
        // put the marks back whatever the outcome.
        let mut ok = true;
        let mut marked = 0;
        for &(addr, len) in ranges {
            match self.index(addr) {
                Some(i) if self.owned[i] == 1 && self.fits(addr, len) => {
                    self.owned[i] = 2;
                    marked += 1;
                }
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        for &(addr, _) in &ranges[..marked] {
            if let Some(i) = self.index(addr) {
                self.owned[i] = 1;
            }
        }
        if !ok {
            return false;
        }
        let p = self.area.ptr.as_ptr();
        for (slot, &(addr, len)) in out.iter_mut().zip(ranges) {
            // SAFETY: every range lies inside the mapping and inside its own frame (`fits`), the
            // frames are pairwise different (the marking above refused a second mention) so the
            // slices do not overlap, every frame is in our hands (the kernel holds no descriptor
            // for it), and `&'a mut self` excludes any other borrow of UMEM bytes while these
            // slices live.
            *slot = unsafe { std::slice::from_raw_parts_mut(p.add(addr as usize), len as usize) };
        }
        true
    }

    /// Check that the bitmap matches the in-hand counter and that the free list holds distinct
    /// frames none of which is in our hands.
    pub(crate) fn self_check(&self) -> Result<(), String> {
        let owned = self.owned.iter().filter(|&&b| b == 1).count() as u64;
        if owned != self.in_hand {
            return Err(format!("{owned} frames marked in hand, counter says {}", self.in_hand));
        }
        let mut seen = vec![false; self.frames as usize];
        for &base in &self.free {
            let Some(i) = self.index(base) else {
                return Err(format!("free list holds address {base:#x} outside the UMEM"));
            };
            if base != self.base(base) {
                return Err(format!("free list holds unaligned address {base:#x}"));
            }
            if seen[i] {
                return Err(format!("frame {i} is on the free list twice"));
            }
            if self.owned[i] == 1 {
                return Err(format!("frame {i} is both free and in hand"));
            }
            seen[i] = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(frames: u32) -> FramePool {
        FramePool::new(UmemArea::new(frames as usize * 2048).unwrap(), 2048, frames)
    }

    #[test]
    fn alloc_release_round_trip() {
        let mut p = pool(4);
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        assert_ne!(a, b);
        assert_eq!(p.in_hand(), 2);
        assert!(p.bytes_mut(a + 256, 100).is_some());
        assert!(p.bytes_mut(a + 256, 2048 - 256).is_some());
        assert!(p.bytes_mut(a + 256, 2048 - 255).is_none(), "crosses into the next frame");
        assert!(p.two_mut((a, 10), (b, 10)).is_some());
        assert!(p.two_mut((a, 10), (a + 100, 10)).is_none(), "same frame twice");
        assert!(p.release(a + 256));
        assert!(!p.release(a), "double release refused");
        assert!(p.bytes_mut(a, 10).is_none(), "not ours any more");
        assert_eq!(p.in_hand(), 1);
        p.self_check().unwrap();
        assert!(p.give_up(b));
        assert_eq!(p.free_len(), 3);
        p.self_check().unwrap();
        assert!(p.complete(b + 300));
        assert_eq!(p.free_len(), 4);
        p.self_check().unwrap();
        assert!(!p.take_from_kernel(4 * 2048), "outside the UMEM");
        assert!(p.take_from_kernel(2048 + 256));
        assert!(!p.take_from_kernel(2048 + 256), "already in hand");
    }

    #[test]
    fn self_check_catches_duplicates() {
        let mut p = pool(2);
        let a = p.pop_free().unwrap();
        p.unpop_free(a);
        p.unpop_free(a);
        assert!(p.self_check().unwrap_err().contains("twice"));
    }
}
