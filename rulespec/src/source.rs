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
///
/// Only regular files are read (a FIFO, device or directory is refused without blocking on it),
/// at most [`FsSource::max_bytes`] each (a larger file is refused before it is read), and the
/// text must be UTF-8 (an invalid byte is reported with its line, column and offset).
#[derive(Clone, Copy, Debug)]
pub struct FsSource {
    /// Largest file read, in bytes.
    pub max_bytes: u64,
}

impl FsSource {
    /// Files up to 64 MiB (a 1 M-prefix list is about 20 MiB).
    pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

    /// A source reading files of at most `max_bytes`.
    pub fn with_max(max_bytes: u64) -> Self {
        FsSource { max_bytes }
    }
}

impl Default for FsSource {
    fn default() -> Self {
        FsSource { max_bytes: Self::DEFAULT_MAX_BYTES }
    }
}

impl Source for FsSource {
    fn read(&self, path: &str) -> Result<String, LoadError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let md = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LoadError::NotFound),
            Err(e) => return Err(LoadError::Unreadable(e.to_string())),
        };
        if !md.is_file() {
            return Err(LoadError::Unreadable(format!(
                "not a regular file ({}): rule and list files must be regular files",
                kind_of(&md)
            )));
        }
        // O_NONBLOCK: if the path was swapped for a FIFO since the check, opening it does not
        // wait for a writer; the type is checked again on the opened file.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| LoadError::Unreadable(e.to_string()))?;
        let md = f.metadata().map_err(|e| LoadError::Unreadable(e.to_string()))?;
        if !md.is_file() {
            return Err(LoadError::Unreadable(format!("not a regular file ({})", kind_of(&md))));
        }
        if md.len() > self.max_bytes {
            return Err(LoadError::Unreadable(format!(
                "{} bytes, more than the limit of {} (raise it with --max-file-size)",
                md.len(),
                self.max_bytes
            )));
        }
        let mut bytes = Vec::with_capacity(md.len() as usize);
        f.take(self.max_bytes + 1).read_to_end(&mut bytes).map_err(|e| LoadError::Unreadable(e.to_string()))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(LoadError::Unreadable(format!("grew past the limit of {} bytes while read", self.max_bytes)));
        }
        String::from_utf8(bytes).map_err(|e| LoadError::Unreadable(utf8_error(e.as_bytes(), e.utf8_error())))
    }
}

fn kind_of(md: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = md.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a file"
    }
}

/// Where the first invalid byte of a not-UTF-8 text is: line, column, offset.
pub fn utf8_error(bytes: &[u8], e: std::str::Utf8Error) -> String {
    let at = e.valid_up_to();
    let before = &bytes[..at];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
    let byte = bytes.get(at).copied().unwrap_or(0);
    format!(
        "not UTF-8: byte 0x{byte:02x} at line {line}, column {col} (offset {at}); save the file as UTF-8 \
         (e.g. iconv -f latin1 -t utf-8)"
    )
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
    fn fs_source_refuses_fifos_large_files_and_bad_utf8_with_a_position() {
        let dir = std::env::temp_dir().join(format!("rulespec-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
        std::fs::write(p("ok.rules"), "deny from 198.18.0.0/24\n").unwrap();
        assert!(FsSource::default().read(&p("ok.rules")).is_ok());
        // Latin-1 é on line 2.
        std::fs::write(p("latin1.rules"), b"# ok\n# caf\xe9\n").unwrap();
        let e = FsSource::default().read(&p("latin1.rules")).unwrap_err().to_string();
        assert!(e.contains("line 2, column 6") && e.contains("0xe9") && e.contains("offset 10"), "{e}");
        // Too large.
        std::fs::write(p("big.txt"), vec![b'#'; 2000]).unwrap();
        let e = FsSource::with_max(1000).read(&p("big.txt")).unwrap_err().to_string();
        assert!(e.contains("2000 bytes") && e.contains("--max-file-size"), "{e}");
        // A FIFO is refused at once (no writer: a plain open would block forever). Made with
        // the mkfifo tool: this crate has no unsafe code for the FFI call.
        let made = std::process::Command::new("mkfifo").arg(p("fifo")).status().map(|s| s.success()).unwrap_or(false);
        if made {
            let e = FsSource::default().read(&p("fifo")).unwrap_err().to_string();
            assert!(e.contains("FIFO"), "{e}");
        }
        let e = FsSource::default().read(&dir.to_string_lossy()).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
