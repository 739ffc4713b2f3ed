//! Checking a GBNF grammar (`--grammar FILE`) the way llama.cpp will read it, before any model loads.
//!
//! Owns: [`check_gbnf`] and [`GbnfError`] (line, column, message; [`GbnfError::in_file`] adds the file name).
//! llama.cpp's parser (`llama-grammar.cpp`) only logs a mistake and hands back no grammar, deep inside model
//! loading; this is a Rust copy of the same reading: rules `name ::= alternatives` (names of letters, digits
//! and `-`), string literals and character classes with `\x`, `\u`, `\U`, `\t`, `\r`, `\n`, `\\`, `\"`, `\[`,
//! `\]`, `\-` escapes, `.`, groups (which may span lines), `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}`, `#` comments,
//! a `|` at a line's end continuing the rule, and tokens `<[ID]>`, `<TEXT>`, `!<...>`. It rebuilds llama.cpp's
//! rules (repetitions expanded the same way) to apply its limits (2000 repetitions; 2000 rules from nested
//! repetitions), its check that every rule used is defined, that `root` exists, and its left-recursion check.
//!
//! Stricter than llama.cpp, where llama.cpp would silently do something surely unintended: a rule defined twice
//! (llama.cpp keeps the last), an empty class `[]`, a range whose end is below its start, and `{m,n}` with n < m
//! (which llama.cpp expands into about 2^64 rules, hanging).
//! Not checked: that `<TEXT>` is one token of the model's vocabulary (llama.cpp checks it when the model loads).
//!
//! Characters, escapes, names, numbers and tokens are read by [`super::gbnf_lexer`].
//!
//! Must not: interpret the grammar against text (llama.cpp's sampler does that).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::gbnf_lexer::{is_word, Failure, Source};

/// llama.cpp's MAX_REPETITION_THRESHOLD.
const MAX_REPETITION: u64 = 2000;

/// Where and why a grammar is refused; shown as `FILE:LINE:COLUMN: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{line}:{column}: {message}", file.as_ref().map(|f| format!("{}:", f.display())).unwrap_or_default())]
pub struct GbnfError {
    pub file: Option<PathBuf>,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl GbnfError {
    /// The same error, naming the file the grammar came from.
    pub fn in_file(mut self, path: &Path) -> GbnfError {
        self.file = Some(path.to_path_buf());
        self
    }
}

/// Checks that llama.cpp will accept `text` as a grammar with a `root` rule.
pub fn check_gbnf(text: &str) -> Result<(), GbnfError> {
    let fail = |offset: usize, message: String| {
        let offset = (0..=offset.min(text.len()))
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        GbnfError {
            file: None,
            line,
            column,
            message,
        }
    };
    if let Some(nul) = text.find('\0') {
        return Err(fail(
            nul,
            "a NUL character; llama.cpp would stop reading the grammar here".into(),
        ));
    }
    let mut p = Parser {
        s: Source {
            text,
            src: text.as_bytes(),
        },
        ..Parser::default()
    };
    p.parse().map_err(|(offset, message)| fail(offset, message))?;
    p.check().map_err(|(offset, message)| fail(offset, message))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum El {
    End,
    Alt,
    Ref(u32),
    Terminal,
}

#[derive(Default)]
struct Parser<'a> {
    s: Source<'a>,
    symbols: HashMap<String, u32>,
    names: Vec<String>,
    /// For each symbol, the user rule it was made for (itself for a named rule).
    origin: Vec<u32>,
    rules: Vec<Option<Vec<El>>>,
    first_use: HashMap<u32, usize>,
    defined_at: HashMap<u32, usize>,
}

impl Parser<'_> {
    fn symbol(&mut self, name: &str) -> u32 {
        if let Some(id) = self.symbols.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.symbols.insert(name.to_string(), id);
        self.names.push(name.to_string());
        self.origin.push(id);
        id
    }

    fn generate(&mut self, base: &str) -> u32 {
        let id = self.names.len() as u32;
        let origin = self.symbols.get(base).copied().unwrap_or(id);
        self.symbols.insert(format!("{base}_{id}"), id);
        self.names.push(format!("{base}_{id}"));
        self.origin.push(origin);
        id
    }

    fn add_rule(&mut self, id: u32, rule: Vec<El>) {
        let id = id as usize;
        if self.rules.len() <= id {
            self.rules.resize(id + 1, None);
        }
        self.rules[id] = Some(rule);
    }

    fn alternates(&mut self, src: usize, rule_name: &str, rule_id: u32, nested: bool) -> Result<usize, Failure> {
        let mut rule = Vec::new();
        let mut pos = self.sequence(src, rule_name, &mut rule, nested)?;
        while self.s.at(pos) == b'|' {
            rule.push(El::Alt);
            pos = self.s.space(pos + 1, true);
            pos = self.sequence(pos, rule_name, &mut rule, nested)?;
        }
        rule.push(El::End);
        self.add_rule(rule_id, rule);
        Ok(pos)
    }

    fn sequence(&mut self, src: usize, rule_name: &str, rule: &mut Vec<El>, nested: bool) -> Result<usize, Failure> {
        let mut last_sym_start = rule.len();
        let mut n_prev_rules: u64 = 1;
        let mut pos = src;
        loop {
            let start = pos;
            let mut repetition = None;
            match self.s.at(pos) {
                b'"' => {
                    pos += 1;
                    last_sym_start = rule.len();
                    n_prev_rules = 1;
                    while self.s.at(pos) != b'"' {
                        if pos >= self.s.src.len() {
                            return Err((start, "string literal without its closing \"".into()));
                        }
                        pos = self.s.char(pos)?.1;
                        rule.push(El::Terminal);
                    }
                    pos = self.s.space(pos + 1, nested);
                }
                b'[' => {
                    pos += 1;
                    if self.s.at(pos) == b'^' {
                        pos += 1;
                    }
                    last_sym_start = rule.len();
                    n_prev_rules = 1;
                    while self.s.at(pos) != b']' {
                        if pos >= self.s.src.len() {
                            return Err((start, "character class without its closing ]".into()));
                        }
                        let low_at = pos;
                        let (low, next) = self.s.char(pos)?;
                        pos = next;
                        rule.push(El::Terminal);
                        if self.s.at(pos) == b'-' && self.s.at(pos + 1) != b']' {
                            if pos + 1 >= self.s.src.len() {
                                return Err((start, "character class without its closing ]".into()));
                            }
                            let (high, next) = self.s.char(pos + 1)?;
                            if high < low {
                                return Err((low_at, "range ends below its start, so it matches nothing".into()));
                            }
                            pos = next;
                            rule.push(El::Terminal);
                        }
                    }
                    if last_sym_start == rule.len() {
                        return Err((start, "empty character class []".into()));
                    }
                    pos = self.s.space(pos + 1, nested);
                }
                b'<' | b'!' => {
                    let end = self.s.token(if self.s.at(pos) == b'!' { pos + 1 } else { pos })?;
                    last_sym_start = rule.len();
                    n_prev_rules = 1;
                    rule.push(El::Terminal);
                    pos = self.s.space(end, nested);
                }
                c if is_word(c) => {
                    let end = self.s.name_end(pos);
                    let id = self.symbol(&self.s.text[pos..end]);
                    self.first_use.entry(id).or_insert(pos);
                    pos = self.s.space(end, nested);
                    last_sym_start = rule.len();
                    n_prev_rules = 1;
                    rule.push(El::Ref(id));
                }
                b'(' => {
                    pos = self.s.space(pos + 1, true);
                    let before = self.names.len() as u64;
                    let sub = self.generate(rule_name);
                    pos = self.alternates(pos, rule_name, sub, true)?;
                    n_prev_rules = (self.names.len() as u64 - before).max(1);
                    last_sym_start = rule.len();
                    rule.push(El::Ref(sub));
                    if self.s.at(pos) != b')' {
                        return Err((
                            pos,
                            format!("expecting ')' to close the group opened at {}", self.s.where_is(start)),
                        ));
                    }
                    pos = self.s.space(pos + 1, nested);
                }
                b'.' => {
                    last_sym_start = rule.len();
                    n_prev_rules = 1;
                    rule.push(El::Terminal);
                    pos = self.s.space(pos + 1, nested);
                }
                b'*' => repetition = Some((0, None, self.s.space(pos + 1, nested))),
                b'+' => repetition = Some((1, None, self.s.space(pos + 1, nested))),
                b'?' => repetition = Some((0, Some(1), self.s.space(pos + 1, nested))),
                b'{' => repetition = Some(self.braces(pos, nested)?),
                _ => return Ok(pos),
            }
            if let Some((min, max, next)) = repetition {
                if last_sym_start == rule.len() {
                    return Err((start, "expecting an item before */+/?/{".into()));
                }
                let total = match max {
                    Some(max) if max > 0 => max,
                    _ => min.max(1),
                };
                if n_prev_rules.saturating_mul(total) > MAX_REPETITION {
                    return Err((
                        start,
                        format!(
                            "nested repetitions make more than llama.cpp's {MAX_REPETITION} rules; reduce the counts"
                        ),
                    ));
                }
                let prev: Vec<El> = rule[last_sym_start..].to_vec();
                if min == 0 {
                    rule.truncate(last_sym_start);
                } else {
                    for _ in 1..min {
                        rule.extend_from_slice(&prev);
                    }
                }
                let n_opt = max.map_or(1, |max| max - min);
                let mut last = 0;
                for i in 0..n_opt {
                    let id = self.generate(rule_name);
                    let mut rec = prev.clone();
                    if i > 0 || max.is_none() {
                        rec.push(El::Ref(if max.is_none() { id } else { last }));
                    }
                    rec.extend([El::Alt, El::End]);
                    self.add_rule(id, rec);
                    last = id;
                }
                if n_opt > 0 {
                    rule.push(El::Ref(last));
                }
                n_prev_rules *= total;
                pos = next;
            }
        }
    }

    /// `{m}`, `{m,}` or `{m,n}` at `pos`: (min, max, position after it).
    fn braces(&self, start: usize, nested: bool) -> Result<(u64, Option<u64>, usize), Failure> {
        let pos = self.s.space(start + 1, nested);
        let (min, end) = self.s.int(pos)?;
        let mut pos = self.s.space(end, nested);
        let max = match self.s.at(pos) {
            b'}' => Some(min),
            b',' => {
                pos = self.s.space(pos + 1, nested);
                let max = if self.s.at(pos).is_ascii_digit() {
                    let (max, end) = self.s.int(pos)?;
                    pos = self.s.space(end, nested);
                    Some(max)
                } else {
                    None
                };
                if self.s.at(pos) != b'}' {
                    return Err((pos, "expecting '}' to end the repetition".into()));
                }
                max
            }
            _ => return Err((pos, "expecting ',' or '}' in the repetition".into())),
        };
        if min > MAX_REPETITION {
            return Err((start, format!("more than llama.cpp's {MAX_REPETITION} repetitions")));
        }
        if max.is_some_and(|max| max < min) {
            return Err((start, "the repetition's maximum is below its minimum".into()));
        }
        Ok((
            min,
            max.filter(|max| *max <= MAX_REPETITION),
            self.s.space(pos + 1, nested),
        ))
    }

    fn rule(&mut self, start: usize) -> Result<usize, Failure> {
        let end = self.s.name_end(start);
        if end == start {
            let hint = if self.s.at(start) == b'_' {
                " (names hold only letters, digits and '-')"
            } else {
                ""
            };
            return Err((start, format!("expecting a rule name{hint}")));
        }
        let name = self.s.text[start..end].to_string();
        let mut pos = self.s.space(end, false);
        let id = self.symbol(&name);
        if !self.s.src[pos..].starts_with(b"::=") {
            let hint = if self.s.at(pos) == b'_' {
                " (names hold only letters, digits and '-')"
            } else {
                ""
            };
            return Err((pos, format!("expecting ::= after the rule name {name:?}{hint}")));
        }
        if let Some(first) = self.defined_at.insert(id, start) {
            return Err((
                start,
                format!(
                    "rule {name:?} is defined twice (first at {}); llama.cpp would keep only the last",
                    self.s.where_is(first)
                ),
            ));
        }
        pos = self.s.space(pos + 3, true);
        pos = self.alternates(pos, &name, id, false)?;
        match self.s.at(pos) {
            b'\r' if self.s.at(pos + 1) == b'\n' => pos += 2,
            b'\r' | b'\n' => pos += 1,
            0 if pos >= self.s.src.len() => {}
            _ => {
                return Err((
                    pos,
                    format!(
                        "unexpected {:?}; expecting the end of the line",
                        self.s.text[pos..].chars().next().unwrap_or(' ')
                    ),
                ))
            }
        }
        Ok(self.s.space(pos, true))
    }

    fn parse(&mut self) -> Result<(), Failure> {
        let mut pos = self.s.space(0, true);
        while pos < self.s.src.len() {
            pos = self.rule(pos)?;
        }
        Ok(())
    }

    fn check(&self) -> Result<(), Failure> {
        let mut undefined: Vec<(usize, u32)> = (0..self.names.len() as u32)
            .filter(|id| self.rules.get(*id as usize).is_none_or(Option::is_none))
            .map(|id| (self.first_use.get(&id).copied().unwrap_or(0), id))
            .collect();
        undefined.sort();
        if let Some((offset, id)) = undefined.first() {
            return Err((*offset, format!("undefined rule {:?}", self.names[*id as usize])));
        }
        if self.rules.is_empty() {
            return Err((
                0,
                "the grammar has no rules; write one named root, e.g. root ::= \"yes\" | \"no\"".into(),
            ));
        }
        if !self.symbols.contains_key("root") {
            return Err((
                0,
                "no rule named root; the answer is generated from the rule root ::= ...".into(),
            ));
        }
        let rules: Vec<&[El]> = self.rules.iter().map(|r| r.as_deref().unwrap_or(&[El::End])).collect();
        let n = rules.len();
        let (mut visited, mut in_progress, mut may_be_empty) = (vec![false; n], vec![false; n], vec![false; n]);
        for i in 0..n {
            if visited[i] {
                continue;
            }
            if let Some(culprit) = left_recursion(&rules, i, &mut visited, &mut in_progress, &mut may_be_empty) {
                let rule = self.origin[culprit];
                let name = &self.names[rule as usize];
                let offset = self.defined_at.get(&rule).copied().unwrap_or(0);
                return Err((offset, format!("rule {name:?} is left-recursive (it can begin with itself), which llama.cpp refuses; rewrite `a ::= a x | y` as `a ::= y x*`")));
            }
        }
        Ok(())
    }
}

/// llama.cpp's `llama_grammar_detect_left_recursion`; returns a rule on the cycle.
fn left_recursion(
    rules: &[&[El]],
    i: usize,
    visited: &mut [bool],
    in_progress: &mut [bool],
    may_be_empty: &mut [bool],
) -> Option<usize> {
    if in_progress[i] {
        return Some(i);
    }
    in_progress[i] = true;
    let rule = rules[i];
    let mut at_start = true;
    for el in rule {
        if matches!(el, El::End | El::Alt) {
            if at_start {
                may_be_empty[i] = true;
                break;
            }
            at_start = true;
        } else {
            at_start = false;
        }
    }
    let mut recurse = true;
    for el in rule {
        match el {
            El::Ref(r) if recurse => {
                let r = *r as usize;
                if let Some(found) = left_recursion(rules, r, visited, in_progress, may_be_empty) {
                    return Some(found);
                }
                if !may_be_empty[r] {
                    recurse = false;
                }
            }
            El::End | El::Alt => recurse = true,
            _ => recurse = false,
        }
    }
    in_progress[i] = false;
    visited[i] = true;
    None
}

#[cfg(test)]
#[path = "gbnf_check_tests.rs"]
mod tests;
