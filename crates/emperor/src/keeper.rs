//! `systemctl restart emperor` without a refused connection on systemd 252.
//!
//! systemd 252 empties the fd store when the unit stops, and a restart is a stop and a
//! start, so the stored sockets would close between the two emperors. When the emperor
//! gets SIGTERM while systemd runs a *restart* job for its unit, it hands over instead
//! of stopping: it starts a socket keeper (this binary, `--keep-sockets NAME`, with
//! every app socket and the control socket as fds 3..), exits, and lets its vassals
//! finish their requests (they get SIGTERM from the kernel when it dies). The next
//! emperor connects to the keeper's abstract unix socket, receives the descriptors
//! (SCM_RIGHTS) and adopts them exactly as it adopts the fd store's. A keeper that no
//! emperor contacts within [`KEEP_FOR`] exits, closing them.
//!
//! The protocol: messages of up to [`PER_MESSAGE`] descriptors, each with its FDNAMEs
//! as the payload, one per line, in the order of the descriptors; then EOF.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// How long a keeper waits for the next emperor.
pub const KEEP_FOR: Duration = Duration::from_secs(60);

/// Descriptors per message (SCM_MAX_FD is 253).
const PER_MESSAGE: usize = 200;

/// The keeper's abstract socket name for the emperor whose control socket is
/// `control` (so two emperors on one host never meet each other's keeper).
pub fn socket_name(control: &std::path::Path) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in control.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("emperor-keeper-{h:016x}")
}

/// Whether systemd is restarting `unit` right now (`systemctl list-jobs`).
pub fn restart_job_pending(unit: &str) -> bool {
    let out = std::process::Command::new("systemctl")
        .args(["list-jobs", "--no-legend", "--no-pager"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(out) = out else {
        return false;
    };
    restart_in_jobs(&String::from_utf8_lossy(&out.stdout), unit)
}

/// Parses `systemctl list-jobs --no-legend` (JOB UNIT TYPE STATE).
pub fn restart_in_jobs(listing: &str, unit: &str) -> bool {
    listing.lines().any(|l| {
        let mut w = l.split_whitespace();
        let (_, u, t) = (w.next(), w.next(), w.next());
        u == Some(unit) && t == Some("restart")
    })
}

/// The systemd unit this process runs in (the last component of its cgroup path).
pub fn own_unit() -> Option<String> {
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    unit_of_cgroup(&cg)
}

pub fn unit_of_cgroup(cgroup: &str) -> Option<String> {
    // v2: "0::/system.slice/emperor.service"; v1 hybrid: "1:name=systemd:/system.slice/...".
    cgroup
        .lines()
        .filter(|l| l.starts_with("0::") || l.contains(":name=systemd:"))
        .filter_map(|l| l.rsplit('/').next())
        .find(|last| last.ends_with(".service"))
        .map(str::to_owned)
}

fn abstract_addr(name: &str) -> io::Result<nix::sys::socket::UnixAddr> {
    nix::sys::socket::UnixAddr::new_abstract(name.as_bytes()).map_err(io::Error::from)
}

/// Starts a keeper holding `fds` (by FDNAME) and waits until it listens.
pub fn spawn(exe: &std::path::Path, name: &str, fds: &[(String, RawFd)]) -> io::Result<()> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let names: Vec<&str> = fds.iter().map(|(n, _)| n.as_str()).collect();
    // Duplicates above 3+n, made here: between fork and exec only dup2 may run (no
    // allocation: the emperor has other threads), and none of them can be a target.
    let above = 3 + fds.len() as RawFd;
    let staged: Vec<OwnedFd> = fds
        .iter()
        .map(|(_, fd)| {
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor we own.
            let t = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, above) };
            if t < 0 {
                Err(io::Error::last_os_error())
            } else {
                // SAFETY: a new descriptor we own.
                Ok(unsafe { OwnedFd::from_raw_fd(t) })
            }
        })
        .collect::<io::Result<_>>()?;
    let raw: Vec<RawFd> = staged.iter().map(AsRawFd::as_raw_fd).collect();
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--keep-sockets")
        .arg(name)
        .env("EMPEROR_KEEP_NAMES", names.join("\n"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .process_group(0);
    // SAFETY: only dup2 (async-signal-safe) between fork and exec, over a slice made
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for (i, t) in raw.iter().enumerate() {
                // dup2 leaves the new descriptor without FD_CLOEXEC: it survives exec.
                if libc::dup2(*t, 3 + i as i32) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(staged);
    let mut ready = [0u8; 1];
    let mut out = child.stdout.take().expect("piped");
    match out.read(&mut ready) {
        Ok(1) => Ok(()),
        _ => Err(io::Error::other("the socket keeper did not start")),
    }
}

/// The keeper process: `emperor --keep-sockets NAME`. Never returns.
pub fn run(name: &str) -> ! {
    use nix::sys::socket::{
        accept, bind, listen, sendmsg, socket, AddressFamily, Backlog, ControlMessage, MsgFlags,
        SockFlag, SockType,
    };
    use std::io::Write;
    let names: Vec<String> = std::env::var("EMPEROR_KEEP_NAMES")
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let fds: Vec<RawFd> = (0..names.len()).map(|i| 3 + i as RawFd).collect();
    let listener = (|| -> io::Result<OwnedFd> {
        let s = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        bind(s.as_raw_fd(), &abstract_addr(name)?)?;
        listen(&s, Backlog::new(4).unwrap_or(Backlog::MAXCONN))?;
        Ok(s)
    })();
    let Ok(listener) = listener else {
        std::process::exit(1);
    };
    let _ = std::io::stdout().write_all(b"r");
    let _ = std::io::stdout().flush();
    // SAFETY: closing our copy of stdout (the emperor's pipe), which we never use again.
    unsafe { libc::close(1) };
    let mut pfd = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&listener),
        nix::poll::PollFlags::POLLIN,
    )];
    let timeout = nix::poll::PollTimeout::try_from(KEEP_FOR.as_millis() as u32)
        .unwrap_or(nix::poll::PollTimeout::MAX);
    if !matches!(nix::poll::poll(&mut pfd, timeout), Ok(n) if n > 0) {
        std::process::exit(0);
    }
    let Ok(conn) = accept(listener.as_raw_fd()) else {
        std::process::exit(1);
    };
    // SAFETY: accept returned a new descriptor we own.
    let conn = unsafe { OwnedFd::from_raw_fd(conn) };
    for (chunk_names, chunk_fds) in names.chunks(PER_MESSAGE).zip(fds.chunks(PER_MESSAGE)) {
        let payload = chunk_names.join("\n");
        let iov = [io::IoSlice::new(payload.as_bytes())];
        let cmsg = [ControlMessage::ScmRights(chunk_fds)];
        if sendmsg::<()>(conn.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).is_err() {
            std::process::exit(1);
        }
    }
    std::process::exit(0)
}

/// Takes what a keeper holds for us, if one is there (by FDNAME).
pub fn collect(name: &str) -> Vec<(String, OwnedFd)> {
    use nix::sys::socket::{
        connect, recvmsg, socket, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
        UnixAddr,
    };
    let mut out = Vec::new();
    let Ok(s) = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return out;
    };
    let Ok(addr) = abstract_addr(name) else {
        return out;
    };
    if connect(s.as_raw_fd(), &addr).is_err() {
        return out;
    }
    let tv = nix::sys::time::TimeVal::new(5, 0);
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::ReceiveTimeout, &tv);
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; PER_MESSAGE]);
    loop {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let Ok(msg) = recvmsg::<UnixAddr>(
            s.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) else {
            break;
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just gave us these descriptors.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
        }
        let n = msg.bytes;
        if n == 0 && fds.is_empty() {
            break;
        }
        let payload = String::from_utf8_lossy(&iov[0][..n]).into_owned();
        out.extend(payload.lines().map(str::to_owned).zip(fds));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_jobs_are_found_by_unit_and_type() {
        let listing = "412 nginx.service start running\n413 emperor.service restart running\n";
        assert!(restart_in_jobs(listing, "emperor.service"));
        assert!(!restart_in_jobs(listing, "nginx.service"));
        assert!(!restart_in_jobs(
            "414 emperor.service stop running\n",
            "emperor.service"
        ));
        assert!(!restart_in_jobs("", "emperor.service"));
    }

    #[test]
    fn the_unit_comes_from_the_cgroup() {
        assert_eq!(
            unit_of_cgroup("0::/system.slice/emperor.service\n").as_deref(),
            Some("emperor.service")
        );
        assert_eq!(
            unit_of_cgroup("12:pids:/x\n1:name=systemd:/system.slice/emperor.service\n0::/\n")
                .as_deref(),
            Some("emperor.service")
        );
        assert_eq!(
            unit_of_cgroup("0::/user.slice/user-0.slice/session-1.scope\n"),
            None
        );
    }

    #[test]
    fn keeper_names_differ_by_control_socket() {
        let a = socket_name(std::path::Path::new("/run/emperor/control.sock"));
        let b = socket_name(std::path::Path::new("/tmp/other/control.sock"));
        assert_ne!(a, b);
        assert_eq!(
            a,
            socket_name(std::path::Path::new("/run/emperor/control.sock"))
        );
    }
}
