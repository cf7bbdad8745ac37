//! A go.mod checker: says whether bytes an upstream serves as a `.mod`
//! would parse as a go.mod for the go command, following x/mod/modfile's
//! lexer and grammar and its *lax* rules (`ParseLax`, which is how the go
//! command reads the go.mod of a dependency).
//!
//! Owns only the yes/no answer and a reason; it builds no syntax tree and
//! must never be stricter than the go command on a dependency's go.mod: a
//! directive it does not know (a newer Go's) is accepted, as are `exclude`
//! and `replace` with any arguments (lax parsing ignores them), and the
//! module path is not compared with the requested one (a mirror serves
//! what the origin has). It is a pure function over hostile bytes: no
//! panics, no recursion, bounded work per byte.

use std::fmt;

use super::semver;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModFileError {
    NotUtf8,
    Nul,
    /// A lexical or block-structure error, with its 1-based line.
    Syntax {
        line: usize,
        message: &'static str,
    },
    /// A known directive with unusable arguments.
    Directive {
        line: usize,
        verb: &'static str,
        message: &'static str,
    },
    RepeatedModule {
        line: usize,
    },
    NoModule,
}

impl fmt::Display for ModFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModFileError::NotUtf8 => f.write_str("go.mod is not UTF-8 text"),
            ModFileError::Nul => f.write_str("go.mod contains a NUL byte"),
            ModFileError::Syntax { line, message } => write!(f, "go.mod:{line}: syntax error: {message}"),
            ModFileError::Directive { line, verb, message } => write!(f, "go.mod:{line}: {verb}: {message}"),
            ModFileError::RepeatedModule { line } => write!(f, "go.mod:{line}: repeated module statement"),
            ModFileError::NoModule => f.write_str("go.mod has no module directive"),
        }
    }
}

impl std::error::Error for ModFileError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A newline, or a `//` comment (which runs through its newline).
    Eol,
    LParen,
    RParen,
    /// `[`, `]`, `{`, `}` or `,`.
    Punct(char),
    Str,
    Ident,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    line: usize,
}

/// x/mod's `isIdent`: printable, not a space, not one of its punctuation.
fn is_ident(c: char) -> bool {
    !matches!(c, ' ' | '(' | ')' | '[' | ']' | '{' | '}' | ',') && !c.is_whitespace() && is_print(c)
}

/// An approximation of Go's `unicode.IsPrint` good enough to refuse what
/// matters: control characters and the invisible format characters a
/// hostile file could hide things behind.
fn is_print(c: char) -> bool {
    !c.is_control() && !matches!(c, '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

fn lex(text: &str) -> Result<Vec<Token<'_>>, ModFileError> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut rest = text;
    let syntax = |line, message| ModFileError::Syntax { line, message };
    while let Some(c) = rest.chars().next() {
        let start = rest;
        match c {
            ' ' | '\t' | '\r' => rest = &rest[1..],
            '\n' => {
                out.push(Token { kind: Kind::Eol, text: "\n", line });
                line += 1;
                rest = &rest[1..];
            }
            '/' if rest.starts_with("//") => {
                let end = rest.find('\n').map_or(rest.len(), |i| i + 1);
                out.push(Token { kind: Kind::Eol, text: &rest[..end], line });
                if end <= rest.len() && rest[..end].ends_with('\n') {
                    line += 1;
                }
                rest = &rest[end..];
            }
            '/' if rest.starts_with("/*") => return Err(syntax(line, "mod files must use // comments (not /* */ comments)")),
            '(' | ')' | '[' | ']' | '{' | '}' | ',' => {
                let kind = match c {
                    '(' => Kind::LParen,
                    ')' => Kind::RParen,
                    other => Kind::Punct(other),
                };
                out.push(Token { kind, text: &rest[..1], line });
                rest = &rest[1..];
            }
            '"' | '`' => {
                let mut escaped = false;
                let mut end = None;
                for (i, ch) in rest.char_indices().skip(1) {
                    if ch == '\n' {
                        return Err(syntax(line, "unexpected newline in string"));
                    }
                    if escaped {
                        escaped = false;
                    } else if ch == '\\' && c == '"' {
                        escaped = true;
                    } else if ch == c {
                        end = Some(i + 1);
                        break;
                    }
                }
                let Some(end) = end else { return Err(syntax(line, "unexpected EOF in string")) };
                out.push(Token { kind: Kind::Str, text: &start[..end], line });
                rest = &rest[end..];
            }
            c if is_ident(c) => {
                let mut end = 0;
                for (i, ch) in rest.char_indices() {
                    if !is_ident(ch) || rest[i..].starts_with("//") {
                        break;
                    }
                    if rest[i..].starts_with("/*") {
                        return Err(syntax(line, "mod files must use // comments (not /* */ comments)"));
                    }
                    end = i + ch.len_utf8();
                }
                out.push(Token { kind: Kind::Ident, text: &rest[..end], line });
                rest = &rest[end..];
            }
            _ => return Err(syntax(line, "unexpected input character")),
        }
    }
    Ok(out)
}

/// One statement: its tokens (the verb first), and the block verb when it
/// is a line inside `verb ( ... )`.
struct Stmt<'t, 'a> {
    verb: &'a str,
    args: &'t [Token<'a>],
    line: usize,
}

/// Groups tokens into statements as x/mod's `parseFile`/`parseStmt`/
/// `parseLineBlock` do, and calls `each` on every one.
fn statements<'a>(tokens: &[Token<'a>], mut each: impl FnMut(Stmt<'_, 'a>) -> Result<(), ModFileError>) -> Result<(), ModFileError> {
    let mut i = 0;
    let eol_at = |j: usize| tokens.get(j).is_none_or(|t| t.kind == Kind::Eol);
    while i < tokens.len() {
        if tokens[i].kind == Kind::Eol {
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i + 1;
        // A statement runs to the end of its line, unless a `(` ends the
        // line: then it opens a block.
        loop {
            if eol_at(j) {
                each(Stmt { verb: tokens[start].text, args: &tokens[start + 1..j], line: tokens[start].line })?;
                i = j + 1;
                break;
            }
            // `verb ( )` alone on its line: an empty block.
            if tokens[j].kind == Kind::LParen && tokens.get(j + 1).is_some_and(|t| t.kind == Kind::RParen) && eol_at(j + 2) {
                i = j + 3;
                break;
            }
            if tokens[j].kind == Kind::LParen && eol_at(j + 1) {
                let verb = tokens[start].text;
                let block_line = tokens[start].line;
                if j + 1 >= tokens.len() {
                    return Err(ModFileError::Syntax { line: block_line, message: "unterminated block" });
                }
                let mut k = j + 1;
                loop {
                    match tokens.get(k) {
                        None => return Err(ModFileError::Syntax { line: block_line, message: "unterminated block" }),
                        Some(t) if t.kind == Kind::Eol => k += 1,
                        Some(t) if t.kind == Kind::RParen => {
                            if !eol_at(k + 1) {
                                return Err(ModFileError::Syntax { line: t.line, message: "expected newline after closing paren" });
                            }
                            k += 2;
                            break;
                        }
                        Some(t) => {
                            let mut e = k + 1;
                            while !eol_at(e) {
                                e += 1;
                            }
                            // A block line's tokens are its arguments; the verb is the block's.
                            each(Stmt { verb, args: &tokens[k..e], line: t.line })?;
                            k = e + 1;
                        }
                    }
                }
                i = k;
                break;
            }
            j += 1;
        }
    }
    Ok(())
}

/// A module path or version argument: an identifier, or a quoted string
/// whose escapes Go's `strconv.Unquote` would accept.
fn is_string_arg(t: &Token<'_>) -> bool {
    match t.kind {
        Kind::Ident => true,
        Kind::Str if t.text.starts_with('`') => true,
        Kind::Str => {
            let inner = &t.text[1..t.text.len() - 1];
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    let ok = match chars.next() {
                        Some('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\' | '"') => true,
                        Some('x') => (0..2).all(|_| chars.next().is_some_and(|h| h.is_ascii_hexdigit())),
                        Some('u') => (0..4).all(|_| chars.next().is_some_and(|h| h.is_ascii_hexdigit())),
                        Some('U') => (0..8).all(|_| chars.next().is_some_and(|h| h.is_ascii_hexdigit())),
                        Some('0'..='7') => (0..2).all(|_| chars.next().is_some_and(|h| ('0'..='7').contains(&h))),
                        _ => false,
                    };
                    if !ok {
                        return false;
                    }
                }
            }
            true
        }
        _ => false,
    }
}

/// The text of a string argument without its quotes (escapes left as they
/// are: only used for version checks, which have none).
fn unquoted<'a>(t: &Token<'a>) -> &'a str {
    match t.kind {
        Kind::Str => &t.text[1..t.text.len() - 1],
        _ => t.text,
    }
}

fn is_version(t: &Token<'_>) -> bool {
    is_string_arg(t) && semver::is_valid(unquoted(t))
}

/// x/mod's `GoVersionRE` (`1.21`, `1.21.0`, `1.21rc1`) or, as lax parsing
/// allows and repairs, its `laxGoVersionRE` (`1.14beta`, `v1.17.x`).
fn is_go_version(v: &str) -> bool {
    fn number(s: &str, zero_ok: bool) -> Option<&str> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, rest) = s.split_at(end);
        let ok = !n.is_empty() && (!n.starts_with('0') || (zero_ok && n == "0"));
        ok.then_some(rest)
    }
    let strict = (|| {
        let rest = number(v, false)?.strip_prefix('.')?;
        let mut rest = number(rest, true)?;
        if let Some(r) = rest.strip_prefix('.') {
            rest = number(r, true)?;
        }
        if rest.is_empty() {
            return Some(());
        }
        let letters = rest.find(|c: char| !c.is_ascii_lowercase()).unwrap_or(rest.len());
        (letters > 0 && rest[letters..].bytes().all(|b| b.is_ascii_digit()) && letters < rest.len()).then_some(())
    })();
    let lax = (|| {
        let v = v.strip_prefix('v').unwrap_or(v);
        let rest = number(v, false)?.strip_prefix('.')?;
        let rest = number(rest, true)?;
        rest.chars().next().is_some_and(|c| !c.is_ascii_digit()).then_some(())
    })();
    strict.is_some() || lax.is_some()
}

/// A `retract` directive's interval: `v` alone (as `(v, v)`) or `[lo, hi]`.
fn retract_interval<'a>(args: &[Token<'a>]) -> Option<(&'a str, &'a str)> {
    match args {
        [v] if is_version(v) => Some((unquoted(v), unquoted(v))),
        [open, lo, comma, hi, close]
            if open.kind == Kind::Punct('[')
                && comma.kind == Kind::Punct(',')
                && close.kind == Kind::Punct(']')
                && is_version(lo)
                && is_version(hi) =>
        {
            Some((unquoted(lo), unquoted(hi)))
        }
        _ => None,
    }
}

/// Calls `each` on every statement of `body`, if it lexes (the readers
/// below want what they find, not why a file is malformed).
fn each_statement(body: &[u8], mut each: impl FnMut(Stmt<'_, '_>)) {
    let Ok(text) = std::str::from_utf8(body) else { return };
    let Ok(tokens) = lex(text) else { return };
    let _ = statements(&tokens, |s| {
        each(s);
        Ok(())
    });
}

/// The module path the `module` directive of `body` declares, if the file
/// parses and has one (quoted paths unquoted; escapes other than `\\` and
/// `\"` make it unknown).
pub fn module_path(body: &[u8]) -> Option<String> {
    let mut found = None;
    each_statement(body, |s| {
        if let ("module", [p]) = (s.verb, s.args) {
            found = path_arg(p);
        }
    });
    found
}

/// A path argument as written: bare, or quoted (unquoted here; escapes
/// other than `\\` and `\"` make it unknown).
fn path_arg(p: &Token<'_>) -> Option<String> {
    match p.kind {
        Kind::Ident => Some(p.text.to_string()),
        Kind::Str if p.text.len() >= 2 => {
            let inner = &p.text[1..p.text.len() - 1];
            if p.text.starts_with('`') {
                Some(inner.to_string())
            } else {
                let unescaped = inner.replace("\\\\", "\u{0}").replace("\\\"", "\"").replace('\u{0}', "\\");
                (!unescaped.contains('\\')).then_some(unescaped)
            }
        }
        _ => None,
    }
}

/// The `(path, version)` of every `require` of `body` (in blocks too), in
/// file order, if the file parses. What it names is unchecked: callers
/// validate each pair before they act on it.
pub fn requirements(body: &[u8]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Ok(text) = std::str::from_utf8(body) else { return found };
    let Ok(tokens) = lex(text) else { return found };
    let parsed = statements(&tokens, |s| {
        if let ("require", [p, v]) = (s.verb, s.args) {
            if let (Some(path), true) = (path_arg(p), is_version(v)) {
                found.push((path, unquoted(v).to_string()));
            }
        }
        Ok(())
    });
    // What came before a syntax error counts for nothing either.
    if parsed.is_err() {
        found.clear();
    }
    found
}

/// A module path as a go.mod spells it (x/mod's `AutoQuote`): bare when
/// it lexes as one token, quoted otherwise.
pub fn auto_quote(path: &str) -> String {
    let bare = !path.is_empty()
        && !path.contains("//")
        && !path.contains("/*")
        && path.chars().all(|c| is_ident(c) && c != '"' && c != '\'' && c != '`');
    if bare {
        path.to_string()
    } else {
        format!("{path:?}")
    }
}

/// The version intervals the `retract` directives of `body` withdraw,
/// each `(low, high)` inclusive (a single version is `(v, v)`).
pub fn retractions(body: &[u8]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    each_statement(body, |s| {
        if s.verb == "retract" {
            if let Some((lo, hi)) = retract_interval(s.args) {
                found.push((lo.to_string(), hi.to_string()));
            }
        }
    });
    found
}

/// The version the `go` directive of `body` names (`1.24`, `1.21.3`,
/// `1.23rc1`), if the file parses and has one.
pub fn go_version(body: &[u8]) -> Option<String> {
    let mut found = None;
    each_statement(body, |s| {
        if let ("go", [v]) = (s.verb, s.args) {
            if v.kind == Kind::Ident && is_go_version(v.text) {
                found = Some(v.text.to_string());
            }
        }
    });
    found
}

/// Checks `body` as a dependency's go.mod. `Ok` means the go command's lax
/// parser would accept it and it names a module.
pub fn check(body: &[u8]) -> Result<(), ModFileError> {
    if body.contains(&0) {
        return Err(ModFileError::Nul);
    }
    let text = std::str::from_utf8(body).map_err(|_| ModFileError::NotUtf8)?;
    let tokens = lex(text)?;
    let mut module_seen = false;
    statements(&tokens, |s| {
        let bad = |verb: &'static str, message: &'static str| Err(ModFileError::Directive { line: s.line, verb, message });
        match s.verb {
            "module" => {
                if module_seen {
                    return Err(ModFileError::RepeatedModule { line: s.line });
                }
                module_seen = true;
                match s.args {
                    [path] if is_string_arg(path) => Ok(()),
                    _ => bad("module", "usage: module module/path"),
                }
            }
            "go" => match s.args {
                [v] if v.kind == Kind::Ident && is_go_version(v.text) => Ok(()),
                _ => bad("go", "usage: go 1.23.0"),
            },
            "require" => match s.args {
                [path, v] if is_string_arg(path) && is_version(v) => Ok(()),
                _ => bad("require", "usage: require module/path v1.2.3"),
            },
            "retract" => match retract_interval(s.args) {
                Some(_) => Ok(()),
                _ => bad("retract", "usage: retract v1.2.3 or retract [v1.2.3, v1.3.0]"),
            },
            // Lax parsing ignores every other directive (toolchain, godebug,
            // exclude, replace, tool, ignore, and any a newer Go adds).
            _ => Ok(()),
        }
    })?;
    if module_seen {
        Ok(())
    } else {
        Err(ModFileError::NoModule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retractions_single_ranges_and_blocks() {
        let got = retractions(
            b"module example.com/a\n\nretract v1.0.0 // bad\nretract [v1.1.0, v1.1.5]\nretract (\n\tv1.2.0\n\t[v1.3.0, v1.3.9]\n)\n",
        );
        let want = [("v1.0.0", "v1.0.0"), ("v1.1.0", "v1.1.5"), ("v1.2.0", "v1.2.0"), ("v1.3.0", "v1.3.9")];
        assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    }

    #[test]
    fn requirements_single_blocks_quoted_and_nothing_from_a_broken_file() {
        let got = requirements(
            b"module example.com/a\n\ngo 1.16\n\nrequire example.com/b v1.0.0\nrequire (\n\texample.com/c v1.2.3 // indirect\n\t\"example.com/q\" \"v0.1.0\"\n\texample.com/bad notaversion\n)\nreplace example.com/b => example.com/x v9.9.9\n",
        );
        let want = [("example.com/b", "v1.0.0"), ("example.com/c", "v1.2.3"), ("example.com/q", "v0.1.0")];
        assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
        assert!(requirements(b"module example.com/a\nrequire (\n\texample.com/b v1.0.0\n").is_empty(), "an unterminated block");
        assert!(requirements(b"\xff\xfe").is_empty());
    }
    fn ok(s: &str) {
        assert_eq!(check(s.as_bytes()), Ok(()), "{s:?}");
    }
    fn bad(s: &[u8]) -> ModFileError {
        check(s).expect_err(&String::from_utf8_lossy(s))
    }

    #[test]
    fn accepts_what_the_go_command_accepts() {
        // The go.mod a proxy synthesizes for a +incompatible version.
        ok("module example.com/legacy\n");
        ok("module example.com/legacy");
        ok("module \"example.com/quoted\"\n");
        ok("module `example.com/raw`\n");
        ok("// Deprecated: use example.com/b\nmodule example.com/a // trailing\n\ngo 1.21\n");
        ok("module example.com/a\n\ngo 1.21.0\ntoolchain go1.22.1\ngodebug default=go1.21\n");
        ok("module example.com/a\ngo 1.14beta1\n");
        ok("module example.com/a\ngo 1.12\n");
        ok("module example.com/a\r\ngo 1.20\r\n");
        ok(concat!(
            "module example.com/a\n\n",
            "require (\n\texample.com/b v1.2.3 // indirect\n\t\"example.com/c\" v0.0.0-20240102030405-abcdefabcdef\n\n\t// a comment\n\texample.com/d v2.0.0+incompatible\n)\n",
            "require example.com/e v1.0.0\n",
            "exclude example.com/b v1.2.2\n",
            "replace (\n\texample.com/b => ../b\n\texample.com/c v1.0.0 => example.com/c2 v1.0.1\n)\n",
            "retract (\n\tv1.0.1 // broken\n\t[v1.0.2, v1.0.5]\n)\n",
            "retract v1.9.9\n",
            "require ()\n",
            "tool example.com/b/cmd\n",
            "futuredirective whatever ( it is )\n",
        ));
        ok("require example.com/b v1.2\nmodule example.com/a\n");
    }

    #[test]
    fn refuses_what_cannot_be_a_go_mod() {
        assert_eq!(bad(b""), ModFileError::NoModule);
        assert_eq!(bad(b"go 1.21\nrequire example.com/b v1.0.0\n"), ModFileError::NoModule);
        assert_eq!(bad(b"<html><body>Not Found</body></html>\n"), ModFileError::NoModule);
        assert_eq!(bad(b"module example.com/a\x00\n"), ModFileError::Nul);
        assert_eq!(bad(b"module example.com/\xff\n"), ModFileError::NotUtf8);
        assert!(matches!(bad(b"module example.com/a\nmodule example.com/b\n"), ModFileError::RepeatedModule { line: 2 }));
        assert!(matches!(bad(b"module\n"), ModFileError::Directive { verb: "module", .. }));
        assert!(matches!(bad(b"module a b\n"), ModFileError::Directive { verb: "module", .. }));
        assert!(matches!(bad(b"module \"a\\q\"\n"), ModFileError::Directive { verb: "module", .. }));
        assert!(matches!(bad(b"module \"example.com/a\n"), ModFileError::Syntax { line: 1, .. }));
        assert!(matches!(bad(b"module \"example.com/a"), ModFileError::Syntax { .. }));
        assert!(matches!(bad(b"/* c */ module example.com/a\n"), ModFileError::Syntax { .. }));
        assert!(matches!(bad(b"module example.com/a\nrequire (\n\texample.com/b v1.0.0\n"), ModFileError::Syntax { line: 2, .. }));
        assert!(matches!(bad(b"module example.com/a\nrequire (\n) x\n"), ModFileError::Syntax { line: 3, .. }));
        assert!(matches!(bad(b"module example.com/a\nrequire example.com/b\n"), ModFileError::Directive { verb: "require", .. }));
        assert!(matches!(bad(b"module example.com/a\nrequire example.com/b latest\n"), ModFileError::Directive { verb: "require", .. }));
        assert!(matches!(bad(b"module example.com/a\ngo one\n"), ModFileError::Directive { verb: "go", .. }));
        assert!(matches!(bad(b"module example.com/a\ngo 1.21 1.22\n"), ModFileError::Directive { verb: "go", .. }));
        assert!(matches!(bad(b"module example.com/a\nretract [v1.0.0 v1.0.1]\n"), ModFileError::Directive { verb: "retract", .. }));
        assert!(matches!(bad(b"module example.com/a\x07\n"), ModFileError::Syntax { .. }));
        assert!(matches!(bad("\u{feff}module example.com/a\n".as_bytes()), ModFileError::Syntax { .. }));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]
        /// Never panics, on bytes or on text shaped like a go.mod.
        #[test]
        fn never_panics_on_any_bytes(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = check(&b);
        }

        #[test]
        fn never_panics_on_go_mod_like_text(s in "(module|require|retract|go|[a-z/.]{1,8}|v1\\.[0-9]\\.0|[()\\[\\],\"`]|//|\n| ){0,40}") {
            let _ = check(s.as_bytes());
        }
    }

    #[test]
    fn never_panics_on_prefixes_of_a_real_file() {
        let full = "module example.com/a\n\ngo 1.21\n\nrequire (\n\t\"example.com/b\" v1.0.0 // x\n)\nretract [v1.0.0, v1.0.1]\n";
        for end in 0..=full.len() {
            let _ = check(&full.as_bytes()[..end]);
        }
    }
}
