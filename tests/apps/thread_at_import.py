"""An app that starts a thread while it is imported (like apps that open connection pools
or schedulers at import). It answers {"alive": ..., "ticks": ...} about that thread."""
import json
import os
import threading
import time

ticks = 0


def _tick():
    global ticks
    while True:
        ticks += 1
        time.sleep(0.01)


_thread = threading.Thread(target=_tick, daemon=True)
_thread.start()


def application(environ, start_response):
    body = json.dumps({"alive": _thread.is_alive(), "ticks": ticks, "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
