//! sd_notify: `READY=1`, `STATUS=...`, `STOPPING=1` datagrams to $NOTIFY_SOCKET.
//! The same messages serve systemd and the emperor (which gives each vassal its own
//! socket). The variable is removed from the environment so the app and anything it
//! spawns cannot talk to our supervisor in our name.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The longest one notification may wait for room in the supervisor's queue.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// The socket is connected to the target: sends need no write permission on the
    /// socket file any more (which a vassal loses when it drops root).
    connected: bool,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let path = std::env::var_os("NOTIFY_SOCKET");
        // SAFETY: single-threaded start-up.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let target = path.and_then(|p| {
            let bytes = p.as_encoded_bytes();
            let addr = if let Some(name) = bytes.strip_prefix(b"@") {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name).ok()?
            } else {
                SocketAddr::from_pathname(std::path::Path::new(&p)).ok()?
            };
            let sock = UnixDatagram::unbound().ok()?;
            // A datagram socket's queue holds only net.unix.max_dgram_qlen (10)
            // messages: when many vassals announce at once a non-blocking send would
            // drop READY=1. Block, but never for long on a supervisor that stopped
            // reading: then a lost status line beats a frozen emperor or master.
            sock.set_write_timeout(Some(SEND_TIMEOUT)).ok()?;
            Some((sock, addr))
        });
        // Connect now, while we may still be root: the permission to write to the
        // socket file is checked here, once. Without a listener yet, fall back to
        // addressing every datagram.
        let connected = target
            .as_ref()
            .is_some_and(|(sock, addr)| sock.connect_addr(addr).is_ok());
        Notifier { target, connected }
    }

    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `msg` with `fds` attached (SCM_RIGHTS), as `FDSTORE=1` needs.
    pub fn send_with_fds(&self, msg: &str, fds: &[std::os::fd::RawFd]) -> std::io::Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
        use std::os::fd::AsRawFd;
        let Some((sock, addr)) = &self.target else {
            return Ok(());
        };
        let iov = [std::io::IoSlice::new(msg.as_bytes())];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let to = if self.connected {
            None
        } else {
            let unix = match addr.as_pathname() {
                Some(p) => UnixAddr::new(p),
                None => {
                    use std::os::linux::net::SocketAddrExt;
                    UnixAddr::new_abstract(addr.as_abstract_name().unwrap_or_default())
                }
            }
            .map_err(std::io::Error::from)?;
            Some(unix)
        };
        sendmsg(
            sock.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::empty(),
            to.as_ref(),
        )
        .map(|_| ())
        .map_err(std::io::Error::from)
    }

    pub fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.target {
            let sent = if self.connected {
                // The receiver may have been re-created since: then address it anew.
                sock.send(msg.as_bytes())
                    .or_else(|_| sock.send_to_addr(msg.as_bytes(), addr))
            } else {
                sock.send_to_addr(msg.as_bytes(), addr)
            };
            if let Err(e) = sent {
                tracing::warn!("sd_notify failed: {e}");
            }
        }
    }
}
