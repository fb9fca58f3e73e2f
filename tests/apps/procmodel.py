"""Process-model test app: every response names the worker's pid.

/            -> "<pid>"
/sleep?s=N   -> sleeps N seconds (time.sleep releases the GIL), then "<pid>"
/leak?kb=N   -> keeps N KiB more memory alive for the life of the worker, then "<pid>"
/raise       -> raises (counted as an exception in the worker stats)
"""
import os
import time

_leaked = []


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = environ.get("QUERY_STRING", "")
    args = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    if path == "/sleep":
        seconds = float(args.get("s", "1"))
        time.sleep(seconds)  # SLEEPING-LINE (the harakiri test looks for this line)
    elif path == "/leak":
        # bytes filled with data, so the pages are really resident.
        _leaked.append(b"x" * (int(args.get("kb", "1024")) * 1024))
    elif path == "/raise":
        raise RuntimeError("raised on purpose")
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
