//! Per-worker stats for the supervisor, from the scoreboard: one datagram on
//! NOTIFY_SOCKET at most once a second, only when something changed, with a human
//! `STATUS=serving, N workers, M requests` line and one machine line
//! `X_VASSAL_WORKERS=[{"id":1,"pid":123,"state":"idle","requests":5,"exceptions":0,
//! "rss_kb":12288,"busy_ms":null}, ...]` (the fields of proto::WorkerStatus).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use nix::unistd::Pid;

use super::{Master, Worker, STATS_EVERY};
use crate::scoreboard::{now_ms, WorkerState};

impl Master<'_> {
    /// Per-worker stats for the supervisor, at most once a second and only when they
    /// changed: `STATUS=` for humans and `X_VASSAL_WORKERS=` (JSON) for the emperor.
    pub(super) fn send_stats(&mut self, now: Instant) {
        if !self.notifier.is_active() || now < self.next_stats || !self.announced {
            return;
        }
        self.next_stats = now + STATS_EVERY;
        let (line, total) = self.stats_json();
        if line == self.last_stats {
            return;
        }
        let live = self.workers.values().filter(|w| w.cursed.is_none()).count();
        self.notifier.send(&format!(
            "STATUS=serving, {live} workers, {total} requests\nX_VASSAL_WORKERS={line}\n"
        ));
        self.last_stats = line;
    }

    fn stats_json(&self) -> (String, u64) {
        let mut list: Vec<(&Pid, &Worker)> = self.workers.iter().collect();
        list.sort_by_key(|(pid, w)| (w.id, w.spawned, pid.as_raw()));
        let now = now_ms();
        let mut total = self.retired_requests;
        let mut out = String::from("[");
        for (i, (pid, w)) in list.iter().enumerate() {
            let slot = self.board.worker(w.slot);
            let requests = slot.requests.load(Ordering::Relaxed);
            total += requests;
            let oldest = self.board.oldest_request(w.slot);
            let st = slot.state.load(Ordering::Relaxed);
            let state = if w.cursed.is_some()
                || st == WorkerState::Stopping as u32
                || st == WorkerState::Draining as u32
            {
                "stopping"
            } else if !w.ready {
                "starting"
            } else if oldest.is_some() {
                "busy"
            } else {
                "idle"
            };
            let busy_ms = oldest.map(|s| (now + 1).saturating_sub(s));
            if i > 0 {
                out.push(',');
            }
            worker_json(
                &mut out,
                &WorkerRow {
                    id: w.id,
                    pid: pid.as_raw() as u32,
                    state,
                    requests,
                    exceptions: slot.exceptions.load(Ordering::Relaxed),
                    rss_kb: rss_kb(**pid),
                    busy_ms,
                },
            );
        }
        out.push(']');
        (out, total)
    }
}

/// Resident memory of a worker, rounded to MiB so stats do not change every second.
fn rss_kb(pid: Pid) -> u64 {
    let kb = std::fs::read(format!("/proc/{}/statm", pid.as_raw()))
        .map(|t| crate::meter::rss_kb_from_statm(&t))
        .unwrap_or(0);
    kb / 1024 * 1024
}

/// One element of `X_VASSAL_WORKERS`.
struct WorkerRow {
    id: u32,
    pid: u32,
    state: &'static str,
    requests: u64,
    exceptions: u64,
    rss_kb: u64,
    busy_ms: Option<u64>,
}

/// Appends `row` as JSON (every value is a number, null or one of our fixed state
/// names, so nothing needs escaping).
fn worker_json(out: &mut String, row: &WorkerRow) {
    let busy = row
        .busy_ms
        .map_or_else(|| "null".to_string(), |ms| ms.to_string());
    let _ = write!(
        out,
        r#"{{"id":{},"pid":{},"state":"{}","requests":{},"exceptions":{},"rss_kb":{},"busy_ms":{busy}}}"#,
        row.id, row.pid, row.state, row.requests, row.exceptions, row.rss_kb
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_rows_are_the_worker_status_fields() {
        #[rustfmt::skip]
        let cases: &[(WorkerRow, &str)] = &[
            (WorkerRow { id: 1, pid: 123, state: "idle", requests: 5, exceptions: 0, rss_kb: 12288, busy_ms: None },
             r#"{"id":1,"pid":123,"state":"idle","requests":5,"exceptions":0,"rss_kb":12288,"busy_ms":null}"#),
            (WorkerRow { id: 2, pid: 7, state: "busy", requests: 0, exceptions: 3, rss_kb: 0, busy_ms: Some(1500) },
             r#"{"id":2,"pid":7,"state":"busy","requests":0,"exceptions":3,"rss_kb":0,"busy_ms":1500}"#),
        ];
        for (row, want) in cases {
            let mut out = String::new();
            worker_json(&mut out, row);
            assert_eq!(out, *want);
        }
    }
}
