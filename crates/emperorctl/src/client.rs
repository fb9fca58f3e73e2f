//! One blocking conversation with the emperor: connect, hello, one request, one response.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::{read_frame, write_frame, FrameError, Request, Response, PROTOCOL_VERSION};

use crate::error::CtlError;

pub struct Client {
    stream: UnixStream,
    socket: PathBuf,
    timeout: Option<Duration>,
    /// The emperor's self-description from its hello, e.g. `emperor 0.1.0`.
    pub server: String,
}

impl Client {
    /// Connects and exchanges hellos. `timeout` bounds every read and write that follows
    /// (None: wait as long as the emperor takes, which is what a reload needs).
    pub fn connect(socket: &Path, timeout: Option<Duration>) -> Result<Client, CtlError> {
        let stream = UnixStream::connect(socket).map_err(|source| {
            let socket = socket.to_path_buf();
            if is_not_running(&source) {
                CtlError::NotRunning { socket, source }
            } else {
                CtlError::Connect { socket, source }
            }
        })?;
        let mut client = Client {
            stream,
            socket: socket.to_path_buf(),
            timeout,
            server: String::new(),
        };
        client
            .stream
            .set_read_timeout(timeout)
            .and_then(|()| client.stream.set_write_timeout(timeout))
            .map_err(|e| client.protocol(FrameError::Io(e)))?;
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            client: format!("emperorctl {}", env!("CARGO_PKG_VERSION")),
        };
        match client.exchange(&hello)? {
            Response::Hello { version, server } if version == PROTOCOL_VERSION => {
                client.server = server;
                Ok(client)
            }
            Response::Hello { version, server } => Err(CtlError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: version,
                server,
            }),
            Response::Error { message } => Err(CtlError::Refused(message)),
            other => Err(CtlError::Unexpected(format!("{other:?} in reply to hello"))),
        }
    }

    /// Sends one request and waits for its response.
    pub fn request(&mut self, request: &Request) -> Result<Response, CtlError> {
        self.exchange(request)
    }

    fn exchange(&mut self, request: &Request) -> Result<Response, CtlError> {
        write_frame(&mut self.stream, request).map_err(|e| self.protocol(e))?;
        read_frame(&mut self.stream).map_err(|e| self.protocol(e))
    }

    fn protocol(&self, source: FrameError) -> CtlError {
        if let (FrameError::Io(e), Some(timeout)) = (&source, self.timeout) {
            // A socket timeout surfaces as WouldBlock (EAGAIN) or TimedOut.
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                return CtlError::Timeout(timeout);
            }
        }
        CtlError::Protocol {
            socket: self.socket.clone(),
            source,
        }
    }
}

/// ENOENT (no socket file, or no directory) and ECONNREFUSED (a stale socket file nobody
/// listens on) both mean "no emperor here".
fn is_not_running(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_running_kinds() {
        for (kind, want) in [
            (io::ErrorKind::NotFound, true),
            (io::ErrorKind::ConnectionRefused, true),
            (io::ErrorKind::PermissionDenied, false),
        ] {
            assert_eq!(is_not_running(&io::Error::from(kind)), want, "{kind:?}");
        }
    }
}
