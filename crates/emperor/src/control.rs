//! The control socket: length-prefixed JSON frames (crates/proto), a versioned hello,
//! then requests. Each request goes to the owner loop, and the reply is written when
//! the owner answers — for a reload, once the new generation serves or has failed.
//! A client that sends garbage, a huge frame, or nothing at all only loses its own
//! connection.
//!
//! Running out of file descriptors must not make the emperor deaf: it keeps one spare
//! descriptor (`/dev/null`) open. When accept fails with EMFILE/ENFILE, the spare is
//! closed, the waiting connection is accepted into its place and answered, and the
//! spare is reopened. Without a spare, accept errors back off (50 ms doubling to 2 s)
//! instead of spinning, and the episode is logged once, not on every attempt.

use std::time::Duration;

use proto::{FrameDecoder, FrameError, Request, Response, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use crate::Input;

/// A connection that sends no complete request for this long is closed.
const IDLE: Duration = Duration::from_secs(60);
/// A connection answered with the spare descriptor is served alone, at most this long.
const SPARE_TURN: Duration = Duration::from_secs(30);
const MIN_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// The spare descriptor. Opened by the caller before anything else takes descriptors
/// (the first scan spawns vassals at once).
pub struct Spare(Option<std::fs::File>);

impl Spare {
    pub fn open() -> Spare {
        Spare(std::fs::File::open("/dev/null").ok())
    }
    /// Closes the spare; false if there was none.
    fn release(&mut self) -> bool {
        self.0.take().is_some()
    }
    fn refill(&mut self) {
        if self.0.is_none() {
            self.0 = std::fs::File::open("/dev/null").ok();
        }
    }
}

pub async fn serve(listener: UnixListener, tx: UnboundedSender<Input>, mut spare: Spare) {
    let mut pause = MIN_PAUSE;
    let mut failing = false;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if failing {
                    tracing::info!("control socket: accepting connections again");
                    failing = false;
                }
                pause = MIN_PAUSE;
                spare.refill();
                tokio::spawn(handle(stream, tx.clone()));
            }
            Err(e) if crate::scan::is_out_of_fds(&e) && spare.release() => {
                if !failing {
                    tracing::warn!(
                        "control socket accept: {e}; answering with the spare descriptor"
                    );
                    failing = true;
                }
                // The spare's number is free now: the connection takes it, at once (an
                // await here would let the owner loop take the number first).
                // (Through tokio's accept it lost that race under load.)
                if let Ok(stream) = accept_now(&listener) {
                    let _ = tokio::time::timeout(SPARE_TURN, handle(stream, tx.clone())).await;
                }
                // Should another consumer have taken the number, every later accept
                // tries to get a spare again.
                spare.refill();
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        "control socket accept: {e}; retrying with a backoff up to {MAX_PAUSE:?}"
                    );
                    failing = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                spare.refill();
            }
        }
    }
}

/// accept4(2) right now, without going through the reactor.
fn accept_now(listener: &UnixListener) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{accept4, SockFlag};
    use std::os::fd::{AsRawFd, FromRawFd};
    let fd = accept4(
        listener.as_raw_fd(),
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
    .map_err(std::io::Error::from)?;
    // SAFETY: accept4 just returned this descriptor; nothing else owns it.
    let std_stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    UnixStream::from_std(std_stream)
}

async fn send(stream: &mut UnixStream, resp: &Response) -> bool {
    stream.write_all(&proto::encode(resp)).await.is_ok()
}

async fn next_request(
    stream: &mut UnixStream,
    dec: &mut FrameDecoder,
) -> Result<Option<Request>, String> {
    let mut buf = [0u8; 4096];
    loop {
        match dec.next::<Request>() {
            Ok(Some(r)) => return Ok(Some(r)),
            Ok(None) => {}
            Err(FrameError::TooBig(n)) => {
                return Err(format!(
                    "frame of {n} bytes exceeds the limit of {} bytes",
                    proto::MAX_FRAME
                ))
            }
            Err(e) => return Err(format!("bad request: {e}")),
        }
        match tokio::time::timeout(IDLE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Ok(None),
            Ok(Ok(n)) => dec.push(&buf[..n]),
        }
    }
}

async fn handle(mut stream: UnixStream, tx: UnboundedSender<Input>) {
    let mut dec = FrameDecoder::new();
    let mut greeted = false;
    loop {
        let req = match next_request(&mut stream, &mut dec).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(message) => {
                tracing::info!("control client: {message}");
                send(&mut stream, &Response::Error { message }).await;
                return;
            }
        };
        if !greeted {
            match req {
                Request::Hello { version, .. } if version == PROTOCOL_VERSION => {
                    greeted = true;
                    let hello = Response::Hello {
                        version: PROTOCOL_VERSION,
                        server: format!("emperor {}", env!("CARGO_PKG_VERSION")),
                    };
                    if !send(&mut stream, &hello).await {
                        return;
                    }
                    continue;
                }
                Request::Hello { version, .. } => {
                    let message = format!(
                        "protocol version {version} is not supported (this emperor speaks {PROTOCOL_VERSION})"
                    );
                    send(&mut stream, &Response::Error { message }).await;
                    return;
                }
                _ => {
                    let message = "the first request must be a hello".to_owned();
                    send(&mut stream, &Response::Error { message }).await;
                    return;
                }
            }
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        if tx
            .send(Input::Control {
                req,
                reply: reply_tx,
            })
            .is_err()
        {
            return;
        }
        let resp = reply_rx.await.unwrap_or(Response::Error {
            message: "the emperor is shutting down".into(),
        });
        if !send(&mut stream, &resp).await {
            return;
        }
    }
}
