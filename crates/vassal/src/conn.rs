//! Accepted connections: one stream type for unix and TCP sockets, and a read buffer
//! that survives from one keep-alive request to the next (pipelined bytes stay in it).

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub enum Sock {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// An accepted connection.
///
/// `socket-timeout` is applied lazily: reads and writes are first tried without
/// blocking (nginx has normally sent the whole request by the time we accept, and a
/// small response fits the socket buffer), and only when one would block are
/// SO_RCVTIMEO/SO_SNDTIMEO set and the call repeated blocking. That saves two
/// setsockopt calls on almost every uwsgi request.
#[derive(Debug)]
pub struct Stream {
    pub sock: Sock,
    /// socket-timeout in ms (0: none).
    timeout_ms: AtomicU64,
    applied: AtomicBool,
}

impl Stream {
    pub fn unix(s: UnixStream) -> Stream {
        Self::new(Sock::Unix(s))
    }

    pub fn tcp(s: TcpStream) -> Stream {
        Self::new(Sock::Tcp(s))
    }

    fn new(sock: Sock) -> Stream {
        Stream {
            sock,
            timeout_ms: AtomicU64::new(0),
            applied: AtomicBool::new(false),
        }
    }

    /// Records the timeout; it is applied the first time an operation would block.
    pub fn set_timeouts(&self, t: Option<Duration>) -> io::Result<()> {
        let ms = t.map_or(0, |d| d.as_millis().clamp(1, u64::MAX as u128) as u64);
        self.timeout_ms.store(ms, Ordering::Relaxed);
        if self.applied.swap(false, Ordering::Relaxed) {
            self.ensure_timeouts()?;
        }
        Ok(())
    }

    /// Applies the recorded timeout now (before blocking calls such as sendfile).
    pub fn ensure_timeouts(&self) -> io::Result<()> {
        if self.applied.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let ms = self.timeout_ms.load(Ordering::Relaxed);
        let t = (ms > 0).then(|| Duration::from_millis(ms));
        match &self.sock {
            Sock::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Sock::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
        }
    }

    /// The non-blocking first attempt: Some(result) unless it would block.
    fn nonblocking_result(r: isize) -> Option<io::Result<usize>> {
        if r >= 0 {
            return Some(Ok(r as usize));
        }
        let e = io::Error::last_os_error();
        (e.kind() != io::ErrorKind::WouldBlock).then_some(Err(e))
    }

    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.applied.load(Ordering::Relaxed) {
            match self.try_read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.ensure_timeouts()?,
                done => return done,
            }
        }
        match &self.sock {
            Sock::Unix(s) => (&*s).read(buf),
            Sock::Tcp(s) => (&*s).read(buf),
        }
    }

    /// A read that never blocks: WouldBlock when nothing has arrived.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for buf.len() bytes; the fd is ours.
        let r = unsafe {
            libc::recv(
                self.raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if r >= 0 {
            Ok(r as usize)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if !self.applied.load(Ordering::Relaxed) {
            // SAFETY: as in read. MSG_NOSIGNAL: a gone client is an error, not SIGPIPE.
            let r = unsafe {
                libc::send(
                    self.raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if let Some(res) = Self::nonblocking_result(r) {
                return res;
            }
            self.ensure_timeouts()?;
        }
        match &self.sock {
            Sock::Unix(s) => (&*s).write(buf),
            Sock::Tcp(s) => (&*s).write(buf),
        }
    }

    pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.applied.load(Ordering::Relaxed) {
            // SAFETY: IoSlice is ABI-compatible with iovec; msg points at live data.
            let r = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = bufs.len() as _;
                libc::sendmsg(self.raw_fd(), &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            if let Some(res) = Self::nonblocking_result(r) {
                return res;
            }
            self.ensure_timeouts()?;
        }
        match &self.sock {
            Sock::Unix(s) => (&*s).write_vectored(bufs),
            Sock::Tcp(s) => (&*s).write_vectored(bufs),
        }
    }

    pub fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(timeout_is_timeout(e)),
            }
        }
        Ok(())
    }

    /// Writes every slice completely with as few syscalls as the kernel allows.
    pub fn write_all_vectored(&self, parts: &[&[u8]]) -> io::Result<()> {
        let mut idx = 0;
        let mut off = 0;
        while idx < parts.len() {
            if parts[idx].len() == off {
                idx += 1;
                off = 0;
                continue;
            }
            let mut slices: [IoSlice<'_>; 4] = [IoSlice::new(&[]); 4];
            let mut n = 0;
            for (i, p) in parts[idx..].iter().take(4).enumerate() {
                slices[i] = IoSlice::new(if i == 0 { &p[off..] } else { p });
                n += 1;
            }
            let mut written = match self.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(timeout_is_timeout(e)),
            };
            while written > 0 && idx < parts.len() {
                let left = parts[idx].len() - off;
                if written >= left {
                    written -= left;
                    idx += 1;
                    off = 0;
                } else {
                    off += written;
                    written = 0;
                }
            }
        }
        Ok(())
    }

    pub fn shutdown_write(&self) {
        let _ = match &self.sock {
            Sock::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Sock::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }

    pub fn raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.sock {
            Sock::Unix(s) => s.as_fd(),
            Sock::Tcp(s) => s.as_fd(),
        }
    }
}

/// SO_RCVTIMEO/SO_SNDTIMEO expiry shows up as EAGAIN on a blocking socket; name it.
fn timeout_is_timeout(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "socket-timeout expired")
    } else {
        e
    }
}

/// A connection's read side: the stream plus bytes read but not yet consumed.
#[derive(Debug)]
pub struct Reader {
    pub stream: Arc<Stream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Reader {
    pub fn new(stream: Arc<Stream>, capacity: usize) -> Self {
        Reader {
            stream,
            buf: vec![0; capacity.max(512)],
            start: 0,
            end: 0,
        }
    }

    /// Reuses a buffer from a previous connection (no allocation per connection).
    pub fn with_buffer(stream: Arc<Stream>, mut buf: Vec<u8>, capacity: usize) -> Self {
        if buf.len() < capacity {
            buf.resize(capacity, 0);
        }
        Reader {
            stream,
            buf,
            start: 0,
            end: 0,
        }
    }

    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes from the socket, growing the buffer up to `max` bytes of
    /// unconsumed data. Returns the number read; 0 means EOF. Errors with
    /// `InvalidData` if the buffer already holds `max` unconsumed bytes.
    pub fn fill(&mut self, max: usize) -> io::Result<usize> {
        if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.end - self.start >= max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "buffer full"));
            }
            let new_len = (self.buf.len() * 2).min(max + self.start).max(self.end + 1);
            self.buf.resize(new_len, 0);
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(timeout_is_timeout(e)),
            }
        }
    }

    /// Like `fill`, but never blocks: WouldBlock when nothing has arrived.
    pub fn try_fill(&mut self, max: usize) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.end - self.start >= max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "buffer full"));
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let len = self.buf.len();
                self.buf.resize((len * 2).min(max), 0);
            }
        }
        let n = self.stream.try_read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads straight from the socket into `out` when nothing is buffered (large bodies
    /// skip the intermediate copy), else hands out buffered bytes first.
    pub fn read_into(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let have = self.end - self.start;
        if have > 0 {
            let n = have.min(out.len());
            out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.consume(n);
            return Ok(n);
        }
        loop {
            match self.stream.read(out) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(timeout_is_timeout(e)),
            }
        }
    }
}
