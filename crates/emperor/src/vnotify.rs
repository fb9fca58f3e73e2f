//! The emperor's side of sd_notify: one datagram socket every vassal gets as
//! NOTIFY_SOCKET. SO_PASSCRED makes the kernel attach the sender's pid to each
//! message, which names the vassal generation (only a vassal's master sends).

use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, UnixCredentials,
};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc::UnboundedSender;

use crate::Input;

pub fn bind(path: &Path) -> std::io::Result<AsyncFd<UnixDatagram>> {
    let _ = std::fs::remove_file(path);
    let sock = UnixDatagram::bind(path)?;
    // Vassals that dropped privileges (uid =) must be able to send. Anyone may write;
    // only datagrams whose kernel-verified sender pid is a vassal master count.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
    sock.set_nonblocking(true)?;
    setsockopt(&sock, sockopt::PassCred, &true)?;
    // SAFETY: the socket owns its descriptor and lives inside the AsyncFd for as long
    // as it is registered; nothing else closes it.
    unsafe { AsyncFd::register(sock) }.map_err(|e| std::io::Error::other(e.to_string()))
}

pub async fn run(sock: AsyncFd<UnixDatagram>, tx: UnboundedSender<Input>) {
    let mut buf = vec![0u8; 8192];
    loop {
        let Ok(mut guard) = sock.readable().await else {
            return;
        };
        loop {
            let fd = sock.get_ref().as_raw_fd();
            let mut iov = [IoSliceMut::new(&mut buf)];
            let mut cmsg = nix::cmsg_space!(UnixCredentials);
            let received = recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT);
            let msg = match received {
                Ok(m) => m,
                Err(nix::errno::Errno::EAGAIN) => {
                    guard.clear_ready();
                    break;
                }
                Err(e) => {
                    tracing::warn!("notify socket: {e}");
                    guard.clear_ready();
                    break;
                }
            };
            let mut pid = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmCredentials(cred) = c {
                        pid = Some(cred.pid() as u32);
                    }
                }
            }
            let len = msg.bytes;
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            if let Some(pid) = pid {
                let _ = tx.send(Input::Notify { pid, text });
            }
        }
    }
}
