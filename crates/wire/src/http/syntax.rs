//! Character classes from RFC 9110 / RFC 9112 shared by the head and chunked parsers.

/// `tchar` (RFC 9110 §5.6.2): the bytes of a token such as a method or a field name.
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A byte allowed inside a field value: HTAB, SP, VCHAR or obs-text. Excludes NUL, CR, LF, the
/// other controls and DEL.
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// Trims SP and HTAB on both sides (OWS).
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Splits a field line `name: value` into its name and OWS-trimmed value, checking both.
/// Whitespace before the colon, an empty or non-token name and control bytes in the value are
/// errors (`None`).
pub(crate) fn split_field_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, rest) = line.split_at(colon);
    if !is_token(name) {
        return None;
    }
    let value = trim_ows(&rest[1..]);
    if !value.iter().all(|&b| is_field_value_byte(b)) {
        return None;
    }
    Some((name, value))
}

/// Iterates over the elements of a comma-separated list field, OWS-trimmed, skipping empty
/// elements as RFC 9110 §5.6.1 asks recipients to.
pub(crate) fn list_elements(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}
