//! Sockets that outlive the emperor: systemd's file descriptor store.
//!
//! Under systemd (the unit sets `FileDescriptorStoreMax=`) every app socket the
//! emperor binds, and its control socket, is handed to systemd as well (`FDSTORE=1`,
//! `FDNAME=<name>`). When the emperor dies (a crash, kill -9, the watchdog) systemd
//! keeps them open and gives them back to the next emperor in `LISTEN_FDS` /
//! `LISTEN_FDNAMES`, which adopts them instead of binding anew: the socket keeps its
//! inode and its backlog, so nginx's connections wait in the queue for the new
//! vassals instead of being refused. A removed app's socket leaves the store
//! (`FDSTOREREMOVE=1`). Outside systemd nothing here does anything.
//!
//! (systemd 252 empties the store on `systemctl stop`/`restart`; only crash restarts
//! keep it. `FileDescriptorStorePreserve=` in newer systemd keeps it across those too.)

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use sockets::notify::Notifier;

/// The FDNAME of an app's `index`-th socket. None when the app's name cannot be an
/// FDNAME (sd_notify(3): printable ASCII without `:`, at most 255 characters).
pub fn app_fdname(app: &str, index: usize) -> Option<String> {
    let name = format!("app.{index}.{app}");
    valid_fdname(&name).then_some(name)
}

/// The control socket's FDNAME.
pub const CONTROL: &str = "control";

fn valid_fdname(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// The app an FDNAME made by [`app_fdname`] belongs to.
pub fn app_of(fdname: &str) -> Option<&str> {
    let rest = fdname.strip_prefix("app.")?;
    let (index, app) = rest.split_once('.')?;
    index.parse::<usize>().ok()?;
    Some(app)
}

/// Parses `LISTEN_FDNAMES` for `n` descriptors (missing names are "unknown", as
/// systemd does).
pub fn parse_names(names: Option<&str>, n: usize) -> Vec<String> {
    let mut out: Vec<String> = names
        .map(|s| s.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    out.resize(n, "unknown".into());
    out.truncate(n);
    out
}

pub struct FdStore {
    /// The supervisor keeps descriptors for us (we were started with NOTIFY_SOCKET).
    active: bool,
    /// Descriptors systemd gave back at start, by FDNAME, not yet claimed.
    adopted: BTreeMap<String, OwnedFd>,
}

impl FdStore {
    /// Takes the descriptors passed in LISTEN_FDS (when LISTEN_PID is us) and removes
    /// the variables. `active`: sd_notify goes to a supervisor.
    pub fn from_env(active: bool) -> FdStore {
        let pid = std::env::var("LISTEN_PID").ok();
        let n = std::env::var("LISTEN_FDS").ok();
        let names = std::env::var("LISTEN_FDNAMES").ok();
        // SAFETY: start-up, before any thread we spawn reads the environment.
        unsafe {
            for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
                std::env::remove_var(v);
            }
        }
        let mut adopted = BTreeMap::new();
        let ours = pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(std::process::id());
        let n = n
            .and_then(|n| n.trim().parse::<usize>().ok())
            .filter(|_| ours);
        if let Some(n) = n {
            for (i, name) in parse_names(names.as_deref(), n).into_iter().enumerate() {
                let fd = 3 + i as RawFd;
                // SAFETY: systemd passed fds 3..3+n to us; we own them from here on.
                let owned = unsafe {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                    OwnedFd::from_raw_fd(fd)
                };
                adopted.insert(name, owned);
            }
            tracing::info!(
                "systemd gave back {} socket(s) from its fd store: {}",
                adopted.len(),
                adopted.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        FdStore { active, adopted }
    }

    /// Adds descriptors handed over by other means (a restart's socket keeper); what
    /// systemd gave back wins.
    pub fn add_adopted(&mut self, more: Vec<(String, OwnedFd)>) {
        if !more.is_empty() {
            tracing::info!(
                "the previous emperor's socket keeper handed over {} socket(s)",
                more.len()
            );
        }
        for (name, fd) in more {
            self.adopted.entry(name).or_insert(fd);
        }
    }

    /// The descriptor stored under `name`, if systemd gave one back.
    pub fn take(&mut self, name: &str) -> Option<OwnedFd> {
        self.adopted.remove(name)
    }

    /// Keeps `fd` in systemd's store under `name`.
    pub fn store(&self, notifier: &Notifier, name: &str, fd: RawFd) {
        if !self.active {
            return;
        }
        let msg = format!("FDSTORE=1\nFDNAME={name}\n");
        if let Err(e) = notifier.send_with_fds(&msg, &[fd]) {
            tracing::warn!("cannot put socket {name} into systemd's fd store: {e}");
        }
    }

    /// Drops `name` from systemd's store.
    pub fn remove(&self, notifier: &Notifier, name: &str) {
        if self.active {
            notifier.send(&format!("FDSTOREREMOVE=1\nFDNAME={name}\n"));
        }
    }

    /// After the first scan: what no app claimed (its ini went away while no emperor
    /// ran) is closed and dropped from the store.
    pub fn release_unclaimed(&mut self, notifier: &Notifier) {
        for (name, fd) in std::mem::take(&mut self.adopted) {
            tracing::info!("dropping the stored socket {name}: no app claims it");
            self.remove(notifier, &name);
            drop(fd);
        }
    }

    pub fn is_active(&self) -> bool {
        self.active
    }
}

impl std::fmt::Debug for FdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdStore")
            .field("active", &self.active)
            .field(
                "adopted",
                &self
                    .adopted
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_raw_fd()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdnames() {
        assert_eq!(app_fdname("shop", 0).as_deref(), Some("app.0.shop"));
        assert_eq!(app_fdname("my.app-2", 1).as_deref(), Some("app.1.my.app-2"));
        assert_eq!(app_fdname("a:b", 0), None);
        assert_eq!(app_fdname("sp ace", 0), None);
        assert_eq!(app_fdname(&"x".repeat(300), 0), None);
        assert_eq!(app_of("app.0.shop"), Some("shop"));
        assert_eq!(app_of("app.12.my.app-2"), Some("my.app-2"));
        assert_eq!(app_of("control"), None);
        assert_eq!(app_of("app.x.shop"), None);
    }

    #[test]
    fn listen_fdnames() {
        assert_eq!(
            parse_names(Some("control:app.0.a"), 2),
            vec!["control", "app.0.a"]
        );
        assert_eq!(parse_names(Some("control"), 2), vec!["control", "unknown"]);
        assert_eq!(parse_names(None, 1), vec!["unknown"]);
        assert_eq!(parse_names(Some("a:b:c"), 2), vec!["a", "b"]);
    }
}
