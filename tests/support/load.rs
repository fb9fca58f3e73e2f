//! A bounded client load: `clients` threads each sending one request at a time, until
//! stopped or until a deadline, recording the outcome of every request. Used to show
//! that recycling, reloads and worker deaths lose no (or only the expected) requests.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http::{self, Addr};

/// What a load run saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: u64,
    /// One entry per failed request: the error or the unexpected status.
    pub failures: Vec<String>,
    /// Bodies of successful responses (the test apps answer with the worker's pid).
    pub bodies: BTreeSet<String>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` threads sending `GET target` (one connection per request) to
    /// `addr`; each stops by itself after `max` (a safety bound).
    pub fn start(addr: &Addr, target: &str, clients: usize, max: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let deadline = Instant::now() + max;
        let threads = (0..clients)
            .map(|_| {
                let (stop, report) = (stop.clone(), report.clone());
                let (addr, target) = (addr.clone(), target.to_string());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let outcome = one(&addr, &target);
                        let mut r = report.lock().expect("load report lock");
                        match outcome {
                            Ok(body) => {
                                r.ok += 1;
                                r.bodies.insert(body);
                            }
                            Err(e) => r.failures.push(e),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            report,
            threads,
        }
    }

    /// What happened so far.
    pub fn snapshot(&self) -> LoadReport {
        self.report.lock().expect("load report lock").clone()
    }

    /// Stops the clients (each finishes its request) and returns the report.
    pub fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let r = self.report.lock().expect("load report lock").clone();
        r
    }
}

fn one(addr: &Addr, target: &str) -> Result<String, String> {
    let mut c = http::Conn::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let r = c
        .request("GET", target, &[("Connection", "close")], b"")
        .map_err(|e| format!("request: {e}"))?;
    if r.status != 200 {
        return Err(format!("status {}: {}", r.status, r.text()));
    }
    Ok(r.text())
}
