//! Imports point one way.
//!
//! * `scrubber/src`: the layers follow a packet's path — `wire` (0) < `engine` (1) <
//!   `dataplane` (2) < `control` (3) < `tools` (4) — and no file may use a module of a higher
//!   layer. (`cli/` and `main.rs` are the binary, above all of them.)
//! * `xsk/src`: the leaves `desc` and `stats` < `iface`, `umem` < `port`, `bpf` < `pair`.
//! * In both crates the files form no cycle: the graph of "file A uses an item of file B" is
//!   acyclic, where a file may always use its own ancestors (a child module is part of its
//!   parent, as `engine/tcp/inbound.rs` implements `Engine` of `engine/mod.rs`) and the crate
//!   root (which only declares modules, re-exports, and in `xsk` holds the shared error type).
//!
//! Paths are found in `use` trees (braces flattened) and in code (`crate::…`, `super::…`),
//! comments and doc comments excluded, and resolved to the file that defines the module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's source files, by module path (`["engine", "tcp", "inbound"]`).
struct Crate {
    root: PathBuf,
    files: BTreeMap<Vec<String>, PathBuf>,
    /// Names the crate root re-exports, and the module they come from.
    reexports: BTreeMap<String, Vec<String>>,
}

fn module_path(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

impl Crate {
    fn load(root: &Path, skip: &[&str]) -> Crate {
        let mut all = Vec::new();
        walk(root, &mut all);
        let mut files = BTreeMap::new();
        for f in all {
            let m = module_path(root, &f);
            if m.first().is_some_and(|t| skip.contains(&t.as_str())) || f.ends_with("main.rs") {
                continue;
            }
            files.insert(m, f);
        }
        let lib = std::fs::read_to_string(root.join("lib.rs")).unwrap();
        let mut reexports = BTreeMap::new();
        for path in use_paths(&strip_comments(&lib)).into_iter().filter(|p| p.first().is_some_and(|h| h != "std")) {
            if path.len() >= 2 {
                let name = path.last().unwrap().clone();
                reexports.insert(name, path[..path.len() - 1].to_vec());
            }
        }
        Crate { root: root.to_path_buf(), files, reexports }
    }

    /// The module (a key of `files`) an absolute path names: its longest prefix that is a
    /// module of the crate. `crate::Name` re-exported by the root resolves to its source.
    fn resolve(&self, abs: &[String]) -> Vec<String> {
        if abs.len() == 1 {
            if let Some(m) = self.reexports.get(&abs[0]) {
                return self.resolve(m);
            }
        }
        let mut best = Vec::new();
        for n in 1..=abs.len() {
            if self.files.contains_key(&abs[..n]) {
                best = abs[..n].to_vec();
            }
        }
        best
    }
}

/// Source without comments (`//`, `///`, `//!`, `/* */`) and string literals.
fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Flatten `a::{b::{c, d}, e}` into `[a,b,c] [a,b,d] [a,e]`.
fn flatten(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head: Vec<String> =
            tree[..open].split("::").map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut p = prefix.to_vec();
        p.extend(head);
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    flatten(&p, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        flatten(&p, &inner[start..], out);
    } else {
        let t = tree.split(" as ").next().unwrap();
        let mut p = prefix.to_vec();
        p.extend(t.split("::").map(str::trim).filter(|s| !s.is_empty()).map(String::from));
        if p.last().is_some_and(|l| l == "self") {
            p.pop();
        }
        out.push(p);
    }
}

/// Every path in the `use` declarations of `code`.
fn use_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before_ok = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric() && rest.as_bytes()[i - 1] != b'_';
        rest = &rest[i + 4..];
        if !before_ok {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let stmt = &rest[..end];
        if stmt.chars().all(|c| c.is_alphanumeric() || "_:{}, *\n\t".contains(c)) {
            flatten(&[], stmt, &mut out);
        }
        rest = &rest[end..];
    }
    out
}

/// `crate::…` and `super::…` paths written in code (outside `use`).
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(i) = rest.find(start) {
            let prev = if i == 0 { b' ' } else { rest.as_bytes()[i - 1] };
            rest = &rest[i..];
            let len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
            if !(prev.is_ascii_alphanumeric() || prev == b'_' || prev == b':') {
                out.push(rest[..len].split("::").filter(|s| !s.is_empty()).map(String::from).collect());
            }
            rest = &rest[len.max(1)..];
        }
    }
    out
}

/// Absolute module path of `p` written in the file of module `me` (whose own path is `me`;
/// `dir` is the module that `super` is relative to: `me` for mod.rs/lib.rs, else its parent).
fn absolute(p: &[String], me: &[String], is_mod_file: bool) -> Option<Vec<String>> {
    let first = p.first()?;
    let mut base: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "super" | "self" => {
            // In `a/b.rs` (module a::b), `self` is a::b and `super` is a. In `a/mod.rs`
            // (module a) likewise `super` is the crate root.
            let _ = is_mod_file;
            me.to_vec()
        }
        _ => return None, // an external crate, std, or a local name
    };
    let mut rest = &p[1..];
    if first == "super" {
        base.pop();
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Every (from module, to module) use edge of the crate; with `tests`, the `#[cfg(test)]`
/// modules at the end of files count too.
fn edges(c: &Crate, tests: bool) -> BTreeSet<(Vec<String>, Vec<String>)> {
    let mut e = BTreeSet::new();
    for (m, f) in &c.files {
        let mut code = strip_comments(&std::fs::read_to_string(f).unwrap());
        if !tests {
            if let Some(i) = code.find("#[cfg(test)]") {
                code.truncate(i);
            }
        }
        let is_mod = f.ends_with("mod.rs") || f.ends_with("lib.rs");
        let mut paths = use_paths(&code);
        paths.extend(inline_paths(&code));
        // Relative `use` paths (`use tcp::x`) in a mod file name its children.
        for p in paths {
            let abs = match absolute(&p, m, is_mod) {
                Some(a) => a,
                None if is_mod && p.len() > 1 && c.files.contains_key(&[m.clone(), vec![p[0].clone()]].concat()) => {
                    [m.clone(), p.clone()].concat()
                }
                None => continue,
            };
            let to = c.resolve(&abs);
            if to != *m {
                e.insert((m.clone(), to));
            }
        }
    }
    e
}

fn is_ancestor(a: &[String], of: &[String]) -> bool {
    a.len() < of.len() && of.starts_with(a)
}

/// The file graph without edges to ancestors (and the root) must be acyclic.
fn assert_acyclic(name: &str, e: &BTreeSet<(Vec<String>, Vec<String>)>) {
    let mut g: BTreeMap<&Vec<String>, Vec<&Vec<String>>> = BTreeMap::new();
    for (a, b) in e {
        if !b.is_empty() && !is_ancestor(b, a) {
            g.entry(a).or_default().push(b);
        }
    }
    // Depth-first search for a back edge.
    fn visit<'a>(
        n: &'a Vec<String>,
        g: &BTreeMap<&'a Vec<String>, Vec<&'a Vec<String>>>,
        state: &mut BTreeMap<&'a Vec<String>, u8>,
        stack: &mut Vec<&'a Vec<String>>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let i = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cyc: Vec<String> = stack[i..].iter().map(|m| m.join("::")).collect();
                cyc.push(n.join("::"));
                return Some(cyc);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(n, 1);
        stack.push(n);
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, &g, &mut state, &mut Vec::new()) {
            panic!("{name}: import cycle {}", c.join(" -> "));
        }
    }
}

fn scrubber_layer(m: &[String]) -> Option<usize> {
    ["wire", "engine", "dataplane", "control", "tools"].iter().position(|l| m.first().is_some_and(|f| f == l))
}

fn xsk_rank(m: &[String]) -> Option<usize> {
    let r = match m.first()?.as_str() {
        "desc" => 0,
        "stats" | "iface" | "umem" => 1,
        "port" | "bpf" => 2,
        "pair" => 3,
        _ => return None,
    };
    Some(r)
}

fn src(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("src")
}

#[test]
fn scrubber_layers_point_one_way_and_files_form_no_cycle() {
    let c = Crate::load(&src("scrubber"), &["cli"]);
    assert!(c.files.len() > 40, "found only {} files under {}", c.files.len(), c.root.display());
    let e = edges(&c, true);
    let mut wrong = Vec::new();
    for (a, b) in &e {
        if let (Some(la), Some(lb)) = (scrubber_layer(a), scrubber_layer(b)) {
            if lb > la {
                wrong.push(format!("{} (layer {la}) uses {} (layer {lb})", a.join("::"), b.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "lower layers must not use higher ones:\n{}", wrong.join("\n"));
    // Test modules may use their own module's helpers both ways (frame's tests build frames
    // with the builder, which parses with frame): cycles are checked without them.
    assert_acyclic("scrubber", &edges(&c, false));
    // The checker sees real edges (so it can fail).
    assert!(
        e.contains(&(vec!["engine".into(), "tcp".into(), "inbound".into()], vec!["engine".into(), "session".into()]))
    );
    assert!(e
        .iter()
        .any(|(a, b)| a.first().is_some_and(|x| x == "control") && b.first().is_some_and(|x| x == "dataplane")));
}

#[test]
fn xsk_leaves_below_sockets_and_no_cycle() {
    let c = Crate::load(&src("xsk"), &[]);
    let e = edges(&c, true);
    let mut wrong = Vec::new();
    for (a, b) in &e {
        if let (Some(ra), Some(rb)) = (xsk_rank(a), xsk_rank(b)) {
            if rb >= ra && a != b {
                wrong.push(format!("{} (rank {ra}) uses {} (rank {rb})", a.join("::"), b.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "xsk modules must only use lower ones:\n{}", wrong.join("\n"));
    assert_acyclic("xsk", &e);
    assert!(e.contains(&(vec!["pair".into()], vec!["port".into()])), "{e:?}");
}

#[test]
fn the_checker_finds_cycles_and_upward_edges() {
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let mut e = BTreeSet::new();
    e.insert((m("engine::a"), m("engine::b")));
    e.insert((m("engine::b"), m("engine::a")));
    assert!(std::panic::catch_unwind(|| assert_acyclic("t", &e)).is_err());
    let mut ok = BTreeSet::new();
    ok.insert((m("engine::tcp::inbound"), m("engine")));
    ok.insert((m("engine"), m("engine::tcp")));
    assert_acyclic("t", &ok);
    let mut v = Vec::new();
    flatten(&[], "crate::engine::{session::{Session, tick}, Engine as E, self}", &mut v);
    assert_eq!(
        v,
        vec![
            m("crate::engine::session::Session"),
            m("crate::engine::session::tick"),
            m("crate::engine::Engine"),
            m("crate::engine")
        ]
    );
    assert_eq!(absolute(&m("super::session::X"), &m("engine::tcp"), true), Some(m("engine::session::X")));
    assert_eq!(scrubber_layer(&m("tools::replay")), Some(4));
}
