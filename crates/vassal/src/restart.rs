//! Graceful reload of a preloading vassal (SIGHUP): once its workers are gone, the
//! master execs its own binary again with the same arguments, working directory and
//! environment, handing itself the listening sockets the systemd way (fds 3.., with
//! LISTEN_FDS and LISTEN_PID = our pid, which execve keeps). The new image takes them
//! through the ordinary LISTEN_FDS path, so the sockets never close: connections that
//! arrive meanwhile wait in the kernel backlog. Like uWSGI, the new image does not
//! reopen `logto` (the log descriptors are inherited) nor rewrite the pidfile.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use sockets::Listener;

/// Set in the environment of a re-executed master: how many reloads so far.
const REEXEC_VAR: &str = "VASSAL_RELOADS";
/// Unix socket files the first image created (so `vacuum` still removes them).
const CREATED_VAR: &str = "VASSAL_CREATED_SOCKETS";

/// What the process looked like when it started, to start the same way again.
pub struct Restart {
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
    args: Vec<OsString>,
    /// Set when this image is itself the result of a reload.
    pub reloads: u32,
    /// Socket files a previous image created.
    pub created_sockets: Vec<PathBuf>,
}

impl Restart {
    /// Records the start-up state; call first thing, before the environment changes.
    /// Removes our private variables so the app never sees them.
    pub fn capture() -> Restart {
        let reloads = std::env::var(REEXEC_VAR)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let created_sockets = std::env::var_os(CREATED_VAR)
            .map(|v| {
                v.as_bytes()
                    .split(|&b| b == b'\n')
                    .filter(|p| !p.is_empty())
                    .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
                    .collect()
            })
            .unwrap_or_default();
        // SAFETY: single-threaded start-up.
        unsafe {
            std::env::remove_var(REEXEC_VAR);
            std::env::remove_var(CREATED_VAR);
        }
        Restart {
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            env: std::env::vars_os().collect(),
            args: std::env::args_os().collect(),
            reloads,
            created_sockets,
        }
    }

    /// Replaces this process with a fresh copy of itself that inherits `listeners`.
    /// Returns only on failure.
    pub fn exec(&self, listeners: &[Listener]) -> anyhow::Error {
        match self.try_exec(listeners) {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    fn try_exec(&self, listeners: &[Listener]) -> anyhow::Result<std::convert::Infallible> {
        let n = listeners.len() as i32;
        // Park every listener above the target range first, so moving one to 3+i
        // cannot overwrite another one that still sits there.
        let mut parked = Vec::new();
        for l in listeners {
            // SAFETY: duplicating a descriptor we own.
            let fd = unsafe { libc::fcntl(l.raw_fd(), libc::F_DUPFD_CLOEXEC, 3 + n + 16) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            parked.push(fd);
        }
        for (i, fd) in parked.iter().enumerate() {
            // SAFETY: dup2 onto a fixed number; whatever was there is closed (the new
            // image re-creates everything else). dup2 clears FD_CLOEXEC on the copy.
            if unsafe { libc::dup2(*fd, 3 + i as i32) } < 0 {
                return Err(std::io::Error::last_os_error().into());
            }
        }
        let mut env: Vec<CString> = Vec::new();
        for (k, v) in &self.env {
            if ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"]
                .iter()
                .any(|x| k.as_bytes() == x.as_bytes())
            {
                continue;
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            if let Ok(c) = CString::new(kv) {
                env.push(c);
            }
        }
        let created: Vec<&[u8]> = listeners
            .iter()
            .filter_map(|l| l.created_path.as_ref())
            .map(|p| p.as_os_str().as_bytes())
            .collect();
        env.push(CString::new(format!("LISTEN_FDS={n}"))?);
        env.push(CString::new(format!("LISTEN_PID={}", std::process::id()))?);
        env.push(CString::new(format!("{REEXEC_VAR}={}", self.reloads + 1))?);
        if !created.is_empty() {
            let mut v = format!("{CREATED_VAR}=").into_bytes();
            v.extend_from_slice(&created.join(&b'\n'));
            env.push(CString::new(v)?);
        }
        let args: Vec<CString> = self
            .args
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()?;
        let exe = std::env::current_exe()?;
        // A rebuilt binary replaced ours: exec the new file at the same path.
        let exe_bytes = exe.as_os_str().as_bytes();
        let exe_bytes = exe_bytes.strip_suffix(b" (deleted)").unwrap_or(exe_bytes);
        let exe = CString::new(exe_bytes)?;
        std::env::set_current_dir(&self.cwd)?;
        tracing::info!(
            "re-executing {} (reload {})",
            exe.to_string_lossy(),
            self.reloads + 1
        );
        Ok(nix::unistd::execve(&exe, &args, &env)?)
    }
}
