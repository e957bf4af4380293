//! The architecture check (issue 23): reads `src/**.rs` and ARCHITECTURE.md and fails on
//!
//! - an import cycle between module files (`a.rs` uses `b.rs`, which uses `a.rs`, directly or
//!   through others): every cycle is printed as a path with the lines that make each step. A
//!   file's use of a module it is part of (`gallery/crops.rs` using `gallery`'s `Gallery`) is not
//!   an arrow of the loop: only the module's use of its parts counts, so two parts in a loop,
//!   directly or through their module, are still found;
//! - an arrow up: a module importing one in a higher layer of ARCHITECTURE.md's "Layers" table
//!   (the one source of truth), or a module the table does not place;
//! - a module file with more than [`MAX_CODE_LINES`] lines of code (not blank, not comments,
//!   not `#[cfg(test)]`) that ARCHITECTURE.md's "Large files" section does not list with a reason;
//! - non-test code naming a module that only exists under `cfg(test)`/`cfg(fuzzing)`.
//!
//! What counts as an import: a path in code (`crate::a::b`, `super::x`, `self::y`, a child
//! module `c::z`, or a name a `use` bound to a module, then `::`), and each leaf of a `use`
//! tree. A `use` that binds a module is not an import by itself (what goes through it is); a
//! `pub use` of a descendant's item (a module's facade) is an alias, resolved for those who go
//! through it, not an import of the facade. Comments, doc comments, string literals and items
//! that are off in a plain build (`#[cfg(test)]`, `#[cfg(fuzzing)]`, `#[cfg(any(test, fuzzing))]`,
//! `#![cfg(test)]` files) do not count. The binaries (`src/main.rs`, `src/bin/`) sit above the
//! library and are not read. The granularity is the file: an inline module belongs to its file.
//!
//! Every violation is printed, not just the first. [`ALLOWED`] lists tolerated ones (none); an
//! entry that no longer occurs fails the test too, so the list only shrinks.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Violations tolerated for now, keyed as the test prints them (empty: none; keep it so).
const ALLOWED: &[&str] = &[];

/// The size above which a module file must be listed in ARCHITECTURE.md with a reason.
const MAX_CODE_LINES: usize = 800;

// ----------------------------------------------------------------------------------------------
// Lexing: Rust source to tokens, without comments; literals are opaque.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
    /// A string, char or number literal (its text does not matter here).
    Lit,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
    /// The last line the token spans (multi-line strings).
    end_line: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Tokenizes `src`, dropping comments (line, nested block, doc) and the content of literals.
fn lex(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let n = chars.len();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < n {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        // Comments.
        if c == '/' && at(i + 1) == '/' {
            while i < n && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < n {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            continue;
        }
        let start_line = line;
        // Raw strings: r"..", r#".."#, br#".."#, cr"..".
        let raw_prefix = match (c, at(i + 1)) {
            ('r', '"') | ('r', '#') => Some(1),
            ('b', 'r') | ('c', 'r') if at(i + 2) == '"' || at(i + 2) == '#' => Some(2),
            _ => None,
        };
        if let Some(p) = raw_prefix {
            let mut j = i + p;
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            if at(j) == '"' {
                j += 1;
                loop {
                    if j >= n {
                        break;
                    }
                    if chars[j] == '\n' {
                        line += 1;
                    }
                    if chars[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push(Token {
                    tok: Tok::Lit,
                    line: start_line,
                    end_line: line,
                });
                i = j;
                continue;
            }
            if c == 'r' && hashes == 1 && is_ident_start(at(i + 2)) {
                // A raw identifier: r#type.
                let mut j = i + 2;
                while j < n && is_ident_char(chars[j]) {
                    j += 1;
                }
                let word: String = chars[i + 2..j].iter().collect();
                out.push(Token {
                    tok: Tok::Ident(word),
                    line,
                    end_line: line,
                });
                i = j;
                continue;
            }
        }
        // Strings: "..", b"..", c"..".
        if c == '"' || ((c == 'b' || c == 'c') && at(i + 1) == '"') {
            let mut j = if c == '"' { i + 1 } else { i + 2 };
            while j < n && chars[j] != '"' {
                if chars[j] == '\\' {
                    j += 1;
                }
                if at(j) == '\n' {
                    line += 1;
                }
                j += 1;
            }
            out.push(Token {
                tok: Tok::Lit,
                line: start_line,
                end_line: line,
            });
            i = j + 1;
            continue;
        }
        // Chars ('a', '\n', b'x') or lifetimes ('a).
        if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let q = if c == '\'' { i } else { i + 1 };
            if at(q + 1) == '\\' {
                let mut j = q + 2;
                while j < n && chars[j] != '\'' {
                    j += 1;
                }
                out.push(Token {
                    tok: Tok::Lit,
                    line,
                    end_line: line,
                });
                i = j + 1;
                continue;
            }
            if at(q + 2) == '\'' {
                out.push(Token {
                    tok: Tok::Lit,
                    line,
                    end_line: line,
                });
                i = q + 3;
                continue;
            }
            // A lifetime: skip the quote, the name lexes as an identifier after it.
            out.push(Token {
                tok: Tok::Punct('\''),
                line,
                end_line: line,
            });
            i = q + 1;
            continue;
        }
        if is_ident_start(c) {
            let mut j = i;
            while j < n && is_ident_char(chars[j]) {
                j += 1;
            }
            out.push(Token {
                tok: Tok::Ident(chars[i..j].iter().collect()),
                line,
                end_line: line,
            });
            i = j;
            continue;
        }
        if c.is_ascii_digit() {
            let mut j = i;
            while j < n
                && (is_ident_char(chars[j]) || chars[j] == '.' && at(j + 1).is_ascii_digit())
            {
                j += 1;
            }
            out.push(Token {
                tok: Tok::Lit,
                line,
                end_line: line,
            });
            i = j;
            continue;
        }
        if c == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::PathSep,
                line,
                end_line: line,
            });
            i += 2;
            continue;
        }
        out.push(Token {
            tok: Tok::Punct(c),
            line,
            end_line: line,
        });
        i += 1;
    }
    out
}

fn is_punct(t: Option<&Token>, c: char) -> bool {
    matches!(t, Some(Token { tok: Tok::Punct(p), .. }) if *p == c)
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token {
            tok: Tok::Ident(s), ..
        }) => Some(s),
        _ => None,
    }
}

/// The index of the bracket closing the one at `open` (or the end).
fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0i32;
    for (k, t) in tokens.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    tokens.len().saturating_sub(1)
}

// ----------------------------------------------------------------------------------------------
// cfg: what a plain build (not test, not fuzzing) leaves out.

/// Three-valued: `Some(false)` is off for sure in a plain build; `None` depends on the target.
fn eval_cfg(tokens: &[Token]) -> Option<bool> {
    fn pred(t: &[Token], i: &mut usize) -> Option<bool> {
        let name = ident(t.get(*i)).unwrap_or_default().to_string();
        *i += 1;
        if is_punct(t.get(*i), '(') {
            *i += 1;
            let mut values = Vec::new();
            while *i < t.len() && !is_punct(t.get(*i), ')') {
                values.push(pred(t, i));
                if is_punct(t.get(*i), ',') {
                    *i += 1;
                }
            }
            *i += 1;
            return match name.as_str() {
                "not" => values.first().copied().flatten().map(|v| !v),
                "any" if values.contains(&Some(true)) => Some(true),
                "any" if values.iter().all(|v| *v == Some(false)) => Some(false),
                "all" if values.contains(&Some(false)) => Some(false),
                "all" if values.iter().all(|v| *v == Some(true)) => Some(true),
                _ => None,
            };
        }
        if is_punct(t.get(*i), '=') {
            *i += 2;
            return None;
        }
        match name.as_str() {
            "test" | "fuzzing" => Some(false),
            _ => None,
        }
    }
    let mut i = 0;
    pred(tokens, &mut i)
}

/// If `tokens[i..]` is `#[cfg(..)]` or `#![cfg(..)]`: (is inner, value, index after `]`).
fn cfg_attribute(tokens: &[Token], i: usize) -> Option<(bool, Option<bool>, usize)> {
    if !is_punct(tokens.get(i), '#') {
        return None;
    }
    let inner = is_punct(tokens.get(i + 1), '!');
    let open = if inner { i + 2 } else { i + 1 };
    if !is_punct(tokens.get(open), '[') || ident(tokens.get(open + 1)) != Some("cfg") {
        return None;
    }
    let close = matching(tokens, open);
    // tokens[open+2] is `(`, the predicate runs to the `)` before `]`.
    let value = eval_cfg(&tokens[open + 3..close.saturating_sub(1)]);
    Some((inner, value, close + 1))
}

const ITEM_KEYWORDS: &[&str] = &[
    "fn",
    "mod",
    "impl",
    "struct",
    "enum",
    "union",
    "trait",
    "macro_rules",
    "extern",
    "unsafe",
    "async",
];
const SEMI_KEYWORDS: &[&str] = &["const", "static", "type", "use", "let"];

/// The index just after the item (or field, statement, block) starting at `i`.
fn item_end(tokens: &[Token], mut i: usize) -> usize {
    // Further attributes.
    while is_punct(tokens.get(i), '#') && is_punct(tokens.get(i + 1), '[') {
        i = matching(tokens, i + 1) + 1;
    }
    if is_punct(tokens.get(i), '{') {
        return matching(tokens, i) + 1;
    }
    let mut k = i;
    if ident(tokens.get(k)) == Some("pub") {
        k += 1;
        if is_punct(tokens.get(k), '(') {
            k = matching(tokens, k) + 1;
        }
    }
    let words: Vec<&str> = (k..k + 3).filter_map(|j| ident(tokens.get(j))).collect();
    let semi_only = words.first().is_some_and(|w| SEMI_KEYWORDS.contains(w));
    let item = words.iter().any(|w| ITEM_KEYWORDS.contains(w));
    let mut depth = 0i32;
    let mut j = k;
    while j < tokens.len() {
        match tokens[j].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth < 0 {
                    return j; // the enclosing group ends: stop before it
                }
                if depth == 0 && item && !semi_only && tokens[j].tok == Tok::Punct('}') {
                    return j + 1;
                }
            }
            Tok::Punct(';') if depth == 0 => return j + 1,
            Tok::Punct(',') if depth == 0 && !item && !semi_only => return j + 1,
            _ => {}
        }
        j += 1;
    }
    tokens.len()
}

/// Drops what a plain build leaves out. `None` when the whole file is off (`#![cfg(test)]`).
fn strip_off(tokens: &[Token]) -> Option<Vec<Token>> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if let Some((inner, value, after)) = cfg_attribute(tokens, i) {
            if value == Some(false) {
                if inner {
                    return None;
                }
                i = item_end(tokens, after);
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    Some(out)
}

/// Lines holding code (what is left after comments, blanks and off items).
fn code_lines(tokens: &[Token]) -> usize {
    let mut lines = BTreeSet::new();
    for t in tokens {
        lines.extend(t.line..=t.end_line);
    }
    lines.len()
}

// ----------------------------------------------------------------------------------------------
// Paths and `use` trees.

#[derive(Clone, Debug, PartialEq)]
struct UseLeaf {
    /// The path as written (`self` in braces is the prefix's own segment list).
    segments: Vec<String>,
    /// The name it binds (`None` for a glob or `as _`).
    binds: Option<String>,
    glob: bool,
    /// `pub use`/`pub(crate) use`: a re-export.
    public: bool,
    line: usize,
    /// The inline modules the `use` sits in (within its file).
    scope: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
struct CodePath {
    segments: Vec<String>,
    line: usize,
    scope: Vec<String>,
}

#[derive(Debug, Default)]
struct Parsed {
    /// `mod name;` declarations (file modules) in a plain build.
    children: Vec<String>,
    uses: Vec<UseLeaf>,
    paths: Vec<CodePath>,
    code_lines: usize,
}

fn parse_use_tree(
    t: &[Token],
    i: &mut usize,
    prefix: &[String],
    leaf: &UseLeaf,
    out: &mut Vec<UseLeaf>,
) {
    let mut segs = prefix.to_vec();
    if t.get(*i).map(|x| &x.tok) == Some(&Tok::PathSep) {
        *i += 1;
    }
    loop {
        match t.get(*i).map(|x| &x.tok) {
            Some(Tok::Punct('{')) => {
                *i += 1;
                while *i < t.len() && !is_punct(t.get(*i), '}') {
                    parse_use_tree(t, i, &segs, leaf, out);
                    if is_punct(t.get(*i), ',') {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            Some(Tok::Punct('*')) => {
                *i += 1;
                out.push(UseLeaf {
                    segments: segs,
                    binds: None,
                    glob: true,
                    ..leaf.clone()
                });
                return;
            }
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                let line = t[*i].line;
                *i += 1;
                if s == "self"
                    && !segs.is_empty()
                    && t.get(*i).map(|x| &x.tok) != Some(&Tok::PathSep)
                {
                    // `{self}`: the prefix itself.
                } else {
                    segs.push(s);
                }
                if t.get(*i).map(|x| &x.tok) == Some(&Tok::PathSep) {
                    *i += 1;
                    continue;
                }
                let mut binds = segs.last().cloned();
                if ident(t.get(*i)) == Some("as") {
                    binds = ident(t.get(*i + 1))
                        .filter(|b| *b != "_")
                        .map(str::to_string);
                    *i += 2;
                }
                out.push(UseLeaf {
                    segments: segs,
                    binds,
                    glob: false,
                    line,
                    ..leaf.clone()
                });
                return;
            }
            _ => {
                *i += 1;
                return;
            }
        }
    }
}

/// Reads the declarations, `use` leaves and paths of a file (already stripped of off items).
fn parse(tokens: &[Token]) -> Parsed {
    let mut p = Parsed {
        code_lines: code_lines(tokens),
        ..Parsed::default()
    };
    // (name, brace depth inside it) of the inline modules we are in.
    let mut scope: Vec<(String, i32)> = Vec::new();
    let mut depth = 0i32;
    let mut i = 0;
    let names = |scope: &[(String, i32)]| scope.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    while i < tokens.len() {
        let t = &tokens[i];
        match &t.tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if scope.last().is_some_and(|(_, d)| *d == depth) {
                    scope.pop();
                }
                depth -= 1;
            }
            Tok::Ident(w) if w == "mod" => {
                if let Some(name) = ident(tokens.get(i + 1)) {
                    if is_punct(tokens.get(i + 2), ';') && scope.is_empty() {
                        p.children.push(name.to_string());
                    } else if is_punct(tokens.get(i + 2), '{') {
                        scope.push((name.to_string(), depth + 1));
                    }
                }
            }
            Tok::Ident(w) if w == "pub" && is_punct(tokens.get(i + 1), '(') => {
                // `pub(crate)`, `pub(in crate::x)`: visibility, not a path.
                i = matching(tokens, i + 1) + 1;
                continue;
            }
            Tok::Ident(w)
                if w == "use"
                    && tokens.get(i.wrapping_sub(1)).map(|x| &x.tok) != Some(&Tok::PathSep) =>
            {
                let public = i > 0
                    && (ident(tokens.get(i - 1)) == Some("pub")
                        || (is_punct(tokens.get(i - 1), ')')
                            && (0..i)
                                .rev()
                                .find(|&k| is_punct(tokens.get(k), '('))
                                .is_some_and(|k| {
                                    k > 0 && ident(tokens.get(k - 1)) == Some("pub")
                                })));
                let leaf = UseLeaf {
                    segments: Vec::new(),
                    binds: None,
                    glob: false,
                    public,
                    line: t.line,
                    scope: names(&scope),
                };
                let mut j = i + 1;
                parse_use_tree(tokens, &mut j, &[], &leaf, &mut p.uses);
                while j < tokens.len() && !is_punct(tokens.get(j), ';') {
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            Tok::Ident(w)
                if tokens.get(i + 1).map(|x| &x.tok) == Some(&Tok::PathSep)
                    && tokens.get(i.wrapping_sub(1)).map(|x| &x.tok) != Some(&Tok::PathSep)
                    && !is_punct(tokens.get(i.wrapping_sub(1)), '.') =>
            {
                let mut segments = vec![w.clone()];
                let mut j = i + 1;
                while tokens.get(j).map(|x| &x.tok) == Some(&Tok::PathSep) {
                    match ident(tokens.get(j + 1)) {
                        Some(s) => segments.push(s.to_string()),
                        None => break,
                    }
                    j += 2;
                }
                p.paths.push(CodePath {
                    segments,
                    line: t.line,
                    scope: names(&scope),
                });
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    p
}

// ----------------------------------------------------------------------------------------------
// The crate: module files, resolution, edges.

struct File {
    /// `src/...` as printed.
    rel: String,
    /// The module path (`[]` for lib.rs).
    module: Vec<String>,
    parsed: Parsed,
    /// Names bound by `use` in this file: an absolute path, or `None` for an outside crate.
    bindings: HashMap<String, Option<Vec<String>>>,
}

#[derive(Debug, PartialEq)]
enum Target {
    /// A module file, and whether the path names the module itself (not an item in it).
    File(usize, bool),
    /// A module declared only under cfg(test)/cfg(fuzzing).
    Off(Vec<String>),
}

/// Non-test code naming an off module: (file, module, line).
type OffUse = (usize, Vec<String>, usize);

struct Crate {
    files: Vec<File>,
    by_module: HashMap<Vec<String>, usize>,
    off_modules: BTreeSet<Vec<String>>,
}

/// One import between module files: `from` uses `to` at `from`'s line `line`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: usize,
    to: usize,
    line: usize,
}

impl Crate {
    /// Loads the library from `src_dir` (`lib.rs` and the files it declares, recursively).
    fn load(src_dir: &Path) -> Crate {
        let mut sources = BTreeMap::new();
        collect(src_dir, src_dir, &mut sources);
        Crate::from_sources(&sources)
    }

    /// `sources`: path relative to `src/` (`a/b.rs`) to text.
    fn from_sources(sources: &BTreeMap<String, String>) -> Crate {
        let mut c = Crate {
            files: Vec::new(),
            by_module: HashMap::new(),
            off_modules: BTreeSet::new(),
        };
        let mut queue = VecDeque::from([(Vec::<String>::new(), "lib.rs".to_string())]);
        while let Some((module, rel)) = queue.pop_front() {
            let Some(text) = sources.get(&rel) else {
                continue;
            };
            let tokens = lex(text);
            let Some(stripped) = strip_off(&tokens) else {
                c.off_modules.insert(module);
                continue;
            };
            let parsed = parse(&stripped);
            // Declared in a plain build, or only under cfg(test)/cfg(fuzzing)?
            let all_children = parse(&tokens).children;
            for child in &all_children {
                let mut m = module.clone();
                m.push(child.clone());
                if !parsed.children.contains(child) {
                    c.off_modules.insert(m);
                    continue;
                }
                let dir = match rel.as_str() {
                    "lib.rs" => String::new(),
                    r if r.ends_with("/mod.rs") => r.trim_end_matches("mod.rs").to_string(),
                    r => format!("{}/", r.trim_end_matches(".rs")),
                };
                let flat = format!("{dir}{child}.rs");
                let nested = format!("{dir}{child}/mod.rs");
                let path = if sources.contains_key(&flat) {
                    flat
                } else {
                    nested
                };
                queue.push_back((m, path));
            }
            c.by_module.insert(module.clone(), c.files.len());
            c.files.push(File {
                rel: format!("src/{rel}"),
                module,
                parsed,
                bindings: HashMap::new(),
            });
        }
        c.bind();
        c
    }

    /// Turns the start of a path into an absolute module path: `None` for other crates, std,
    /// local names and types.
    fn absolute(&self, file: usize, scope: &[String], segments: &[String]) -> Option<Vec<String>> {
        let f = &self.files[file];
        let mut here = f.module.clone();
        here.extend(scope.iter().cloned());
        let first = segments.first()?;
        let mut rest = &segments[1..];
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => here.clone(),
            "super" => {
                let mut m = here.clone();
                m.pop();
                while rest.first().is_some_and(|s| s == "super") {
                    m.pop();
                    rest = &rest[1..];
                }
                m
            }
            name => {
                let mut child = here.clone();
                child.push(name.to_string());
                if self.by_module.contains_key(&child) || self.off_modules.contains(&child) {
                    child
                } else {
                    match f.bindings.get(name) {
                        Some(Some(abs)) => abs.clone(),
                        _ => return None,
                    }
                }
            }
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// Computes every file's `use` bindings (to a fixed point: a `use` may go through another).
    fn bind(&mut self) {
        for _ in 0..6 {
            let mut changed = false;
            for f in 0..self.files.len() {
                let leaves = self.files[f].parsed.uses.clone();
                for leaf in leaves {
                    let Some(name) = leaf.binds.clone() else {
                        continue;
                    };
                    let abs = self.absolute(f, &leaf.scope, &leaf.segments);
                    if self.files[f].bindings.get(&name) != Some(&abs) {
                        self.files[f].bindings.insert(name, abs);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// The module file an absolute path lands in, through re-exports.
    fn resolve(&self, abs: &[String], hops: usize) -> Option<Target> {
        let mut module = Vec::new();
        let mut k = 0;
        while k < abs.len() {
            let mut next = module.clone();
            next.push(abs[k].clone());
            if self.by_module.contains_key(&next) {
                module = next;
                k += 1;
            } else if self.off_modules.contains(&next) {
                return Some(Target::Off(next));
            } else {
                break;
            }
        }
        let file = *self.by_module.get(&module)?;
        if k == abs.len() {
            return Some(Target::File(file, true));
        }
        // A name this module re-exports (or imports: naming that from outside would not build).
        if hops < 8 {
            if let Some(Some(via)) = self.files[file].bindings.get(&abs[k]) {
                if via.as_slice() != &abs[..=k] {
                    let mut next = via.clone();
                    next.extend(abs[k + 1..].iter().cloned());
                    if let Some(t) = self.resolve(&next, hops + 1) {
                        return Some(t);
                    }
                }
            }
        }
        Some(Target::File(file, false))
    }

    /// Every import between module files, and the uses of off modules (file, module, line).
    fn edges(&self) -> (Vec<Edge>, Vec<OffUse>) {
        let mut edges = BTreeSet::new();
        let mut off = Vec::new();
        for (f, file) in self.files.iter().enumerate() {
            let mut add =
                |target: Option<Target>, line: usize, module_ok: bool, facade: bool| match target {
                    Some(Target::File(to, names_module)) => {
                        if to == f || (names_module && module_ok) {
                            return;
                        }
                        let to_module = &self.files[to].module;
                        if facade && to_module.starts_with(&file.module) {
                            return;
                        }
                        // A part may use the module it belongs to (the type whose parts it
                        // implements, the vocabulary its siblings share): only the module's use
                        // of its parts counts, so parts in a loop through it are still found.
                        if to_module.len() < file.module.len() && file.module.starts_with(to_module)
                        {
                            return;
                        }
                        edges.insert(Edge { from: f, to, line });
                    }
                    Some(Target::Off(m)) => off.push((f, m, line)),
                    None => {}
                };
            for leaf in &file.parsed.uses {
                let Some(abs) = self.absolute(f, &leaf.scope, &leaf.segments) else {
                    continue;
                };
                let target = self.resolve(&abs, 0);
                // A glob imports the module's items; a plain `use` of a module only binds it.
                add(target, leaf.line, !leaf.glob, leaf.public);
            }
            for p in &file.parsed.paths {
                let Some(abs) = self.absolute(f, &p.scope, &p.segments) else {
                    continue;
                };
                add(self.resolve(&abs, 0), p.line, true, false);
            }
        }
        // One edge per (from, to), at its first line.
        let mut first: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        for e in edges {
            let l = first.entry((e.from, e.to)).or_insert(e.line);
            *l = (*l).min(e.line);
        }
        let edges = first
            .into_iter()
            .map(|((from, to), line)| Edge { from, to, line })
            .collect();
        (edges, off)
    }
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).expect("under src/");
            let rel = rel.to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
            out.insert(rel, text);
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Cycles.

/// The strongly connected components with more than one file (Tarjan's algorithm).
fn cycles(n: usize, edges: &[Edge]) -> Vec<Vec<usize>> {
    let mut adj = vec![Vec::new(); n];
    for e in edges {
        adj[e.from].push(e.to);
    }
    struct State {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(v: usize, adj: &[Vec<usize>], s: &mut State) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &adj[v] {
            match s.index[w] {
                None => {
                    visit(w, adj, s);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                scc.push(w);
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort_unstable();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(v, &adj, &mut s);
        }
    }
    s.out.sort();
    s.out
}

/// A shortest cycle through `start` inside `scc`, as edges.
fn a_cycle(start: usize, scc: &[usize], edges: &[Edge]) -> Vec<Edge> {
    let inside = |v: usize| scc.contains(&v);
    let mut prev: HashMap<usize, Edge> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for e in edges.iter().filter(|e| e.from == v && inside(e.to)) {
            if e.to == start {
                let mut path = vec![e.clone()];
                let mut at = v;
                while at != start {
                    let back = prev[&at].clone();
                    at = back.from;
                    path.push(back);
                }
                path.reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = prev.entry(e.to) {
                slot.insert(e.clone());
                queue.push_back(e.to);
            }
        }
    }
    Vec::new()
}

// ----------------------------------------------------------------------------------------------
// ARCHITECTURE.md: the layer table and the large files.

#[derive(Debug, Default, PartialEq)]
struct Architecture {
    /// Top-level module name to its layer number.
    layers: BTreeMap<String, u32>,
    /// Files allowed above the size limit (`src/...`), each with a reason.
    large: BTreeSet<String>,
}

/// The lines of the `## TITLE` section.
fn section<'a>(doc: &'a str, title: &str) -> Vec<&'a str> {
    let mut lines = doc
        .lines()
        .skip_while(|l| l.trim() != format!("## {title}"));
    lines.next();
    lines.take_while(|l| !l.starts_with("## ")).collect()
}

/// The words inside backticks on `line`.
fn backticked(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// Reads the "Layers" table (rows whose first cell starts with `L<number>`; the modules are
/// the backticked names of the second cell) and the "Large files" section (lines naming a
/// backticked `src/...rs` followed by a reason).
fn read_architecture(doc: &str) -> Architecture {
    let mut a = Architecture::default();
    for line in section(doc, "Layers") {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 3 || !cells[0].is_empty() {
            continue;
        }
        let Some(number) = cells[1]
            .strip_prefix('L')
            .map(|r| {
                r.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|d| d.parse().ok())
        else {
            continue;
        };
        for m in backticked(cells[2]) {
            a.layers.insert(m.to_string(), number);
        }
    }
    for line in section(doc, "Large files") {
        for path in backticked(line) {
            if path.starts_with("src/") && path.ends_with(".rs") {
                let reason = line.split(path).nth(1).unwrap_or_default();
                if reason.chars().filter(|c| c.is_alphabetic()).count() >= 10 {
                    a.large.insert(path.to_string());
                }
            }
        }
    }
    a
}

// ----------------------------------------------------------------------------------------------
// The check.

/// Every violation, as (key for [`ALLOWED`], what to print).
fn violations(c: &Crate, arch: &Architecture) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (edges, off) = c.edges();
    let name = |f: usize| c.files[f].rel.clone();
    let top = |f: usize| c.files[f].module.first().cloned();

    for scc in cycles(c.files.len(), &edges) {
        let path = a_cycle(scc[0], &scc, &edges);
        let mut text = String::new();
        for e in &path {
            let _ = writeln!(text, "    {}:{} uses {}", name(e.from), e.line, name(e.to));
        }
        let mut members: Vec<String> = scc.iter().map(|&f| name(f)).collect();
        members.sort();
        out.push((
            format!("cycle: {}", members.join(", ")),
            format!(
                "import cycle between {} files ({}); one loop:\n{text}",
                scc.len(),
                members.join(", ")
            ),
        ));
    }

    let mut unplaced = BTreeSet::new();
    for (f, file) in c.files.iter().enumerate() {
        if let Some(m) = top(f) {
            if !arch.layers.contains_key(&m) {
                unplaced.insert(m);
            }
        }
        if file.parsed.code_lines > MAX_CODE_LINES && !arch.large.contains(&file.rel) {
            out.push((
                format!("size: {}", file.rel),
                format!(
                    "{} has {} lines of code (limit {MAX_CODE_LINES}): split it, or list it \
                     under \"Large files\" in ARCHITECTURE.md with a reason",
                    file.rel, file.parsed.code_lines
                ),
            ));
        }
    }
    for m in unplaced {
        out.push((
            format!("unplaced: {m}"),
            format!("module `{m}` has no layer in ARCHITECTURE.md's Layers table"),
        ));
    }

    for e in &edges {
        let (Some(from), Some(to)) = (top(e.from), top(e.to)) else {
            continue;
        };
        if let (Some(lf), Some(lt)) = (arch.layers.get(&from), arch.layers.get(&to)) {
            if lf < lt {
                out.push((
                    format!("up: {} -> {}", name(e.from), name(e.to)),
                    format!(
                        "{}:{} (`{from}`, L{lf}) imports {} (`{to}`, L{lt}), a higher layer",
                        name(e.from),
                        e.line,
                        name(e.to)
                    ),
                ));
            }
        }
    }

    for (f, m, line) in off {
        let m = m.join("::");
        out.push((
            format!("off: {} -> {m}", name(f)),
            format!(
                "{}:{line} names `{m}`, a module that exists only under cfg(test)/cfg(fuzzing)",
                name(f)
            ),
        ));
    }
    out
}

#[test]
fn the_crate_keeps_the_layering_of_architecture_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let arch = read_architecture(&doc);
    assert!(
        arch.layers.len() >= 10,
        "ARCHITECTURE.md's Layers table places only {:?}",
        arch.layers
    );
    let c = Crate::load(&root.join("src"));
    assert!(
        c.files.len() > 50,
        "read only {} module files",
        c.files.len()
    );

    let found = violations(&c, &arch);
    let keys: BTreeSet<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    let mut report = String::new();
    let mut failing = 0;
    for (key, text) in &found {
        if ALLOWED.contains(&key.as_str()) {
            let _ = writeln!(report, "allowed for now [{key}]:\n  {text}");
        } else {
            failing += 1;
            let _ = writeln!(report, "VIOLATION [{key}]:\n  {text}");
        }
    }
    let stale: Vec<&&str> = ALLOWED.iter().filter(|k| !keys.contains(**k)).collect();
    for key in &stale {
        let _ = writeln!(
            report,
            "STALE allow-list entry (remove it from ALLOWED): {key}"
        );
    }
    println!("{report}");
    assert!(
        failing == 0 && stale.is_empty(),
        "{failing} violation(s), {} stale allow-list entr(ies):\n{report}",
        stale.len()
    );
}

// ----------------------------------------------------------------------------------------------
// The checker's own tests: small crates in strings.

#[cfg(test)]
mod checker {
    use super::*;

    fn krate(files: &[(&str, &str)]) -> Crate {
        let sources = files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        Crate::from_sources(&sources)
    }

    /// The edges as `from -> to` file names.
    fn arrows(c: &Crate) -> Vec<String> {
        let (edges, _) = c.edges();
        edges
            .iter()
            .map(|e| format!("{} -> {}", c.files[e.from].rel, c.files[e.to].rel))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    fn arch(layers: &[(&str, u32)]) -> Architecture {
        Architecture {
            layers: layers.iter().map(|(m, l)| (m.to_string(), *l)).collect(),
            large: BTreeSet::new(),
        }
    }

    fn keys(c: &Crate, a: &Architecture) -> Vec<String> {
        violations(c, a).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn comments_strings_and_test_items_are_not_imports() {
        let c = krate(&[
            ("lib.rs", "pub mod a; pub mod b; #[cfg(test)] mod t;"),
            (
                "a.rs",
                r##"
                //! See [`crate::b::B`].
                /// Uses `crate::b`.
                // crate::b::B
                /* crate::b::B /* nested crate::b */ crate::b */
                const S: &str = "crate::b::B";
                const R: &str = r#"crate::b::B "quoted" "#;
                const C: char = '"';
                fn f<'a>(x: &'a str) -> &'a str { x }
                #[cfg(test)]
                mod tests { use crate::b::B; fn g() -> Result<(), crate::b::B> { todo!() } }
                #[cfg(any(test, fuzzing))]
                pub(crate) fn fuzz_hook() { crate::b::f(); }
                #[cfg(test)]
                use crate::b::B;
                pub(crate) fn h() {}
                "##,
            ),
            ("b.rs", "pub struct B; pub fn f() { crate::a::h(); }"),
            ("t.rs", "use crate::a::h; use crate::b::B;"),
        ]);
        assert_eq!(arrows(&c), ["src/b.rs -> src/a.rs"]);
        assert!(!c.files.iter().any(|f| f.rel == "src/t.rs"));
    }

    #[test]
    fn use_trees_super_self_and_children_are_imports() {
        let c = krate(&[
            ("lib.rs", "pub mod a; pub mod b; pub mod c;"),
            (
                "a/mod.rs",
                "mod x; mod y; pub use x::X; fn f() { y::g(); self::y::g(); }",
            ),
            (
                "a/x.rs",
                "use super::super::b::{self, B as Bee}; pub struct X;",
            ),
            ("a/y.rs", "pub fn g() { super::x::X; }"),
            ("b.rs", "pub struct B;"),
            ("c.rs", "use crate::{a::X, b}; fn f() { b::B; }"),
        ]);
        assert_eq!(
            arrows(&c),
            [
                "src/a/mod.rs -> src/a/y.rs",
                "src/a/x.rs -> src/b.rs",
                "src/a/y.rs -> src/a/x.rs",
                // Through a's facade, straight to the file that has X.
                "src/c.rs -> src/a/x.rs",
                "src/c.rs -> src/b.rs",
            ]
        );
    }

    #[test]
    fn a_module_binding_counts_through_what_goes_through_it() {
        let c = krate(&[
            ("lib.rs", "pub mod g; pub mod e; pub use e::Error;"),
            ("g/mod.rs", "pub mod sync;"),
            ("g/sync.rs", "pub fn f() {}"),
            (
                "e.rs",
                "use crate::g; fn f() { g::sync::f(); } pub struct Error;",
            ),
            ("x.rs", ""),
        ]);
        assert_eq!(arrows(&c), ["src/e.rs -> src/g/sync.rs"]);
        let c = krate(&[
            ("lib.rs", "pub mod g; pub mod e; pub use e::Error;"),
            ("g.rs", "fn f() -> crate::Error { todo!() }"),
            ("e.rs", "pub struct Error;"),
        ]);
        assert_eq!(arrows(&c), ["src/g.rs -> src/e.rs"]);
    }

    #[test]
    fn cycles_are_found_and_printed_with_their_lines() {
        let c = krate(&[
            ("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod d;"),
            ("a.rs", "use crate::b::B;\npub struct A;"),
            ("b.rs", "\n\nuse crate::c::C;\npub struct B;"),
            ("c.rs", "pub struct C(crate::a::A);"),
            ("d.rs", "use crate::a::A;"),
        ]);
        let a = arch(&[("a", 0), ("b", 0), ("c", 0), ("d", 0)]);
        let v = violations(&c, &a);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].0, "cycle: src/a.rs, src/b.rs, src/c.rs");
        assert!(v[0].1.contains("src/a.rs:1 uses src/b.rs"), "{}", v[0].1);
        assert!(v[0].1.contains("src/b.rs:3 uses src/c.rs"), "{}", v[0].1);
        assert!(v[0].1.contains("src/c.rs:1 uses src/a.rs"), "{}", v[0].1);
    }

    #[test]
    fn a_part_may_use_its_module_but_parts_in_a_loop_through_it_are_found() {
        // g/a.rs and g/b.rs use g's type (allowed: parts of it); g calls both (the one direction
        // that counts). No loop. Then b.rs uses a.rs and a.rs uses b.rs: a loop of parts.
        let parts = [
            ("lib.rs", "pub mod g;"),
            (
                "g/mod.rs",
                "mod a; mod b; pub struct G; fn f() { a::f(); b::f(); }",
            ),
            ("g/a.rs", "use super::G; pub fn f() {}"),
        ];
        let a = arch(&[("g", 0)]);
        let mut fine = parts.to_vec();
        fine.push(("g/b.rs", "use super::G; pub fn f() {}"));
        assert_eq!(keys(&krate(&fine), &a), Vec::<String>::new());
        let mut looped = parts.to_vec();
        looped[2] = ("g/a.rs", "use super::G; pub fn f() { super::b::f(); }");
        looped.push(("g/b.rs", "use super::G; pub fn f() { super::a::f(); }"));
        assert_eq!(keys(&krate(&looped), &a), ["cycle: src/g/a.rs, src/g/b.rs"]);
    }

    #[test]
    fn arrows_up_unplaced_modules_and_off_modules_are_violations() {
        let c = krate(&[
            ("lib.rs", "pub mod low; pub mod high; pub mod new; #[cfg(any(fuzzing, test))] pub mod fuzzing;"),
            ("low.rs", "use crate::high::H; fn f() { crate::fuzzing::go(); }"),
            ("high.rs", "pub struct H; fn f() { crate::low::f(); }"),
            ("new.rs", ""),
            ("fuzzing.rs", "use crate::high::H; pub fn go() {}"),
        ]);
        let a = arch(&[("low", 0), ("high", 4), ("fuzzing", 9)]);
        let mut k = keys(&c, &a);
        k.sort();
        assert_eq!(
            k,
            [
                "cycle: src/high.rs, src/low.rs",
                "off: src/low.rs -> fuzzing",
                "unplaced: new",
                "up: src/low.rs -> src/high.rs",
            ]
        );
    }

    #[test]
    fn a_large_file_needs_a_reason_in_the_document() {
        let body: String = (0..MAX_CODE_LINES + 1)
            .map(|i| format!("const C{i}: u8 = 0; // comment\n\n/// doc\n"))
            .collect();
        let tests = "\n#[cfg(test)]\nmod tests {\n".to_string() + &"fn t() {}\n".repeat(50) + "}\n";
        let c = krate(&[
            ("lib.rs", "pub mod big; pub mod ok;"),
            ("big.rs", &body),
            (
                "ok.rs",
                &(body.lines().skip(6).collect::<Vec<_>>().join("\n") + &tests),
            ),
        ]);
        let big = &c.files[c.by_module[&vec!["big".to_string()]]];
        assert_eq!(big.parsed.code_lines, MAX_CODE_LINES + 1);
        let mut a = arch(&[("big", 0), ("ok", 0)]);
        assert_eq!(keys(&c, &a), ["size: src/big.rs"]);
        let doc = "# X\n## Layers\n| L0 foundation | `big`, `ok` | x |\n## Large files\n\
                   - `src/big.rs`: generated tables, one per line, kept together.\n## Other\n";
        a = read_architecture(doc);
        assert_eq!(a.layers.len(), 2);
        assert!(a.large.contains("src/big.rs"));
        assert!(keys(&c, &a).is_empty());
        // A listing without a reason does not count.
        let a =
            read_architecture("## Layers\n| L0 | `big`, `ok` |\n## Large files\n- `src/big.rs`\n");
        assert_eq!(keys(&c, &a), ["size: src/big.rs"]);
    }

    #[test]
    fn the_layer_table_is_read_from_its_section_only() {
        let doc = "## Layers\n\n| Layer | Modules | What |\n|---|---|---|\n\
                   | L0 foundation | `clock`, `locks` | time |\n| L12 top | `cli` | args |\n\
                   | test only | `fuzzing` | hooks |\n\n## Threads\n| L3 | `nope` | |\n";
        let a = read_architecture(doc);
        assert_eq!(
            a.layers.into_iter().collect::<Vec<_>>(),
            [
                ("cli".to_string(), 12),
                ("clock".to_string(), 0),
                ("locks".to_string(), 0)
            ]
        );
    }

    #[test]
    fn cfg_predicates_are_off_only_when_off_in_a_plain_build() {
        let off = |s: &str| eval_cfg(&lex(s));
        assert_eq!(off("test"), Some(false));
        assert_eq!(off("any(fuzzing, test)"), Some(false));
        assert_eq!(off("all(test, unix)"), Some(false));
        assert_eq!(off("not(test)"), Some(true));
        assert_eq!(off("any(test, unix)"), None);
        assert_eq!(off("target_os = \"linux\""), None);
        // A struct field, a statement and a block under cfg(test) go; what follows stays.
        let c = krate(&[
            ("lib.rs", "pub mod a; pub mod b;"),
            (
                "a.rs",
                "struct S { #[cfg(test)] x: crate::b::B, y: u8 }\n\
                 fn f() { #[cfg(test)] let _ = crate::b::B; #[cfg(test)] { crate::b::B; } }\n\
                 fn g() -> u8 { 1 }",
            ),
            ("b.rs", "pub struct B;"),
        ]);
        assert!(arrows(&c).is_empty(), "{:?}", arrows(&c));
        assert_eq!(c.files[1].parsed.code_lines, 3);
    }
}
