//! The rule-file parser, checker and compiler on arbitrary text (with an included file and a
//! list): never panics; a policy that checks either compiles or gives a compile error.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data).into_owned();
        let (main, extra) = text.split_once("\n--\n").unwrap_or((&text, ""));
        let src = rulespec::MemSource::new()
            .with("main.rules", main)
            .with("inc.rules", extra)
            .with("list.txt", "198.18.0.0/24\n2001:2::/64\n");
        let checked = rulespec::check("main.rules", &src);
        let _ = checked.render();
        if let Some(p) = checked.policy.as_ref().filter(|_| !checked.has_errors()) {
            if let Ok(c) = rulespec::compile(p) {
                let _ = c.stats();
            }
        }
    });
}
