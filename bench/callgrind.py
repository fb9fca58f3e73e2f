#!/usr/bin/python3
"""User-space instructions per request, counted by valgrind's callgrind (issue 5 profile).

Wall-clock CPU per request on 2 shared cores moves by 10-20 % between runs; instruction
counts do not. This runs one server process tree under `valgrind --tool=callgrind`,
sends N1 and then (in a second run) N2 requests, and prints
(Ir(N2) - Ir(N1)) / (N2 - N1) for the process that served them: startup and import
costs cancel out, what is left is the cost of one request in user space (kernel time
is not counted; see bench/floor for that side).

    python3 bench/callgrind.py                 # every row below (~5 min)
    python3 bench/callgrind.py --only vassal-uwsgi-hello

Rows: vassal and uWSGI on a uwsgi socket (the packet nginx's uwsgi_params sends, one
connection per request, like uwsgi_pass), hello world, Flask and Django; vassal and bjoern on
HTTP/1.1 keep-alive (one connection, sequential requests), hello world. Needs valgrind
and the bench venv (scripts/bench.sh makes it). Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "bench" / "apps"
VENV = ROOT / ".venv-bench"
VASSAL = ROOT / "target" / "release" / "vassal"

# nginx 1.22's uwsgi_params for `GET /` from wrk, in nginx's order.
NGINX_VARS = [
    ("QUERY_STRING", ""), ("REQUEST_METHOD", "GET"), ("CONTENT_TYPE", ""),
    ("CONTENT_LENGTH", ""), ("REQUEST_URI", "/"), ("PATH_INFO", "/"),
    ("DOCUMENT_ROOT", "/usr/share/nginx/html"), ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_SCHEME", "http"), ("REMOTE_ADDR", "127.0.0.1"), ("REMOTE_PORT", "44460"),
    ("SERVER_PORT", "8080"), ("SERVER_NAME", ""), ("HTTP_HOST", "127.0.0.1:8080"),
]


def uwsgi_packet(remote_port: int) -> bytes:
    block = b""
    for k, v in NGINX_VARS:
        if k == "REMOTE_PORT":
            v = str(remote_port)
        kb, vb = k.encode(), v.encode("latin-1")
        block += len(kb).to_bytes(2, "little") + kb + len(vb).to_bytes(2, "little") + vb
    return bytes([0]) + len(block).to_bytes(2, "little") + bytes([0]) + block


def wait_for(connect, deadline: float):
    while True:
        try:
            return connect()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def drive_uwsgi(sock: str, n: int) -> None:
    deadline = time.monotonic() + 120
    for i in range(n):
        def connect():
            c = socket.socket(socket.AF_UNIX)
            try:
                c.connect(sock)
            except OSError:
                c.close()
                raise
            return c
        c = wait_for(connect, deadline)
        c.sendall(uwsgi_packet(40000 + i % 20000))
        data = b""
        while chunk := c.recv(65536):
            data += chunk
        c.close()
        if not data.startswith(b"HTTP/1.1 200"):
            sys.exit(f"request {i}: unexpected answer {data[:80]!r}")


def drive_http(port: int, n: int) -> None:
    c = wait_for(lambda: socket.create_connection(("127.0.0.1", port)), time.monotonic() + 120)
    req = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    buf = b""
    for i in range(n):
        c.sendall(req)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].decode("latin-1")
                m = re.search(r"(?im)^content-length:\s*(\d+)", head)
                total = end + 4 + (int(m.group(1)) if m else 0)
                if len(buf) >= total:
                    if not head.startswith("HTTP/1.1 200"):
                        sys.exit(f"request {i}: unexpected answer {head[:80]!r}")
                    buf = buf[total:]
                    break
            chunk = c.recv(65536)
            if not chunk:
                sys.exit(f"request {i}: connection closed")
            buf += chunk
    c.close()


def ini(d: Path, chdir: Path, module: str, listen: str, venv: bool) -> Path:
    p = d / "app.ini"
    lines = ["[uwsgi]", f"chdir = {chdir}", f"module = {module}", "master = true",
             "processes = 1", listen, "disable-logging = true", "die-on-term = true"]
    if venv:
        lines.append(f"home = {VENV}")
    p.write_text("\n".join(lines) + "\n")
    return p


def count(row: str, n: int, tmp: Path) -> int:
    """Runs the row's server under callgrind for n requests; the serving process's Ir."""
    server, proto, app = row.split("-")
    d = Path(tempfile.mkdtemp(dir=tmp))
    chdir, module, venv = {
        "hello": (APPS, "hello:application", False),
        "flask": (APPS, "flask_app:application", True),
        "django": (APPS / "django_project", "benchsite.wsgi:application", True),
    }[app]
    sock, port = str(d / "app.sock"), 18000 + os.getpid() % 1000
    listen = f"socket = {sock}" if proto == "uwsgi" else f"http-socket = 127.0.0.1:{port}"
    out = d / "cg.%p"
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if server == "vassal":
        argv = vg + [str(VASSAL), "--ini", str(ini(d, chdir, module, listen, venv))]
    elif server == "uwsgi":
        argv = vg + [str(VENV / "bin" / "uwsgi"), "--ini", str(ini(d, chdir, module, listen, venv))]
    elif server == "bjoern":
        argv = vg + [str(VENV / "bin" / "python"), str(APPS / "run_bjoern.py"), "127.0.0.1",
                     str(port), module]
    else:
        raise SystemExit(f"unknown server in {row}")
    with open(d / "server.log", "wb") as log:
        p = subprocess.Popen(argv, cwd=chdir, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        if proto == "uwsgi":
            drive_uwsgi(sock, n)
        else:
            drive_http(port, n)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    # The process that served is the one with the most instructions among those that
    # forked from the first (the worker); bjoern serves in its only process.
    best = 0
    for f in d.glob("cg.*"):
        m = re.search(r"^summary:\s*(\d+)", f.read_text(errors="replace"), re.M)
        if m:
            best = max(best, int(m.group(1)))
    if not best:
        raise SystemExit(f"{row}: no callgrind output; see {d / 'server.log'}")
    return best


ROWS = ["vassal-uwsgi-hello", "uwsgi-uwsgi-hello", "vassal-http-hello", "bjoern-http-hello",
        "vassal-uwsgi-flask", "uwsgi-uwsgi-flask", "vassal-uwsgi-django", "uwsgi-uwsgi-django"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", choices=ROWS)
    ap.add_argument("--n1", type=int, default=1000)
    ap.add_argument("--n2", type=int, default=5000)
    args = ap.parse_args()
    rows = args.only or ROWS
    print("| server | protocol | app | instructions per request (user space) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="emperor-callgrind-") as tmp:
        for row in rows:
            n1, n2 = (args.n1, args.n2) if row.endswith("hello") else (args.n1 // 5, args.n2 // 5)
            a, b = count(row, n1, Path(tmp)), count(row, n2, Path(tmp))
            server, proto, app = row.split("-")
            print(f"| {server} | {proto} | {app} | {(b - a) / (n2 - n1):,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
