//! Where rule files and list files come from: the [`Source`] trait, an in-memory source for tests
//! and a file-system source for the scrubber.

use std::collections::BTreeMap;

/// Why a file could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// There is no such file.
    #[error("no such file")]
    NotFound,
    /// The file exists but could not be read (permissions, not UTF-8, …).
    #[error("{0}")]
    Unreadable(String),
}

/// Reads the files a policy names. Paths are passed exactly as resolved by the checker
/// (relative paths are joined to the directory of the file that names them).
pub trait Source {
    /// The whole text of the file at `path`.
    fn read(&self, path: &str) -> Result<String, LoadError>;
}

/// Files held in memory, for tests and tools.
#[derive(Clone, Debug, Default)]
pub struct MemSource {
    files: BTreeMap<String, String>,
}

impl MemSource {
    /// An empty set of files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) a file; returns `self` for chaining.
    pub fn with(mut self, path: impl Into<String>, text: impl Into<String>) -> Self {
        self.files.insert(path.into(), text.into());
        self
    }

    /// Add (or replace) a file.
    pub fn insert(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.files.insert(path.into(), text.into());
    }
}

impl Source for MemSource {
    fn read(&self, path: &str) -> Result<String, LoadError> {
        self.files.get(path).cloned().ok_or(LoadError::NotFound)
    }
}

/// Reads files from the file system. This is the only I/O the crate does.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsSource;

impl Source for FsSource {
    fn read(&self, path: &str) -> Result<String, LoadError> {
        match std::fs::read_to_string(path) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LoadError::NotFound),
            Err(e) => Err(LoadError::Unreadable(e.to_string())),
        }
    }
}

/// Resolve `rel` against the directory of `base`, normalising `.` and `..` lexically.
pub fn resolve(base: &str, rel: &str) -> String {
    let joined = if rel.starts_with('/') {
        rel.to_string()
    } else {
        match base.rfind('/') {
            Some(i) => format!("{}/{rel}", &base[..i]),
            None => rel.to_string(),
        }
    };
    normalize(&joined)
}

fn normalize(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            ".." if abs => {}
            c => parts.push(c),
        }
    }
    let s = parts.join("/");
    if abs {
        format!("/{s}")
    } else if s.is_empty() {
        ".".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_paths() {
        assert_eq!(resolve("examples/web.rules", "lists/a.txt"), "examples/lists/a.txt");
        assert_eq!(resolve("web.rules", "lists/a.txt"), "lists/a.txt");
        assert_eq!(resolve("a/b/c.rules", "../d.rules"), "a/d.rules");
        assert_eq!(resolve("a/b.rules", "/etc/x"), "/etc/x");
        assert_eq!(resolve("a/b.rules", "./c/../b.rules"), "a/b.rules");
        assert_eq!(resolve("x.rules", "../../y"), "../../y");
    }
}
