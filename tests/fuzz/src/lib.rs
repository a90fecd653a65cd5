//! Shared helpers of the fuzz targets: how a fuzz input becomes several frames.

/// Split `data` into frames: each frame is a 2-byte big-endian length (at most 4096) followed
/// by that many bytes (or what is left). The first byte of each frame's length chooses the
/// direction (bit 7) in the engine target.
pub fn frames(mut data: &[u8]) -> impl Iterator<Item = (bool, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 2 {
            return None;
        }
        let outbound = data[0] & 0x80 != 0;
        let n = (usize::from(data[0] & 0x0f) << 8 | usize::from(data[1])).min(data.len() - 2);
        let (f, rest) = data[2..].split_at(n);
        data = rest;
        Some((outbound, f))
    })
}
