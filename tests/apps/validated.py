"""An app wrapped in wsgiref.validate.validator: any PEP 3333 violation by the server
(environ types, wsgi.input/errors API, start_response contract, close()) raises an
AssertionError inside the request, which the test sees as a non-200 response or a traceback.
"""
from wsgiref.validate import validator


def _app(environ, start_response):
    inp = environ["wsgi.input"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    first = inp.readline()
    # The validator insists on read(size) with exactly one argument (PEP 3333).
    rest = inp.read(length - len(first)) if length > len(first) else b""
    environ["wsgi.errors"].write("validated app saw %d body bytes\n" % (len(first) + len(rest)))
    environ["wsgi.errors"].flush()
    body = b"validated:" + environ["REQUEST_METHOD"].encode("latin-1") + b":" + first + rest
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


application = validator(_app)
