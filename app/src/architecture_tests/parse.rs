//! Which top-level modules (and which external crates) a Rust source file names.
//!
//! A small tokenizer, not a Rust parser: it skips comments, strings, raw strings and char
//! literals, then reads paths. It finds `crate::x`, `$crate::x`, `super::…::x` climbing to
//! the crate root, the first segment of every item of a `use crate::{a::…, b::{…}}` group,
//! inline paths such as `crate::orders::x()`, inline `mod m { … }` blocks (each one level
//! deeper for `super`) and `#[path = "…"] mod m;` declarations.

/// One token: an identifier (or number), a string literal's text, `::` or one punctuation char.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    Punct(&'static str),
    Char(char),
}

/// A token and the 1-based line it starts on.
#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
}

/// A reference from a file to a crate-level name (a top-level module, or an external crate).
#[derive(Debug, Clone, PartialEq)]
pub struct Ref {
    pub line: usize,
    pub name: String,
}

/// A `#[path = "file"] mod name;` declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct PathMod {
    pub file: String,
    /// Module depth of the declared module (the including module's depth + 1).
    pub depth: usize,
}

/// What one file names.
#[derive(Debug, Default)]
pub struct Names {
    /// Top-level modules named through `crate::`, `$crate::` or enough `super::`s.
    pub crate_refs: Vec<Ref>,
    /// Paths that start with an external crate's name (`kube::Api`, `use redis::Script`).
    pub extern_refs: Vec<Ref>,
    pub path_mods: Vec<PathMod>,
}

pub fn tokenize(src: &str) -> Vec<Token> {
    let mut lx = Lexer {
        s: src.chars().collect(),
        i: 0,
        line: 1,
        out: Vec::new(),
    };
    lx.run();
    lx.out
}

struct Lexer {
    s: Vec<char>,
    i: usize,
    line: usize,
    out: Vec<Token>,
}

impl Lexer {
    fn at(&self, k: usize) -> char {
        self.s.get(self.i + k).copied().unwrap_or('\0')
    }

    fn bump(&mut self) -> char {
        let c = self.at(0);
        self.i += 1;
        if c == '\n' {
            self.line += 1;
        }
        c
    }

    fn push(&mut self, tok: Tok, line: usize) {
        self.out.push(Token { tok, line });
    }

    fn run(&mut self) {
        while self.i < self.s.len() {
            let (c, line) = (self.at(0), self.line);
            if c.is_whitespace() {
                self.bump();
            } else if c == '/' && self.at(1) == '/' {
                while self.i < self.s.len() && self.at(0) != '\n' {
                    self.bump();
                }
            } else if c == '/' && self.at(1) == '*' {
                self.block_comment();
            } else if c == '"' {
                let text = self.string();
                self.push(Tok::Str(text), line);
            } else if c == '\'' {
                self.quote();
            } else if c.is_alphanumeric() || c == '_' {
                self.word(line);
            } else if c == ':' && self.at(1) == ':' {
                self.i += 2;
                self.push(Tok::Punct("::"), line);
            } else {
                self.bump();
                self.push(Tok::Char(c), line);
            }
        }
    }

    fn block_comment(&mut self) {
        let mut depth = 0;
        while self.i < self.s.len() {
            if self.at(0) == '/' && self.at(1) == '*' {
                depth += 1;
                self.i += 2;
            } else if self.at(0) == '*' && self.at(1) == '/' {
                depth -= 1;
                self.i += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.bump();
            }
        }
    }

    /// A `"…"` string from its opening quote; returns its text (escapes kept as written).
    fn string(&mut self) -> String {
        self.bump();
        let mut text = String::new();
        while self.i < self.s.len() {
            match self.bump() {
                '\\' => {
                    text.push('\\');
                    text.push(self.bump());
                }
                '"' => break,
                c => text.push(c),
            }
        }
        text
    }

    /// `r"…"` / `r#"…"#` from the `#` or `"` after the prefix.
    fn raw_string(&mut self) -> String {
        let mut hashes = 0;
        while self.at(0) == '#' {
            hashes += 1;
            self.bump();
        }
        self.bump();
        let mut text = String::new();
        while self.i < self.s.len() {
            let c = self.bump();
            if c == '"' && (0..hashes).all(|k| self.at(k) == '#') {
                self.i += hashes;
                break;
            }
            text.push(c);
        }
        text
    }

    /// A char literal (`'x'`, `'\n'`, `'\u{1F600}'`) or a lifetime (`'a`), both skipped.
    fn quote(&mut self) {
        self.bump();
        if self.at(0) == '\\' {
            // the backslash and the escaped char (which may be a quote), then up to the quote
            self.i += 2;
            while self.i < self.s.len() && self.bump() != '\'' {}
        } else if self.at(1) == '\'' {
            self.i += 2;
        } else {
            while self.at(0).is_alphanumeric() || self.at(0) == '_' {
                self.bump();
            }
        }
    }

    fn word(&mut self, line: usize) {
        let start = self.i;
        while self.at(0).is_alphanumeric() || self.at(0) == '_' {
            self.bump();
        }
        let word: String = self.s[start..self.i].iter().collect();
        let next = self.at(0);
        match (word.as_str(), next) {
            ("r" | "br" | "cr", '"') => {
                let text = self.raw_string();
                self.push(Tok::Str(text), line);
            }
            ("r" | "br" | "cr", '#') if matches!(self.at(1), '#' | '"') => {
                let text = self.raw_string();
                self.push(Tok::Str(text), line);
            }
            ("r", '#') => {
                // a raw identifier: r#type
                self.bump();
                self.word(line);
            }
            ("b" | "c", '"') => {
                let text = self.string();
                self.push(Tok::Str(text), line);
            }
            ("b", '\'') => self.quote(),
            _ => self.push(Tok::Ident(word), line),
        }
    }
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t.map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

fn is(t: Option<&Token>, want: &Tok) -> bool {
    t.is_some_and(|t| &t.tok == want)
}

const PATH: Tok = Tok::Punct("::");

/// The names a file at module depth `depth` (`lib.rs` 0, `orders/mod.rs` 1,
/// `orders/handlers.rs` 2) refers to; `extern_crates` are the crate names to look for.
pub fn names(src: &str, depth: usize, extern_crates: &[&str]) -> Names {
    let toks = tokenize(src);
    let mut out = Names::default();
    // brace depth at which each enclosing inline `mod m {` opened
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let here = depth + inline_mods.len();
        let after_path = i > 0 && is(toks.get(i - 1), &PATH);
        match &toks[i].tok {
            Tok::Char('{') => braces += 1,
            Tok::Char('}') => {
                braces = braces.saturating_sub(1);
                if inline_mods.last() == Some(&braces) {
                    inline_mods.pop();
                }
            }
            Tok::Ident(w) if w == "mod" => {
                if is(toks.get(i + 2), &Tok::Char('{')) {
                    inline_mods.push(braces);
                    braces += 1;
                    i += 3;
                    continue;
                }
                if let Some(file) = path_attr(&toks, i) {
                    out.path_mods.push(PathMod {
                        file,
                        depth: here + 1,
                    });
                }
            }
            Tok::Ident(w) if w == "crate" && !after_path && is(toks.get(i + 1), &PATH) => {
                root_names(&toks, i + 2, &mut out.crate_refs);
            }
            Tok::Ident(w) if w == "super" && !after_path && is(toks.get(i + 1), &PATH) => {
                i = climb(&toks, i, here, &mut out.crate_refs);
                continue;
            }
            Tok::Ident(w)
                if extern_crates.contains(&w.as_str())
                    && is(toks.get(i + 1), &PATH)
                    && (!after_path || i < 2 || !matches!(toks[i - 2].tok, Tok::Ident(_))) =>
            {
                out.extern_refs.push(Ref {
                    line: toks[i].line,
                    name: w.clone(),
                });
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// `super::super::…` from `toks[at]` in a module at depth `here`: when it climbs exactly to
/// the crate root, the names after it are top-level modules. Returns the index after it.
fn climb(toks: &[Token], at: usize, here: usize, out: &mut Vec<Ref>) -> usize {
    let mut k = at;
    let mut ups = 0;
    while ident(toks.get(k)) == Some("super") && is(toks.get(k + 1), &PATH) {
        ups += 1;
        k += 2;
    }
    if ups == here {
        root_names(toks, k, out);
    }
    k
}

/// At `toks[at]`, right after `crate::` (or the last `super::` reaching the root): one name,
/// or a `{…}` group whose items each start with one.
fn root_names(toks: &[Token], at: usize, out: &mut Vec<Ref>) {
    match toks.get(at).map(|t| &t.tok) {
        Some(Tok::Ident(name)) if name != "self" => {
            out.push(Ref {
                line: toks[at].line,
                name: name.clone(),
            });
        }
        Some(Tok::Char('{')) => {
            let mut nest = 0;
            let mut item_start = true;
            for t in &toks[at + 1..] {
                match &t.tok {
                    Tok::Char('{') => nest += 1,
                    Tok::Char('}') if nest == 0 => return,
                    Tok::Char('}') => nest -= 1,
                    Tok::Char(',') if nest == 0 => {
                        item_start = true;
                        continue;
                    }
                    Tok::Ident(name) if item_start && nest == 0 && name != "self" => {
                        out.push(Ref {
                            line: t.line,
                            name: name.clone(),
                        });
                    }
                    _ => {}
                }
                item_start = false;
            }
        }
        _ => {}
    }
}

/// For `mod` at `toks[at]` (followed by `name ;`): the file of a `#[path = "file"]`
/// attribute among the attributes right before it, if any.
fn path_attr(toks: &[Token], at: usize) -> Option<String> {
    if !is(toks.get(at + 2), &Tok::Char(';')) {
        return None;
    }
    // walk back over `pub`, `pub(crate)` and attributes `#[…]`
    let mut k = at;
    while k > 0 {
        k -= 1;
        match &toks[k].tok {
            Tok::Ident(w) if w == "path" => {
                if let (Some(Tok::Char('=')), Some(Tok::Str(file))) = (
                    toks.get(k + 1).map(|t| &t.tok),
                    toks.get(k + 2).map(|t| &t.tok),
                ) {
                    return Some(file.clone());
                }
            }
            Tok::Char(';' | '{' | '}') => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests;
