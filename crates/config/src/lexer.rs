//! The ini lexer: a line-for-line port of uWSGI 2.0's `core/ini.c`.
//!
//! Generic ini crates get uWSGI files wrong (inline comments, bare keys, indented comments,
//! repeated keys, escapes), so this mirrors the C code instead:
//! - lines are split on `\n`; each is cut at a NUL byte (C strings) and trimmed of spaces,
//!   tabs and `\r` on both ends (so CRLF files work);
//! - a line starting with `[` names a section: the first and the **last** character are
//!   dropped, whatever the last one is;
//! - a line starting with `;` or `#` is a comment; there are no inline comments;
//! - anything else is split at the first `=`; a line without `=` is a key with an empty
//!   value (a bare `master` means true). Key and value are trimmed. No quotes, no escapes,
//!   no line continuations;
//! - only keys of the requested section are kept, in file order, repeats included.

/// One `key = value` line of the requested section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// 1-based line number in the file as written.
    pub line: u32,
    pub key: String,
    pub value: String,
}

/// The requested section of one file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lexed {
    pub entries: Vec<RawLine>,
    /// uWSGI warns when the section has no key at all (an empty section counts as missing).
    pub found_section: bool,
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_blank(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_blank(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Lexes lines (as produced by [`crate::magic::MagicTable::substitute`]: original line number and bytes)
/// and keeps the entries of `section`.
pub fn lex(lines: &[(u32, Vec<u8>)], section: &str) -> Lexed {
    let mut current: Vec<u8> = Vec::new();
    let mut out = Lexed::default();
    for (number, raw) in lines {
        // C string semantics: everything after a NUL byte is invisible.
        let raw = match raw.iter().position(|&b| b == 0) {
            Some(nul) => &raw[..nul],
            None => &raw[..],
        };
        let line = trim(raw);
        match line.first() {
            None => {}
            Some(b'[') => {
                current = match line.len() {
                    0..=2 => Vec::new(),
                    n => line[1..n - 1].to_vec(),
                };
            }
            Some(b';' | b'#') => {}
            Some(_) => {
                if current != section.as_bytes() {
                    continue;
                }
                out.found_section = true;
                let (key, value) = match line.iter().position(|&b| b == b'=') {
                    Some(eq) => (&line[..eq], &line[eq + 1..]),
                    None => (line, &[][..]),
                };
                out.entries.push(RawLine {
                    line: *number,
                    key: String::from_utf8_lossy(trim(key)).into_owned(),
                    value: String::from_utf8_lossy(trim(value)).into_owned(),
                });
            }
        }
    }
    out
}

/// Splits text into numbered lines without any magic substitution (used by tests and by
/// callers that lex text that has no magic variables).
pub fn plain_lines(text: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut lines: Vec<(u32, Vec<u8>)> = text
        .split(|&b| b == b'\n')
        .zip(1u32..)
        .map(|(l, n)| (n, l.to_vec()))
        .collect();
    if text.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str, section: &str) -> Vec<(u32, String, String)> {
        lex(&plain_lines(text.as_bytes()), section)
            .entries
            .into_iter()
            .map(|e| (e.line, e.key, e.value))
            .collect()
    }

    #[test]
    fn table() {
        #[rustfmt::skip]
        type Case<'a> = (&'a str, &'a str, &'a [(u32, &'a str, &'a str)]);
        let cases: &[Case] = &[
            (
                "[uwsgi]\nmaster = true\n",
                "uwsgi",
                &[(2, "master", "true")],
            ),
            ("[uwsgi]\nmaster\n", "uwsgi", &[(2, "master", "")]),
            ("[uwsgi]\n  master  \n", "uwsgi", &[(2, "master", "")]),
            ("[uwsgi]\nenv = A=B=C\n", "uwsgi", &[(2, "env", "A=B=C")]),
            (
                "[uwsgi]\nx = a ; not a comment\n",
                "uwsgi",
                &[(2, "x", "a ; not a comment")],
            ),
            (
                "[uwsgi]\nx = a # nor this\n",
                "uwsgi",
                &[(2, "x", "a # nor this")],
            ),
            (
                "[uwsgi]\n; c\n  # c\n\t;c\nx=1\n",
                "uwsgi",
                &[(5, "x", "1")],
            ),
            (
                "[uwsgi]\r\nx = 1\r\ny=2\r\n",
                "uwsgi",
                &[(2, "x", "1"), (3, "y", "2")],
            ),
            (
                "x = 0\n[uwsgi]\nx = 1\n[other]\nx = 2\n[uwsgi]\nx = 3",
                "uwsgi",
                &[(3, "x", "1"), (7, "x", "3")],
            ),
            (
                "[uwsgi]\nx = 1\n[other]\nx = 2\n",
                "other",
                &[(4, "x", "2")],
            ),
            (
                "[uwsgi]\nsocket = a\nsocket = b\n",
                "uwsgi",
                &[(2, "socket", "a"), (3, "socket", "b")],
            ),
            (
                "[uwsgi]\nx = \"quoted\"\n",
                "uwsgi",
                &[(2, "x", "\"quoted\"")],
            ),
            (
                "[uwsgi]\nx = a\\\ny = b\n",
                "uwsgi",
                &[(2, "x", "a\\"), (3, "y", "b")],
            ),
            ("[uwsgi]\n= value\n", "uwsgi", &[(2, "", "value")]),
            (
                "[uwsgi]\nkey with space = v\n",
                "uwsgi",
                &[(2, "key with space", "v")],
            ),
            ("[uwsgi]\nx =\n", "uwsgi", &[(2, "x", "")]),
            ("[uwsgi] \nx=1\n", "uwsgi", &[(2, "x", "1")]),
            // The last character of a section line is dropped whatever it is.
            ("[uwsgix\nx=1\n", "uwsgi", &[(2, "x", "1")]),
            ("[uwsgi\nx=1\n", "uwsgi", &[]),
            ("[\nx=1\n", "", &[(2, "x", "1")]),
            ("[]\nx=1\n", "", &[(2, "x", "1")]),
            ("[uwsgi]\nx = a\0b\n", "uwsgi", &[(2, "x", "a")]),
            ("[uwsgi]\n\0x = a\n", "uwsgi", &[]),
            ("[UWSGI]\nx=1\n", "uwsgi", &[]),
        ];
        for (text, section, want) in cases {
            let want: Vec<(u32, String, String)> = want
                .iter()
                .map(|(l, k, v)| (*l, k.to_string(), v.to_string()))
                .collect();
            assert_eq!(kv(text, section), want, "input {text:?}");
        }
    }

    #[test]
    fn found_section_only_with_keys() {
        let lines = plain_lines(b"[uwsgi]\n; only a comment\n");
        assert!(!lex(&lines, "uwsgi").found_section);
        let lines = plain_lines(b"[uwsgi]\nmaster\n");
        assert!(lex(&lines, "uwsgi").found_section);
    }
}
