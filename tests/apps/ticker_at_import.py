"""Starts, while imported, a thread that writes an ever-growing count to $TICKS_FILE
every millisecond (like apps that start schedulers or pool keepers at import)."""
import os
import threading
import time

PATH = os.environ["TICKS_FILE"]


def _tick():
    n = 0
    while True:
        n += 1
        with open(PATH + ".tmp", "w") as f:
            f.write(str(n))
        os.replace(PATH + ".tmp", PATH)
        time.sleep(0.001)


threading.Thread(target=_tick, daemon=True).start()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
