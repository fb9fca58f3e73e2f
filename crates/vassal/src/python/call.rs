//! Calling the WSGI app for one request and sending what it returns.
//!
//! Fast path: an exact `list`/`tuple` of bytes (the common case) is sent with a
//! computed length and without looking up `close` (on Python < 3.13 a failed
//! attribute lookup allocates an exception). Everything else is iterated, each chunk
//! sent as soon as it is produced, and `close()` is called exactly once, also when
//! the client went away or the iterator raised.

use std::os::fd::BorrowedFd;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::environ::EnvironBuilder;
use super::wsgi::{FileWrapper, Handed, SharedResponse};
use crate::body::{lock, SharedBody};
use crate::vars::VarList;

/// Concatenate list items up to this size into one write.
const GATHER: usize = 64 * 1024;

pub struct Request<'a> {
    pub vars: &'a VarList,
    pub body: SharedBody,
    pub chunked_input: bool,
    pub resp: SharedResponse,
}

/// Calls the app and sends its response; returns true when the app raised.
pub fn run(
    py: Python<'_>,
    app: &Py<PyAny>,
    env: &mut EnvironBuilder,
    handed: &mut Handed,
    req: Request<'_>,
) -> bool {
    let raised = call_and_send(py, app, env, handed, &req);
    handed.release(py);
    raised
}

fn call_and_send(
    py: Python<'_>,
    app: &Py<PyAny>,
    env: &mut EnvironBuilder,
    handed: &mut Handed,
    req: &Request<'_>,
) -> bool {
    let label = || {
        let m = req.vars.get(b"REQUEST_METHOD").unwrap_or(b"?");
        let u = req
            .vars
            .get(b"REQUEST_URI")
            .or_else(|| req.vars.get(b"PATH_INFO"))
            .unwrap_or(b"?");
        format!(
            "{} {}",
            String::from_utf8_lossy(m),
            String::from_utf8_lossy(u)
        )
    };
    let result = (|| -> PyResult<Bound<'_, PyAny>> {
        let input = handed.input(py, req.body.clone())?;
        let environ = env.build(py, req.vars.iter(), input.into_any(), req.chunked_input)?;
        let sr = handed.start_response(py, req.resp.clone())?;
        app.bind(py).call1((environ, sr))
    })();
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            app_failed(py, req, e, &label());
            return true;
        }
    };
    let mut raised = false;
    if let Err(e) = send_result(py, &req.resp, &result) {
        raised = true;
        app_failed(py, req, e, &label());
    }
    // PEP 3333: close() exactly once, whatever happened while iterating.
    if !(result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>()) {
        match result.getattr_opt(pyo3::intern!(py, "close")) {
            Ok(Some(close)) => {
                if let Err(e) = close.call0() {
                    raised = true;
                    tracing::error!(request = %label(), "exception in the response's close()");
                    e.display(py);
                }
            }
            Ok(None) => {}
            Err(e) => e.display(py),
        }
    }
    let resp = &req.resp;
    let r = super::io(py, || {
        let mut r = lock(resp);
        if !r.broken && !r.has_status() {
            return Err(std::io::Error::other("no start_response"));
        }
        r.finish()
    });
    if let Err(e) = r {
        if e.to_string() == "no start_response" {
            tracing::error!(request = %label(), "the app returned without calling start_response()");
            py.detach(|| lock(resp).error(500, "Internal Server Error\n"));
        } else {
            tracing::info!(request = %label(), "client went away: {e}");
        }
    }
    raised
}

/// Logs the traceback; answers 500 if nothing was sent yet, else aborts the response
/// (the connection is closed so the client sees a truncated body, not a wrong one).
fn app_failed(py: Python<'_>, req: &Request<'_>, e: PyErr, label: &str) {
    let resp = &req.resp;
    let bad_body = lock(&req.body).as_ref().is_some_and(|b| b.bad_framing);
    if bad_body {
        // The client broke the chunked framing; the app only saw the read fail.
        tracing::info!(request = %label, "invalid chunked request body: answered 400 ({e})");
        py.detach(|| lock(resp).error(400, "Bad Request: invalid chunked body\n"));
        return;
    }
    let client_gone = lock(resp).broken;
    if client_gone && e.is_instance_of::<pyo3::exceptions::PyOSError>(py) {
        tracing::info!(request = %label, "client went away during the response");
        return;
    }
    tracing::error!(request = %label, "the app raised an exception; traceback follows");
    e.display(py);
    let answered = py.detach(|| lock(resp).error(500, "Internal Server Error\n"));
    if !answered {
        tracing::error!(request = %label, "response already started: connection closed");
    }
}

fn no_start_response() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(
        "the app produced body bytes before calling start_response()",
    )
}

fn send_result(py: Python<'_>, resp: &SharedResponse, result: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(list) = result.cast_exact::<PyList>() {
        return send_sequence(py, resp, list.iter());
    }
    if let Ok(tuple) = result.cast_exact::<PyTuple>() {
        return send_sequence(py, resp, tuple.iter());
    }
    if let Ok(fw) = result.cast_exact::<FileWrapper>() {
        if try_sendfile(py, resp, fw.borrow().filelike.bind(py))? {
            return Ok(());
        }
    }
    for item in result.try_iter()? {
        let item = item?;
        let bytes = as_bytes(&item)?;
        if bytes.as_bytes().is_empty() {
            continue;
        }
        let data = bytes.as_bytes();
        if !lock(resp).has_status() {
            return Err(no_start_response());
        }
        if let Err(e) = super::io(py, || lock(resp).write_body(data, None)) {
            tracing::info!("client went away while streaming: {e}");
            break;
        }
    }
    Ok(())
}

fn as_bytes<'a, 'py>(item: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyBytes>> {
    item.cast::<PyBytes>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "the app yielded a {} where bytes are required",
            item.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

fn send_sequence<'py>(
    py: Python<'py>,
    resp: &SharedResponse,
    items: impl ExactSizeIterator<Item = Bound<'py, PyAny>>,
) -> PyResult<()> {
    let mut items = items;
    // The usual `[body]` needs no Vec.
    let one: [Bound<'py, PyAny>; 1];
    let many: Vec<Bound<'py, PyAny>>;
    let items: &[Bound<'py, PyAny>] = match (items.len(), items.next()) {
        (1, Some(only)) => {
            one = [only];
            &one
        }
        (_, first) => {
            many = first.into_iter().chain(items).collect();
            &many
        }
    };
    let mut total = 0u64;
    for i in items {
        total += as_bytes(i)?.as_bytes().len() as u64;
    }
    if total > 0 && !lock(resp).has_status() {
        return Err(no_start_response());
    }
    // Nothing has been written through write() yet: the whole body is known.
    let known = if lock(resp).headers_sent() {
        None
    } else {
        Some(total)
    };
    if items.len() == 1 || total as usize <= GATHER {
        let data: Vec<u8>;
        let slice: &[u8] = if items.len() == 1 {
            items[0].cast::<PyBytes>()?.as_bytes()
        } else {
            data = items
                .iter()
                .flat_map(|i| {
                    i.cast::<PyBytes>()
                        .map(|b| b.as_bytes().to_vec())
                        .unwrap_or_default()
                })
                .collect();
            &data
        };
        if slice.is_empty() && known.is_none() {
            return Ok(());
        }
        if let Err(e) = super::io(py, || lock(resp).write_body(slice, known)) {
            tracing::info!("client went away: {e}");
        }
        return Ok(());
    }
    let mut first = true;
    for i in items {
        let data = i.cast::<PyBytes>()?.as_bytes();
        if data.is_empty() {
            continue;
        }
        let t = if first { known } else { None };
        first = false;
        if let Err(e) = super::io(py, || lock(resp).write_body(data, t)) {
            tracing::info!("client went away: {e}");
            break;
        }
    }
    Ok(())
}

/// sendfile(2) for a file_wrapper around a real file, from its current position to
/// its end (uWSGI always starts at offset 0; apps that seek first expect otherwise).
fn try_sendfile(
    py: Python<'_>,
    resp: &SharedResponse,
    filelike: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let Some(fileno) = filelike.getattr_opt("fileno")? else {
        return Ok(false);
    };
    let Ok(fd) = fileno.call0().and_then(|f| f.extract::<i32>()) else {
        return Ok(false);
    };
    // Flush Python-level buffers so the descriptor's offset is where the app thinks.
    if let Some(tell) = filelike.getattr_opt("tell")? {
        let pos: i64 = tell.call0()?.extract()?;
        // SAFETY: fd is the app's open descriptor, valid while `filelike` lives.
        unsafe { libc::lseek(fd, pos, libc::SEEK_SET) };
    }
    // SAFETY: as above; the borrow does not outlive this call.
    let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
    let st = match nix::sys::stat::fstat(bfd) {
        Ok(st) if (st.st_mode & libc::S_IFMT) == libc::S_IFREG => st,
        _ => return Ok(false),
    };
    // SAFETY: as above.
    let pos = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    if pos < 0 {
        return Ok(false);
    }
    let len = (st.st_size as u64).saturating_sub(pos as u64);
    match py.detach(|| lock(resp).send_file(bfd, pos as u64, len)) {
        Ok(done) => Ok(done),
        Err(e) => {
            tracing::info!("client went away during sendfile: {e}");
            Ok(true)
        }
    }
}
