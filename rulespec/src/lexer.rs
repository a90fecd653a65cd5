//! Splitting one line into tokens.

use crate::diag::{Diagnostic, FileId, Span};

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokKind {
    /// A run of characters other than space, tab, `,`, `=`, `#` and `"`.
    Word(String),
    /// A `"…"` string, unescaped.
    Str(String),
    /// `,`
    Comma,
    /// `=`
    Eq,
}

/// A token and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokKind,
    /// Where it is.
    pub span: Span,
}

impl Token {
    /// The token as the user wrote it (roughly), for messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            TokKind::Word(w) => format!("'{w}'"),
            TokKind::Str(s) => format!("\"{s}\""),
            TokKind::Comma => "','".into(),
            TokKind::Eq => "'='".into(),
        }
    }
}

/// A position-tracking helper for building spans within one line.
#[derive(Clone, Copy, Debug)]
pub struct LinePos {
    /// The file.
    pub file: FileId,
    /// 1-based line number.
    pub line: u32,
    /// Byte offset of the line's start in the file.
    pub start: usize,
}

impl LinePos {
    /// The span of bytes `a..b` of `text` (the line).
    pub fn span(&self, text: &str, a: usize, b: usize) -> Span {
        let a = a.min(text.len());
        let col = text.get(..a).map(|s| s.chars().count()).unwrap_or(a) as u32 + 1;
        Span { file: self.file, line: self.line, col, start: self.start + a, end: self.start + b.max(a) }
    }
}

fn is_word_byte(c: char) -> bool {
    !(c.is_whitespace() || matches!(c, ',' | '=' | '#' | '"'))
}

/// Split one line (without its newline) into tokens, dropping the comment.
pub fn lex_line(text: &str, pos: LinePos) -> Result<Vec<Token>, Diagnostic> {
    let mut toks = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some(&(i, c)) = it.peek() {
        if c.is_whitespace() {
            it.next();
        } else if c == '#' {
            break;
        } else if c == ',' || c == '=' {
            it.next();
            let kind = if c == ',' { TokKind::Comma } else { TokKind::Eq };
            toks.push(Token { kind, span: pos.span(text, i, i + 1) });
        } else if c == '"' {
            it.next();
            let mut s = String::new();
            let mut closed = None;
            while let Some((j, d)) = it.next() {
                match d {
                    '"' => {
                        closed = Some(j + 1);
                        break;
                    }
                    '\\' => match it.next() {
                        Some((_, e)) => s.push(e),
                        None => break,
                    },
                    _ => s.push(d),
                }
            }
            match closed {
                Some(end) => toks.push(Token { kind: TokKind::Str(s), span: pos.span(text, i, end) }),
                None => {
                    return Err(Diagnostic::error(pos.span(text, i, text.trim_end().len()), "unterminated string")
                        .expected("a closing \" on the same line"))
                }
            }
        } else {
            let mut end = i;
            while let Some(&(j, d)) = it.peek() {
                if !is_word_byte(d) {
                    break;
                }
                end = j + d.len_utf8();
                it.next();
            }
            toks.push(Token { kind: TokKind::Word(text[i..end].to_string()), span: pos.span(text, i, end) });
        }
    }
    Ok(toks)
}
