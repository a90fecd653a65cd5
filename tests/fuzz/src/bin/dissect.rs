//! `wire::frame::dissect` on arbitrary bytes: never panics, and what it returns lies inside
//! the frame.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(d) = scrubber::wire::frame::dissect(data) {
            assert!(d.l3_off <= data.len());
            assert!(d.l4_off + d.l4_len <= data.len());
        }
    });
}
