//! Reading GBNF text character by character, as llama.cpp's grammar parser does.
//!
//! Owns: [`Source`]: whitespace and `#` comments (newlines only where llama.cpp allows them), rule names,
//! numbers, escapes in literals and classes (`\x`, `\u`, `\U`, `\t`, `\r`, `\n` and the escaped
//! punctuation), tokens (`<[ID]>`, `<TEXT>`), and turning an offset into `line:column`.
//!
//! Must not: know rules or alternatives ([`super::gbnf_check`] does).

/// A byte offset into the grammar and what is wrong there.
pub type Failure = (usize, String);

/// Whether llama.cpp reads `c` as part of a rule name.
pub fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

/// The grammar text (known to hold no NUL), read at byte offsets.
#[derive(Default)]
pub struct Source<'a> {
    pub text: &'a str,
    pub src: &'a [u8],
}

impl Source<'_> {
    pub fn at(&self, pos: usize) -> u8 {
        self.src.get(pos).copied().unwrap_or(0)
    }

    pub fn space(&self, mut pos: usize, newline_ok: bool) -> usize {
        loop {
            match self.at(pos) {
                b' ' | b'\t' => pos += 1,
                b'\r' | b'\n' if newline_ok => pos += 1,
                b'#' => {
                    while !matches!(self.at(pos), 0 | b'\r' | b'\n') {
                        pos += 1;
                    }
                }
                _ => return pos,
            }
        }
    }

    pub fn name_end(&self, pos: usize) -> usize {
        let mut end = pos;
        while is_word(self.at(end)) {
            end += 1;
        }
        end
    }

    pub fn int(&self, pos: usize) -> Result<(u64, usize), Failure> {
        let end = pos + self.src[pos..].iter().take_while(|b| b.is_ascii_digit()).count();
        match self.text[pos..end].parse() {
            Ok(n) => Ok((n, end)),
            Err(_) if end == pos => Err((pos, "expecting a number".into())),
            Err(_) => Err((pos, "number too large".into())),
        }
    }

    pub fn hex(&self, pos: usize, size: usize) -> Result<(u32, usize), Failure> {
        let digits = self.src[pos..]
            .iter()
            .take(size)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits != size {
            return Err((pos, format!("expecting {size} hex digits")));
        }
        let value = u32::from_str_radix(&self.text[pos..pos + size], 16)
            .map_err(|_| (pos, "hex value too large".to_string()))?;
        Ok((value, pos + size))
    }

    pub fn char(&self, pos: usize) -> Result<(u32, usize), Failure> {
        if self.at(pos) == b'\\' {
            return match self.at(pos + 1) {
                b'x' => self.hex(pos + 2, 2),
                b'u' => self.hex(pos + 2, 4),
                b'U' => self.hex(pos + 2, 8),
                b't' => Ok((9, pos + 2)),
                b'r' => Ok((13, pos + 2)),
                b'n' => Ok((10, pos + 2)),
                c @ (b'\\' | b'"' | b'[' | b']' | b'-') => Ok((c as u32, pos + 2)),
                _ => Err((
                    pos,
                    "unknown escape; use \\x, \\u, \\U, \\t, \\r, \\n, \\\\, \\\", \\[, \\] or \\-".into(),
                )),
            };
        }
        match self.text[pos..].chars().next() {
            Some(c) => Ok((c as u32, pos + c.len_utf8())),
            None => Err((pos, "unexpected end of the grammar".into())),
        }
    }

    pub fn token(&self, mut pos: usize) -> Result<usize, Failure> {
        if self.at(pos) != b'<' {
            return Err((pos, "expecting '<' (a token like <[123]> or <text>)".into()));
        }
        pos += 1;
        if self.at(pos) == b'[' {
            let (id, end) = self.int(pos + 1)?;
            if id > u32::MAX as u64 {
                return Err((pos + 1, "token id too large".into()));
            }
            if self.at(end) != b']' || self.at(end + 1) != b'>' {
                return Err((end, "expecting ]> to end the token id".into()));
            }
            return Ok(end + 2);
        }
        match self.src[pos..].iter().position(|b| *b == b'>') {
            Some(n) => Ok(pos + n + 1),
            None => Err((self.src.len(), "expecting '>' to end the token".into())),
        }
    }

    pub fn where_is(&self, offset: usize) -> String {
        let before = &self.text[..offset];
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        format!("{}:{column}", before.matches('\n').count() + 1)
    }
}
