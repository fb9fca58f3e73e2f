"""Hello-world WSGI app used by every server in the benchmark (cases 1, 2 and 5)."""

import os

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]


def pid_application(environ, start_response):
    """Answers with the serving process's pid (case 5: detects a new generation)."""
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
