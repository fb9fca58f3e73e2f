//! Building the WSGI environ dict.
//!
//! Keys are interned Python strings cached per serving thread (CGI variable names
//! repeat on every request), values are decoded as latin-1 as PEP 3333 requires for
//! native strings. The constant `wsgi.*` values are built once.
//!
//! A front server sends the same variables in the same order on every request, and
//! most values repeat too (method, protocol, host, server name and port, the client's
//! headers). So the builder remembers, per position, the last key and short value it
//! saw with their `str` objects: a byte comparison replaces hashing the key and
//! decoding the value. `str` objects are immutable, so sharing one between the
//! environs of successive requests is invisible to the app. The dict starts as a copy
//! of a template holding the constant `wsgi.*` entries and room for a typical request's
//! variables, so it is not grown while being filled.

use std::collections::HashMap;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};

/// Upper bound on cached keys: clients choose header names, so the cache must not grow
/// without limit; names beyond it are simply created per request.
const MAX_CACHED_KEYS: usize = 512;
/// Positions remembered (requests with more variables look the rest up by name).
const MAX_SLOTS: usize = 64;
/// Longer values are decoded on every request, never kept.
const MAX_CACHED_VALUE: usize = 128;
/// Entries the per-request dict has room for before it must grow (nginx's
/// uwsgi_params with a browser's headers come to about 25, plus 9 `wsgi.*`).
const TEMPLATE_ROOM: ffi::Py_ssize_t = 40;

extern "C" {
    /// CPython's dict constructor with room for `minused` entries (exported by
    /// libpython 3.8-3.13; pyo3-ffi leaves private functions out).
    fn _PyDict_NewPresized(minused: ffi::Py_ssize_t) -> *mut ffi::PyObject;
}

/// What position `i` of the previous request held.
struct Slot {
    key: Vec<u8>,
    key_obj: Py<PyString>,
    value: Vec<u8>,
    /// None when the value was too long to keep.
    value_obj: Option<Py<PyString>>,
}

pub struct EnvironBuilder {
    keys: HashMap<Vec<u8>, Py<PyString>>,
    slots: Vec<Slot>,
    /// The `wsgi.*` entries (`wsgi.input` = None), created with room for a whole
    /// environ: each request's dict starts as a copy of it, which CPython makes with one
    /// memcpy of the table, and which keeps the room.
    template: Option<Py<PyDict>>,
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
        let mut b = EnvironBuilder {
            keys: HashMap::new(),
            slots: Vec::with_capacity(MAX_SLOTS),
            template: None,
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
        };
        // SAFETY: returns a new reference or NULL with an exception set.
        let template = unsafe {
            Bound::from_owned_ptr_or_err(py, _PyDict_NewPresized(TEMPLATE_ROOM))?
                .cast_into_unchecked::<PyDict>()
        };
        b.set_constants(&template)?;
        set(
            &template,
            b.k_scheme.bind(py).as_any(),
            b.v_http.bind(py).as_any(),
        )?;
        set(&template, b.k_input.bind(py).as_any(), py.None().bind(py))?;
        b.template = Some(template.unbind());
        Ok(b)
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

    /// The key and value objects for the `i`-th variable, from the slot when it holds
    /// the same bytes; the slot then remembers this request's.
    fn entry<'py>(
        &mut self,
        py: Python<'py>,
        i: usize,
        k: &[u8],
        v: &[u8],
    ) -> PyResult<(Bound<'py, PyString>, Bound<'py, PyString>)> {
        if i < self.slots.len() && self.slots[i].key == k {
            let slot = &mut self.slots[i];
            let key = slot.key_obj.bind(py).clone();
            if let Some(obj) = &slot.value_obj {
                if slot.value == v {
                    return Ok((key, obj.bind(py).clone()));
                }
            }
            let value = latin1(py, v)?;
            remember_value(slot, v, &value);
            return Ok((key, value));
        }
        let key = self.key(py, k)?;
        let value = latin1(py, v)?;
        if i <= self.slots.len() && i < MAX_SLOTS {
            let mut slot = Slot {
                key: k.to_vec(),
                key_obj: key.clone().unbind(),
                value: Vec::new(),
                value_obj: None,
            };
            remember_value(&mut slot, v, &value);
            if i == self.slots.len() {
                self.slots.push(slot);
            } else {
                self.slots[i] = slot;
            }
        }
        Ok((key, value))
    }

    /// `d[k] = v` for the constant `wsgi.*` entries.
    fn set_constants(&self, d: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = d.py();
        set(
            d,
            self.k_version.bind(py).as_any(),
            self.version.bind(py).as_any(),
        )?;
        set(
            d,
            self.k_errors.bind(py).as_any(),
            self.errors.bind(py).as_any(),
        )?;
        set(
            d,
            self.k_multithread.bind(py).as_any(),
            PyBool::new(py, self.multithread).as_any(),
        )?;
        set(
            d,
            self.k_multiprocess.bind(py).as_any(),
            PyBool::new(py, self.multiprocess).as_any(),
        )?;
        set(
            d,
            self.k_run_once.bind(py).as_any(),
            PyBool::new(py, false).as_any(),
        )?;
        set(
            d,
            self.k_file_wrapper.bind(py).as_any(),
            self.file_wrapper.bind(py).as_any(),
        )
    }

    /// Creates the dict with every request variable and the `wsgi.*` entries (which
    /// win over request variables of the same name).
    pub fn build<'py, 'a>(
        &mut self,
        py: Python<'py>,
        vars: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
        input: Bound<'py, PyAny>,
        chunked_input: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let template = self.template.as_ref().expect("built in new()").as_ptr();
        // SAFETY: PyDict_Copy returns a new reference or NULL with an exception set.
        let d = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyDict_Copy(template))?
                .cast_into_unchecked::<PyDict>()
        };
        let mut scheme = SchemeHint::default();
        let mut shadowed = false;
        for (i, (k, v)) in vars.enumerate() {
            scheme.see(k, v);
            shadowed |= k.starts_with(b"wsgi.");
            let (key, value) = self.entry(py, i, k, v)?;
            set(&d, key.as_any(), value.as_any())?;
        }
        let scheme = match scheme.uwsgi_scheme.or(scheme.request_scheme) {
            Some(s) if s == b"https" => Some(self.v_https.bind(py).clone()),
            Some(s) if s == b"http" => None,
            Some(s) => Some(latin1(py, &s)?),
            None if scheme.https => Some(self.v_https.bind(py).clone()),
            None => None,
        };
        if shadowed {
            self.set_constants(&d)?;
        }
        if scheme.is_some() || shadowed {
            let scheme = scheme.unwrap_or_else(|| self.v_http.bind(py).clone());
            set(&d, self.k_scheme.bind(py).as_any(), scheme.as_any())?;
        }
        set(&d, self.k_input.bind(py).as_any(), input.as_any())?;
        if chunked_input {
            set(
                &d,
                self.k_input_terminated.bind(py).as_any(),
                PyBool::new(py, true).as_any(),
            )?;
        }
        Ok(d)
    }
}

fn remember_value(slot: &mut Slot, v: &[u8], obj: &Bound<'_, PyString>) {
    if v.len() <= MAX_CACHED_VALUE {
        slot.value.clear();
        slot.value.extend_from_slice(v);
        slot.value_obj = Some(obj.clone().unbind());
    } else {
        slot.value_obj = None;
    }
}

/// `d[k] = v` without the reference-count round trips of the generic setter.
fn set(d: &Bound<'_, PyDict>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: all three are live objects; PyDict_SetItem takes its own references.
    let rc = unsafe { ffi::PyDict_SetItem(d.as_ptr(), k.as_ptr(), v.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(PyErr::fetch(d.py()))
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

/// Appends a str as latin-1 bytes, as PEP 3333 requires for status and header
/// strings. Returns false (with `out` unchanged) if it has a code point above U+00FF.
pub fn push_latin1(out: &mut Vec<u8>, text: &str) -> bool {
    if text.is_ascii() {
        out.extend_from_slice(text.as_bytes());
        return true;
    }
    let mark = out.len();
    for c in text.chars() {
        let c = c as u32;
        if c > 0xff {
            out.truncate(mark);
            return false;
        }
        out.push(c as u8);
    }
    true
}
