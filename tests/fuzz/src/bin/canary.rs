//! Not a target: proof that the fuzzing set-up works. It crashes on inputs starting with
//! "FUZZ", reachable one byte (one branch) at a time; `scripts/fuzz.sh` requires AFL++ to find
//! that crash, so a build without coverage instrumentation or a broken afl-fuzz fails CI
//! instead of reporting "0 crashes" forever.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        if data.first() == Some(&b'F')
            && data.get(1) == Some(&b'U')
            && data.get(2) == Some(&b'Z')
            && data.get(3) == Some(&b'Z')
        {
            panic!("the canary: the fuzzer found the planted crash");
        }
    });
}
