//! TCP option parsing (the engine's parser and the builder's) on arbitrary bytes: never
//! panics; what parses re-emits to something that parses the same.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let opts = &data[..data.len().min(40)];
        let _ = scrubber::wire::tcp::parse_options(opts);
        if let Ok(r) = scrubber::wire::tcp::OptionsRepr::parse(opts) {
            let n = r.buffer_len();
            if n <= 40 {
                let mut buf = vec![0u8; n];
                r.emit(&mut buf);
                let again = scrubber::wire::tcp::OptionsRepr::parse(&buf).expect("emitted options parse");
                assert_eq!(again.mss, r.mss);
                assert_eq!(again.wscale, r.wscale);
                assert_eq!(again.timestamp, r.timestamp);
            }
        }
    });
}
