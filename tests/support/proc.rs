//! Process helpers: signals, process trees and their memory use (from /proc).

use std::collections::BTreeSet;

/// Sends `sig` to `pid`; returns false if the process is already gone (ESRCH).
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    rc == 0
}

/// Sends `sig` to the process group `pgid`.
pub fn signal_group(pgid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
    rc == 0
}

/// `pid` and all its descendants that are alive now (from the ppid field of /proc/*/stat).
pub fn tree(pid: u32) -> BTreeSet<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // The command name may contain spaces and parentheses: parse after the last ')'.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let mut f = rest.split_whitespace();
                let _state = f.next();
                if let Some(ppid) = f.next().and_then(|s| s.parse::<u32>().ok()) {
                    parents.push((p, ppid));
                }
            }
        }
    }
    let mut set = BTreeSet::from([pid]);
    loop {
        let before = set.len();
        for &(p, pp) in &parents {
            if set.contains(&pp) {
                set.insert(p);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// Memory of one process in KiB: (VmRSS, VmHWM). None if it is gone.
pub fn mem_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some((field("VmRSS:"), field("VmHWM:")))
}

/// Summed (VmRSS, VmHWM) in KiB over `pid` and its descendants.
pub fn tree_mem_kib(pid: u32) -> (u64, u64) {
    tree(pid)
        .into_iter()
        .filter_map(mem_kib)
        .fold((0, 0), |(r, h), (r2, h2)| (r + r2, h + h2))
}
