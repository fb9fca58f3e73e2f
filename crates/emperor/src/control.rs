//! The control socket: length-prefixed JSON frames (crates/proto), a versioned hello,
//! then requests. Each request goes to the owner loop, and the reply is written when
//! the owner answers — for a reload, once the new generation serves or has failed.
//! A client that sends garbage, a huge frame, or nothing at all only loses its own
//! connection.

use std::time::Duration;

use proto::{FrameDecoder, FrameError, Request, Response, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use crate::Input;

/// A connection that sends no complete request for this long is closed.
const IDLE: Duration = Duration::from_secs(60);

pub async fn serve(listener: UnixListener, tx: UnboundedSender<Input>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, tx.clone()));
            }
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
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
