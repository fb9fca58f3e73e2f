//! Accepted connections: one stream type for unix and TCP sockets, and a read buffer
//! that survives from one keep-alive request to the next (pipelined bytes stay in it).

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Tcp(s) => (&*s).read(buf),
        }
    }

    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).write(buf),
            Stream::Tcp(s) => (&*s).write(buf),
        }
    }

    pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).write_vectored(bufs),
            Stream::Tcp(s) => (&*s).write_vectored(bufs),
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

    pub fn set_timeouts(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Stream::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
        }
    }

    pub fn shutdown_write(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }

    pub fn raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
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
