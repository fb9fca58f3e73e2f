"""One WSGI app, one route per PEP 3333 feature the end-to-end tests exercise.

CLOSE_LOG (environment variable, optional): a file that the /close and /stream iterables
append a line to when their close() is called, so a test can count the calls.
"""
import hashlib
import json
import os
import sys
import tempfile


def _json(start_response, doc, status="200 OK"):
    out = json.dumps(doc, sort_keys=True).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]


def _query(environ):
    out = {}
    for part in environ.get("QUERY_STRING", "").split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


class ClosingIterable:
    """Yields `count` chunks of `size` bytes; records close() calls in CLOSE_LOG."""

    def __init__(self, tag, count, size):
        self.tag = tag
        self.left = count
        self.chunk = b"x" * size
        self.closed = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.left <= 0:
            raise StopIteration
        self.left -= 1
        return self.chunk

    def close(self):
        self.closed += 1
        path = os.environ.get("CLOSE_LOG")
        if path:
            with open(path, "a") as f:
                f.write("close %s %d\n" % (self.tag, self.closed))


def write_app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written-1;")
    write(b"written-2;")
    return [b"returned"]


def exc_info_app(environ, start_response):
    # The error-middleware pattern: headers were set, then the app fails and replaces
    # them with an error response by calling start_response again with exc_info.
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Not-Sent", "1")])
    try:
        raise ValueError("handled by middleware")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"middleware error page"]


def exc_info_late_app(environ, start_response):
    # exc_info after the headers were sent: PEP 3333 says start_response re-raises it.
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial;")
    try:
        raise KeyError("late")
    except KeyError:
        try:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        except KeyError:
            sys.stderr.write("exc_info re-raised as PEP 3333 says\n")
            sys.stderr.flush()
            return [b"reraised-ok"]
    return [b"not-reraised"]


def file_wrapper_app(environ, start_response):
    f = tempfile.TemporaryFile()
    f.write(b"0123456789" * 10000 + b"END")
    f.seek(0)
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "100003")])
    return environ["wsgi.file_wrapper"](f, 8192)


def file_wrapper_no_fileno_app(environ, start_response):
    class Reader:
        def __init__(self):
            self.data = [b"abc", b"def", b""]

        def read(self, n=-1):
            return self.data.pop(0)

        def close(self):
            pass

    start_response("200 OK", [("Content-Type", "text/plain")])
    return environ["wsgi.file_wrapper"](Reader(), 4096)


def close_app(environ, start_response):
    q = _query(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingIterable(q.get("tag", "close"), int(q.get("count", "3")), int(q.get("size", "5")))


def download_app(environ, start_response):
    # Generated on the fly: the app itself never holds more than one 64 KiB chunk.
    q = _query(environ)
    total = int(q.get("bytes", str(20 * 1024 * 1024)))
    chunk = bytes(range(256)) * 256
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("cl") == "1":
        headers.append(("Content-Length", str(total)))
    start_response("200 OK", headers)

    def gen():
        left = total
        while left > 0:
            piece = chunk[: min(left, len(chunk))]
            left -= len(piece)
            yield piece

    return gen()


def upload_app(environ, start_response):
    inp = environ["wsgi.input"]
    h = hashlib.sha256()
    n = 0
    while True:
        block = inp.read(65536)
        if not block:
            break
        n += len(block)
        h.update(block)
    return _json(start_response, {"bytes": n, "sha256": h.hexdigest()})


def readline_app(environ, start_response):
    inp = environ["wsgi.input"]
    mode = _query(environ).get("mode", "readline")
    if mode == "readline":
        lines = []
        while True:
            line = inp.readline()
            if not line:
                break
            lines.append(line)
    elif mode == "readlines":
        lines = inp.readlines()
    elif mode == "iter":
        lines = [line for line in inp]
    elif mode == "sized":
        # readline(size) must stop at `size` bytes even inside a line.
        lines = [inp.readline(4), inp.readline(), inp.read()]
    else:
        raise ValueError(mode)
    return _json(start_response, {"lines": [line.decode("latin-1") for line in lines]})


def cookies_app(environ, start_response):
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "a=1; Path=/"),
            ("Set-Cookie", "b=2; Path=/; HttpOnly"),
            ("Set-Cookie", "c=3; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
        ],
    )
    return [b"cookies"]


def head_app(environ, start_response):
    body = b"this body must not be sent for HEAD"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def head_unsized_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"unsized body, ", b"never sent for HEAD"]


def raise_before_app(environ, start_response):
    raise RuntimeError("boom-before-start-response")


def raise_after_app(environ, start_response):
    # Content-Length announces more than is sent, so truncation is visible on any socket.
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1000")])

    def gen():
        yield b"first chunk;"
        raise RuntimeError("boom-after-first-chunk")

    return gen()


def slow_body_app(environ, start_response):
    # Reads the whole declared body (the client will disconnect half way).
    data = environ["wsgi.input"].read()
    return _json(start_response, {"bytes": len(data)})


def sleep_app(environ, start_response):
    # Marks that the request reached the app (in CLOSE_LOG), then takes its time: used to
    # check that a graceful stop lets an in-flight request finish.
    import time

    path = os.environ.get("CLOSE_LOG")
    if path:
        with open(path, "a") as f:
            f.write("sleep-start\n")
    time.sleep(int(_query(environ).get("ms", "1000")) / 1000.0)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"slept"]


START_CASES = {
    # (status, headers) handed to start_response for /start?case=NAME
    "bare_code": ("200", [("Content-Length", "2")]),
    "latin1": ("200 OK", [("X-Name", "caf\u00e9"), ("Content-Length", "2")]),
    "two_lengths": ("200 OK", [("Content-Length", "2"), ("content-length", "2")]),
    "crlf_in_value": ("200 OK", [("X-Bad", "a\r\nInjected: 1")]),
    "not_latin1": ("200 OK", [("X-Euro", "\u20ac")]),
    "bad_status": ("OK", []),
    "not_a_list": ("200 OK", "Content-Type: text/plain"),
    "not_a_pair": ("200 OK", [("Content-Type",)]),
    "bytes_name": ("200 OK", [(b"Content-Type", "text/plain")]),
}


_ticker = []


def ticker_app(environ, start_response):
    """Starts (once) a thread that writes an ever-growing count to ?file= every ms."""
    path = _query(environ)["file"]
    if not _ticker:
        import threading
        import time

        def tick():
            n = 0
            while True:
                n += 1
                with open(path + ".tmp", "w") as f:
                    f.write(str(n))
                os.replace(path + ".tmp", path)
                time.sleep(0.001)

        t = threading.Thread(target=tick, daemon=True)
        t.start()
        _ticker.append(t)
    return _json(start_response, {"started": True})


_kept = {}


def keep_app(environ, start_response):
    """Keeps this request's wsgi.input, start_response and write for /use_kept."""
    write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    _kept.update(input=environ["wsgi.input"], start_response=start_response, write=write)
    return [b"kept"]


def use_kept_app(environ, start_response):
    """Uses the objects /keep kept (they belong to an earlier request), then answers
    normally; reports what the kept objects did."""
    report = {}
    try:
        _kept["write"](b"INJECTED")
        report["write"] = "no error"
    except Exception as e:
        report["write"] = type(e).__name__
    try:
        report["input"] = _kept["input"].read().decode("latin-1")
    except Exception as e:
        report["input"] = type(e).__name__
    try:
        _kept["start_response"]("500 Oops", [])
        report["start_response"] = "no error"
    except Exception as e:
        report["start_response"] = type(e).__name__
    if _query(environ).get("drop"):
        _kept.clear()
    return _json(start_response, report)


def start_app(environ, start_response):
    status, headers = START_CASES[_query(environ)["case"]]
    start_response(status, headers)
    return [b"ok"]


ROUTES = {
    "/write": write_app,
    "/exc_info": exc_info_app,
    "/exc_info_late": exc_info_late_app,
    "/file_wrapper": file_wrapper_app,
    "/file_wrapper_read": file_wrapper_no_fileno_app,
    "/close": close_app,
    "/download": download_app,
    "/upload": upload_app,
    "/lines": readline_app,
    "/cookies": cookies_app,
    "/head": head_app,
    "/head_unsized": head_unsized_app,
    "/raise_before": raise_before_app,
    "/raise_after": raise_after_app,
    "/slow_body": slow_body_app,
    "/sleep": sleep_app,
    "/start": start_app,
    "/ticker": ticker_app,
    "/keep": keep_app,
    "/use_kept": use_kept_app,
}


def application(environ, start_response):
    app = ROUTES.get(environ.get("PATH_INFO", ""))
    if app is None:
        body = b"no route " + environ.get("PATH_INFO", "").encode("latin-1")
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    return app(environ, start_response)
