#!/usr/bin/env python3
"""A bounded load client for tests/systemd/run.sh (runs inside the container).

    load.py URL SECONDS CONCURRENCY PROGRESS_FILE

Each of CONCURRENCY threads sends GET URL on a fresh connection, one after the other,
until SECONDS have passed. A request fails when it raises or answers anything but 200.
PROGRESS_FILE is created after the first answered request (run.sh waits for it before it
disturbs the emperor). Prints one line: "N requests, F failed (...)" with the errors by
kind and the span from the first to the last failure.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse


def main():
    url, seconds, concurrency, progress = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    stats = {"requests": 0, "failed": 0, "errors": {}, "fail_times": []}
    progress_written = threading.Event()

    def one():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request("GET", parts.path or "/")
            response = conn.getresponse()
            response.read()
            return None if response.status == 200 else f"http {response.status}"
        except Exception as e:  # every failure counts; its kind is reported
            return type(e).__name__
        finally:
            conn.close()

    def worker():
        while time.monotonic() < deadline:
            error = one()
            with lock:
                stats["requests"] += 1
                if error is None:
                    if not progress_written.is_set():
                        progress_written.set()
                        with open(progress, "w") as f:
                            f.write("started\n")
                else:
                    stats["failed"] += 1
                    stats["errors"][error] = stats["errors"].get(error, 0) + 1
                    stats["fail_times"].append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times = stats["fail_times"]
    span_ms = round((max(times) - min(times)) * 1000) if times else 0
    print(
        f"{stats['requests']} requests, {stats['failed']} failed "
        f"(errors {json.dumps(stats['errors'])}, failures over {span_ms} ms, "
        f"{concurrency} connections, {seconds:g} s)"
    )


if __name__ == "__main__":
    main()
