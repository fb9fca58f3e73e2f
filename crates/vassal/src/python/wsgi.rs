//! The Python objects a WSGI app touches: `start_response`, the `write` callable it
//! returns, `wsgi.input` and `wsgi.file_wrapper`. Socket I/O always runs with the
//! GIL released so other Python threads keep running.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyAssertionError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::environ::push_latin1;
use crate::body::{lock, SharedBody};
use crate::response::Response;

pub type SharedResponse = Arc<Mutex<Response>>;

#[pyclass(module = "vassal", name = "start_response")]
pub struct StartResponse {
    /// None between requests (the object waits in [`Handed`] for the next one).
    resp: Option<SharedResponse>,
    /// The write callable handed out last, refilled for the next call when the app
    /// kept no reference to it.
    write: Mutex<Option<Py<Write>>>,
}

fn request_over() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err("the request this object belonged to is over")
}

/// True when `o` is referenced only from where the caller holds it.
fn sole<T>(o: &Py<T>) -> bool {
    // SAFETY: reading the reference count of a live object (attached: callers hold
    // a Python token).
    unsafe { pyo3::ffi::Py_REFCNT(o.as_ptr()) == 1 }
}

/// The objects a serving thread hands to the app (`wsgi.input`, `start_response` and
/// the `write` it returns), kept from request to request: when the app kept no
/// reference to one it is refilled instead of allocated and freed again. Emptied
/// after every request, so the response, the body and the connection are released
/// at once; an object the app still holds is left to it and forgotten here.
#[derive(Default)]
pub struct Handed {
    input: Option<Py<Input>>,
    start: Option<Py<StartResponse>>,
}

impl Handed {
    pub fn input<'py>(&mut self, py: Python<'py>, body: SharedBody) -> PyResult<Bound<'py, Input>> {
        if let Some(obj) = self.input.as_ref().filter(|o| sole(o)) {
            let obj = obj.bind(py);
            if let Ok(mut i) = obj.try_borrow_mut() {
                i.body = Some(body.clone());
                lock(&i.ahead).clear();
                drop(i);
                return Ok(obj.clone());
            }
        }
        let obj = Bound::new(py, Input::new(body))?;
        self.input = Some(obj.clone().unbind());
        Ok(obj)
    }

    pub fn start_response<'py>(
        &mut self,
        py: Python<'py>,
        resp: SharedResponse,
    ) -> PyResult<Bound<'py, StartResponse>> {
        if let Some(obj) = self.start.as_ref().filter(|o| sole(o)) {
            let obj = obj.bind(py);
            if let Ok(mut sr) = obj.try_borrow_mut() {
                sr.resp = Some(resp.clone());
                drop(sr);
                return Ok(obj.clone());
            }
        }
        let obj = Bound::new(
            py,
            StartResponse {
                resp: Some(resp),
                write: Mutex::new(None),
            },
        )?;
        self.start = Some(obj.clone().unbind());
        Ok(obj)
    }

    /// After a request: empties what can be kept, forgets what the app still holds.
    pub fn release(&mut self, py: Python<'_>) {
        // (A failed try_borrow_mut cannot happen with nobody else holding a reference;
        // if it did, the object is simply not kept.)
        if let Some(obj) = self.input.take().filter(sole) {
            if let Ok(mut i) = obj.bind(py).try_borrow_mut() {
                i.body = None;
                drop(i);
                self.input = Some(obj);
            }
        }
        if let Some(obj) = self.start.take().filter(sole) {
            if let Ok(mut sr) = obj.bind(py).try_borrow_mut() {
                sr.resp = None;
                let mut w = lock(&sr.write);
                *w = w.take().filter(sole).filter(|write| {
                    write
                        .bind(py)
                        .try_borrow_mut()
                        .map(|mut wr| wr.resp = None)
                        .is_ok()
                });
                drop(w);
                drop(sr);
                self.start = Some(obj);
            }
        }
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__(
        &self,
        py: Python<'_>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Write>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        let resp = self.resp.as_ref().ok_or_else(request_over)?;
        {
            let r = lock(resp);
            if let Some(info) = exc_info {
                if r.headers_sent() {
                    // PEP 3333: too late to change the response; re-raise the app's
                    // exception so it propagates out of the app.
                    let value = info.get_item(1)?;
                    return Err(PyErr::from_value(value));
                }
            } else if r.has_status() {
                return Err(PyAssertionError::new_err(
                    "start_response() called a second time without exc_info",
                ));
            }
        }
        // Status and header lines go straight into one buffer: "200 OK\r\nName: value\r\n..."
        let mut start = Vec::with_capacity(128);
        let code = parse_status(status, &mut start)?;
        let app_length = parse_headers(headers, &mut start)?;
        lock(resp).set_start(code, start, app_length);
        let mut kept = lock(&self.write);
        if let Some(write) = kept.as_ref().filter(|o| sole(o)) {
            if let Ok(mut wr) = write.bind(py).try_borrow_mut() {
                wr.resp = Some(resp.clone());
                drop(wr);
                return Ok(write.clone_ref(py));
            }
        }
        let write = Py::new(
            py,
            Write {
                resp: Some(resp.clone()),
            },
        )?;
        *kept = Some(write.clone_ref(py));
        Ok(write)
    }
}

/// Checks the status and appends it (latin-1, with a reason phrase added to a bare
/// code) and CRLF to `out`. Returns the code.
fn parse_status(status: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<u16> {
    let s = status
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err("status must be a str, e.g. '200 OK'"))?;
    let text = s.to_cow()?;
    let code = wire::response::parse_status(&text)
        .map_err(|e| PyValueError::new_err(format!("invalid status {text:?}: {e}")))?;
    if !push_latin1(out, &text) {
        return Err(PyValueError::new_err("status must be latin-1 encodable"));
    }
    if text.len() == 3 {
        out.push(b' ');
        out.extend_from_slice(wire::response::reason_phrase(code).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(code)
}

/// Checks the `(name, value)` pairs and appends each as a `name: value` CRLF line to
/// `out`. Returns the Content-Length the app set, if any.
fn parse_headers(headers: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<Option<u64>> {
    let mut app_length = None;
    let mut one = |item: Bound<'_, PyAny>| -> PyResult<()> {
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| PyTypeError::new_err("each header must be a (name, value) tuple"))?;
        let name = pair.get_item(0)?;
        let value = pair.get_item(1)?;
        let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
            return Err(PyTypeError::new_err("header names and values must be str"));
        };
        let (n, v) = (name.to_cow()?, value.to_cow()?);
        let invalid = |e| PyValueError::new_err(format!("invalid header {n:?}: {e}"));
        wire::response::validate_header(&n, &v).map_err(invalid)?;
        // Framing headers decide how the response is delimited: refused when they could
        // contradict the server's (hop-by-hop, unparsable or conflicting lengths).
        if let wire::response::HeaderRole::ContentLength(len) =
            wire::response::header_role(&n, &v).map_err(invalid)?
        {
            match app_length {
                Some(first) if first != len => {
                    return Err(invalid(
                        wire::response::HeaderError::ConflictingContentLength(first, len),
                    ))
                }
                _ => app_length = Some(len),
            }
        }
        let mark = out.len();
        if !(push_latin1(out, &n) && {
            out.extend_from_slice(b": ");
            push_latin1(out, &v)
        }) {
            out.truncate(mark);
            return Err(PyValueError::new_err("headers must be latin-1 encodable"));
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    };
    if let Ok(l) = headers.cast::<PyList>() {
        for item in l.iter() {
            one(item)?;
        }
    } else if let Ok(t) = headers.cast::<PyTuple>() {
        for item in t.iter() {
            one(item)?;
        }
    } else {
        return Err(PyTypeError::new_err(
            "response headers must be a list of (name, value) tuples",
        ));
    }
    Ok(app_length)
}

/// The `write(data)` callable returned by `start_response` (legacy imperative API).
#[pyclass(module = "vassal")]
pub struct Write {
    /// None between requests.
    resp: Option<SharedResponse>,
}

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() takes bytes"))?;
        let resp = self.resp.as_ref().ok_or_else(request_over)?;
        if !lock(resp).has_status() {
            return Err(PyAssertionError::new_err(
                "write() called before start_response()",
            ));
        }
        let bytes = data.as_bytes();
        py.detach(|| lock(resp).write_body(bytes, None))
            .map_err(|e| PyOSError::new_err(format!("write error: {e}")))
    }
}

/// `wsgi.input`: a read-only file-like view of the request body.
#[pyclass(module = "vassal", name = "Input")]
pub struct Input {
    /// None between requests: reads then return EOF.
    body: Option<SharedBody>,
    /// Bytes read from the body but not yet returned (readline lookahead).
    ahead: Mutex<Vec<u8>>,
}

const BLOCK: usize = 64 * 1024;

impl Input {
    pub fn new(body: SharedBody) -> Self {
        Input {
            body: Some(body),
            ahead: Mutex::new(Vec::new()),
        }
    }

    /// Reads up to `max` more body bytes, appending to `out`. Returns 0 at the end.
    fn pull(&self, py: Python<'_>, out: &mut Vec<u8>, max: usize) -> PyResult<usize> {
        let Some(body) = &self.body else {
            return Ok(0);
        };
        let start = out.len();
        out.resize(start + max, 0);
        let dst = &mut out[start..];
        let r = read_body(py, body, dst);
        match r {
            Ok(n) => {
                out.truncate(start + n);
                Ok(n)
            }
            Err(e) => {
                out.truncate(start);
                Err(PyOSError::new_err(format!("error reading wsgi.input: {e}")))
            }
        }
    }

    /// `read(n)` with nothing looked ahead, on a body of known length: the bytes object
    /// is made at its final size and filled straight from the connection, one copy
    /// instead of two (and no Vec). None when that does not apply.
    fn read_direct<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let Some(body) = &self.body else {
            return Ok(None);
        };
        if !lock(&self.ahead).is_empty() {
            return Ok(None);
        }
        let Some(remaining) = lock(body).as_ref().and_then(|b| b.remaining()) else {
            return Ok(None);
        };
        let want = usize::try_from(remaining).unwrap_or(usize::MAX).min(n);
        let bytes = PyBytes::new_with(py, want, |buf| {
            let mut filled = 0;
            while filled < want {
                let dst = &mut buf[filled..];
                let r = read_body(py, body, dst);
                match r {
                    Ok(0) => {
                        return Err(PyOSError::new_err(
                            "error reading wsgi.input: the request is over",
                        ))
                    }
                    Ok(k) => filled += k,
                    Err(e) => {
                        return Err(PyOSError::new_err(format!("error reading wsgi.input: {e}")))
                    }
                }
            }
            Ok(())
        })?;
        Ok(Some(bytes))
    }

    fn read_n(&self, py: Python<'_>, size: Option<usize>) -> PyResult<Vec<u8>> {
        let mut out = std::mem::take(&mut *lock(&self.ahead));
        match size {
            Some(n) if out.len() >= n => {
                let rest = out.split_off(n);
                *lock(&self.ahead) = rest;
            }
            Some(n) => {
                while out.len() < n {
                    let want = (n - out.len()).min(BLOCK);
                    if self.pull(py, &mut out, want)? == 0 {
                        break;
                    }
                }
            }
            None => while self.pull(py, &mut out, BLOCK)? > 0 {},
        }
        Ok(out)
    }

    fn read_line(&self, py: Python<'_>, limit: Option<usize>) -> PyResult<Vec<u8>> {
        let mut buf = std::mem::take(&mut *lock(&self.ahead));
        let mut scanned = 0;
        loop {
            let cap = limit.unwrap_or(usize::MAX);
            if let Some(i) = buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = (scanned + i + 1).min(cap);
                let rest = buf.split_off(end);
                *lock(&self.ahead) = rest;
                return Ok(buf);
            }
            if buf.len() >= cap {
                let rest = buf.split_off(cap);
                *lock(&self.ahead) = rest;
                return Ok(buf);
            }
            scanned = buf.len();
            let want = BLOCK.min(cap.saturating_sub(buf.len()).max(1));
            if self.pull(py, &mut buf, want)? == 0 {
                return Ok(buf);
            }
        }
    }
}

/// Reads body bytes into `dst` with the GIL released (0 once the body is taken back).
fn read_body(py: Python<'_>, body: &SharedBody, dst: &mut [u8]) -> std::io::Result<usize> {
    py.detach(|| match lock(body).as_mut() {
        Some(b) => b.read(dst),
        None => Ok(0),
    })
}

fn size_arg(size: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    match size {
        None => Ok(None),
        Some(s) if s.is_none() => Ok(None),
        Some(s) => {
            let n: i64 = s.extract()?;
            Ok(if n < 0 { None } else { Some(n as usize) })
        }
    }
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size=None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let size = size_arg(size)?;
        if let Some(n) = size.filter(|&n| n > 0) {
            if let Some(bytes) = self.read_direct(py, n)? {
                return Ok(bytes);
            }
        }
        let data = self.read_n(py, size)?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(
        &self,
        py: Python<'py>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.read_line(py, size_arg(size)?)?;
        Ok(PyBytes::new(py, &line))
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &self,
        py: Python<'py>,
        hint: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let hint = size_arg(hint)?.filter(|&h| h > 0);
        let mut lines = Vec::new();
        let mut total = 0;
        loop {
            let line = self.read_line(py, None)?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            lines.push(PyBytes::new(py, &line));
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.read_line(py, None)?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }

    fn close(&self) {}
}

/// `wsgi.file_wrapper(filelike, blksize=8192)`. When the app returns one whose file
/// has a real descriptor, the driver sends it with sendfile(2); otherwise it is an
/// iterator over `filelike.read(blksize)`.
#[pyclass(module = "vassal", name = "FileWrapper")]
pub struct FileWrapper {
    pub filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let chunk = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        Ok((chunk.len()? > 0).then_some(chunk))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if let Some(close) = f.getattr_opt("close")? {
            close.call0()?;
        }
        Ok(())
    }
}
