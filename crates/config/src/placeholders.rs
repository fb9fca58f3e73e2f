//! The three value passes uWSGI runs after every file and argument has been read
//! (`uwsgi_apply_config_pass` in `core/utils.c`): `$(ENV)`, then `@(file)`, then `%(name)`.
//!
//! Each pass walks the options in order and rewrites their values in place, so a `%(name)`
//! sees the *current* value of the first option called `name` (already rewritten when that
//! option comes earlier). After a substitution uWSGI restarts the scan of the value at its
//! second byte, so substituted text is itself expanded (except at byte 0, an off-by-one we
//! reproduce). An unresolved reference is left literally. uWSGI can loop forever on a
//! self-referencing value; we stop after [`MAX_SUBSTITUTIONS`] or [`MAX_VALUE_LEN`] and
//! report an error instead.

use crate::diag::Diagnostic;
use crate::host::Host;
use crate::raw::RawOption;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Substitutions allowed in one value before we call it a loop.
pub const MAX_SUBSTITUTIONS: usize = 64;
/// Longest value a substitution may produce.
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// Bytes all substitutions of one pass may produce together, so hostile input stays cheap
/// (each substitution rebuilds its value).
pub const MAX_PASS_BYTES: usize = 4 * 1024 * 1024;

/// Runs `$`, `@` and `%` over `options`; returns the names `%(...)` looked up, so unknown
/// keys used as placeholders are not reported as typos.
pub fn apply_all(
    options: &mut [RawOption],
    host: &dyn Host,
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeSet<String> {
    apply_pass(options, b'$', diagnostics, &mut |_, key, _| {
        host.env_var(key)
    });
    apply_pass(options, b'@', diagnostics, &mut |_, key, diag| {
        read_at_file(host, key, diag)
    });
    let mut referenced = BTreeSet::new();
    // The first option of each name never changes during the pass: index it once so
    // lookups stay O(1) however many options there are.
    let mut first: HashMap<String, usize> = HashMap::new();
    for (i, o) in options.iter().enumerate() {
        first.entry(o.key.clone()).or_insert(i);
    }
    apply_pass(options, b'%', diagnostics, &mut |opts, key, _| {
        manage_placeholder(opts, &first, key, &mut referenced)
    });
    referenced
}

type Hook<'a> = dyn FnMut(&[RawOption], &str, &mut Option<String>) -> Option<String> + 'a;

/// One pass. `hook(options, key, &mut error)` resolves `SYMBOL(key)`; `None` leaves it
/// literal, and an error message it leaves in `error` becomes a diagnostic.
fn apply_pass(
    options: &mut [RawOption],
    symbol: u8,
    diagnostics: &mut Vec<Diagnostic>,
    hook: &mut Hook<'_>,
) {
    let mut total = 0usize;
    for i in 0..options.len() {
        if options[i].configured {
            continue;
        }
        let Some(mut value) = options[i].value.clone() else {
            continue;
        };
        let mut has_symbol = 0usize;
        let mut depth = 0usize;
        let mut magic_key = 0usize;
        let mut substitutions = 0usize;
        let mut j = 0usize;
        while j < value.len() {
            let c = value.as_bytes()[j];
            if c == symbol {
                has_symbol = 1;
            } else if c == b'(' && has_symbol == 1 {
                has_symbol = 2;
                depth = 0;
                magic_key = j + 1;
            } else if has_symbol > 1 {
                if c == b'(' {
                    has_symbol += 1;
                    depth += 1;
                } else if c == b')' {
                    if depth > 0 {
                        has_symbol += 1;
                        depth -= 1;
                        j += 1;
                        continue;
                    }
                    if has_symbol <= 2 {
                        has_symbol = 0;
                        j += 1;
                        continue;
                    }
                    // The key spans the bytes between the parentheses; both are ASCII, so
                    // these are char boundaries.
                    let key_end = magic_key + has_symbol - 2;
                    let key = value[magic_key..key_end].to_string();
                    let mut error = None;
                    let resolved = hook(options, &key, &mut error);
                    if let Some(message) = error {
                        diagnostics.push(Diagnostic::error(&options[i].origin, message));
                    }
                    let Some(resolved) = resolved else {
                        has_symbol = 0;
                        j += 1;
                        continue;
                    };
                    substitutions += 1;
                    let new_len = value.len() - (key_end + 1 - (magic_key - 2)) + resolved.len();
                    if substitutions > MAX_SUBSTITUTIONS || new_len > MAX_VALUE_LEN {
                        diagnostics.push(Diagnostic::error(
                            &options[i].origin,
                            format!(
                                "expanding `{}` does not terminate (a `{}(...)` reference refers back to itself)",
                                options[i].key,
                                char::from(symbol)
                            ),
                        ));
                        break;
                    }
                    total = total.saturating_add(new_len);
                    if total > MAX_PASS_BYTES {
                        diagnostics.push(Diagnostic::error(
                            &options[i].origin,
                            format!(
                                "`{}(...)` substitutions produce more than {MAX_PASS_BYTES} bytes; giving up",
                                char::from(symbol)
                            ),
                        ));
                        return;
                    }
                    value = format!(
                        "{}{}{}",
                        &value[..magic_key - 2],
                        resolved,
                        &value[key_end + 1..]
                    );
                    options[i].value = Some(value.clone());
                    has_symbol = 0;
                    // uWSGI sets j = 0 and its for loop increments it: the rescan starts at 1.
                    j = 1;
                    continue;
                } else {
                    has_symbol += 1;
                }
            } else {
                has_symbol = 0;
            }
            j += 1;
        }
    }
}

/// `@(file)`: the file's content up to a NUL byte, minus ONE trailing `\n` or `\r`.
/// uWSGI exits when the file cannot be read; we report an error and leave the text.
fn read_at_file(host: &dyn Host, key: &str, error: &mut Option<String>) -> Option<String> {
    if key.contains("://") {
        *error = Some(format!(
            "`@({key})`: uWSGI's `scheme://` sources (exec://, http://, ...) are not supported"
        ));
        return None;
    }
    match host.read_file(Path::new(key)) {
        Ok(mut bytes) => {
            if let Some(nul) = bytes.iter().position(|&b| b == 0) {
                bytes.truncate(nul);
            }
            if matches!(bytes.last(), Some(b'\n' | b'\r')) {
                bytes.pop();
            }
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        Err(e) => {
            *error = Some(format!("`@({key})`: cannot read `{key}`: {e}"));
            None
        }
    }
}

/// `uwsgi_get_exported_opt`: the value of the FIRST option called `key` (None for a flag
/// given without value on the command line, which uWSGI stores as NULL).
fn first_value<'a>(
    options: &'a [RawOption],
    first: &HashMap<String, usize>,
    key: &str,
) -> Option<&'a str> {
    first
        .get(key)
        .and_then(|&i| options.get(i))
        .and_then(|o| o.value.as_deref())
}

/// `uwsgi_manage_placeholder`: a plain name, or a space-separated pipeline where tokens
/// are concatenated and `+ - * /` apply to the next token (`++`/`--` to the result so far).
/// Inside a pipeline an unknown name is the empty string.
fn manage_placeholder(
    options: &[RawOption],
    first: &HashMap<String, usize>,
    key: &str,
    referenced: &mut BTreeSet<String>,
) -> Option<String> {
    if !key.contains(' ') {
        referenced.insert(key.to_string());
        return first_value(options, first, key).map(str::to_string);
    }
    #[derive(Clone, Copy)]
    enum State {
        Concat,
        Sum,
        Sub,
        Mul,
        Div,
    }
    let mut state = State::Concat;
    let mut current: Option<String> = None;
    for token in key.split(' ').filter(|t| !t.is_empty()) {
        let value = if token.bytes().all(|b| b.is_ascii_digit()) {
            token.to_string()
        } else {
            match token {
                "+" | "-" | "*" | "/" => {
                    state = match token {
                        "+" => State::Sum,
                        "-" => State::Sub,
                        "*" => State::Mul,
                        _ => State::Div,
                    };
                    continue;
                }
                "++" | "--" => {
                    if let Some(c) = current.as_deref() {
                        let n = strtoll(c);
                        let n = if token == "++" {
                            n.wrapping_add(1)
                        } else {
                            n.wrapping_sub(1)
                        };
                        current = Some(n.to_string());
                    }
                    state = State::Concat;
                    continue;
                }
                name => {
                    referenced.insert(name.to_string());
                    first_value(options, first, name).unwrap_or("").to_string()
                }
            }
        };
        let a = current.as_deref().map_or(0, strtoll);
        let b = strtoll(&value);
        current = Some(match state {
            State::Concat => format!("{}{}", current.as_deref().unwrap_or(""), value),
            State::Sum => a.wrapping_add(b).to_string(),
            State::Sub => a.wrapping_sub(b).to_string(),
            State::Mul => a.wrapping_mul(b).to_string(),
            State::Div if b == 0 => "0".to_string(),
            State::Div => a.wrapping_div(b).to_string(),
        });
        state = State::Concat;
    }
    current
}

/// C's `strtoll(s, NULL, 10)`: leading whitespace, optional sign, digits; saturates.
fn strtoll(s: &str) -> i64 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        let d = i64::from(b - b'0');
        n = match n.checked_mul(10).and_then(|n| {
            if negative {
                n.checked_sub(d)
            } else {
                n.checked_add(d)
            }
        }) {
            Some(n) => n,
            None => return if negative { i64::MIN } else { i64::MAX },
        };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Origin;
    use crate::host::MemHost;

    fn opts(pairs: &[(&str, Option<&str>)]) -> Vec<RawOption> {
        pairs
            .iter()
            .map(|(k, v)| RawOption::new(k, v.map(str::to_string), Origin::CommandLine))
            .collect()
    }

    fn run(pairs: &[(&str, Option<&str>)], host: &MemHost) -> (Vec<Option<String>>, usize) {
        let mut o = opts(pairs);
        let mut diags = Vec::new();
        apply_all(&mut o, host, &mut diags);
        (o.into_iter().map(|o| o.value).collect(), diags.len())
    }

    #[test]
    fn table() {
        let host = MemHost::new("/w")
            .env("HOME", "/home/app")
            .env("PORT", "8000")
            .env("LOOP", "$(LOOP)x")
            .file("/w/secret", "s3cret\n\n")
            .file("/w/crlf", "v\r\n");
        #[rustfmt::skip]
        type Case<'a> = (&'a [(&'a str, Option<&'a str>)], usize, &'a str, usize);
        let cases: &[Case] = &[
            // (options, index to check, expected value, number of diagnostics)
            (
                &[("a", Some("1")), ("a", Some("2")), ("b", Some("%(a)"))],
                2,
                "1",
                0,
            ),
            (&[("b", Some("%(a)")), ("a", Some("x"))], 0, "x", 0),
            (&[("a", Some("%(nope)"))], 0, "%(nope)", 0),
            (&[("a", Some("$(HOME)/x"))], 0, "/home/app/x", 0),
            (&[("a", Some(":$(PORT)"))], 0, ":8000", 0),
            (&[("a", Some("$(UNSET_VAR)"))], 0, "$(UNSET_VAR)", 0),
            (&[("a", Some("@(secret)"))], 0, "s3cret\n", 0),
            (&[("a", Some("@(crlf)"))], 0, "v\r", 0),
            (&[("a", Some("@(missing)"))], 0, "@(missing)", 1),
            (&[("a", Some("@(exec://date)"))], 0, "@(exec://date)", 1),
            (&[("n", Some("3")), ("a", Some("%(n + 1)"))], 1, "4", 0),
            (&[("n", Some("3")), ("a", Some("%(n * 2 + 1)"))], 1, "7", 0),
            (&[("n", Some("3")), ("a", Some("%(n ++)"))], 1, "4", 0),
            (
                &[("a", Some("%(x y)")), ("x", Some("ab")), ("y", Some("cd"))],
                0,
                "abcd",
                0,
            ),
            (&[("a", Some("%(7 / 0)"))], 0, "0", 0),
            (&[("a", Some("%(+)"))], 0, "%(+)", 0),
            (&[("a", Some("%()"))], 0, "%()", 0),
            (&[("a", Some("%(b(c))")), ("b(c)", Some("v"))], 0, "v", 0),
            // Substituted text is rescanned, except at byte 0.
            (
                &[("a", Some("z%(b)")), ("b", Some("%(c)")), ("c", Some("C"))],
                0,
                "zC",
                0,
            ),
            (
                &[("a", Some("%(b)")), ("b", Some("%(c)")), ("c", Some("C"))],
                0,
                "%(c)",
                0,
            ),
            // Self reference: uWSGI loops forever; we stop with an error.
            (&[("a", Some("x%(a)"))], 0, "", 1),
            (&[("a", Some("x$(LOOP)"))], 0, "", 1),
            // A flag without value (command line) cannot be used as a placeholder.
            (
                &[("master", None), ("a", Some("%(master)"))],
                1,
                "%(master)",
                0,
            ),
        ];
        for (input, index, want, ndiag) in cases {
            let (values, n) = run(input, &host);
            if !want.is_empty() {
                assert_eq!(values[*index].as_deref(), Some(*want), "{input:?}");
            }
            assert_eq!(n, *ndiag, "{input:?}");
        }
    }

    #[test]
    fn configured_options_are_not_rewritten() {
        let host = MemHost::new("/").env("X", "y");
        let mut o = opts(&[("listen", Some("$(X)"))]);
        o[0].configured = true;
        let mut diags = Vec::new();
        apply_all(&mut o, &host, &mut diags);
        assert_eq!(o[0].value.as_deref(), Some("$(X)"));
    }

    #[test]
    fn strtoll_like_c() {
        for (s, n) in [
            ("12", 12),
            (" -3x", -3),
            ("", 0),
            ("abc", 0),
            ("99999999999999999999", i64::MAX),
            ("-99999999999999999999", i64::MIN),
        ] {
            assert_eq!(strtoll(s), n, "{s}");
        }
    }
}
