//! The uwsgi wire protocol (what nginx's `uwsgi_pass` speaks).
//!
//! A request is a 4-byte header (`modifier1`, a little-endian `u16` size of the vars block,
//! `modifier2`), then the vars block: repeated `u16le key_len, key, u16le val_len, value` with no
//! terminator, then the request body, whose length comes only from `CONTENT_LENGTH`.
//!
//! The caller reads the header, checks it with [`check_header`] (this is where `buffer-size` is
//! enforced, before any allocation for the block), reads exactly `datasize` more bytes and hands
//! them to [`parse_vars`], which calls back with borrowed key/value slices.

use thiserror::Error;

/// Size of the fixed packet header.
pub const HEADER_LEN: usize = 4;

/// Default maximum number of key/value pairs in one vars block. uWSGI sizes its iovec from
/// `max-vars` (64) so that about 128 pairs fit; we use the same bound.
pub const DEFAULT_MAX_VARS: usize = 128;

/// `modifier1` for a plain WSGI request (nginx's default).
pub const MODIFIER1_WSGI: u8 = 0;

/// `modifier1` for WSGI with SCRIPT_NAME stripped from PATH_INFO.
pub const MODIFIER1_WSGI_STRIP: u8 = 30;

/// The 4-byte header in front of every uwsgi packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    /// Which plugin the request is for; 0 (or 30) means WSGI.
    pub modifier1: u8,
    /// Size of the vars block that follows (the body is not included).
    pub datasize: u16,
    /// Sub-type; 0 for requests.
    pub modifier2: u8,
}

/// Decodes the 4 header bytes. Every bit pattern is a header; [`check_header`] says whether we
/// serve it.
pub fn parse_header(b: [u8; HEADER_LEN]) -> PacketHeader {
    PacketHeader {
        modifier1: b[0],
        datasize: u16::from_le_bytes([b[1], b[2]]),
        modifier2: b[3],
    }
}

/// Why a uwsgi request was refused. uWSGI answers none of these; it logs and closes the
/// connection (nginx then shows 502), so the messages are written for the log.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UwsgiError {
    /// The vars block is larger than the configured `buffer-size`.
    #[error(
        "uwsgi vars block of {size} bytes exceeds buffer-size {max} (raise buffer-size in the ini)"
    )]
    BlockTooBig { size: usize, max: usize },
    /// `datasize` is 0: a WSGI request needs at least REQUEST_METHOD.
    #[error("empty uwsgi request (vars block size 0)")]
    EmptyBlock,
    /// A key of length 0 (uWSGI: "uwsgi key cannot be null").
    #[error("invalid uwsgi vars block: empty key at offset {offset}")]
    EmptyKey { offset: usize },
    /// A length field, key or value runs past the end of the block.
    #[error("invalid uwsgi vars block: truncated pair at offset {offset}")]
    Overrun { offset: usize },
    /// More pairs than allowed.
    #[error("invalid uwsgi vars block: more than {max} vars")]
    TooManyVars { max: usize },
    /// A `modifier1` other than 0 or 30.
    #[error("{}", unsupported_modifier_message(*.0))]
    UnsupportedModifier(u8),
}

fn unsupported_modifier_message(m: u8) -> String {
    if m.is_ascii_alphabetic() {
        format!(
            "unsupported uwsgi modifier1 {m} ({:?}): HTTP sent to a uwsgi socket? \
             (use http-socket, or uwsgi_pass instead of proxy_pass in nginx)",
            m as char
        )
    } else {
        format!("unsupported uwsgi modifier1 {m} (only 0 and 30, Python/WSGI, are served)")
    }
}

/// Checks a header before the vars block is read: `modifier1` must be 0 or 30, the block must
/// be non-empty and fit in `buffer_size`.
pub fn check_header(h: &PacketHeader, buffer_size: usize) -> Result<(), UwsgiError> {
    if h.modifier1 != MODIFIER1_WSGI && h.modifier1 != MODIFIER1_WSGI_STRIP {
        return Err(UwsgiError::UnsupportedModifier(h.modifier1));
    }
    let size = usize::from(h.datasize);
    if size == 0 {
        return Err(UwsgiError::EmptyBlock);
    }
    if size > buffer_size {
        return Err(UwsgiError::BlockTooBig {
            size,
            max: buffer_size,
        });
    }
    Ok(())
}

/// Reads a little-endian `u16` length at `pos`, or reports an overrun at `pos`.
fn read_len(block: &[u8], pos: usize) -> Result<usize, UwsgiError> {
    match block.get(pos..pos + 2) {
        Some(&[lo, hi]) => Ok(usize::from(u16::from_le_bytes([lo, hi]))),
        _ => Err(UwsgiError::Overrun { offset: pos }),
    }
}

/// Walks a vars block, calling `f(key, value)` for each pair in order, and returns the number
/// of pairs.
///
/// The slices borrow from `block` (for its whole lifetime, so they may be collected without
/// copying). On error `f` may already have been called for the pairs
/// before the bad one; the caller discards what it collected.
pub fn parse_vars<'a>(
    block: &'a [u8],
    max_vars: usize,
    mut f: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<usize, UwsgiError> {
    let mut pos = 0;
    let mut count = 0;
    while pos < block.len() {
        let pair_start = pos;
        let key_len = read_len(block, pos)?;
        if key_len == 0 {
            return Err(UwsgiError::EmptyKey { offset: pair_start });
        }
        pos += 2;
        let key = block
            .get(pos..pos + key_len)
            .ok_or(UwsgiError::Overrun { offset: pair_start })?;
        pos += key_len;
        let val_len =
            read_len(block, pos).map_err(|_| UwsgiError::Overrun { offset: pair_start })?;
        pos += 2;
        let value = block
            .get(pos..pos + val_len)
            .ok_or(UwsgiError::Overrun { offset: pair_start })?;
        pos += val_len;
        if count == max_vars {
            return Err(UwsgiError::TooManyVars { max: max_vars });
        }
        count += 1;
        f(key, value);
    }
    Ok(count)
}

/// Error from [`encode_packet`]: the packet cannot be represented on the wire.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// A key or value longer than 65535 bytes.
    #[error("uwsgi var of {len} bytes does not fit a u16 length")]
    VarTooLong { len: usize },
    /// The whole vars block is longer than 65535 bytes (nginx: "uwsgi request is too big").
    #[error("uwsgi vars block of {len} bytes does not fit a u16 datasize")]
    BlockTooLong { len: usize },
}

/// Builds a uwsgi request packet (header + vars block, no body), as nginx would.
///
/// Every key, every value and the whole block must each be at most 65535 bytes; otherwise this
/// returns an error rather than truncating.
pub fn try_encode_packet(
    modifier1: u8,
    vars: &[(&[u8], &[u8])],
    modifier2: u8,
) -> Result<Vec<u8>, EncodeError> {
    let block_len: usize = vars.iter().map(|(k, v)| 4 + k.len() + v.len()).sum();
    let datasize =
        u16::try_from(block_len).map_err(|_| EncodeError::BlockTooLong { len: block_len })?;
    let mut out = Vec::with_capacity(HEADER_LEN + block_len);
    out.push(modifier1);
    out.extend_from_slice(&datasize.to_le_bytes());
    out.push(modifier2);
    for (k, v) in vars {
        for part in [k, v] {
            let len = u16::try_from(part.len())
                .map_err(|_| EncodeError::VarTooLong { len: part.len() })?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    Ok(out)
}

/// Builds a uwsgi request packet (header + vars block, no body), for tests and clients.
///
/// # Panics
///
/// If a key, a value or the whole block exceeds 65535 bytes (the protocol's `u16` lengths).
/// Use [`try_encode_packet`] for untrusted sizes.
pub fn encode_packet(modifier1: u8, vars: &[(&[u8], &[u8])], modifier2: u8) -> Vec<u8> {
    match try_encode_packet(modifier1, vars, modifier2) {
        Ok(p) => p,
        Err(e) => panic!("encode_packet: {e}"),
    }
}

/// Parses a `CONTENT_LENGTH` value strictly: one or more ASCII digits, no sign, no spaces, no
/// overflow. Anything else (including the empty string) is `None`.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
#[path = "uwsgi_tests.rs"]
mod tests;
