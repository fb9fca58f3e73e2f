#!/usr/bin/python3
"""The emperor benchmark (issue 5): vassal/emperor vs uWSGI, gunicorn, granian, bjoern.

Run through scripts/bench.sh, which installs what this needs first. Stdlib only.

Every case runs each server in the same run, interleaved (A B C A B C ...) for several
rounds. A *run* starts the server (and the front nginx), waits until a real request
through the whole path answers 200, warms up, snapshots the server's CPU time from /proc,
drives wrk for a fixed time, snapshots again and stops everything by PID. Only loopback
TCP and unix sockets are used; everything lives in one temporary directory.

Cases:
  1  nginx -> server, hello world, 1 and 2 workers (+ the nginx -> nginx ceiling and
     the syscall floor: bench/floor/floor.c, accept/recv/send/close and nothing else)
  2  direct HTTP/1.1 keep-alive, hello world, 1 worker
  3  nginx -> Flask and nginx -> Django, 1 worker
  4  nginx -> server, a 1 MiB response and a 10 MiB upload, 1 worker, with peak RSS
  5  the emperor vs `uwsgi --emperor`: 50 and 200 apps all answering, memory, touch ->
     new generation serving, failed requests during `emperorctl reload` under load
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import random
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
APPS = BENCH / "apps"
DJANGO_DIR = APPS / "django_project"
VENV = ROOT / ".venv-bench"
RELEASE = ROOT / "target" / "release"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
UWSGI_PARAMS = "/etc/nginx/uwsgi_params"
CLK_TCK = os.sysconf("SC_CLK_TCK")
IS_ROOT = os.geteuid() == 0

READY_TIMEOUT = 60.0  # seconds a server has to answer its first request
STOP_TIMEOUT = 10.0  # seconds between the stop signal and SIGKILL


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# /proc sampling


def proc_stat(pid: int) -> Optional[list[str]]:
    """The fields of /proc/<pid>/stat after the command name (index 0 = state), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def start_time(pid: int) -> Optional[int]:
    st = proc_stat(pid)
    return int(st[19]) if st else None


def parent_map() -> dict[int, int]:
    """pid -> ppid for every process."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                out[int(name)] = int(st[1])
    return out


def process_tree(root: int) -> list[int]:
    """root and all its live descendants."""
    if proc_stat(root) is None:
        return []
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_map().items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of the processes plus the CPU time of children they already reaped."""
    ticks = 0
    for pid in pids:
        st = proc_stat(pid)
        if st:
            ticks += sum(int(x) for x in st[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_kib(pids: list[int]) -> int:
    return sum(status_kib(p, "VmRSS") for p in pids)


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores; steal counts as busy: it is not ours)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def own_and_children_seconds() -> float:
    """CPU time of this harness plus its reaped children (wrk, once it has exited)."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class RssSampler:
    """Samples the summed VmRSS of a process tree every `interval` s; `peak` is the max."""

    def __init__(self, root: int, interval: float = 0.1):
        self.root, self.interval, self.peak = root, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        pids, refreshed = process_tree(self.root), time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - refreshed > 1.0:
                pids, refreshed = process_tree(self.root), time.monotonic()
            self.peak = max(self.peak, rss_kib(pids))
            self._stop.wait(self.interval)


# --------------------------------------------------------------------------------------
# processes


class Proc:
    """A process we started (in its own session), stopped by PID with a deadline."""

    def __init__(self, name: str, argv: list[str], cwd: Path, logfile: Path,
                 env: Optional[dict] = None, stop_signal: int = signal.SIGTERM):
        self.name, self.argv, self.logfile, self.stop_signal = name, argv, logfile, stop_signal
        full_env = dict(os.environ)
        full_env.pop("VIRTUAL_ENV", None)
        full_env.update(env or {})
        with open(logfile, "ab") as out:
            self.popen = subprocess.Popen(argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[int]:
        return process_tree(self.pid) if self.alive() else []

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        """stop_signal to the root, SIGKILL to every process of the tree after a deadline."""
        tree = [(p, start_time(p)) for p in process_tree(self.pid)]
        if self.alive():
            try:
                os.kill(self.pid, self.stop_signal)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            self.popen.poll()
            if not any(start_time(p) == t for p, t in tree if p != self.pid) and not self.alive():
                break
            time.sleep(0.02)
        for pid, t in tree:
            if start_time(pid) == t:  # same process (not a reused pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"warning: {self.name} (pid {self.pid}) did not die after SIGKILL")


@dataclass
class Server:
    """A started server: `server` is measured; `helpers` (nginx) are not."""

    name: str
    server: Proc
    helpers: list[Proc] = field(default_factory=list)
    url: str = ""

    def stop(self) -> None:
        for p in self.helpers + [self.server]:
            p.stop()


def free_port() -> int:
    """A TCP port in 20000-29999 that nothing listens on right now."""
    for _ in range(200):
        port = random.randint(20000, 29999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in 20000-29999")


def http_get(host: str, port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def keepalive_fairness(host: str, port: int, others: int = 7, busy_s: float = 1.0) -> int:
    """How many of `others` idle keep-alive connections, each with one request sent, get
    their answer within `busy_s` while one more connection sends request after request.

    wrk's latency only counts answered requests: a server that serves one keep-alive
    connection at a time shows a tiny p50 while the other connections starve. This says so.
    """
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    busy = socket.create_connection((host, port), timeout=busy_s)
    idle = [socket.create_connection((host, port), timeout=busy_s) for _ in range(others)]
    try:
        busy.sendall(req)
        busy.recv(65536)  # the busy connection is being served before the others ask
        for c in idle:
            c.sendall(req)
            c.setblocking(False)
        answered: set[int] = set()
        deadline = time.monotonic() + busy_s
        while time.monotonic() < deadline and len(answered) < others:
            try:
                busy.sendall(req)
                busy.recv(65536)
            except OSError:
                time.sleep(0.01)
            for i, c in enumerate(idle):
                if i not in answered:
                    try:
                        if c.recv(65536):
                            answered.add(i)
                    except BlockingIOError:
                        pass
                    except OSError:
                        pass  # reset or closed: not answered
        return len(answered)
    finally:
        for c in [busy] + idle:
            c.close()


def wait_http_ok(host: str, port: int, procs: list[Proc], timeout: float = READY_TIMEOUT) -> None:
    """Waits until GET / answers 200 (the readiness signal is a real answer)."""
    deadline, last = time.monotonic() + timeout, ""
    pause = 0.01
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode}\n{p.log_tail()}")
        try:
            status, body = http_get(host, port)
            if status == 200:
                return
            last = f"status {status}: {body[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
    tails = "\n".join(f"--- {p.name} ---\n{p.log_tail()}" for p in procs)
    raise RuntimeError(f"no 200 on {host}:{port} within {timeout}s ({last})\n{tails}")


# --------------------------------------------------------------------------------------
# the apps and the servers


@dataclass(frozen=True)
class App:
    key: str
    module: str  # module:callable
    chdir: Path
    venv: bool  # needs the bench venv's packages (Flask, Django)


HELLO = App("hello", "hello:application", APPS, False)
FLASK = App("flask", "flask_app:application", APPS, True)
DJANGO = App("django", "benchsite.wsgi:application", DJANGO_DIR, True)
DOWNLOAD = App("download", "large:download", APPS, False)
UPLOAD = App("upload", "large:upload", APPS, False)


class Ctx:
    """Run-wide settings and the temporary directory."""

    def __init__(self, args, tmp: Path):
        self.args, self.tmp = args, tmp
        self._n = 0

    def workdir(self, name: str) -> Path:
        self._n += 1
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)  # nginx.conf paths must not hold spaces
        d = self.tmp / f"{self._n:04d}-{slug}"
        d.mkdir(parents=True)
        return d


def uwsgi_ini(path: Path, app: App, workers: int, listen_key: str, listen: str) -> Path:
    """The ini both `vassal --ini` and `uwsgi --ini` run (only the listen key may differ)."""
    lines = [
        "[uwsgi]",
        f"chdir = {app.chdir}",
        f"module = {app.module}",
        "master = true",
        f"processes = {workers}",
        f"{listen_key} = {listen}",
        "disable-logging = true",
        "die-on-term = true",
    ]
    if app.venv:
        lines.append(f"home = {VENV}")
    path.write_text("\n".join(lines) + "\n")
    return path


def start_vassal(d: Path, app: App, workers: int, listen_key: str, listen: str) -> Proc:
    ini = uwsgi_ini(d / "app.ini", app, workers, listen_key, listen)
    return Proc("vassal", [str(RELEASE / "vassal"), "--ini", str(ini)], d, d / "server.log")


def start_uwsgi(d: Path, app: App, workers: int, listen_key: str, listen: str) -> Proc:
    ini = uwsgi_ini(d / "app.ini", app, workers, listen_key, listen)
    # die-on-term makes SIGTERM a shutdown (in uWSGI 2.0 it is a brutal reload otherwise).
    return Proc("uwsgi", [str(VENV / "bin" / "uwsgi"), "--ini", str(ini)], d, d / "server.log")


def start_gunicorn(d: Path, app: App, workers: int, bind: str, protocol: str = "http") -> Proc:
    argv = [str(VENV / "bin" / "gunicorn"), "--worker-class", "sync", "--workers", str(workers),
            "--bind", bind, "--chdir", str(app.chdir), "--protocol", protocol, app.module]
    return Proc("gunicorn", argv, d, d / "server.log")


def start_granian(d: Path, app: App, workers: int, listen: list[str]) -> Proc:
    argv = [str(VENV / "bin" / "granian"), "--interface", "wsgi", "--http", "1", "--no-ws",
            "--workers", str(workers), "--working-dir", str(app.chdir), *listen, app.module]
    return Proc("granian", argv, d, d / "server.log")


def start_bjoern(d: Path, app: App, port: int) -> Proc:
    argv = [str(VENV / "bin" / "python"), str(APPS / "run_bjoern.py"), "127.0.0.1", str(port),
            app.module]
    return Proc("bjoern", argv, app.chdir, d / "server.log")


def nginx_conf(d: Path, server_block: str, workers: int = 1) -> Path:
    p = d
    conf = f"""{'user root;' if IS_ROOT else ''}
daemon off;
master_process on;
worker_processes {workers};
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/plain;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    keepalive_requests 1000000;
    client_max_body_size 20m;
    client_body_buffer_size 16m;
    uwsgi_max_temp_file_size 0;
    proxy_max_temp_file_size 0;
{server_block}
}}
"""
    path = d / "nginx.conf"
    path.write_text(conf)
    return path


def start_nginx(d: Path, name: str, server_block: str, workers: int = 1) -> Proc:
    d.mkdir(parents=True, exist_ok=True)
    conf = nginx_conf(d, server_block, workers)
    # SIGTERM: nginx's fast shutdown.
    return Proc(name, [NGINX, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")], d,
                d / "stderr.log")


def front_block(port: int, upstream: str) -> str:
    """The front nginx: HTTP on 127.0.0.1:port; upstream 'uwsgi:PATH', 'http:PATH' or
    'http-ka:PATH' (HTTP/1.1 with an upstream keep-alive pool, issue 15)."""
    kind, path = upstream.split(":", 1)
    pool = ""
    if kind == "uwsgi":
        loc = f"include {UWSGI_PARAMS};\n            uwsgi_pass unix:{path};"
    elif kind == "http-ka":
        # What etc/nginx/example-app-keepalive.conf configures.
        pool = f"""    upstream app_keepalive {{
        server unix:{path};
        keepalive 32;
    }}
"""
        loc = ("proxy_pass http://app_keepalive;\n            proxy_http_version 1.1;\n"
               "            proxy_set_header Connection \"\";")
    else:  # HTTP/1.0 to the upstream, no keep-alive: like uwsgi_pass
        loc = f"proxy_pass http://unix:{path}:;"
    return f"""{pool}    server {{
        listen 127.0.0.1:{port};
        location / {{
            {loc}
        }}
    }}"""


# Server factories. Each takes (ctx, app, workers) and returns a started (not yet ready)
# Server; `behind_nginx` ones get a front nginx on a free port.

def behind_nginx(ctx: Ctx, name: str, start: Callable[[Path, str], Proc], upstream_kind: str) -> Server:
    d = ctx.workdir(name)
    sock = d / "app.sock"
    srv = start(d, str(sock))
    port = free_port()
    front = start_nginx(d / "front", "nginx", front_block(port, f"{upstream_kind}:{sock}"))
    return Server(name, srv, [front], f"http://127.0.0.1:{port}/")


def nginx_servers(workers: int, with_ceiling: bool) -> dict[str, Callable]:
    """name -> factory(ctx, app) for case 1/3/4: nginx in front of each server."""
    def vassal(ctx, app):
        return behind_nginx(ctx, "vassal", lambda d, s: start_vassal(d, app, workers, "socket", s), "uwsgi")

    def uwsgi(ctx, app):
        return behind_nginx(ctx, "uWSGI", lambda d, s: start_uwsgi(d, app, workers, "socket", s), "uwsgi")

    def gunicorn(ctx, app):
        return behind_nginx(ctx, "gunicorn", lambda d, s: start_gunicorn(d, app, workers, f"unix:{s}", "uwsgi"), "uwsgi")

    def gunicorn_http(ctx, app):
        return behind_nginx(ctx, "gunicorn (http)", lambda d, s: start_gunicorn(d, app, workers, f"unix:{s}", "http"), "http")

    def granian(ctx, app):
        return behind_nginx(ctx, "granian", lambda d, s: start_granian(d, app, workers, ["--uds", s]), "http")

    def nginx_back(d, sock):
        """The ceiling's second nginx: answers `return 200` itself on a unix socket."""
        block = f"""    server {{
        listen unix:{sock};
        location / {{ return 200 "Hello, World!"; }}
    }}"""
        return start_nginx(d / "back", "nginx-back", block, workers)

    def ceiling(ctx, app):
        return behind_nginx(ctx, "nginx ceiling", nginx_back, "http")

    def vassal_keepalive(ctx, app):
        return behind_nginx(ctx, "vassal (keep-alive http)",
                            lambda d, s: start_vassal(d, app, workers, "http-socket", s), "http-ka")

    def ceiling_keepalive(ctx, app):
        return behind_nginx(ctx, "nginx ceiling (keep-alive)", nginx_back, "http-ka")

    def floor(ctx, app):
        binary = build_floor(ctx)
        return behind_nginx(ctx, "syscall floor",
                            lambda d, s: Proc("floor", [str(binary), s, str(workers)], d, d / "server.log"),
                            "uwsgi")

    out = {"vassal": vassal, "uWSGI": uwsgi, "gunicorn": gunicorn}
    if with_ceiling:  # case 1 only: also gunicorn behind proxy_pass
        out["gunicorn (http)"] = gunicorn_http
    out["granian"] = granian
    if with_ceiling:
        out["nginx ceiling"] = ceiling
        out["syscall floor"] = floor
        out["vassal (keep-alive http)"] = vassal_keepalive
        out["nginx ceiling (keep-alive)"] = ceiling_keepalive
    return out


def build_floor(ctx: Ctx) -> Path:
    """Compiles bench/floor/floor.c (once per run) with the system C compiler."""
    out = ctx.tmp / "floor-bin"
    if not out.exists():
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            raise RuntimeError("the syscall floor needs a C compiler (apt-get install gcc)")
        subprocess.run([cc, "-O2", "-o", str(out), str(BENCH / "floor" / "floor.c")], check=True)
    return out


def direct_servers() -> dict[str, Callable]:
    """name -> factory(ctx, app) for case 2: HTTP straight to the server, 1 worker."""
    def direct(ctx, name, start):
        d = ctx.workdir(name)
        port = free_port()
        return Server(name, start(d, port), [], f"http://127.0.0.1:{port}/")

    return {
        "vassal": lambda ctx, app: direct(ctx, "vassal", lambda d, p: start_vassal(d, app, 1, "http-socket", f"127.0.0.1:{p}")),
        "uWSGI": lambda ctx, app: direct(ctx, "uWSGI", lambda d, p: start_uwsgi(d, app, 1, "http11-socket", f"127.0.0.1:{p}")),
        "gunicorn": lambda ctx, app: direct(ctx, "gunicorn", lambda d, p: start_gunicorn(d, app, 1, f"127.0.0.1:{p}")),
        "granian": lambda ctx, app: direct(ctx, "granian", lambda d, p: start_granian(d, app, 1, ["--host", "127.0.0.1", "--port", str(p)])),
        "bjoern": lambda ctx, app: direct(ctx, "bjoern", lambda d, p: start_bjoern(d, app, p)),
    }


# --------------------------------------------------------------------------------------
# wrk


@dataclass
class WrkResult:
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0  # non-2xx/3xx + socket errors
    transfer_mib_s: float = 0.0
    raw: str = ""


def parse_duration_ms(s: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", s.strip())
    if not m:
        raise ValueError(f"unparsable wrk duration {s!r}")
    v = float(m.group(1))
    return v * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}[m.group(2)]


def parse_size_mib(s: str) -> float:
    m = re.fullmatch(r"([\d.]+)([KMGT]?B)", s.strip())
    if not m:
        raise ValueError(f"unparsable wrk size {s!r}")
    return float(m.group(1)) * {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024, "TB": 2**20}[m.group(2)]


def parse_wrk(out: str) -> WrkResult:
    r = WrkResult(raw=out)
    m = re.search(r"^\s*(\d+) requests in", out, re.M)
    if not m:
        raise ValueError(f"wrk output without a request count:\n{out}")
    r.requests = int(m.group(1))
    m = re.search(r"^Requests/sec:\s*([\d.]+)", out, re.M)
    r.rps = float(m.group(1)) if m else 0.0
    m = re.search(r"^Transfer/sec:\s*(\S+)", out, re.M)
    r.transfer_mib_s = parse_size_mib(m.group(1)) if m else 0.0
    for pct, attr in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s*{pct}%\s+(\S+)", out, re.M)
        if m:
            setattr(r, attr, parse_duration_ms(m.group(1)))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r.errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r.errors += int(m.group(1))
    return r


def run_wrk(url: str, duration: float, connections: int, threads: int = 1,
            script: Optional[Path] = None, timeout_s: int = 10) -> WrkResult:
    argv = [WRK, "--latency", "-t", str(threads), "-c", str(connections),
            "-d", f"{max(1, round(duration))}s", "--timeout", f"{timeout_s}s"]
    if script:
        argv += ["-s", str(script)]
    argv.append(url)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=duration + timeout_s + 30)
    if p.returncode != 0:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stderr}{p.stdout}")
    return parse_wrk(p.stdout)


# --------------------------------------------------------------------------------------
# one measured run and a case


@dataclass
class Sample:
    wrk: WrkResult
    cpu_us_per_req: float
    peak_rss_kib: int = 0
    fairness: Optional[int] = None  # case 2: idle keep-alive conns answered (of FAIRNESS_OTHERS)
    other_cpu_pct: Optional[float] = None  # the machine's CPU used by others during the run


FAIRNESS_OTHERS = 7


@dataclass
class Row:
    group: str  # e.g. "hello, 1 worker"
    server: str
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def measure(ctx: Ctx, factory: Callable, app: App, connections: int,
            script: Optional[Path] = None, sample_rss: bool = False,
            upload_mib: float = 0, probe_fairness: bool = False) -> Sample:
    """One run: start, wait for a 200, warm up, measure, stop by PID."""
    srv = factory(ctx, app)
    try:
        port = int(srv.url.rsplit(":", 1)[1].strip("/"))
        wait_http_ok("127.0.0.1", port, [srv.server] + srv.helpers)
        if ctx.args.warmup > 0:
            run_wrk(srv.url, ctx.args.warmup, connections, script=script)
        pids = srv.server.tree()
        helper_pids = [p for h in srv.helpers for p in h.tree()]
        cpu0, helpers0 = cpu_seconds(pids), cpu_seconds(helper_pids)
        busy0, mine0, t0 = machine_busy_seconds(), own_and_children_seconds(), time.monotonic()
        if sample_rss:
            with RssSampler(srv.server.pid) as sampler:
                w = run_wrk(srv.url, ctx.args.duration, connections, script=script)
            peak = sampler.peak
        else:
            w = run_wrk(srv.url, ctx.args.duration, connections, script=script)
            peak = 0
        cpu1 = cpu_seconds(srv.server.tree() or pids)
        helpers1 = cpu_seconds([p for h in srv.helpers for p in h.tree()] or helper_pids)
        busy1, mine1, wall = machine_busy_seconds(), own_and_children_seconds(), time.monotonic() - t0
        # Everything the machine did besides this server, its nginx, wrk and this harness:
        # other people's builds and tests. In % of all cores over the run.
        other = (busy1 - busy0) - (cpu1 - cpu0) - (helpers1 - helpers0) - (mine1 - mine0)
        other_pct = max(0.0, other) / (wall * (os.cpu_count() or 1)) * 100
        if not srv.server.alive():
            raise RuntimeError(f"{srv.name} died during the run\n{srv.server.log_tail()}")
        per_req = (cpu1 - cpu0) / w.requests * 1e6 if w.requests else float("nan")
        if upload_mib:  # wrk's Transfer/sec counts what it read; an upload's MiB/s is sent
            w.transfer_mib_s = w.rps * upload_mib
        fair = None
        if probe_fairness:
            try:
                fair = keepalive_fairness("127.0.0.1", port, FAIRNESS_OTHERS)
            except OSError as e:
                log(f"  keep-alive fairness probe failed: {e}")
        return Sample(w, per_req, peak, fair, other_pct)
    finally:
        srv.stop()


def run_interleaved(ctx: Ctx, group: str, servers: dict[str, Callable], app: App,
                    connections: int, script: Optional[Path] = None,
                    sample_rss: bool = False, upload_mib: float = 0,
                    probe_fairness: bool = False) -> list[Row]:
    rows = {name: Row(group, name) for name in servers}
    for rnd in range(ctx.args.rounds):
        for name, factory in servers.items():
            log(f"{group}: round {rnd + 1}/{ctx.args.rounds}: {name}")
            try:
                s = measure(ctx, factory, app, connections, script, sample_rss, upload_mib,
                            probe_fairness)
                rows[name].samples.append(s)
                log(f"  {s.wrk.rps:.0f} req/s, p99 {s.wrk.p99_ms:.2f} ms, "
                    f"{s.cpu_us_per_req:.1f} us CPU/req, errors {s.wrk.errors}, "
                    f"other load {s.other_cpu_pct:.0f}% of the machine")
            except Exception as e:  # one broken server must not end the benchmark
                msg = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                rows[name].failures.append(msg)
                log(f"  FAILED: {e}")
    return list(rows.values())


# --------------------------------------------------------------------------------------
# case 5: the emperor


def uwsgi_packet(path: str = "/") -> bytes:
    vars_ = {
        "REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost",
    }
    block = b"".join(len(k).to_bytes(2, "little") + k.encode() + len(v).to_bytes(2, "little") + v.encode()
                     for k, v in vars_.items())
    return b"\x00" + len(block).to_bytes(2, "little") + b"\x00" + block


def parse_reply(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split()
    return (int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0), body


def uwsgi_get(sock: Path, timeout: float = 5.0) -> tuple[int, bytes]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        s.sendall(uwsgi_packet())
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    return parse_reply(b"".join(chunks))


def wait_all_answer(socks: dict[str, Path], deadline: float, alive: Callable[[], bool],
                    retry: float = 0.02) -> dict[str, float]:
    """Sends GET / over the uwsgi protocol to every socket until each answers 200.

    One thread, non-blocking sockets: a missing or refusing socket is retried every
    `retry` s; a connected one waits for its answer (a socket whose app is still starting
    keeps the request in its backlog). Returns app -> monotonic time of its 200.
    """
    sel = selectors.DefaultSelector()
    done: dict[str, float] = {}
    retry_at = {name: 0.0 for name in socks}
    bufs: dict[str, bytearray] = {}
    packet = uwsgi_packet()

    def fail(name, s):
        sel.unregister(s)
        s.close()
        bufs.pop(name, None)
        retry_at[name] = time.monotonic() + retry

    while len(done) < len(socks):
        now = time.monotonic()
        if now > deadline:
            break
        if not alive():
            raise RuntimeError("the emperor exited")
        for name, at in list(retry_at.items()):
            if at <= now:
                del retry_at[name]
                s = socket.socket(socket.AF_UNIX)
                s.setblocking(False)
                try:
                    s.connect(str(socks[name]))
                    s.send(packet)
                except OSError:
                    s.close()
                    retry_at[name] = now + retry
                    continue
                bufs[name] = bytearray()
                sel.register(s, selectors.EVENT_READ, name)
        for key, _ in sel.select(timeout=retry / 2):
            name, s = key.data, key.fileobj
            try:
                c = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                fail(name, s)
                continue
            if c:
                bufs[name] += c
                continue
            status, _ = parse_reply(bytes(bufs[name]))
            if status == 200:
                sel.unregister(s)
                s.close()
                bufs.pop(name)
                done[name] = time.monotonic()
            else:
                fail(name, s)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return done


@dataclass
class EmperorRun:
    server: str
    apps: int
    all_answer_s: Optional[float] = None
    all_ready_status_s: Optional[float] = None  # ours only: every app "ready" in status
    status_ready_count: int = 0  # ours only: apps "ready" at the last status poll
    emperor_rss_kib: int = 0
    vassal_pss_kib: int = 0
    tree_pss_kib: int = 0
    touch_ms: list[float] = field(default_factory=list)
    reload_errors: Optional[int] = None
    reload_requests: int = 0
    reloads: int = 0
    failures: list[str] = field(default_factory=list)


STATUS_GRACE = 10.0  # s after every app answered for `emperorctl status` to show all ready


def write_emperor_inis(d: Path, n: int, sock_dir: Path) -> list[str]:
    names = []
    for i in range(1, n + 1):
        name = f"app{i:03d}"
        (d / f"{name}.ini").write_text(
            "[uwsgi]\n"
            f"chdir = {APPS}\n"
            "module = hello:pid_application\n"
            "master = true\n"
            "processes = 1\n"
            f"socket = {sock_dir}/%n.sock\n"
            "disable-logging = true\n"
            "die-on-term = true\n")
        names.append(name)
    return names


def emperorctl(ctl: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(RELEASE / "emperorctl"), "--socket", str(ctl), *args],
                          capture_output=True, text=True, timeout=timeout)


def status_json(ctl: Path) -> list[dict]:
    p = emperorctl(ctl, "status", "--json", timeout=10)
    if p.returncode != 0:
        return []
    try:
        return json.loads(p.stdout).get("apps", [])
    except json.JSONDecodeError:
        return []


def poll_all_ready(ctl: Path, n: int, t0: float, deadline: float, stop: threading.Event,
                   out: EmperorRun) -> None:
    while not stop.is_set() and time.monotonic() < deadline:
        apps = status_json(ctl)
        ready = sum(1 for a in apps if a.get("state") == "ready")
        out.status_ready_count = ready
        if len(apps) == n and ready == n:
            out.all_ready_status_s = time.monotonic() - t0
            return
        stop.wait(0.05)


def touch_to_new_generation(ini: Path, sock: Path, timeout: float) -> float:
    """Touches the ini; ms until a request is answered by a new pid (pid_application)."""
    _, old = uwsgi_get(sock)
    t0 = time.monotonic()
    os.utime(ini)
    while time.monotonic() - t0 < timeout:
        try:
            status, body = uwsgi_get(sock)
            if status == 200 and body != old:
                return (time.monotonic() - t0) * 1000
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"no new generation within {timeout}s of touching {ini.name}")


def start_emperor(kind: str, d: Path, apps_dir: Path) -> tuple[Proc, Optional[Path]]:
    if kind == "emperor":
        run_dir = d / "run"
        run_dir.mkdir()
        ctl = run_dir / "ctl.sock"
        argv = [str(RELEASE / "emperor"), "--apps-enabled", str(apps_dir), "--run-dir",
                str(run_dir), "--control-socket", str(ctl)]
        return Proc("emperor", argv, d, d / "emperor.log"), ctl
    argv = [str(VENV / "bin" / "uwsgi"), "--emperor", str(apps_dir), "--die-on-term"]
    # SIGINT: the uWSGI Emperor stops its vassals and exits.
    return Proc("uwsgi-emperor", argv, d, d / "emperor.log", stop_signal=signal.SIGINT), None


def vassal_master_pid(kind: str, emperor: Proc, name: str, ctl: Optional[Path]) -> Optional[int]:
    if kind == "emperor":
        for a in status_json(ctl):
            if a.get("name") == name:
                return a.get("pid")
        return None
    # uWSGI: the emperor's child whose command line names the ini.
    for pid, ppid in parent_map().items():
        if ppid == emperor.pid:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if f"{name}.ini".encode() in cmd:
                return pid
    return None


def reload_under_load(ctx: Ctx, kind: str, d: Path, sock: Path, ini: Path,
                      ctl: Optional[Path], out: EmperorRun) -> None:
    """wrk through nginx to one app while it is reloaded again and again."""
    port = free_port()
    front = start_nginx(d / "front", "nginx", front_block(port, f"uwsgi:{sock}"))
    stop = threading.Event()
    reloads = [0]
    errors: list[str] = []

    def reloader():
        while not stop.is_set():
            if kind == "emperor":
                p = emperorctl(ctl, "reload", ini.stem)
                if p.returncode != 0:
                    errors.append(p.stdout + p.stderr)
                    return
            else:  # the uWSGI Emperor reloads a vassal whose ini mtime changed (3 s scan)
                os.utime(ini)
                stop.wait(3.5)
            reloads[0] += 1

    try:
        wait_http_ok("127.0.0.1", port, [front])
        t = threading.Thread(target=reloader, daemon=True)
        t.start()
        w = run_wrk(f"http://127.0.0.1:{port}/", ctx.args.duration, 16)
        stop.set()
        t.join(timeout=130)
        out.reload_errors, out.reload_requests, out.reloads = w.errors, w.requests, reloads[0]
        if errors:
            out.failures.append("emperorctl reload failed: " + errors[0].strip())
    finally:
        stop.set()
        front.stop()


def emperor_run(ctx: Ctx, kind: str, n: int, extras: bool) -> EmperorRun:
    out = EmperorRun("emperor" if kind == "emperor" else "uWSGI Emperor", n)
    d = ctx.workdir(f"{kind}-{n}")
    apps_dir, sock_dir = d / "apps", d / "sock"
    apps_dir.mkdir()
    sock_dir.mkdir()
    names = write_emperor_inis(apps_dir, n, sock_dir)
    socks = {name: sock_dir / f"{name}.sock" for name in names}
    deadline_s = 30 + 1.0 * n
    t0 = time.monotonic()
    emperor, ctl = start_emperor(kind, d, apps_dir)
    stop_poll = threading.Event()
    poller = None
    try:
        if ctl:
            poller = threading.Thread(target=poll_all_ready,
                                      args=(ctl, n, t0, t0 + deadline_s, stop_poll, out), daemon=True)
            poller.start()
        done = wait_all_answer(socks, t0 + deadline_s, emperor.alive)
        if len(done) < n:
            raise RuntimeError(f"only {len(done)}/{n} apps answered within {deadline_s:.0f}s\n"
                               f"{emperor.log_tail()}")
        out.all_answer_s = max(done.values()) - t0
        if poller:
            # Status should agree soon after every app answered; don't wait for the deadline.
            poller.join(timeout=STATUS_GRACE)
            if out.all_ready_status_s is None:
                stop_poll.set()
                poller.join()
                out.failures.append(
                    f"status: only {out.status_ready_count}/{n} apps 'ready' {STATUS_GRACE:.0f} s "
                    "after all answered")
                log(f"  {out.failures[-1]}")
        # Memory, idle: the emperor process alone; one vassal (master + worker); the tree.
        time.sleep(1.0)
        out.emperor_rss_kib = status_kib(emperor.pid, "VmRSS")
        master = vassal_master_pid(kind, emperor, names[0], ctl)
        if master:
            out.vassal_pss_kib = pss_kib(process_tree(master))
        out.tree_pss_kib = pss_kib(emperor.tree())
        if extras:
            # uWSGI compares whole-second mtimes: leave the creation second behind.
            time.sleep(1.1)
            for i in range(3):
                out.touch_ms.append(touch_to_new_generation(apps_dir / f"{names[1]}.ini",
                                                            socks[names[1]], timeout=15))
                time.sleep(1.1)
            reload_under_load(ctx, kind, d, socks[names[0]], apps_dir / f"{names[0]}.ini", ctl, out)
    except Exception as e:
        out.failures.append(str(e).strip().splitlines()[0] if str(e).strip() else repr(e))
        log(f"  FAILED: {e}")
    finally:
        stop_poll.set()
        emperor.stop()
    return out


def import_time_ms(app: App) -> float:
    """How long importing the app's module takes in a fresh /usr/bin/python3 (median of 3)."""
    module = app.module.split(":")[0]
    code = ("import sys,time; sys.path.insert(0, sys.argv[1]); t=time.perf_counter(); "
            f"import {module}; print((time.perf_counter()-t)*1000)")
    vals = []
    for _ in range(3):
        p = subprocess.run(["/usr/bin/python3", "-c", code, str(app.chdir)], capture_output=True,
                           text=True, timeout=60)
        vals.append(float(p.stdout.strip()))
    return statistics.median(vals)


def case_emperor(ctx: Ctx) -> list[EmperorRun]:
    sizes = [int(x) for x in ctx.args.emperor_apps.split(",")]
    runs = []
    for rnd in range(ctx.args.emperor_rounds):
        for n in sizes:
            for kind in ("emperor", "uwsgi"):
                log(f"emperor, {n} apps: round {rnd + 1}/{ctx.args.emperor_rounds}: {kind}")
                r = emperor_run(ctx, kind, n, extras=(n == min(sizes)))
                log(f"  all answer {r.all_answer_s}, ready (status) {r.all_ready_status_s}, "
                    f"emperor RSS {r.emperor_rss_kib} KiB, vassal PSS {r.vassal_pss_kib} KiB, "
                    f"touch {['%.0f' % t for t in r.touch_ms]} ms, reload errors {r.reload_errors}")
                runs.append(r)
    return runs


# --------------------------------------------------------------------------------------
# formatting


def med(vals: list[float]) -> Optional[float]:
    vals = [v for v in vals if v == v]  # drop NaN
    return statistics.median(vals) if vals else None


def fmt(v: Optional[float], spec: str = ".0f", unit: str = "") -> str:
    return "–" if v is None else f"{v:{spec}}{unit}"


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def row_stats(r: Row) -> dict:
    rps = [s.wrk.rps for s in r.samples]
    return {
        "rps": med(rps), "rps_min": min(rps) if rps else None, "rps_max": max(rps) if rps else None,
        "p50": med([s.wrk.p50_ms for s in r.samples]),
        "p99": med([s.wrk.p99_ms for s in r.samples]),
        "errors": sum(s.wrk.errors for s in r.samples),
        "cpu": med([s.cpu_us_per_req for s in r.samples]),
        "mib_s": med([s.wrk.transfer_mib_s for s in r.samples]),
        "rss": max((s.peak_rss_kib for s in r.samples), default=0),
        "other": [s.other_cpu_pct for s in r.samples if s.other_cpu_pct is not None],
    }


def table(rows: list[Row], bodies: bool = False, fairness: bool = False) -> str:
    head = ["case", "server", "req/s median [min–max]", "p50 ms", "p99 ms", "errors",
            "server CPU µs/req", "req/s ÷ vassal", "CPU ÷ vassal", "other load % [max]"]
    if bodies:
        head += ["MiB/s", "peak RSS MiB"]
    if fairness:
        head += [f"keep-alive fairness (of {FAIRNESS_OTHERS})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    for group, rs in groups.items():
        ours = next((row_stats(r) for r in rs if r.server == "vassal"), None)
        for r in rs:
            s = row_stats(r)
            if not r.samples:
                cells = [group, r.server, "FAILED: " + "; ".join(r.failures)[:120]] + ["–"] * (len(head) - 3)
                lines.append("| " + " | ".join(cells) + " |")
                continue
            rps = f"{fmt(s['rps'])} [{fmt(s['rps_min'])}–{fmt(s['rps_max'])}]"
            if r.failures:
                rps += f" ({len(r.failures)} failed)"
            cells = [group, r.server, rps, fmt(s["p50"], ".2f"), fmt(s["p99"], ".2f"),
                     str(s["errors"]), fmt(s["cpu"], ".1f"),
                     fmt(ratio(s["rps"], ours and ours["rps"]), ".2f"),
                     fmt(ratio(s["cpu"], ours and ours["cpu"]), ".2f"),
                     f"{fmt(med(s['other']))} [{fmt(max(s['other']) if s['other'] else None)}]"]
            if bodies:
                cells += [fmt(s["mib_s"], ".0f"), fmt(s["rss"] / 1024 if s["rss"] else None, ".1f")]
            if fairness:
                fair = [x.fairness for x in r.samples if x.fairness is not None]
                cells.append(str(min(fair)) if fair else "–")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def emperor_table(runs: list[EmperorRun]) -> str:
    head = ["apps", "server", "all answer s median [min–max]", "all ready (status) s",
            "emperor RSS MiB", "one idle vassal PSS MiB", "tree PSS MiB",
            "touch → new generation ms", "reload under load: failed / requests (reloads)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = sorted({(r.apps, r.server) for r in runs}, key=lambda k: (k[0], k[1] != "emperor"))
    for n, server in keys:
        rs = [r for r in runs if r.apps == n and r.server == server]
        ans = [r.all_answer_s for r in rs if r.all_answer_s is not None]
        ready = [r.all_ready_status_s for r in rs if r.all_ready_status_s is not None]
        touch = [t for r in rs for t in r.touch_ms]
        rl = [r for r in rs if r.reload_errors is not None]
        fails = [f for r in rs for f in r.failures]
        cells = [
            str(n), server,
            f"{fmt(med(ans), '.2f')} [{fmt(min(ans) if ans else None, '.2f')}–{fmt(max(ans) if ans else None, '.2f')}]",
            fmt(med(ready), ".2f"),
            fmt(med([r.emperor_rss_kib / 1024 for r in rs if r.emperor_rss_kib]), ".1f"),
            fmt(med([r.vassal_pss_kib / 1024 for r in rs if r.vassal_pss_kib]), ".1f"),
            fmt(med([r.tree_pss_kib / 1024 for r in rs if r.tree_pss_kib]), ".0f"),
            (f"{fmt(med(touch), '.0f')} [{fmt(min(touch), '.0f')}–{fmt(max(touch), '.0f')}]" if touch else "–"),
            (f"{sum(r.reload_errors for r in rl)} / {sum(r.reload_requests for r in rl)} "
             f"({sum(r.reloads for r in rl)})" if rl else "–"),
        ]
        if fails:
            cells[1] += " (FAILED: " + "; ".join(fails)[:150].replace("|", "/") + ")"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class Target:
    text: str
    value: Optional[float]
    limit: float
    higher_is_better: bool
    detail: str = ""

    def verdict(self) -> str:
        if self.value is None:
            return "not measured"
        ok = self.value >= self.limit if self.higher_is_better else self.value <= self.limit
        return "PASS" if ok else "MISS"


def stat_of(rows: list[Row], group: str, server: str) -> Optional[dict]:
    for r in rows:
        if r.group == group and r.server == server and r.samples:
            return row_stats(r)
    return None


def targets(rows: list[Row], runs: list[EmperorRun], hello_import_ms: Optional[float]) -> list[Target]:
    out = []

    def both(group, other, key):
        a, b = stat_of(rows, group, "vassal"), stat_of(rows, group, other)
        return (a[key], b[key]) if a and b else (None, None)

    for group in sorted({r.group for r in rows if r.group.startswith("1.")}):
        v, u = both(group, "uWSGI", "cpu")
        _, f = both(group, "syscall floor", "cpu")
        floor_note = (f"; the syscall floor (accept, recv, send, close; no Python) uses "
                      f"{fmt(f, '.1f')} µs = {fmt(ratio(f, u), '.2f')}× uWSGI's" if f else "")
        out.append(Target(f"{group}: vassal CPU/req ÷ uWSGI's ≤ 0.5", ratio(v, u), 0.5, False,
                          f"{fmt(v, '.1f')} vs {fmt(u, '.1f')} µs{floor_note}"))
        v, u = both(group, "uWSGI", "rps")
        out.append(Target(f"{group}: vassal req/s ÷ uWSGI's ≥ 1.1", ratio(v, u), 1.1, True,
                          f"{fmt(v)} vs {fmt(u)}"))
        v, c = both(group, "nginx ceiling", "rps")
        out.append(Target(f"{group}: vassal req/s ÷ nginx→nginx ceiling ≥ 0.95", ratio(v, c), 0.95,
                          True, f"{fmt(v)} vs {fmt(c)}"))
        v, u = both(group, "uWSGI", "p99")
        out.append(Target(f"{group}: vassal p99 ÷ uWSGI's ≤ 1.0", ratio(v, u), 1.0, False,
                          f"{fmt(v, '.2f')} vs {fmt(u, '.2f')} ms"))
        # Issue 15: nginx's keep-alive upstream to the vassal's http-socket.
        k = stat_of(rows, group, "vassal (keep-alive http)")
        u, kc = stat_of(rows, group, "uWSGI"), stat_of(rows, group, "nginx ceiling (keep-alive)")
        if k and u:
            out.append(Target(f"{group}: nginx keep-alive → vassal req/s ÷ uwsgi_pass → uWSGI ≥ 1.5",
                              ratio(k["rps"], u["rps"]), 1.5, True,
                              f"{fmt(k['rps'])} vs {fmt(u['rps'])}; CPU {fmt(k['cpu'], '.1f')} vs "
                              f"{fmt(u['cpu'], '.1f')} µs/req; p99 {fmt(k['p99'], '.2f')} vs "
                              f"{fmt(u['p99'], '.2f')} ms"))
        if k and kc:
            out.append(Target(f"{group}: nginx keep-alive → vassal req/s ÷ keep-alive ceiling ≥ 0.9",
                              ratio(k["rps"], kc["rps"]), 0.9, True,
                              f"{fmt(k['rps'])} vs {fmt(kc['rps'])}"))
    for group in sorted({r.group for r in rows if r.group.startswith("2.")}):
        v, b = both(group, "bjoern", "rps")
        out.append(Target(f"{group}: vassal req/s ÷ bjoern's ≥ 1.0", ratio(v, b), 1.0, True,
                          f"{fmt(v)} vs {fmt(b)}"))
        v, g = both(group, "granian", "rps")
        out.append(Target(f"{group}: vassal req/s ÷ granian's ≥ 2.0", ratio(v, g), 2.0, True,
                          f"{fmt(v)} vs {fmt(g)}"))
    for group in sorted({r.group for r in rows if r.group.startswith("3.")}):
        v, u = both(group, "uWSGI", "rps")
        out.append(Target(f"{group}: vassal req/s ÷ uWSGI's ≥ 1.1", ratio(v, u), 1.1, True,
                          f"{fmt(v)} vs {fmt(u)}"))
    if runs:
        big = max(r.apps for r in runs)

        def emp(server, attr, n=big):
            return med([getattr(r, attr) for r in runs if r.server == server and r.apps == n
                        and getattr(r, attr)])

        a, b = emp("emperor", "all_answer_s"), emp("uWSGI Emperor", "all_answer_s")
        out.append(Target(f"5. {big} apps all answering: emperor time ÷ uWSGI Emperor's ≤ 1.0",
                          ratio(a, b), 1.0, False, f"{fmt(a, '.2f')} vs {fmt(b, '.2f')} s"))
        touch = [t for r in runs if r.server == "emperor" for t in r.touch_ms]
        limit = (hello_import_ms or 0) + 100
        out.append(Target(f"5. touch → new generation serving ≤ import time + 100 ms "
                          f"(= {limit:.0f} ms, worst of {len(touch)})",
                          max(touch) if touch else None, limit, False,
                          f"median {fmt(med(touch), '.0f')} ms"))
        rss = emp("emperor", "emperor_rss_kib")
        out.append(Target(f"5. emperor RSS with {big} apps ≤ 10 MiB",
                          rss / 1024 if rss else None, 10.0, False, f"{fmt(rss and rss / 1024, '.1f')} MiB"))
        a, b = emp("emperor", "vassal_pss_kib"), emp("uWSGI Emperor", "vassal_pss_kib")
        out.append(Target(f"5. idle vassal PSS ÷ uWSGI vassal's ≤ 1.0 ({big} apps)", ratio(a, b), 1.0,
                          False, f"{fmt(a and a / 1024, '.1f')} vs {fmt(b and b / 1024, '.1f')} MiB"))
        rl = [r for r in runs if r.server == "emperor" and r.reload_errors is not None]
        out.append(Target("5. failed requests during `emperorctl reload` under load = 0",
                          sum(r.reload_errors for r in rl) if rl else None, 0, False,
                          f"{sum(r.reloads for r in rl)} reloads, {sum(r.reload_requests for r in rl)} requests"))
    return out


def targets_table(ts: list[Target]) -> str:
    lines = ["| target | measured | | detail |", "|---|---|---|---|"]
    for t in ts:
        lines.append(f"| {t.text} | {fmt(t.value, '.2f')} | **{t.verdict()}** | {t.detail} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# the machine


def sh(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"? ({e})"


def machine() -> dict:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = status_like("/proc/meminfo", "MemTotal")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "mem_gib": mem / 2**20 if mem else 0,
        "os": sh(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
    }


def status_like(path: str, key: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def versions() -> str:
    def pkg(name):
        return sh([str(VENV / "bin" / "python"), "-c",
                   f"import importlib.metadata as m; print(m.version('{name}'))"])

    commit = sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", str(ROOT), "status", "--porcelain", "--", "crates"])
    return ", ".join([
        f"vassal/emperor {commit}{' (+ uncommitted changes in crates/)' if dirty else ''}",
        f"uWSGI {pkg('uwsgi')}", f"gunicorn {pkg('gunicorn')}", f"granian {pkg('granian')}",
        f"bjoern {pkg('bjoern')}", f"Flask {pkg('flask')}", f"Django {pkg('django')}",
        sh([NGINX, "-v"]).replace("nginx version: ", ""), sh([WRK, "-v"]).splitlines()[0].split(" [")[0],
        sh(["/usr/bin/python3", "-V"]) + " (/usr/bin/python3, embedded by the vassal and in the venv)",
    ])


# --------------------------------------------------------------------------------------
# main


CASE_TITLES = {
    1: "nginx → server (uwsgi_pass unix: for vassal, uWSGI and gunicorn `--protocol uwsgi`; "
       "proxy_pass unix: for granian and gunicorn (http), both sync-worker gunicorns; the ceiling is nginx proxy_pass unix: to a second nginx "
       "that answers `return 200` itself; the syscall floor is bench/floor/floor.c behind uwsgi_pass unix:, "
       "which only accepts, reads once, writes a fixed response and closes — the CPU the kernel "
       "charges per connection on this path, below which no server can go; `vassal (keep-alive http)` "
       "is nginx proxy_pass over HTTP/1.1 with `upstream { keepalive 32; }` to the vassal's "
       "http-socket (etc/nginx/example-app-keepalive.conf), and `nginx ceiling (keep-alive)` the "
       "same path to the second nginx), hello world",
    2: "direct HTTP/1.1 keep-alive on 127.0.0.1, hello world, 1 worker process each "
       "(vassal http-socket, uWSGI http11-socket, gunicorn sync worker — which closes every "
       "connection, it has no keep-alive —, granian, bjoern)",
    3: "nginx → Flask and nginx → Django (the same apps for every server), 1 worker",
    4: "nginx → server, large bodies, 1 worker: GET of a 1 MiB response, POST of a 10 MiB upload "
       "read to the end (nginx buffers the upload in memory first); peak RSS is the max of the "
       "summed VmRSS of the server's process tree, sampled every 100 ms",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test): 1 round, 2 s")
    ap.add_argument("--cases", default="1,2,3,4,5", help="comma-separated case numbers")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per case (default 5, quick 1)")
    ap.add_argument("--duration", type=float, help="seconds of measured load per run (default 10, quick 2)")
    ap.add_argument("--warmup", type=float, help="seconds of unmeasured load first (default 2, quick 0.5)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections, cases 1-3 (default 32)")
    ap.add_argument("--emperor-apps", default="50,200", help="app counts for case 5 (default 50,200)")
    ap.add_argument("--emperor-rounds", type=int, help="rounds of case 5 (default 3, quick 1)")
    ap.add_argument("--out", help="markdown file to write (default bench/results/<date>[-quick].md)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    ap.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    q = args.quick
    args.rounds = args.rounds or (1 if q else 5)
    args.duration = args.duration or (2.0 if q else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if q else 2.0)
    args.emperor_rounds = args.emperor_rounds or (1 if q else 3)
    cases = sorted({int(c) for c in args.cases.split(",") if c.strip()})
    if args.duration < 1:
        ap.error("--duration must be at least 1 (wrk counts whole seconds)")

    for binary in ("vassal", "emperor", "emperorctl"):
        if not (RELEASE / binary).is_file():
            ap.error(f"{RELEASE / binary} is missing: cargo build --release --workspace --bins")
    if not (VENV / "bin" / "uwsgi").is_file():
        ap.error(f"{VENV} lacks uwsgi: run scripts/bench.sh (it creates the venv)")

    started = datetime.datetime.now().astimezone()
    load_before = loadavg()
    mach = machine()
    tmp = Path(tempfile.mkdtemp(prefix="emperor-bench-"))
    log(f"temporary directory {tmp}")
    ctx = Ctx(args, tmp)
    sections: list[str] = []
    rows: list[Row] = []
    runs: list[EmperorRun] = []
    hello_import = None
    try:
        if 1 in cases:
            rows1 = []
            for workers in (1, 2):
                rows1 += run_interleaved(ctx, f"1. hello, {workers} worker{'s' if workers > 1 else ''}",
                                         nginx_servers(workers, with_ceiling=True), HELLO, args.connections)
            rows += rows1
            sections.append(f"### Case 1: {CASE_TITLES[1]}\n\n{table(rows1)}")
        if 2 in cases:
            rows2 = run_interleaved(ctx, "2. hello, direct HTTP", direct_servers(), HELLO,
                                    args.connections, probe_fairness=True)
            rows += rows2
            sections.append(
                f"### Case 2: {CASE_TITLES[2]}\n\n{table(rows2, fairness=True)}\n\n"
                f"- keep-alive fairness: after the run, {FAIRNESS_OTHERS} idle keep-alive connections "
                "each send one request while one more connection sends request after request for 1 s; "
                "the column counts the idle ones answered (worst round). A server that serves one "
                "connection at a time per worker thread answers few: wrk's latency then covers only "
                "the connections being served and req/s is that of about one connection.")
        if 3 in cases:
            rows3 = []
            for app in (FLASK, DJANGO):
                rows3 += run_interleaved(ctx, f"3. {'Flask' if app is FLASK else 'Django'}",
                                         nginx_servers(1, with_ceiling=False), app, args.connections)
            rows += rows3
            sections.append(f"### Case 3: {CASE_TITLES[3]}\n\n{table(rows3)}")
        if 4 in cases:
            rows4 = run_interleaved(ctx, "4. 1 MiB response", nginx_servers(1, with_ceiling=False),
                                    DOWNLOAD, 4, sample_rss=True)
            rows4 += run_interleaved(ctx, "4. 10 MiB upload", nginx_servers(1, with_ceiling=False),
                                     UPLOAD, 4, script=BENCH / "upload.lua", sample_rss=True,
                                     upload_mib=10)
            rows += rows4
            sections.append(f"### Case 4: {CASE_TITLES[4]}\n\n{table(rows4, bodies=True)}")
        if 5 in cases:
            hello_import = import_time_ms(App("pid", "hello:pid_application", APPS, False))
            runs = case_emperor(ctx)
            sections.append(
                "### Case 5: the emperor vs `uwsgi --emperor DIR` on the same inis "
                "(`module = hello:pid_application`, `processes = 1`, `master = true`, "
                f"`socket = <dir>/%n.sock`)\n\n{emperor_table(runs)}\n\n"
                "- all answer: from starting the emperor until every app answered a uwsgi-protocol "
                "GET on its socket (one client thread, retrying missing sockets every 20 ms). "
                "all ready (status): every app `ready` in `emperorctl status --json`, polled every 50 ms.\n"
                "- memory measured idle, 1 s after all answered: the emperor process's VmRSS; "
                "one vassal = master + worker, summed Pss from /proc/<pid>/smaps_rollup; "
                "tree = the emperor and every vassal.\n"
                f"- touch → new generation: `touch` of the ini until a request is answered by a new "
                f"worker pid (3 per run, smallest app count). Importing the app takes {hello_import:.1f} ms.\n"
                "- reload under load: wrk -c 16 through nginx for the run's duration while "
                "`emperorctl reload` runs back to back (the uWSGI Emperor: the ini is touched every 3.5 s, "
                "it scans every 3 s); failed = non-2xx + socket errors.")
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = loadavg()

    command = args.command or "python3 bench/run.py " + " ".join(sys.argv[1:])
    header = [
        f"## Benchmark {started:%Y-%m-%d %H:%M %Z}{' (QUICK smoke run: short and noisy, not a result)' if q else ''}",
        "",
        f"- command: `{command}`",
        f"- machine: {mach['nproc']} cores ({mach['cpu']}), {mach['mem_gib']:.1f} GiB, {mach['os']}, "
        f"kernel {mach['kernel']}; load average before {load_before}, after {load_after}",
        f"- the {mach['nproc']} cores are shared by wrk, nginx and the server (and by anything else "
        "running on the machine): requests/s through nginx is bounded by nginx and wrk; "
        "server CPU per request (utime+stime from /proc/<pid>/stat over the server's own process "
        "tree, not nginx, not wrk) is where servers differ",
        f"- {args.rounds} interleaved rounds (A B C A B C ...) of {args.duration:.0f} s "
        f"(+ {args.warmup:g} s warm-up) per server; every server freshly started per run; "
        f"wrk -t 1 -c {args.connections} (4 for case 4); medians over rounds, [min–max] of requests/s; "
        "errors = non-2xx + socket errors summed over rounds; ratios are this server ÷ vassal; "
        "other load = the machine's busy CPU time (/proc/stat) during the measured run minus the "
        "server's, its nginx's, wrk's and this harness's, in % of all cores (median [max] over "
        "rounds): rows with a high value were measured while something else ran",
        f"- versions: {versions()}",
        "",
    ]
    if rows or runs:
        header += ["### Targets (issue 5)", "", targets_table(targets(rows, runs, hello_import)), ""]
    md = "\n".join(header + ["\n\n".join(sections), ""])
    print(md)
    out = Path(args.out) if args.out else BENCH / "results" / f"{started:%Y-%m-%d}{'-quick' if q else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    raw = {
        "started": started.isoformat(), "command": command, "machine": mach,
        "load_before": load_before, "load_after": load_after, "args": vars(args),
        "rows": [{"group": r.group, "server": r.server, "failures": r.failures,
                  "samples": [{"requests": s.wrk.requests, "rps": s.wrk.rps, "p50_ms": s.wrk.p50_ms,
                               "p99_ms": s.wrk.p99_ms, "errors": s.wrk.errors,
                               "mib_s": s.wrk.transfer_mib_s, "cpu_us_per_req": s.cpu_us_per_req,
                               "peak_rss_kib": s.peak_rss_kib, "fairness": s.fairness,
                               "other_cpu_pct": s.other_cpu_pct}
                              for s in r.samples]}
                 for r in rows],
        "emperor_runs": [vars(r) for r in runs],
        "hello_import_ms": hello_import,
    }
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    log(f"wrote {out} and {out.with_suffix('.json').name} (every sample)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
