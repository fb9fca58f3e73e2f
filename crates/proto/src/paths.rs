//! Where the control socket lives when nobody says otherwise.
//!
//! One rule, the same for the emperor and `emperorctl`:
//!
//! * the **run dir** holds one directory per app (`<run-dir>/<app>/socket`) and the
//!   emperor's own directory. It is `/run` for root; otherwise `$XDG_RUNTIME_DIR/emperor`
//!   when `XDG_RUNTIME_DIR` is set to an absolute path, else `/tmp/emperor-<uid>`;
//! * the **control socket** is always `<run-dir>/emperor/control.sock`.
//!
//! So root gets `/run/emperor/control.sock` (the unit's `RuntimeDirectory=emperor`), and a
//! user gets `$XDG_RUNTIME_DIR/emperor/emperor/control.sock`. The doubled `emperor` is the
//! price of one formula with no special case; the inner directory is the emperor's own,
//! exactly as `/run/emperor` is under root.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The emperor's own directory inside the run dir.
pub const EMPEROR_DIR_NAME: &str = "emperor";

/// The control socket's file name inside [`EMPEROR_DIR_NAME`].
pub const CONTROL_SOCKET_NAME: &str = "control.sock";

/// The run dir for this process: [`run_dir_for`] with the effective uid and the
/// environment's `XDG_RUNTIME_DIR`.
pub fn default_run_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    run_dir_for(euid, std::env::var_os("XDG_RUNTIME_DIR"))
}

/// The control socket for this process: `<default_run_dir()>/emperor/control.sock`.
pub fn default_control_socket() -> PathBuf {
    control_socket_in(&default_run_dir())
}

/// The run-dir rule as a pure function: `/run` for uid 0; else `$XDG_RUNTIME_DIR/emperor`
/// when `xdg_runtime_dir` is an absolute path; else `/tmp/emperor-<uid>`.
///
/// A relative or empty `XDG_RUNTIME_DIR` is ignored, as the XDG spec asks.
pub fn run_dir_for(uid: u32, xdg_runtime_dir: Option<OsString>) -> PathBuf {
    if uid == 0 {
        return PathBuf::from("/run");
    }
    match xdg_runtime_dir.map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join(EMPEROR_DIR_NAME),
        _ => PathBuf::from(format!("/tmp/emperor-{uid}")),
    }
}

/// The control socket inside a run dir: `<run_dir>/emperor/control.sock`. The emperor uses
/// this for a `run-dir` given by config or flag, so both sides agree without asking.
pub fn control_socket_in(run_dir: &Path) -> PathBuf {
    run_dir.join(EMPEROR_DIR_NAME).join(CONTROL_SOCKET_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dir_rule() {
        let cases: [(u32, Option<&str>, &str); 6] = [
            (0, None, "/run"),
            (0, Some("/run/user/0"), "/run"),
            (1000, Some("/run/user/1000"), "/run/user/1000/emperor"),
            (1000, None, "/tmp/emperor-1000"),
            (1000, Some(""), "/tmp/emperor-1000"),
            (1000, Some("relative/dir"), "/tmp/emperor-1000"),
        ];
        for (uid, xdg, want) in cases {
            assert_eq!(
                run_dir_for(uid, xdg.map(OsString::from)),
                PathBuf::from(want),
                "uid {uid}, XDG_RUNTIME_DIR {xdg:?}"
            );
        }
    }

    #[test]
    fn control_socket_rule() {
        assert_eq!(
            control_socket_in(Path::new("/run")),
            PathBuf::from("/run/emperor/control.sock")
        );
        assert_eq!(
            control_socket_in(&run_dir_for(1000, Some("/run/user/1000".into()))),
            PathBuf::from("/run/user/1000/emperor/emperor/control.sock")
        );
    }

    #[test]
    fn default_socket_follows_the_rule() {
        assert_eq!(
            default_control_socket(),
            control_socket_in(&default_run_dir())
        );
    }
}
