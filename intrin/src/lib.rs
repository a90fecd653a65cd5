//! CPU intrinsics behind safe functions.
//!
//! The engine judges a batch of frames in stages so that the cache misses of 64 frames overlap
//! instead of queueing one after another: it asks for the memory a later stage will read (the
//! session table's tag groups and entries, the rule tables' first levels) with [`prefetch`]
//! first. A prefetch is a hint: it changes no result, reads or writes nothing a program can
//! observe, and never faults, even for an address it cannot reach. On targets without the
//! instruction it does nothing.
//!
//! Besides `scrubber-xsk`, this is the only crate of the workspace with `unsafe` code: one block,
//! around the intrinsic, whose requirement (SSE) is part of the x86-64 baseline.

/// Ask the CPU to bring the cache line holding `*r` into every cache level.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only requires SSE, which every x86-64 CPU has (it is part of the
    // x86-64 baseline ABI the compiler targets); PREFETCHT0 is a hint that never faults and
    // neither reads nor writes anything observable; the pointer comes from a valid reference.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>((r as *const T).cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// [`prefetch`] the element `i` of `s`, if there is one.
#[inline(always)]
pub fn prefetch_at<T>(s: &[T], i: usize) {
    if let Some(r) = s.get(i) {
        prefetch(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_changes_nothing() {
        let v: Vec<u64> = (0..1024).collect();
        for i in (0..2048).step_by(7) {
            prefetch_at(&v, i); // out of range: nothing happens
        }
        prefetch(&v[3]);
        assert_eq!(v.iter().sum::<u64>(), 1023 * 1024 / 2);
    }
}
