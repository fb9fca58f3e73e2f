//! A worker process: `threads` serving threads that all accept on every listening
//! socket, and a main thread that only waits for signals.
//!
//! Serving threads block in poll(2) over the listeners plus a wake-up pipe; on a
//! graceful stop the pipe's write end is closed, every thread wakes, finishes the
//! request it has, and exits. Each thread stays attached to CPython for its whole
//! life and detaches around socket I/O, so its thread state is made once, not per
//! request. Each thread records its requests in the worker's scoreboard slot (see
//! `meter.rs`); with `harakiri` a monitor thread watches those records. With
//! lazy-apps the worker starts CPython and imports the app itself before serving.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use config::Protocol;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

use crate::conn::{Sock, Stream};
use crate::meter::{Limits, Meter};
use crate::python::{EnvironBuilder, Python};
use crate::scoreboard::{Scoreboard, WorkerState};
use crate::serve::http::{HttpConn, Next};
use crate::serve::park::{BoundReport, Evicted, FirstByteGrace, ParkSet, Parkable};
use crate::serve::uwsgi::UwsgiConn;
use crate::serve::{self, Shared, ThreadState};
use crate::vars::VarList;
use sockets::{Listener, ListenerKind};

pub struct WorkerSpec {
    /// Worker number within the vassal, from 1.
    pub id: u32,
    pub threads: u32,
    pub multiprocess: bool,
    /// How long a graceful stop waits for in-flight requests.
    pub mercy: Duration,
    /// A request running longer is killed with its worker (None = no limit).
    pub harakiri: Option<Duration>,
    pub limits: Limits,
}

/// Where the worker's app comes from.
#[derive(Clone)]
pub enum App {
    /// Imported by the master before the fork.
    Preloaded(Arc<Shared>),
    /// lazy-apps: imported by each worker after the fork. The loader returns the exit
    /// code to use when the app cannot be loaded.
    Lazy(Arc<dyn Fn() -> Result<Arc<Shared>, i32> + Send + Sync>),
}

/// What the master hands a freshly forked worker.
pub struct WorkerCtx {
    pub listeners: Arc<Vec<Listener>>,
    pub app: App,
    pub spec: WorkerSpec,
    pub board: &'static Scoreboard,
    pub slot: usize,
    /// Write end of the master's event pipe: `r` when accepting, `c` to ask for a
    /// replacement.
    pub events: OwnedFd,
}

/// Runs in the forked child; never returns.
pub fn run(ctx: WorkerCtx) -> ! {
    let WorkerCtx {
        listeners,
        app,
        spec,
        board,
        slot,
        events,
    } = ctx;
    let me = board.worker(slot);
    me.pid.store(std::process::id(), Ordering::Relaxed);
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP]);
    // The master blocks these signals (it reads them from a signalfd); a fork
    // inherits the mask, so open it again now that our handlers are installed.
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("worker cannot install signal handlers: {e}");
            exit(1);
        }
    };
    let shared = match app {
        App::Preloaded(shared) => shared,
        App::Lazy(load) => match load() {
            Ok(shared) => shared,
            Err(code) => exit(code),
        },
    };
    let traceback =
        spec.harakiri.is_some() && crate::python::register_traceback_signal(libc::SIGUSR2);
    let (wake_r, wake_w) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("worker cannot create its wake-up pipe: {e}");
            exit(1);
        }
    };
    let wake_r = Arc::new(wake_r);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let multithread = spec.threads > 1;
    let thread_slots = board.threads(slot);
    let park_limit = (shared.park_limit / spec.threads.max(1) as usize).max(1);
    for (i, thread_slot) in thread_slots.iter().enumerate() {
        let listeners = listeners.clone();
        let shared = shared.clone();
        let wake = wake_r.clone();
        let done = done_tx.clone();
        let meter = Meter::new(me, thread_slot, spec.limits, events.as_raw_fd());
        let multiprocess = spec.multiprocess;
        let spawned = std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || {
                serve_thread(
                    &listeners,
                    &shared,
                    wake.as_fd(),
                    multithread,
                    multiprocess,
                    meter,
                    park_limit,
                );
                let _ = done.send(());
            });
        if let Err(e) = spawned {
            tracing::error!("worker cannot start serving thread {i}: {e}");
            exit(1);
        }
    }
    drop(done_tx);
    if let Some(limit) = spec.harakiri {
        let id = spec.id;
        let spawned = std::thread::Builder::new()
            .name("harakiri".into())
            .spawn(move || crate::harakiri::monitor(id, me, thread_slots, limit, traceback));
        if let Err(e) = spawned {
            tracing::error!("worker cannot start its harakiri monitor: {e}");
            exit(1);
        }
    }
    me.state
        .store(WorkerState::Accepting as u32, Ordering::Release);
    let _ = nix::unistd::write(&events, b"r");

    // The first signal decides; every branch ends the process.
    match signals.forever().next() {
        Some(SIGTERM | SIGHUP) => {
            me.state
                .store(WorkerState::Stopping as u32, Ordering::Relaxed);
            shared.stopping.store(true, Ordering::SeqCst);
            // Closing the write end makes the pipe readable for every thread.
            let _ = nix::unistd::close(wake_w.as_raw_fd());
            std::mem::forget(wake_w);
            // Tell the master once no thread can accept any more: it announces
            // STOPPING=1 only then, so a supervisor that waits for it (the emperor
            // before answering `reload`) knows new connections reach the new code.
            let until = std::time::Instant::now() + Duration::from_millis(500);
            while shared.in_accept.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
            me.state
                .store(WorkerState::Draining as u32, Ordering::Release);
            let _ = nix::unistd::write(&events, b"d");
            let deadline = std::time::Instant::now() + spec.mercy;
            let mut live = spec.threads.max(1);
            while live > 0 {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match done_rx.recv_timeout(left) {
                    Ok(()) => live -= 1,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        tracing::warn!(
                            "worker {}: {live} request(s) still running after the mercy period; exiting",
                            std::process::id()
                        );
                        break;
                    }
                }
            }
            exit(0)
        }
        // INT/QUIT: stop now.
        _ => exit(0),
    }
}

/// Leaves without running Python's finalisation or Rust destructors: other threads
/// may be inside the interpreter, and the master owns the sockets.
pub fn exit(code: i32) -> ! {
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(code) }
}

fn serve_thread(
    listeners: &[Listener],
    shared: &Shared,
    wake: BorrowedFd<'_>,
    multithread: bool,
    multiprocess: bool,
    meter: Meter,
    park_limit: usize,
) {
    Python::attach(|py| {
        if !multithread {
            crate::python::serving_alone(py);
        }
        let env = match EnvironBuilder::new(py, multithread, multiprocess) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cannot prepare the WSGI environ: {e}");
                return;
            }
        };
        let mut ts = ThreadState {
            env,
            handed: Default::default(),
            vars: VarList::default(),
            buf: Vec::new(),
            head_buf: Vec::with_capacity(256),
            meter,
        };
        // Connections of this thread whose next request has not arrived, polled with
        // the listeners (see serve/park.rs).
        let mut parked: ParkSet<Parked> = ParkSet::new(park_limit);
        let mut report = BoundReport::new();
        let mut again: Vec<Parked> = Vec::new();
        let mut grace = FirstByteGrace::new();
        let mut fds: Vec<RawFd> = Vec::new();
        loop {
            fds.clear();
            fds.extend(parked.iter().map(Parked::raw_fd));
            let deadline = parked.next_deadline();
            let woke = py.detach(|| wait(listeners, wake, shared, &fds, deadline));
            let Some(woke) = woke else {
                break;
            };
            // Parked connections first, one turn each: a busy client cannot starve the
            // others. Taken out highest index first (so the indices stay valid) and parked
            // again only after all were served (parking may evict).
            for i in woke.ready.into_iter().rev() {
                let conn = parked.take(i);
                if let Some(conn) = serve_parked(py, conn, shared, &mut ts) {
                    again.push(conn);
                }
            }
            for conn in again.drain(..) {
                park(&mut parked, conn, &mut report);
            }
            if let Some((stream, li)) = woke.accepted {
                let listener = &listeners[li];
                let conn = match listener.protocol {
                    Protocol::Uwsgi => Parked::Uwsgi(UwsgiConn::new(stream, shared, &mut ts)),
                    Protocol::Http => {
                        // A unix-socket peer could connect only through the socket's
                        // permissions: trusted like a uwsgi peer, whose variables we
                        // take as they come.
                        let (addr, port, trusted) = match &stream.sock {
                            Sock::Tcp(s) => s
                                .peer_addr()
                                .map(|a| {
                                    (
                                        a.ip().to_canonical().to_string(),
                                        a.port().to_string(),
                                        shared.forwarded_allow.contains(a.ip()),
                                    )
                                })
                                .unwrap_or_default(),
                            Sock::Unix(_) => (String::new(), String::new(), true),
                        };
                        let peer = serve::http::Peer {
                            addr,
                            port,
                            server_port: listener.port.clone(),
                            trusted,
                        };
                        Parked::Http(HttpConn::new(stream, peer, shared))
                    }
                };
                let mut conn = serve_parked(py, conn, shared, &mut ts);
                // Nothing of its request has arrived: wait a moment for it before
                // parking (see FirstByteGrace).
                if let Some(c) = conn.take() {
                    conn = if c.has_bytes() {
                        Some(c)
                    } else {
                        let (fd, wait) = (c.raw_fd(), grace.wait());
                        let sent = crate::python::io(py, || readable_within(fd, wait));
                        grace.observed(sent);
                        if sent {
                            serve_parked(py, c, shared, &mut ts)
                        } else {
                            Some(c)
                        }
                    };
                }
                if let Some(conn) = conn {
                    park(&mut parked, conn, &mut report);
                }
            }
            // Past their deadline: closed (HTTP lets a server close an idle keep-alive
            // connection at any time; a request that never finished arriving is dropped).
            drop(parked.expire(std::time::Instant::now()));
            if shared.stopping.load(Ordering::Relaxed) {
                break;
            }
        }
        // Stopping: a request that has arrived (or is arriving) on a parked connection
        // was accepted by us and is served, with `Connection: close`; idle keep-alive
        // connections are closed, as HTTP allows.
        let mut left: Vec<Parked> = Vec::new();
        for conn in parked.drain() {
            if let Some(conn) = serve_parked(py, conn, shared, &mut ts) {
                if !conn.idle() {
                    left.push(conn);
                }
            }
        }
        while !left.is_empty() {
            let now = std::time::Instant::now();
            left.retain(|c| c.deadline() > now);
            let fds: Vec<RawFd> = left.iter().map(Parked::raw_fd).collect();
            let deadline = left.iter().map(Parked::deadline).min();
            let ready = py.detach(|| poll_parked(&fds, deadline));
            for i in ready.into_iter().rev() {
                let conn = left.swap_remove(i);
                if let Some(conn) = serve_parked(py, conn, shared, &mut ts) {
                    left.push(conn);
                }
            }
        }
    });
}

/// A connection parked by a serving thread.
enum Parked {
    Http(HttpConn),
    Uwsgi(UwsgiConn),
}

impl Parked {
    fn raw_fd(&self) -> RawFd {
        match self {
            Parked::Http(c) => c.raw_fd(),
            Parked::Uwsgi(c) => c.raw_fd(),
        }
    }

    /// Part of a request has arrived.
    fn has_bytes(&self) -> bool {
        match self {
            Parked::Http(c) => c.has_bytes(),
            Parked::Uwsgi(c) => c.has_bytes(),
        }
    }
}

impl Parkable for Parked {
    fn deadline(&self) -> std::time::Instant {
        match self {
            Parked::Http(c) => c.deadline,
            Parked::Uwsgi(c) => c.deadline,
        }
    }

    fn idle(&self) -> bool {
        match self {
            Parked::Http(c) => c.idle(),
            Parked::Uwsgi(_) => false,
        }
    }
}

/// Serves what has arrived on `conn`; Some(conn) when it is to be parked again.
fn serve_parked(
    py: crate::python::Python<'_>,
    conn: Parked,
    shared: &Shared,
    ts: &mut ThreadState,
) -> Option<Parked> {
    match conn {
        Parked::Uwsgi(c) => serve::uwsgi::serve_ready(py, c, shared, ts).map(Parked::Uwsgi),
        Parked::Http(mut c) => match serve::http::serve_ready(py, &mut c, shared, ts) {
            Next::Park => Some(Parked::Http(c)),
            Next::Close => None,
        },
    }
}

/// How often the "parked connections at their bound" warning may be logged.
const BOUND_REPORT_EVERY: Duration = Duration::from_secs(10);

fn park(set: &mut ParkSet<Parked>, conn: Parked, report: &mut BoundReport) {
    if let Evicted::One(victim) = set.push(conn) {
        drop(victim);
        if let Some(n) = report.evicted(std::time::Instant::now(), BOUND_REPORT_EVERY) {
            tracing::warn!(
                "worker {}: a serving thread holds {} connections whose request has not \
                 arrived (its bound); closed the oldest idle or slowest ({n} closed since the \
                 last report)",
                std::process::id(),
                set.limit()
            );
        }
    }
}

/// Waits until one of `parked` is readable or `deadline` passes; the readable indices.
fn poll_parked(parked: &[RawFd], deadline: Option<std::time::Instant>) -> Vec<usize> {
    // SAFETY: the parked connections outlive this call.
    let mut fds: Vec<PollFd<'_>> = parked
        .iter()
        .map(|fd| PollFd::new(unsafe { BorrowedFd::borrow_raw(*fd) }, PollFlags::POLLIN))
        .collect();
    match poll(&mut fds, poll_timeout(deadline)) {
        Ok(n) if n > 0 => (0..parked.len())
            .filter(|&i| fds[i].any().unwrap_or(false))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `fd` becomes readable within `wait` (one poll(2), nothing allocated).
fn readable_within(fd: RawFd, wait: Duration) -> bool {
    // SAFETY: the caller owns fd for the length of this call.
    let mut fds = [PollFd::new(
        unsafe { BorrowedFd::borrow_raw(fd) },
        PollFlags::POLLIN,
    )];
    let ms =
        PollTimeout::try_from(wait.as_millis().clamp(1, 60_000) as u32).unwrap_or(PollTimeout::MAX);
    loop {
        match poll(&mut fds, ms) {
            Ok(n) => return n > 0,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// The poll(2) timeout that ends at `deadline` (None: wait forever).
fn poll_timeout(deadline: Option<std::time::Instant>) -> PollTimeout {
    match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(std::time::Instant::now());
            PollTimeout::try_from(left.as_millis().min(60_000) as u32 + 1)
                .unwrap_or(PollTimeout::MAX)
        }
        None => PollTimeout::NONE,
    }
}

/// Counts a thread in `accept` for as long as it is there.
struct InAccept<'a>(&'a Shared);

impl<'a> InAccept<'a> {
    fn enter(shared: &'a Shared) -> Self {
        shared.in_accept.fetch_add(1, Ordering::SeqCst);
        InAccept(shared)
    }
}

impl Drop for InAccept<'_> {
    fn drop(&mut self) {
        self.0.in_accept.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What woke a serving thread.
struct Woke {
    accepted: Option<(Stream, usize)>,
    /// Indices (ascending) of parked connections that became readable.
    ready: Vec<usize>,
}

/// Waits for a new connection on any listener or for data on a parked one, until
/// `deadline` (when the oldest parked connection expires). None once the worker is
/// stopping.
fn wait(
    listeners: &[Listener],
    wake: BorrowedFd<'_>,
    shared: &Shared,
    parked: &[RawFd],
    deadline: Option<std::time::Instant>,
) -> Option<Woke> {
    // Registered before `stopping` is read (both SeqCst): the stopping thread either
    // sees us here or we see `stopping` and leave without accepting.
    let _counted = InAccept::enter(shared);
    // Try every listener before polling: under load the backlog is rarely empty, and
    // a successful accept saves the poll(2). After a poll, only the readable ones.
    // (A bit per listener; past 128 listeners the rest are always tried, which is
    // harmless: accept does not block.)
    let all = |n: usize| {
        if n >= 128 {
            u128::MAX
        } else {
            (1u128 << n) - 1
        }
    };
    let mut try_accept = all(listeners.len());
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return None;
        }
        for (i, listener) in listeners.iter().enumerate() {
            if try_accept & (1u128 << i.min(127)) == 0 {
                continue;
            }
            match accept(listener) {
                Ok(s) => {
                    return Some(Woke {
                        accepted: Some((s, i)),
                        ready: ready_parked(parked),
                    })
                }
                // Nothing queued, or another worker won the race for it.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("accept on {} failed: {e}", listener.name);
                    // EMFILE and friends: back off briefly instead of spinning.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(listeners.len() + 1 + parked.len());
        // SAFETY: the listeners and parked connections outlive this call.
        for l in listeners {
            fds.push(PollFd::new(
                unsafe { BorrowedFd::borrow_raw(l.raw_fd()) },
                PollFlags::POLLIN,
            ));
        }
        fds.push(PollFd::new(wake, PollFlags::POLLIN));
        for fd in parked {
            fds.push(PollFd::new(
                unsafe { BorrowedFd::borrow_raw(*fd) },
                PollFlags::POLLIN,
            ));
        }
        match poll(&mut fds, poll_timeout(deadline)) {
            Ok(0) => {
                // The oldest parked connection expired.
                return Some(Woke {
                    accepted: None,
                    ready: Vec::new(),
                });
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!("poll on listening sockets failed: {e}");
                return None;
            }
        }
        if fds[listeners.len()].any().unwrap_or(false) {
            return None;
        }
        let base = listeners.len() + 1;
        let ready: Vec<usize> = (0..parked.len())
            .filter(|&i| fds[base + i].any().unwrap_or(false))
            .collect();
        try_accept = 0;
        for (i, fd) in fds[..listeners.len()].iter().enumerate() {
            if fd.any().unwrap_or(false) {
                try_accept |= 1u128 << i.min(127);
            }
        }
        drop(fds);
        if !ready.is_empty() && try_accept == 0 {
            return Some(Woke {
                accepted: None,
                ready,
            });
        }
        if !ready.is_empty() {
            // Both: take the new connection too if there is one.
            for (i, listener) in listeners.iter().enumerate() {
                if try_accept & (1u128 << i.min(127)) == 0 {
                    continue;
                }
                if let Ok(s) = accept(listener) {
                    return Some(Woke {
                        accepted: Some((s, i)),
                        ready,
                    });
                }
            }
            return Some(Woke {
                accepted: None,
                ready,
            });
        }
    }
}

/// One non-blocking accept on `l` (TCP connections get TCP_NODELAY).
fn accept(l: &Listener) -> std::io::Result<Stream> {
    match &l.kind {
        ListenerKind::Unix(l) => l.accept().map(|(s, _)| Stream::unix(s)),
        ListenerKind::Tcp(l) => l.accept().map(|(s, _)| {
            let _ = s.set_nodelay(true);
            Stream::tcp(s)
        }),
    }
}

/// Parked connections with data waiting, without blocking.
fn ready_parked(parked: &[RawFd]) -> Vec<usize> {
    if parked.is_empty() {
        return Vec::new();
    }
    // SAFETY: the parked connections outlive this call.
    let mut fds: Vec<PollFd<'_>> = parked
        .iter()
        .map(|fd| PollFd::new(unsafe { BorrowedFd::borrow_raw(*fd) }, PollFlags::POLLIN))
        .collect();
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) if n > 0 => (0..parked.len())
            .filter(|&i| fds[i].any().unwrap_or(false))
            .collect(),
        _ => Vec::new(),
    }
}
