//! Building the WSGI environ dict.
//!
//! Keys are interned Python strings cached per serving thread (CGI variable names
//! repeat on every request), values are decoded as latin-1 as PEP 3333 requires for
//! native strings. The constant `wsgi.*` values are built once.

use std::collections::HashMap;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};

/// Upper bound on cached keys: clients choose header names, so the cache must not grow
/// without limit; names beyond it are simply created per request.
const MAX_CACHED_KEYS: usize = 512;

pub struct EnvironBuilder {
    keys: HashMap<Vec<u8>, Py<PyString>>,
    version: Py<PyTuple>,
    errors: Py<PyAny>,
    file_wrapper: Py<PyAny>,
    multithread: bool,
    multiprocess: bool,
    k_version: Py<PyString>,
    k_scheme: Py<PyString>,
    k_input: Py<PyString>,
    k_errors: Py<PyString>,
    k_multithread: Py<PyString>,
    k_multiprocess: Py<PyString>,
    k_run_once: Py<PyString>,
    k_file_wrapper: Py<PyString>,
    k_input_terminated: Py<PyString>,
    v_http: Py<PyString>,
    v_https: Py<PyString>,
}

/// What `wsgi.url_scheme` should be, gathered while the vars go into the dict.
#[derive(Default)]
pub struct SchemeHint {
    pub uwsgi_scheme: Option<Vec<u8>>,
    pub request_scheme: Option<Vec<u8>>,
    pub https: bool,
}

impl SchemeHint {
    pub fn see(&mut self, key: &[u8], value: &[u8]) {
        match key {
            b"UWSGI_SCHEME" => self.uwsgi_scheme = Some(value.to_vec()),
            b"REQUEST_SCHEME" => self.request_scheme = Some(value.to_vec()),
            b"HTTPS" => {
                self.https = value.eq_ignore_ascii_case(b"on") || value == b"1";
            }
            _ => {}
        }
    }
}

impl EnvironBuilder {
    pub fn new(py: Python<'_>, multithread: bool, multiprocess: bool) -> PyResult<Self> {
        let intern = |s: &str| PyString::intern(py, s).unbind();
        Ok(EnvironBuilder {
            keys: HashMap::new(),
            version: PyTuple::new(py, [1, 0])?.unbind(),
            errors: py.import("sys")?.getattr("stderr")?.unbind(),
            file_wrapper: py
                .get_type::<super::wsgi::FileWrapper>()
                .into_any()
                .unbind(),
            multithread,
            multiprocess,
            k_version: intern("wsgi.version"),
            k_scheme: intern("wsgi.url_scheme"),
            k_input: intern("wsgi.input"),
            k_errors: intern("wsgi.errors"),
            k_multithread: intern("wsgi.multithread"),
            k_multiprocess: intern("wsgi.multiprocess"),
            k_run_once: intern("wsgi.run_once"),
            k_file_wrapper: intern("wsgi.file_wrapper"),
            k_input_terminated: intern("wsgi.input_terminated"),
            v_http: intern("http"),
            v_https: intern("https"),
        })
    }

    fn key<'py>(&mut self, py: Python<'py>, k: &[u8]) -> PyResult<Bound<'py, PyString>> {
        if let Some(s) = self.keys.get(k) {
            return Ok(s.bind(py).clone());
        }
        let s = latin1(py, k)?;
        if self.keys.len() < MAX_CACHED_KEYS {
            // SAFETY: `s` is a fresh str object we own; interning replaces the pointer
            // in place as the C API documents.
            let interned = unsafe {
                let mut p = s.into_ptr();
                ffi::PyUnicode_InternInPlace(&mut p);
                Bound::from_owned_ptr(py, p).cast_into_unchecked::<PyString>()
            };
            self.keys.insert(k.to_vec(), interned.clone().unbind());
            Ok(interned)
        } else {
            Ok(s)
        }
    }

    /// Creates the dict with every request variable, then the `wsgi.*` entries.
    pub fn build<'py, 'a>(
        &mut self,
        py: Python<'py>,
        vars: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        input: Bound<'py, PyAny>,
        chunked_input: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let mut scheme = SchemeHint::default();
        for (k, v) in vars {
            scheme.see(k, v);
            d.set_item(self.key(py, k)?, latin1(py, v)?)?;
        }
        let scheme = match scheme.uwsgi_scheme.or(scheme.request_scheme) {
            Some(s) if s == b"https" => self.v_https.bind(py).clone(),
            Some(s) if s == b"http" => self.v_http.bind(py).clone(),
            Some(s) => latin1(py, &s)?,
            None if scheme.https => self.v_https.bind(py).clone(),
            None => self.v_http.bind(py).clone(),
        };
        d.set_item(self.k_version.bind(py), self.version.bind(py))?;
        d.set_item(self.k_scheme.bind(py), scheme)?;
        d.set_item(self.k_input.bind(py), input)?;
        d.set_item(self.k_errors.bind(py), self.errors.bind(py))?;
        d.set_item(
            self.k_multithread.bind(py),
            PyBool::new(py, self.multithread),
        )?;
        d.set_item(
            self.k_multiprocess.bind(py),
            PyBool::new(py, self.multiprocess),
        )?;
        d.set_item(self.k_run_once.bind(py), PyBool::new(py, false))?;
        d.set_item(self.k_file_wrapper.bind(py), self.file_wrapper.bind(py))?;
        if chunked_input {
            d.set_item(self.k_input_terminated.bind(py), PyBool::new(py, true))?;
        }
        Ok(d)
    }
}

/// Bytes -> str, one code point per byte (PEP 3333 "native strings").
pub fn latin1<'py>(py: Python<'py>, b: &[u8]) -> PyResult<Bound<'py, PyString>> {
    // SAFETY: the pointer/length pair describes `b`; the call copies it.
    unsafe {
        let p = ffi::PyUnicode_DecodeLatin1(
            b.as_ptr().cast(),
            b.len() as ffi::Py_ssize_t,
            std::ptr::null(),
        );
        Ok(Bound::from_owned_ptr_or_err(py, p)?.cast_into_unchecked::<PyString>())
    }
}

/// str -> latin-1 bytes, as PEP 3333 requires for status and header strings.
/// Returns None if the string has a code point above U+00FF.
pub fn to_latin1(s: &Bound<'_, PyString>) -> PyResult<Option<Vec<u8>>> {
    let text = s.to_cow()?;
    if text.is_ascii() {
        return Ok(Some(text.as_bytes().to_vec()));
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let c = c as u32;
        if c > 0xff {
            return Ok(None);
        }
        out.push(c as u8);
    }
    Ok(Some(out))
}
