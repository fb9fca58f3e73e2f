"""Large bodies (case 4): a 1 MiB response and an upload that is read to the end."""

ONE_MIB = b"x" * (1024 * 1024)


def download(environ, start_response):
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(ONE_MIB)))],
    )
    return [ONE_MIB]


def upload(environ, start_response):
    stream = environ["wsgi.input"]
    try:
        left = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        left = 0
    total = 0
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        total += len(chunk)
        left -= len(chunk)
    body = str(total).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
