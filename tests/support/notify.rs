//! An sd_notify listener: a unix datagram socket a child reports readiness to.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A bound `NOTIFY_SOCKET` endpoint that remembers every message received.
pub struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    messages: Vec<String>,
}

impl NotifySocket {
    pub fn bind(path: &Path) -> NotifySocket {
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path)
            .unwrap_or_else(|e| panic!("bind notify socket {}: {e}", path.display()));
        NotifySocket {
            sock,
            path: path.to_path_buf(),
            messages: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits at most `timeout` for one datagram; returns it (also recorded) or None.
    pub fn recv(&mut self, timeout: Duration) -> Option<String> {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("set notify socket timeout");
        let mut buf = vec![0u8; 65536];
        match self.sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.messages.push(msg.clone());
                Some(msg)
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                None
            }
            Err(e) => panic!("recv on notify socket {}: {e}", self.path.display()),
        }
    }

    /// Drains datagrams already queued without waiting.
    pub fn drain(&mut self) {
        self.sock
            .set_nonblocking(true)
            .expect("nonblocking notify socket");
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.sock.recv(&mut buf) {
            self.messages
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.sock
            .set_nonblocking(false)
            .expect("blocking notify socket");
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> &[String] {
        &self.messages
    }

    /// Whether any received message has the line `line` (e.g. `READY=1`).
    pub fn seen(&self, line: &str) -> bool {
        self.messages.iter().any(|m| m.lines().any(|l| l == line))
    }
}
