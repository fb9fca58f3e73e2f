//! Listening sockets: parsing uWSGI socket names, binding them (with chmod-socket /
//! chown-socket applied between bind and listen, so there is no window with wrong
//! permissions), or inheriting them through LISTEN_FDS (the systemd convention the
//! emperor uses, so the socket outlives any one vassal).

use std::io;
use std::net::{TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use config::{Protocol, SocketSpec};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrLike, UnixAddr};

#[derive(Debug)]
pub enum ListenerKind {
    Unix(UnixListener),
    Tcp(TcpListener),
}

#[derive(Debug)]
pub struct Listener {
    pub kind: ListenerKind,
    pub protocol: Protocol,
    /// How the socket is named in logs.
    pub name: String,
    /// SERVER_PORT for HTTP requests on this socket.
    pub port: String,
    /// A unix socket file we created (removed on exit with `vacuum`).
    pub created_path: Option<PathBuf>,
}

impl Listener {
    pub fn raw_fd(&self) -> RawFd {
        match &self.kind {
            ListenerKind::Unix(l) => l.as_raw_fd(),
            ListenerKind::Tcp(l) => l.as_raw_fd(),
        }
    }

    pub fn set_nonblocking(&self) -> io::Result<()> {
        match &self.kind {
            ListenerKind::Unix(l) => l.set_nonblocking(true),
            ListenerKind::Tcp(l) => l.set_nonblocking(true),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Abstract(String),
    Tcp(String),
}

/// uWSGI rule: any `:` means TCP (`:8000` = all interfaces). We also accept nginx's
/// `unix:/path` spelling, which uWSGI would misread as a TCP host named `unix`.
pub fn parse_address(s: &str) -> Address {
    let s = s.trim();
    if let Some(p) = s.strip_prefix("unix:") {
        return Address::Unix(PathBuf::from(p));
    }
    if let Some(name) = s.strip_prefix('@') {
        return Address::Abstract(name.to_owned());
    }
    if s.contains(':') {
        let addr = if let Some(port) = s.strip_prefix(':') {
            format!("0.0.0.0:{port}")
        } else if let Some(port) = s.strip_prefix("*:") {
            format!("0.0.0.0:{port}")
        } else {
            s.to_owned()
        };
        return Address::Tcp(addr);
    }
    Address::Unix(PathBuf::from(s))
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    #[error("socket {addr}: {source}")]
    Io { addr: String, source: io::Error },
    #[error("socket {0}: the path is in use by a running server")]
    InUse(String),
    #[error("socket {0}: the path exists and is not a socket; refusing to remove it")]
    NotASocket(String),
    #[error("chown-socket {spec}: {why}")]
    Chown { spec: String, why: String },
}

pub struct BindOptions<'a> {
    pub backlog: u32,
    pub chmod: Option<u32>,
    pub chown: Option<&'a str>,
}

pub fn bind(spec: &SocketSpec, opts: &BindOptions<'_>) -> Result<Listener, SocketError> {
    let io_err = |source| SocketError::Io {
        addr: spec.address.clone(),
        source,
    };
    match parse_address(&spec.address) {
        Address::Tcp(addr) => {
            let mut last = None;
            let addrs = addr.to_socket_addrs().map_err(io_err)?;
            for a in addrs {
                match TcpListener::bind(a) {
                    Ok(l) => {
                        // std listens with a fixed backlog; apply `listen =`.
                        // SAFETY: a valid listening fd we own.
                        unsafe { libc::listen(l.as_raw_fd(), opts.backlog as i32) };
                        let port = l
                            .local_addr()
                            .map(|a| a.port().to_string())
                            .unwrap_or_default();
                        return Ok(Listener {
                            kind: ListenerKind::Tcp(l),
                            protocol: spec.protocol.clone(),
                            name: spec.address.clone(),
                            port,
                            created_path: None,
                        });
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(io_err(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing")
            })))
        }
        Address::Unix(path) => {
            remove_stale(&path, &spec.address)?;
            let fd = unix_socket().map_err(io_err)?;
            let addr = UnixAddr::new(&path).map_err(|e| io_err(e.into()))?;
            socket::bind(fd.as_raw_fd(), &addr).map_err(|e| io_err(e.into()))?;
            if let Some(mode) = opts.chmod {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(io_err)?;
            }
            if let Some(owner) = opts.chown {
                chown(&path, owner)?;
            }
            socket::listen(
                &fd,
                socket::Backlog::new(opts.backlog as i32).unwrap_or(socket::Backlog::MAXCONN),
            )
            .map_err(|e| io_err(e.into()))?;
            Ok(Listener {
                kind: ListenerKind::Unix(UnixListener::from(fd)),
                protocol: spec.protocol.clone(),
                name: path.display().to_string(),
                port: "80".into(),
                created_path: Some(std::path::absolute(&path).unwrap_or(path)),
            })
        }
        Address::Abstract(name) => {
            let fd = unix_socket().map_err(io_err)?;
            let addr = UnixAddr::new_abstract(name.as_bytes()).map_err(|e| io_err(e.into()))?;
            socket::bind(fd.as_raw_fd(), &addr).map_err(|e| io_err(e.into()))?;
            socket::listen(
                &fd,
                socket::Backlog::new(opts.backlog as i32).unwrap_or(socket::Backlog::MAXCONN),
            )
            .map_err(|e| io_err(e.into()))?;
            Ok(Listener {
                kind: ListenerKind::Unix(UnixListener::from(fd)),
                protocol: spec.protocol.clone(),
                name: format!("@{name}"),
                port: "80".into(),
                created_path: None,
            })
        }
    }
}

fn unix_socket() -> io::Result<OwnedFd> {
    socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

/// A socket file left by a dead server is removed; one a live server answers on is
/// an error (two servers on one path would split the traffic silently).
fn remove_stale(path: &Path, name: &str) -> Result<(), SocketError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket(name.to_owned()));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(SocketError::InUse(name.to_owned()));
    }
    std::fs::remove_file(path).map_err(|source| SocketError::Io {
        addr: name.to_owned(),
        source,
    })
}

fn chown(path: &Path, spec: &str) -> Result<(), SocketError> {
    let err = |why: String| SocketError::Chown {
        spec: spec.to_owned(),
        why,
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = crate::privileges::resolve_user(user).map_err(err)?;
    let gid = match group {
        Some(g) => Some(crate::privileges::resolve_group(g).map_err(err)?),
        None => None,
    };
    nix::unistd::chown(path, Some(uid), gid).map_err(|e| err(e.to_string()))
}

/// Takes `fd` (a listening socket kept for us, e.g. in systemd's fd store) as the
/// listener for `spec` when it is one: a stream socket listening on the address the
/// spec names (for a unix path, one that still exists). Else gives the fd back.
pub fn adopt(fd: OwnedFd, spec: &SocketSpec) -> Result<Listener, OwnedFd> {
    use std::os::fd::AsFd;
    let listening = socket::getsockopt(&fd.as_fd(), socket::sockopt::AcceptConn).unwrap_or(false);
    let local = socket::getsockname::<socket::SockaddrStorage>(fd.as_raw_fd()).ok();
    let Some(local) = local.filter(|_| listening) else {
        return Err(fd);
    };
    match parse_address(&spec.address) {
        Address::Unix(path) => {
            let want = std::path::absolute(&path).unwrap_or(path.clone());
            let have = local
                .as_unix_addr()
                .and_then(|u| u.path().map(Path::to_path_buf));
            use std::os::unix::fs::FileTypeExt;
            let exists = std::fs::symlink_metadata(&want).is_ok_and(|m| m.file_type().is_socket());
            if have.as_deref() != Some(want.as_path()) || !exists {
                return Err(fd);
            }
            Ok(Listener {
                kind: ListenerKind::Unix(UnixListener::from(fd)),
                protocol: spec.protocol.clone(),
                name: path.display().to_string(),
                port: "80".into(),
                created_path: Some(want),
            })
        }
        Address::Abstract(name) => {
            let have = local
                .as_unix_addr()
                .and_then(|u| u.as_abstract().map(<[u8]>::to_vec));
            if have.as_deref() != Some(name.as_bytes()) {
                return Err(fd);
            }
            Ok(Listener {
                kind: ListenerKind::Unix(UnixListener::from(fd)),
                protocol: spec.protocol.clone(),
                name: format!("@{name}"),
                port: "80".into(),
                created_path: None,
            })
        }
        Address::Tcp(addr) => {
            let l = TcpListener::from(fd);
            let Ok(have) = l.local_addr() else {
                return Err(l.into());
            };
            let matches = addr
                .to_socket_addrs()
                .map(|mut it| it.any(|a| a == have))
                .unwrap_or(false);
            if !matches {
                return Err(l.into());
            }
            Ok(Listener {
                kind: ListenerKind::Tcp(l),
                protocol: spec.protocol.clone(),
                name: spec.address.clone(),
                port: have.port().to_string(),
                created_path: None,
            })
        }
    }
}

/// Sockets passed by a supervisor: LISTEN_PID must name us, LISTEN_FDS counts the
/// descriptors from fd 3. The variables are removed so the app never sees them.
pub fn from_listen_fds(specs: &[SocketSpec]) -> io::Result<Option<Vec<Listener>>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    // SAFETY: single-threaded start-up; nothing else reads the environment now.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    let n: i32 = fds
        .trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "LISTEN_FDS is not a number"))?;
    let default_protocol = match specs {
        [first, rest @ ..] if rest.iter().all(|s| s.protocol == first.protocol) => {
            first.protocol.clone()
        }
        _ => Protocol::Uwsgi,
    };
    let mut out = Vec::new();
    for (i, fd) in (3..3 + n).enumerate() {
        // SAFETY: fcntl on an fd number; fails harmlessly if it is not open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        let protocol = if specs.len() == n as usize {
            specs[i].protocol.clone()
        } else {
            default_protocol.clone()
        };
        let family = socket::getsockname::<socket::SockaddrStorage>(fd)
            .map_err(io::Error::from)?
            .family();
        // SAFETY: the supervisor handed these descriptors to us; we take ownership.
        let listener = match family {
            Some(AddressFamily::Unix) => {
                let l = unsafe { UnixListener::from_raw_fd(fd) };
                let name = l
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                    .unwrap_or_else(|| format!("fd {fd}"));
                Listener {
                    kind: ListenerKind::Unix(l),
                    protocol,
                    name,
                    port: "80".into(),
                    created_path: None,
                }
            }
            Some(AddressFamily::Inet | AddressFamily::Inet6) => {
                let l = unsafe { TcpListener::from_raw_fd(fd) };
                let local = l.local_addr()?;
                Listener {
                    kind: ListenerKind::Tcp(l),
                    protocol,
                    name: local.to_string(),
                    port: local.port().to_string(),
                    created_path: None,
                }
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("LISTEN_FDS fd {fd} is not a stream socket we serve ({other:?})"),
                ))
            }
        };
        out.push(listener);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_uwsgi_rules() {
        let cases = [
            (":8000", Address::Tcp("0.0.0.0:8000".into())),
            ("127.0.0.1:3031", Address::Tcp("127.0.0.1:3031".into())),
            ("[::1]:80", Address::Tcp("[::1]:80".into())),
            ("myapp.sock", Address::Unix("myapp.sock".into())),
            ("/run/app/socket", Address::Unix("/run/app/socket".into())),
            (
                "unix:/run/app/socket",
                Address::Unix("/run/app/socket".into()),
            ),
            ("@abstract", Address::Abstract("abstract".into())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_address(input), want, "{input}");
        }
    }
}
