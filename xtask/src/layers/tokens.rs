//! A small Rust lexer for the layering check: it keeps identifiers, `::` and punctuation, each
//! with its line, and drops comments and literals, so that a path written in a doc comment, a
//! message or a character literal never counts as an import.

/// One token: an identifier or keyword (a raw identifier `r#name` without its `r#`), `::`, or a
/// single punctuation character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// The token's text.
    pub text: &'a str,
    /// The line it starts on, from 1.
    pub line: usize,
}

impl Token<'_> {
    /// Whether this token is an identifier or keyword (not punctuation).
    pub fn is_ident(&self) -> bool {
        self.text.bytes().next().is_some_and(is_ident_byte)
    }
}

/// Whether `byte` may appear in an identifier. Bytes of non-ASCII characters count, so a Unicode
/// identifier is one token and never split inside a character.
fn is_ident_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80
}

/// The tokens of `source`, without its comments (line, block, nested block, doc) and its
/// literals (strings, byte and C strings, raw strings, characters, bytes, numbers). Lifetimes
/// and labels come out as `'` followed by their name. Unterminated comments and literals run to
/// the end of the source, as the compiler would reject them anyway.
pub fn tokens(source: &str) -> Vec<Token<'_>> {
    let bytes = source.as_bytes();
    let mut lexer = Lexer {
        bytes,
        at: 0,
        line: 1,
    };
    let mut out = Vec::new();
    while let Some(&byte) = bytes.get(lexer.at) {
        let start = lexer.at;
        let line = lexer.line;
        match byte {
            b'\n' => {
                lexer.line += 1;
                lexer.at += 1;
            }
            _ if byte.is_ascii_whitespace() => lexer.at += 1,
            b'/' if bytes.get(start + 1) == Some(&b'/') => lexer.skip_line_comment(),
            b'/' if bytes.get(start + 1) == Some(&b'*') => lexer.skip_block_comment(),
            b'"' => lexer.skip_string(),
            b'\'' => {
                if !lexer.skip_char_literal() {
                    // A lifetime or a label: its name follows as an identifier.
                    lexer.at += 1;
                    out.push(Token { text: "'", line });
                }
            }
            b'0'..=b'9' => lexer.skip_while(is_ident_byte),
            _ if is_ident_byte(byte) => {
                lexer.skip_while(is_ident_byte);
                let ident = &source[start..lexer.at];
                if let Some(token) = lexer.after_ident(source, ident, line) {
                    out.push(token);
                }
            }
            b':' if bytes.get(start + 1) == Some(&b':') => {
                lexer.at += 2;
                out.push(Token { text: "::", line });
            }
            _ => {
                lexer.at += 1;
                out.push(Token {
                    text: &source[start..start + 1],
                    line,
                });
            }
        }
    }
    out
}

/// Where the lexer stands in the source.
struct Lexer<'a> {
    bytes: &'a [u8],
    /// The byte it looks at next.
    at: usize,
    /// The line of that byte.
    line: usize,
}

impl Lexer<'_> {
    /// Steps over one byte, counting lines.
    fn bump(&mut self) {
        if self.bytes.get(self.at) == Some(&b'\n') {
            self.line += 1;
        }
        self.at += 1;
    }

    /// Steps over the bytes for which `keep` holds (none of them a newline).
    fn skip_while(&mut self, keep: fn(u8) -> bool) {
        while self.bytes.get(self.at).is_some_and(|&b| keep(b)) {
            self.at += 1;
        }
    }

    /// Steps over `// …` up to (not over) the end of the line.
    fn skip_line_comment(&mut self) {
        while self.bytes.get(self.at).is_some_and(|&b| b != b'\n') {
            self.at += 1;
        }
    }

    /// Steps over `/* … */`, which nests.
    fn skip_block_comment(&mut self) {
        self.at += 2;
        let mut depth = 1;
        while depth > 0 && self.at < self.bytes.len() {
            match &self.bytes[self.at..] {
                [b'/', b'*', ..] => {
                    depth += 1;
                    self.at += 2;
                }
                [b'*', b'/', ..] => {
                    depth -= 1;
                    self.at += 2;
                }
                _ => self.bump(),
            }
        }
    }

    /// Steps over a `"…"` string with escapes, from its opening quote.
    fn skip_string(&mut self) {
        self.at += 1;
        while let Some(&byte) = self.bytes.get(self.at) {
            match byte {
                b'\\' => {
                    self.at += 1;
                    self.bump(); // the escaped byte, maybe a newline
                }
                b'"' => {
                    self.at += 1;
                    return;
                }
                _ => self.bump(),
            }
        }
    }

    /// Steps over `"…"`, `#"…"#`, `##"…"##` … (a raw string after its `r`), if that follows;
    /// whether it did.
    fn skip_raw_string(&mut self) -> bool {
        let hashes = self.bytes[self.at..]
            .iter()
            .take_while(|&&b| b == b'#')
            .count();
        if self.bytes.get(self.at + hashes) != Some(&b'"') {
            return false;
        }
        self.at += hashes + 1;
        while self.at < self.bytes.len() {
            if self.bytes[self.at] == b'"'
                && self.bytes[self.at + 1..]
                    .iter()
                    .take(hashes)
                    .filter(|&&b| b == b'#')
                    .count()
                    == hashes
            {
                self.at += 1 + hashes;
                return true;
            }
            self.bump();
        }
        true
    }

    /// Steps over a character literal (`'a'`, `'\''`, `'\u{1F600}'`, `'é'`) from its opening
    /// quote, if it is one rather than a lifetime or label; whether it was.
    fn skip_char_literal(&mut self) -> bool {
        let rest = &self.bytes[self.at + 1..];
        if rest.first() == Some(&b'\\') {
            // An escape: the escaped character (maybe a quote), then up to the closing quote.
            let close = rest[2.min(rest.len())..]
                .iter()
                .position(|&b| b == b'\'')
                .map_or(rest.len(), |at| at + 2);
            let end = self.at + 1 + close + 1;
            while self.at < end.min(self.bytes.len()) {
                self.bump();
            }
            return true;
        }
        // One character, then the closing quote; otherwise a lifetime.
        let width = match rest.first() {
            Some(&b) if b < 0x80 => 1,
            Some(&b) if b >= 0xF0 => 4,
            Some(&b) if b >= 0xE0 => 3,
            Some(_) => 2,
            None => return false,
        };
        if rest.get(width) == Some(&b'\'') && rest[0] != b'\n' {
            self.at += 1 + width + 1;
            return true;
        }
        false
    }

    /// After the identifier `ident` (which ends at `self.at`): the literal it prefixes
    /// (`b"…"`, `c"…"`, `r#"…"#`, `br"…"`, `b'x'`) is skipped, a raw identifier `r#name` comes
    /// out as `name`, anything else as itself.
    fn after_ident<'s>(
        &mut self,
        source: &'s str,
        ident: &'s str,
        line: usize,
    ) -> Option<Token<'s>> {
        let next = self.bytes.get(self.at).copied();
        match (ident, next) {
            ("b" | "c", Some(b'"')) => {
                self.skip_string();
                None
            }
            ("b", Some(b'\'')) => {
                self.skip_char_literal();
                None
            }
            ("r" | "br" | "cr", Some(b'"' | b'#')) if self.skip_raw_string() => None,
            ("r", Some(b'#')) => {
                // A raw identifier: `r#type` is the identifier `type`.
                self.at += 1;
                let start = self.at;
                self.skip_while(is_ident_byte);
                Some(Token {
                    text: &source[start..self.at],
                    line,
                })
            }
            _ => Some(Token { text: ident, line }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tokens' texts, joined by spaces.
    fn texts(source: &str) -> String {
        tokens(source)
            .iter()
            .map(|t| t.text)
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn paths_come_out_as_identifiers_and_double_colons() {
        assert_eq!(
            texts("use crate::{a::B, c};"),
            "use crate :: { a :: B , c } ;"
        );
        assert_eq!(texts("pub(crate) fn f()"), "pub ( crate ) fn f ( )");
        assert_eq!(texts("$crate::x"), "$ crate :: x");
        assert_eq!(texts("r#type::x"), "type :: x");
    }

    #[test]
    fn comments_go_with_their_nested_parts() {
        assert_eq!(texts("a // crate::b\nc"), "a c");
        assert_eq!(texts("/// [crate::b]\n//! crate::c\nd"), "d");
        assert_eq!(texts("a /* x /* crate::b */ crate::c */ d"), "a d");
        assert_eq!(texts("/** crate::b */ e"), "e");
    }

    #[test]
    fn literals_go_even_with_quotes_and_hashes_inside() {
        assert_eq!(texts(r#"f("crate::a \" crate::b", x)"#), "f ( , x )");
        assert_eq!(texts(r###"a r#"crate::b " crate::c"# d"###), "a d");
        assert_eq!(texts(r####"a br##"x"# "##, r"y" d"####), "a , d");
        assert_eq!(texts(r#"a b"crate::x" c"crate::y" d"#), "a d");
        assert_eq!(texts(r#"let q = '"'; crate::a"#), "let q = ; crate :: a");
        assert_eq!(texts(r"a '\'' b'\\' '\u{1F600}' 'é' d"), "a d");
        assert_eq!(texts("x = 0x1F_u8 + 1e3;"), "x = + ;");
    }

    #[test]
    fn lifetimes_and_labels_stay_code() {
        assert_eq!(texts("&'a T"), "& ' a T");
        assert_eq!(texts("'outer: loop {}"), "' outer : loop { }");
        assert_eq!(
            texts("fn f<'a>(x: &'a u8)"),
            "fn f < ' a > ( x : & ' a u8 )"
        );
    }

    #[test]
    fn lines_count_newlines_inside_comments_and_literals() {
        let source = "a\n/* \n\n */ \"x\ny\" r#\"\n\"# b\n'\\n' c";
        let lines: Vec<_> = tokens(source).iter().map(|t| (t.text, t.line)).collect();
        assert_eq!(lines, [("a", 1), ("b", 6), ("c", 7)]);
    }
}
