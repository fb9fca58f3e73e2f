//! Connections a serving thread holds without a thread waiting on them.
//!
//! A connection is parked in the thread's poll set while its request has not fully
//! arrived (a fresh connection with no head yet, a partial head, a small body still
//! dripping in) or while it is an idle keep-alive connection. So a client that sends
//! slowly, or nothing at all, costs a file descriptor and a slot here, never a thread:
//! the slowloris defence. The slots are bounded per worker; when the bound is reached
//! the oldest idle keep-alive connection goes first, then the oldest unfinished one
//! (the longest-waiting slow client), never the connection just accepted.
//!
//! The set is pure bookkeeping (time is an argument) so the eviction and expiry rules
//! are table-tested below; the serving thread does the I/O.

use std::time::Instant;

/// What the park set needs to know about a connection.
pub trait Parkable {
    /// When the connection is closed if its request has not arrived.
    fn deadline(&self) -> Instant;
    /// An idle keep-alive connection (served before, nothing of a next request yet):
    /// HTTP lets a server close those at any time, so they are evicted first.
    fn idle(&self) -> bool;
}

pub struct ParkSet<T> {
    conns: Vec<T>,
    limit: usize,
}

/// What `push` had to give up to stay within the bound.
#[derive(Debug, PartialEq, Eq)]
pub enum Evicted<T> {
    None,
    /// The bound was reached; this connection (the oldest idle one, else the oldest
    /// unfinished one) is to be closed.
    One(T),
}

impl<T: Parkable> ParkSet<T> {
    pub fn new(limit: usize) -> Self {
        ParkSet {
            conns: Vec::new(),
            limit: limit.max(1),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.conns.iter()
    }

    /// Parks `conn`; at the bound, first makes room by evicting one connection.
    #[must_use]
    pub fn push(&mut self, conn: T) -> Evicted<T> {
        let evicted = if self.conns.len() >= self.limit {
            let victim = self
                .oldest(|c| c.idle())
                .or_else(|| self.oldest(|_| true))
                .expect("the set is full, so not empty");
            Evicted::One(self.conns.swap_remove(victim))
        } else {
            Evicted::None
        };
        self.conns.push(conn);
        evicted
    }

    fn oldest(&self, pick: impl Fn(&T) -> bool) -> Option<usize> {
        self.conns
            .iter()
            .enumerate()
            .filter(|(_, c)| pick(c))
            .min_by_key(|(_, c)| c.deadline())
            .map(|(i, _)| i)
    }

    /// Takes the connection at `i` out (indices of later ones may change: take in
    /// descending order).
    pub fn take(&mut self, i: usize) -> T {
        self.conns.swap_remove(i)
    }

    /// The earliest deadline, for the poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.iter().map(Parkable::deadline).min()
    }

    /// Removes and returns every connection whose deadline has passed.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.conns.len() {
            if self.conns[i].deadline() <= now {
                out.push(self.conns.swap_remove(i));
            } else {
                i += 1;
            }
        }
        out
    }

    /// Empties the set.
    pub fn drain(&mut self) -> Vec<T> {
        std::mem::take(&mut self.conns)
    }
}

/// How long a serving thread waits for the first bytes of a connection it has just
/// accepted before parking it. Parking at once would let one thread accept (and then
/// hold, while it runs the app) a whole burst of connections whose requests were a few
/// microseconds behind, while other workers sit idle. Waiting costs the thread that
/// time for a client that never sends: after a few such clients in a row (an attack,
/// not a burst) the wait drops to the short one until a client sends in time again.
#[derive(Debug, Clone)]
pub struct FirstByteGrace {
    silent_streak: u32,
}

impl FirstByteGrace {
    /// The wait while clients send promptly.
    pub const LONG: std::time::Duration = std::time::Duration::from_millis(30);
    /// The wait after [`Self::STREAK`] silent clients in a row.
    pub const SHORT: std::time::Duration = std::time::Duration::from_millis(1);
    pub const STREAK: u32 = 2;

    pub const fn new() -> Self {
        FirstByteGrace { silent_streak: 0 }
    }

    /// How long to wait for the next fresh connection's first bytes.
    pub fn wait(&self) -> std::time::Duration {
        if self.silent_streak >= Self::STREAK {
            Self::SHORT
        } else {
            Self::LONG
        }
    }

    /// Records whether the connection sent within the wait.
    pub fn observed(&mut self, sent: bool) {
        self.silent_streak = if sent {
            0
        } else {
            self.silent_streak.saturating_add(1)
        };
    }
}

/// Rate limit for the "bound reached" log line: at most one line per `every`.
pub struct BoundReport {
    last: Option<Instant>,
    closed_since: u64,
}

impl BoundReport {
    pub const fn new() -> Self {
        BoundReport {
            last: None,
            closed_since: 0,
        }
    }

    /// Counts one eviction. When a log line is due now, returns how many connections
    /// were closed since the previous line (this one included).
    pub fn evicted(&mut self, now: Instant, every: std::time::Duration) -> Option<u64> {
        self.closed_since += 1;
        match self.last {
            Some(t) if now.saturating_duration_since(t) < every => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.closed_since))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, PartialEq, Eq)]
    struct C {
        id: u32,
        deadline: Instant,
        idle: bool,
    }

    impl Parkable for C {
        fn deadline(&self) -> Instant {
            self.deadline
        }
        fn idle(&self) -> bool {
            self.idle
        }
    }

    fn c(t0: Instant, id: u32, secs: u64, idle: bool) -> C {
        C {
            id,
            deadline: t0 + Duration::from_secs(secs),
            idle,
        }
    }

    fn ids(set: &ParkSet<C>) -> Vec<u32> {
        let mut v: Vec<u32> = set.iter().map(|c| c.id).collect();
        v.sort();
        v
    }

    #[test]
    fn eviction_at_the_bound() {
        let t0 = Instant::now();
        // (parked before, new one) -> evicted id
        // (id, deadline in s, idle)
        type Spec = (u32, u64, bool);
        let cases: &[(&[Spec], Spec, Option<u32>)] = &[
            // room left: nothing goes
            (&[(1, 5, false)], (9, 9, false), None),
            // full of unfinished requests: the oldest deadline goes
            (
                &[(1, 5, false), (2, 3, false), (3, 4, false)],
                (9, 9, false),
                Some(2),
            ),
            // an idle keep-alive connection goes before an older unfinished one
            (
                &[(1, 1, false), (2, 7, true), (3, 6, true)],
                (9, 9, false),
                Some(3),
            ),
            // the new connection is never the one evicted, even if it is the oldest
            (
                &[(1, 5, false), (2, 6, false), (3, 7, false)],
                (9, 1, false),
                Some(1),
            ),
        ];
        for (parked, new, want) in cases {
            let mut set = ParkSet::new(3);
            for &(id, s, idle) in *parked {
                assert_eq!(set.push(c(t0, id, s, idle)), Evicted::None);
            }
            let got = match set.push(c(t0, new.0, new.1, new.2)) {
                Evicted::None => None,
                Evicted::One(v) => Some(v.id),
            };
            assert_eq!(got, *want, "parked {parked:?}, new {new:?}");
            assert!(set.iter().count() <= 3);
            assert!(ids(&set).contains(&new.0));
        }
    }

    #[test]
    fn expiry_and_next_deadline() {
        let t0 = Instant::now();
        let mut set = ParkSet::new(10);
        assert_eq!(set.next_deadline(), None);
        for (id, s) in [(1, 3), (2, 1), (3, 5), (4, 1)] {
            let _ = set.push(c(t0, id, s, false));
        }
        assert_eq!(set.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(set.expire(t0).is_empty());
        let mut gone: Vec<u32> = set
            .expire(t0 + Duration::from_secs(3))
            .into_iter()
            .map(|c| c.id)
            .collect();
        gone.sort();
        assert_eq!(gone, vec![1, 2, 4]);
        assert_eq!(ids(&set), vec![3]);
        assert_eq!(set.next_deadline(), Some(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn first_byte_grace_shortens_after_silent_clients_and_recovers() {
        let mut g = FirstByteGrace::new();
        // (client sent in time?) -> wait for the next one
        let steps = [
            (false, FirstByteGrace::LONG),
            (false, FirstByteGrace::SHORT),
            (false, FirstByteGrace::SHORT),
            (false, FirstByteGrace::SHORT),
            (true, FirstByteGrace::LONG),
            (false, FirstByteGrace::LONG),
            (true, FirstByteGrace::LONG),
        ];
        assert_eq!(g.wait(), FirstByteGrace::LONG);
        for (i, (sent, want)) in steps.into_iter().enumerate() {
            g.observed(sent);
            assert_eq!(g.wait(), want, "after step {i}");
        }
    }

    #[test]
    fn bound_report_is_rate_limited() {
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        let mut r = BoundReport::new();
        let due: Vec<Option<u64>> = [0, 1, 9, 10, 11, 25]
            .iter()
            .map(|&s| r.evicted(t0 + Duration::from_secs(s), every))
            .collect();
        assert_eq!(due, vec![Some(1), None, None, Some(3), None, Some(2)]);
    }
}
