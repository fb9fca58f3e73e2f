//! Everything that touches CPython lives here; the rest of the vassal sees Rust
//! types only (`VarList` in, bytes on the socket out).

mod call;
mod environ;
mod interpreter;
mod wsgi;

pub use call::{run as call_app, Request};
pub use environ::EnvironBuilder;
pub use interpreter::{
    extend_sys_path, initialize, load_app, AppSource, InitError, LoadError, BUILD_PYTHON,
    BUILD_PYTHON_VERSION,
};
pub use wsgi::{Handed, SharedResponse};

pub use pyo3::{Py, PyAny, Python};

/// The write end of the streams [`install_log_streams`] makes: one log record.
#[pyo3::pyfunction]
fn vassal_log_write(data: &[u8]) -> usize {
    crate::log::write_record(data);
    data.len()
}

/// With `logto`, `sys.stdout` and `sys.stderr` become line-buffered text streams whose
/// writes go through [`crate::log::write_record`]: on a full disk an app's `print`
/// loses its line (counted, reported once) instead of raising OSError into the
/// request. `fileno()` is still 1 and 2 (faulthandler writes there directly).
pub fn install_log_streams(py: Python<'_>) -> pyo3::PyResult<()> {
    use pyo3::types::{PyDict, PyDictMethods};
    let globals = PyDict::new(py);
    globals.set_item("_write", pyo3::wrap_pyfunction!(vassal_log_write, py)?)?;
    py.run(
        c"
import io, sys

class VassalLog(io.RawIOBase):
    def __init__(self, fd):
        self._fd = fd
    def writable(self):
        return True
    def fileno(self):
        return self._fd
    def write(self, b):
        return _write(bytes(b))

def wrap(old, fd):
    return io.TextIOWrapper(
        VassalLog(fd),
        encoding=getattr(old, 'encoding', None) or 'utf-8',
        errors=getattr(old, 'errors', None) or 'backslashreplace',
        line_buffering=True,
    )

sys.stdout = wrap(sys.stdout, 1)
sys.stderr = wrap(sys.stderr, 2)
",
        Some(&globals),
        None,
    )
}

/// Prints a Python exception with its traceback to stderr (sys.stderr).
pub fn print_error(py: Python<'_>, e: &pyo3::PyErr) {
    e.display(py);
}

/// Forks with CPython's before/after-fork hooks around the fork, holding the GIL (a
/// raw fork while another Python thread holds the GIL deadlocks the child).
///
/// # Safety
/// The caller must be single-threaded apart from Python threads (no Rust threads
/// holding locks), as after any fork.
pub unsafe fn fork_with_python() -> nix::Result<nix::unistd::ForkResult> {
    Python::attach(|_py| {
        // SAFETY: the documented protocol: Before in the parent, then After_Child or
        // After_Parent, all while attached.
        unsafe {
            pyo3::ffi::PyOS_BeforeFork();
            let r = nix::unistd::fork();
            match r {
                Ok(nix::unistd::ForkResult::Child) => pyo3::ffi::PyOS_AfterFork_Child(),
                _ => pyo3::ffi::PyOS_AfterFork_Parent(),
            }
            r
        }
    })
}

/// Makes signal `sig` dump every Python thread's traceback to stderr (faulthandler,
/// which works from a signal handler without the GIL).
/// Registers faulthandler's all-threads traceback dump on `sig`. False (logged) when
/// it cannot be (no `sys.stderr`, a broken faulthandler): the signal is then ignored,
/// so raising it can never kill the process by its default action.
pub fn register_traceback_signal(sig: i32) -> bool {
    use pyo3::types::{PyAnyMethods, PyDict, PyDictMethods};
    let r = Python::attach(|py| -> pyo3::PyResult<()> {
        let kw = PyDict::new(py);
        kw.set_item("all_threads", true)?;
        py.import("faulthandler")?
            .getattr("register")?
            .call((sig,), Some(&kw))?;
        Ok(())
    });
    match r {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                "cannot register the traceback dump for harakiri ({e}); harakiri will end \
                 requests without a traceback"
            );
            // SAFETY: setting a signal's disposition to SIG_IGN is always sound.
            unsafe { libc::signal(sig, libc::SIG_IGN) };
            false
        }
    }
}

thread_local! {
    /// For a worker's only serving thread: how many Python thread states existed when
    /// it started (the worker's main thread holds one it never uses again).
    static ALONE_AT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Python thread states of this interpreter (a walk of a short linked list).
fn thread_states(_py: Python<'_>) -> usize {
    // SAFETY: attached (the token proves it); the list is only read.
    unsafe {
        let interp = pyo3::ffi::PyInterpreterState_Get();
        let mut t = pyo3::ffi::PyInterpreterState_ThreadHead(interp);
        let mut n = 0;
        while !t.is_null() {
            n += 1;
            t = pyo3::ffi::PyThreadState_Next(t);
        }
        n
    }
}

/// Marks the calling thread as a worker's only serving thread (`threads = 1`). With
/// more than two thread states (the worker's main thread and this one) the app has
/// threads of its own (started while imported, under `lazy-apps`): then the GIL is
/// always released.
pub fn serving_alone(py: Python<'_>) {
    let n = thread_states(py);
    ALONE_AT.with(|a| a.set((n <= 2).then_some(n)));
}

/// Runs socket I/O of the current request. The GIL is released around it, so other
/// Python threads run meanwhile — unless this is a worker's only serving thread and no
/// other Python thread has appeared since it started: then nobody could take the GIL,
/// and releasing it would cost two mutex and condition-variable round trips for
/// nothing (three times per request). Blocking waits for new work always release it.
pub fn io<T: Send, F: Send + FnOnce() -> T>(py: Python<'_>, f: F) -> T {
    let alone = ALONE_AT
        .with(|a| a.get())
        .is_some_and(|n| thread_states(py) <= n);
    if alone {
        f()
    } else {
        py.detach(f)
    }
}

/// How many Python threads are alive (1 = only the main thread).
pub fn python_thread_count() -> usize {
    use pyo3::types::PyAnyMethods;
    Python::attach(|py| {
        py.import("threading")
            .and_then(|t| t.getattr("active_count")?.call0()?.extract::<usize>())
            .unwrap_or(1)
    })
}
