"""The bundled example app: a plain WSGI callable with no dependencies."""

import os
import platform


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    body = (
        "Hello from example-app!\n"
        f"served by vassal worker pid {os.getpid()} on Python {platform.python_version()}\n"
        f"you asked for {environ.get('REQUEST_METHOD')} {path}\n"
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
