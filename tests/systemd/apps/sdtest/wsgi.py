"""The app tests/systemd/run.sh serves through nginx inside the container.

/        answers "sdtest CODE_VERSION" (run.sh checks the version to tell old code from new);
/sleep   creates /tmp/sdtest-sleeping, sleeps 2 s, then answers "slept": the in-flight
         request that `systemctl stop emperor` must let finish.
"""

import os
import time

CODE_VERSION = "v1"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/sleep":
        with open("/tmp/sdtest-sleeping", "w") as marker:
            marker.write(str(os.getpid()))
        time.sleep(2)
        body = b"slept\n"
    else:
        body = f"sdtest {CODE_VERSION} pid {os.getpid()}\n".encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
