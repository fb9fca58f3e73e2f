//! Starting the embedded CPython and loading the WSGI callable.
//!
//! The interpreter is initialised with `PyConfig.executable` pointing at the venv's
//! `bin/python` (or at the interpreter the vassal was built against): CPython then
//! finds `pyvenv.cfg` itself and builds `sys.path` exactly as `<venv>/bin/python`
//! would. uWSGI sets PYTHONHOME instead, which breaks stdlib venvs (they have no
//! stdlib of their own).

use std::ffi::CString;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyModule};

/// The interpreter this binary was linked against, recorded by build.rs.
pub const BUILD_PYTHON: &str = env!("VASSAL_BUILD_PYTHON");
/// `major.minor` of that interpreter.
pub const BUILD_PYTHON_VERSION: &str = env!("VASSAL_BUILD_PYTHON_VERSION");

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    #[error("virtualenv {venv}: {why}")]
    BadVenv { venv: PathBuf, why: String },
    #[error(
        "virtualenv {venv} was made by Python {venv_version} ({venv_home}), but this vassal embeds \
         Python {ours} ({exe}); recreate it with `{exe} -m venv {venv}`",
        ours = BUILD_PYTHON_VERSION,
        exe = BUILD_PYTHON
    )]
    VenvMismatch {
        venv: PathBuf,
        venv_version: String,
        venv_home: String,
    },
    #[error("CPython failed to initialise: {0}")]
    Init(String),
}

/// Reads `<venv>/pyvenv.cfg` and refuses a venv made by another interpreter: its
/// stdlib would not match the libpython we run (a different minor version breaks
/// the ABI, and another installation of the same version has other built-in modules).
pub fn check_venv(venv: &Path) -> Result<(), InitError> {
    let cfg_path = venv.join("pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| InitError::BadVenv {
        venv: venv.to_owned(),
        why: format!(
            "cannot read {}: {e} (is it a virtualenv?)",
            cfg_path.display()
        ),
    })?;
    let mut home = String::new();
    let mut version = String::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "home" => home = v.trim().to_owned(),
                "version" | "version_info" if version.is_empty() => version = v.trim().to_owned(),
                _ => {}
            }
        }
    }
    let minor_of = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    let same_version = minor_of(&version) == BUILD_PYTHON_VERSION;
    let build_home = Path::new(BUILD_PYTHON).parent().map(canonical);
    let same_home = build_home.as_deref() == Some(canonical(Path::new(&home)).as_path());
    if same_version && same_home {
        Ok(())
    } else {
        Err(InitError::VenvMismatch {
            venv: venv.to_owned(),
            venv_version: if version.is_empty() {
                "?".into()
            } else {
                version
            },
            venv_home: home,
        })
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned())
}

/// Initialises CPython once for this process. With `venv`, the interpreter runs as
/// `<venv>/bin/python` would; without, as the interpreter the vassal was built with.
pub fn initialize(venv: Option<&Path>) -> Result<(), InitError> {
    if let Some(v) = venv {
        check_venv(v)?;
    }
    let exe = match venv {
        Some(v) => v.join("bin/python"),
        None => PathBuf::from(BUILD_PYTHON),
    };
    let exe = CString::new(exe.as_os_str().as_encoded_bytes())
        .map_err(|_| InitError::Init("interpreter path contains a NUL byte".into()))?;
    // SAFETY: the documented PyConfig dance (Python initialisation configuration,
    // "Initialization with PyConfig"), done once before any other Python call.
    unsafe {
        use pyo3::ffi;
        let mut cfg: ffi::PyConfig = std::mem::zeroed();
        ffi::PyConfig_InitPythonConfig(&mut cfg);
        // Rust owns signals: the master and workers handle them with signalfd.
        cfg.install_signal_handlers = 0;
        cfg.parse_argv = 0;
        let st = ffi::PyConfig_SetBytesString(&mut cfg, &mut cfg.executable, exe.as_ptr());
        if ffi::PyStatus_Exception(st) != 0 {
            ffi::PyConfig_Clear(&mut cfg);
            return Err(InitError::Init("cannot set PyConfig.executable".into()));
        }
        let st = ffi::Py_InitializeFromConfig(&cfg);
        ffi::PyConfig_Clear(&mut cfg);
        if ffi::PyStatus_Exception(st) != 0 {
            let msg = if st.err_msg.is_null() {
                "unknown error".to_owned()
            } else {
                std::ffi::CStr::from_ptr(st.err_msg)
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(InitError::Init(msg));
        }
        // Release the GIL the way pyo3 expects after initialisation.
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// Where the app comes from.
#[derive(Debug, Clone)]
pub enum AppSource {
    /// `module = pkg.mod[:callable]`
    Module { module: String, callable: String },
    /// `wsgi-file = path.py` (run as a module named like uWSGI's `uwsgi_file_...`)
    File { path: PathBuf, callable: String },
}

impl std::fmt::Display for AppSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppSource::Module { module, callable } => write!(f, "{module}:{callable}"),
            AppSource::File { path, callable } => write!(f, "{}:{callable}", path.display()),
        }
    }
}

/// Prepends `pythonpath` entries (the last listed ends up first, as in uWSGI) and the
/// working directory to `sys.path`.
pub fn extend_sys_path(py: Python<'_>, cwd: &Path, pythonpath: &[PathBuf]) -> PyResult<()> {
    let path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
    path.insert(0, cwd.to_string_lossy().as_ref())?;
    for p in pythonpath {
        let abs = if p.is_absolute() {
            p.clone()
        } else {
            cwd.join(p)
        };
        path.insert(0, abs.to_string_lossy().as_ref())?;
    }
    Ok(())
}

/// Imports the app and returns the WSGI callable. On failure the error carries the
/// Python exception (its traceback is printed by the caller).
pub fn load_app(py: Python<'_>, source: &AppSource) -> Result<Py<PyAny>, LoadError> {
    let (module, callable) = match source {
        AppSource::Module { module, callable } => {
            let m = py.import(module.as_str()).map_err(LoadError::Python)?;
            (m.into_any(), callable)
        }
        AppSource::File { path, callable } => (load_file(py, path)?, callable),
    };
    let app = module
        .getattr_opt(callable.as_str())
        .map_err(LoadError::Python)?
        .ok_or_else(|| LoadError::NoCallable(callable.clone()))?;
    if !app.is_callable() {
        return Err(LoadError::NotCallable(callable.clone()));
    }
    Ok(app.unbind())
}

fn load_file<'py>(py: Python<'py>, path: &Path) -> Result<Bound<'py, PyAny>, LoadError> {
    if !path.is_file() {
        return Err(LoadError::NoFile(path.to_owned()));
    }
    // uWSGI names the module after the mangled path; keep that for compatibility
    // with apps that print __name__.
    let name: String = path
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let name = format!("uwsgi_file_{name}");
    let code = c"
import importlib.util, sys
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
";
    let helper =
        PyModule::from_code(py, code, c"<vassal>", c"_vassal_loader").map_err(LoadError::Python)?;
    helper
        .getattr("load")
        .and_then(|f| f.call1((name, path.to_string_lossy().as_ref())))
        .map_err(LoadError::Python)
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("{0}")]
    Python(PyErr),
    #[error("the module has no callable named `{0}` (set `callable =` or `module = mod:name`)")]
    NoCallable(String),
    #[error("`{0}` in the module is not callable")]
    NotCallable(String),
    #[error("wsgi-file {0} does not exist")]
    NoFile(PathBuf),
}
