//! Source files, spans and diagnostics (`file:line:column: error: …` with a caret line).

use std::fmt::{self, Write as _};

/// Identifies one loaded file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A location in a source file: the file, 1-based line and column (in characters), and the byte
/// range in the file's text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// The file.
    pub file: FileId,
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub col: u32,
    /// Byte offset of the first byte, in the whole file.
    pub start: usize,
    /// Byte offset one past the last byte, in the whole file.
    pub end: usize,
}

/// A value and where it was written.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    /// The value.
    pub node: T,
    /// Where it was written.
    pub span: Span,
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    /// Spanned values compare by value only: the same thing written in two places is equal.
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node
    }
}

impl<T: Eq> Eq for Spanned<T> {}

/// One file's name and text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The name as shown in diagnostics (the path it was loaded from).
    pub name: String,
    /// The full text.
    pub text: String,
}

impl SourceFile {
    /// The text of 1-based line `line`, without its line ending; empty when out of range.
    pub fn line_text(&self, line: u32) -> &str {
        let idx = (line as usize).saturating_sub(1);
        self.text.split('\n').nth(idx).map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or("")
    }
}

impl SourceFile {
    /// The text of the line containing byte offset `at`, without its line ending.
    pub fn line_at(&self, at: usize) -> &str {
        let mut at = at.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        let start = self.text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = self.text[at..].find('\n').map_or(self.text.len(), |i| at + i);
        let line = &self.text[start..end];
        line.strip_suffix('\r').unwrap_or(line)
    }
}

/// All files read while checking a policy, indexed by [`FileId`].
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a file and return its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile { name: name.into(), text: text.into() });
        FileId(u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX))
    }

    /// Every file, in the order read.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// The file with id `id`, if any.
    pub fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    /// The file's display name, or `?`.
    pub fn name(&self, id: FileId) -> &str {
        self.get(id).map(|f| f.name.as_str()).unwrap_or("?")
    }

    /// `file:line:column` for a span.
    pub fn location(&self, span: Span) -> String {
        format!("{}:{}:{}", self.name(span.file), span.line, span.col)
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The policy cannot be used.
    Error,
    /// The policy works, but probably not as meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where; `None` for problems with no place in a file (e.g. the top file is missing).
    pub span: Option<Span>,
    /// What is wrong.
    pub message: String,
    /// What was expected instead, shown after the caret.
    pub expected: Option<String>,
    /// Further notes (e.g. where a name was first defined).
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Self { severity: Severity::Error, span: Some(span), message: message.into(), expected: None, notes: vec![] }
    }

    /// A warning at `span`.
    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, span: Some(span), message: message.into(), expected: None, notes: vec![] }
    }

    /// Add "expected …" text.
    pub fn expected(mut self, what: impl Into<String>) -> Self {
        self.expected = Some(what.into());
        self
    }

    /// Add a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Render as text: `file:line:column: error: message`, the source line, a caret line with
    /// the "expected …" text, and notes. Ends with a newline.
    pub fn render(&self, sources: &SourceMap) -> String {
        let mut out = String::new();
        let Some(span) = self.span else {
            let _ = writeln!(out, "{}: {}", self.severity, self.message);
            if let Some(e) = &self.expected {
                let _ = writeln!(out, "  = expected {e}");
            }
            for n in &self.notes {
                let _ = writeln!(out, "  = note: {n}");
            }
            return out;
        };
        let _ = writeln!(out, "{}: {}: {}", sources.location(span), self.severity, self.message);
        let text = sources.get(span.file).map(|f| f.line_at(span.start)).unwrap_or("");
        let shown: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let num = span.line.to_string();
        let pad = " ".repeat(num.len());
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{num} | {}", shown.trim_end());
        // Width of the underline in characters, clamped to the line.
        let line_start = span.start.saturating_sub(byte_col(text, span.col));
        let width = text
            .get(span.start.saturating_sub(line_start)..span.end.saturating_sub(line_start).min(text.len()))
            .map(|s| s.chars().count())
            .unwrap_or(0)
            .max(1);
        let mut caret = format!("{pad} | {}{}", " ".repeat(span.col.saturating_sub(1) as usize), "^".repeat(width));
        if let Some(e) = &self.expected {
            let _ = write!(caret, " expected {e}");
        }
        let _ = writeln!(out, "{caret}");
        for n in &self.notes {
            let _ = writeln!(out, "{pad} = note: {n}");
        }
        out
    }
}

/// Byte offset of 1-based character column `col` in `text` (clamped).
fn byte_col(text: &str, col: u32) -> usize {
    text.char_indices().nth(col.saturating_sub(1) as usize).map(|(i, _)| i).unwrap_or(text.len())
}

/// Render many diagnostics, separated by blank lines.
pub fn render_all(diags: &[Diagnostic], sources: &SourceMap) -> String {
    diags.iter().map(|d| d.render(sources)).collect::<Vec<_>>().join("\n")
}
