//! The `Nginx` guard: a real nginx in front of a vassal, exactly as a user configures it
//! (`include /etc/nginx/uwsgi_params; uwsgi_pass unix:<socket>;`), listening only on a
//! unix socket in its own prefix directory.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::Addr;
use crate::{proc, TempDir, READY_TIMEOUT};

/// A running nginx (master + one worker) in a temporary prefix. Drop kills and reaps it.
pub struct Nginx {
    child: Child,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx proxying every location to the uwsgi unix socket `upstream`, and waits
    /// until its listening socket accepts connections.
    pub fn start(upstream: &Path) -> Nginx {
        Self::start_with(
            "",
            &format!(
                "include /etc/nginx/uwsgi_params;\n            uwsgi_pass unix:{};",
                upstream.display()
            ),
        )
    }

    /// Starts nginx with `http_extra` in its `http {}` block (e.g. an `upstream`) and
    /// `location` as the body of `location / {}`.
    pub fn start_with(http_extra: &str, location: &str) -> Nginx {
        let nginx = which_nginx();
        let dir = TempDir::new("ngx");
        let p = dir.path().display().to_string();
        // As root, nginx workers switch to `nobody`, which cannot connect to a mode-664
        // socket owned by root (nor, often, traverse the temp dir). Running the workers as
        // root keeps the test about the vassal, not about file ownership; the emperor's
        // chown-socket handling is tested separately.
        let user = if is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}daemon off;
master_process on;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log {p}/access.log;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    client_max_body_size 50m;
{http_extra}
    server {{
        listen unix:{p}/nginx.sock;
        server_name localhost;
        location / {{
            {location}
        }}
    }}
}}
"
        );
        let conf_path = dir.write("nginx.conf", conf);
        let out = File::create(dir.join("stderr.log")).expect("create nginx stderr log");
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone fd"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", nginx.display()));
        let mut n = Nginx { child, dir };
        n.wait_ready(READY_TIMEOUT);
        n
    }

    /// The socket nginx listens on (HTTP).
    pub fn addr(&self) -> Addr {
        Addr::Unix(self.dir.join("nginx.sock"))
    }

    /// nginx's error log and stderr, for diagnostics.
    pub fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.join(n)).unwrap_or_default();
        format!(
            "---- nginx stderr ----\n{}---- nginx error.log ----\n{}",
            read("stderr.log"),
            read("error.log")
        )
    }

    /// nginx's readiness signal is its listening socket accepting a connection.
    fn wait_ready(&mut self, timeout: Duration) {
        let sock = self.dir.join("nginx.sock");
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("nginx exited ({st}) before listening\n{}", self.logs());
            }
            if Instant::now() >= deadline {
                panic!(
                    "nginx did not accept on {} within {timeout:?}\n{}",
                    sock.display(),
                    self.logs()
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        proc::signal_group(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn which_nginx() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("nginx is not installed: run scripts/test.sh (it installs the Debian package)")
}
