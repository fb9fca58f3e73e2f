//! The control protocol between `emperorctl` and the emperor.
//!
//! The emperor listens on a unix stream socket (see [`default_control_socket`] for where).
//! A connection carries a strict request/response conversation: the client's first frame is
//! [`Request::Hello`], the server answers [`Response::Hello`] (or [`Response::Error`] when the
//! versions differ and closes), then every further [`Request`] gets exactly one
//! [`Response`]. A response means the action has been *applied*: a reload is answered when the
//! new generation serves, or with the reason it failed, so `emperorctl reload app && curl ...`
//! needs no polling.
//!
//! Every message is one frame: a 4-byte big-endian length followed by that many bytes of JSON
//! (the serde enums below, internally tagged by `"type"`). Frames larger than [`MAX_FRAME`]
//! are refused from their header alone, before any buffer is sized for them, so a client
//! announcing a 4 GiB frame costs the emperor nothing. JSON keeps the protocol readable with
//! `socat` and lets either side add fields later: unknown fields are ignored, and the status
//! structs default missing ones.
//!
//! Two readers share one decoding rule: [`FrameDecoder`] is incremental (push whatever bytes
//! arrived, pull whole messages out; for the emperor's async server) and [`read_frame`] /
//! [`write_frame`] are blocking (for `emperorctl`). The crate does no I/O of its own beyond
//! those `Read`/`Write` calls and needs no runtime.

mod frame;
mod messages;
mod paths;

pub use frame::{encode, read_frame, try_encode, write_frame, FrameDecoder, FrameError};
pub use messages::{AppStatus, ExitReason, Request, Response, WorkerStatus};
pub use paths::{
    control_socket_in, default_control_socket, default_run_dir, run_dir_for, CONTROL_SOCKET_NAME,
    EMPEROR_DIR_NAME,
};

/// The protocol version both sides announce in their hello. Bump it on any change an older
/// peer would misread; adding an optional field does not need a bump.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame payload either side accepts or sends, in bytes (1 MiB).
pub const MAX_FRAME: usize = 1 << 20;
