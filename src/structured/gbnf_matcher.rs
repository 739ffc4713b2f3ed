//! Test support: a small GBNF matcher, to check that generated grammars accept exactly what they should.
//!
//! Owns: reading one-rule-per-line GBNF (what [`super::gbnf`] writes) and matching a whole text against a rule
//! by set-of-end-positions search. Must not: be used outside tests (llama.cpp is the real matcher).

use std::collections::{BTreeSet, HashMap};

enum Atom {
    Literal(Vec<char>),
    Class(bool, Vec<(char, char)>),
    Any,
    Rule(String),
    Group(Vec<Vec<Item>>),
}

struct Item {
    atom: Atom,
    min: usize,
    max: Option<usize>,
}

pub struct Matcher {
    rules: HashMap<String, Vec<Vec<Item>>>,
}

struct Reader<'a> {
    s: &'a [char],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }
    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }
    fn char(&mut self) -> char {
        let c = self.s[self.pos];
        self.pos += 1;
        if c != '\\' {
            return c;
        }
        let e = self.s[self.pos];
        self.pos += 1;
        let hex = |r: &mut Reader, n: usize| {
            let text: String = r.s[r.pos..r.pos + n].iter().collect();
            r.pos += n;
            char::from_u32(u32::from_str_radix(&text, 16).unwrap()).unwrap_or('\u{FFFF}')
        };
        match e {
            'x' => hex(self, 2),
            'u' => hex(self, 4),
            'U' => hex(self, 8),
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            other => other,
        }
    }
    fn number(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.s[start..self.pos].iter().collect::<String>().parse().unwrap()
    }
    fn alternatives(&mut self) -> Vec<Vec<Item>> {
        let mut alts = vec![self.sequence()];
        while self.peek() == Some('|') {
            self.pos += 1;
            self.skip_space();
            alts.push(self.sequence());
        }
        alts
    }
    fn sequence(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        loop {
            self.skip_space();
            let atom = match self.peek() {
                Some('"') => {
                    self.pos += 1;
                    let mut chars = Vec::new();
                    while self.peek() != Some('"') {
                        chars.push(self.char());
                    }
                    self.pos += 1;
                    Atom::Literal(chars)
                }
                Some('[') => {
                    self.pos += 1;
                    let negated = self.peek() == Some('^');
                    if negated {
                        self.pos += 1;
                    }
                    let mut ranges = Vec::new();
                    while self.peek() != Some(']') {
                        let low = self.char();
                        let high = if self.peek() == Some('-') && self.s[self.pos + 1] != ']' {
                            self.pos += 1;
                            self.char()
                        } else {
                            low
                        };
                        ranges.push((low, high));
                    }
                    self.pos += 1;
                    Atom::Class(negated, ranges)
                }
                Some('.') => {
                    self.pos += 1;
                    Atom::Any
                }
                Some('(') => {
                    self.pos += 1;
                    self.skip_space();
                    let alts = self.alternatives();
                    assert_eq!(self.peek(), Some(')'));
                    self.pos += 1;
                    Atom::Group(alts)
                }
                Some(c) if c.is_ascii_alphanumeric() || c == '-' => {
                    let start = self.pos;
                    while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '-') {
                        self.pos += 1;
                    }
                    Atom::Rule(self.s[start..self.pos].iter().collect())
                }
                _ => return items,
            };
            let (min, max) = match self.peek() {
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some('?') => (0, Some(1)),
                Some('{') => {
                    self.pos += 1;
                    let min = self.number();
                    let max = match self.peek() {
                        Some('}') => Some(min),
                        _ => {
                            self.pos += 1;
                            (self.peek() != Some('}')).then(|| self.number())
                        }
                    };
                    (min, max)
                }
                _ => {
                    items.push(Item {
                        atom,
                        min: 1,
                        max: Some(1),
                    });
                    continue;
                }
            };
            self.pos += 1;
            items.push(Item { atom, min, max });
        }
    }
}

impl Matcher {
    /// Reads a grammar of one `name ::= body` per line.
    pub fn new(grammar: &str) -> Matcher {
        let mut rules = HashMap::new();
        for line in grammar.lines().filter(|l| !l.trim().is_empty()) {
            let (name, body) = line.split_once(" ::= ").expect("name ::= body");
            let chars: Vec<char> = body.chars().collect();
            let mut reader = Reader { s: &chars, pos: 0 };
            let alts = reader.alternatives();
            assert_eq!(reader.pos, chars.len(), "unread grammar in {line:?}");
            rules.insert(name.to_string(), alts);
        }
        Matcher { rules }
    }

    /// Whether rule `root` matches all of `text`.
    pub fn matches(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let mut memo = HashMap::new();
        self.rule("root", &chars, 0, &mut memo).contains(&chars.len())
    }

    fn rule(
        &self,
        name: &str,
        s: &[char],
        pos: usize,
        memo: &mut HashMap<(String, usize), BTreeSet<usize>>,
    ) -> BTreeSet<usize> {
        if let Some(ends) = memo.get(&(name.to_string(), pos)) {
            return ends.clone();
        }
        let ends = self.alternatives(&self.rules[name], s, pos, memo);
        memo.insert((name.to_string(), pos), ends.clone());
        ends
    }

    fn alternatives(
        &self,
        alts: &[Vec<Item>],
        s: &[char],
        pos: usize,
        memo: &mut HashMap<(String, usize), BTreeSet<usize>>,
    ) -> BTreeSet<usize> {
        let mut ends = BTreeSet::new();
        for seq in alts {
            let mut here = BTreeSet::from([pos]);
            for item in seq {
                here = self.item(item, s, &here, memo);
            }
            ends.extend(here);
        }
        ends
    }

    fn item(
        &self,
        item: &Item,
        s: &[char],
        starts: &BTreeSet<usize>,
        memo: &mut HashMap<(String, usize), BTreeSet<usize>>,
    ) -> BTreeSet<usize> {
        let mut out = if item.min == 0 { starts.clone() } else { BTreeSet::new() };
        let mut current = starts.clone();
        let mut seen = BTreeSet::new();
        for count in 1.. {
            if item.max.is_some_and(|max| count > max) || current.is_empty() {
                break;
            }
            let mut next = BTreeSet::new();
            for &p in &current {
                next.extend(self.atom(&item.atom, s, p, memo));
            }
            if count >= item.min {
                out.extend(next.iter().copied());
            }
            if item.max.is_none() && count >= item.min {
                next.retain(|p| seen.insert(*p));
            }
            current = next;
        }
        out
    }

    fn atom(
        &self,
        atom: &Atom,
        s: &[char],
        pos: usize,
        memo: &mut HashMap<(String, usize), BTreeSet<usize>>,
    ) -> BTreeSet<usize> {
        match atom {
            Atom::Literal(chars) => {
                if s[pos.min(s.len())..].starts_with(chars) {
                    BTreeSet::from([pos + chars.len()])
                } else {
                    BTreeSet::new()
                }
            }
            Atom::Class(negated, ranges) => match s.get(pos) {
                Some(c) if ranges.iter().any(|(l, h)| l <= c && c <= h) != *negated => BTreeSet::from([pos + 1]),
                _ => BTreeSet::new(),
            },
            Atom::Any => {
                if pos < s.len() {
                    BTreeSet::from([pos + 1])
                } else {
                    BTreeSet::new()
                }
            }
            Atom::Rule(name) => self.rule(name, s, pos, memo),
            Atom::Group(alts) => self.alternatives(alts, s, pos, memo),
        }
    }
}
