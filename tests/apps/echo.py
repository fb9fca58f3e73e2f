"""Echo app: returns the WSGI environ and the request body as JSON.

Every environ value is shown as a string (non-str values through repr(), so wsgi.* flags
appear as "True"/"False"/"(1, 0)"). The body is read to the end from wsgi.input and sent
back base64-encoded. PATH_INFO is also shown as the hex of its latin-1 bytes, which is how
PEP 3333 says a server must decode the raw path.
"""
import base64
import json


def application(environ, start_response):
    body = environ["wsgi.input"].read()
    env = {}
    for key, value in environ.items():
        env[key] = value if isinstance(value, str) else repr(value)
    doc = {
        "environ": env,
        "body_b64": base64.b64encode(body).decode("ascii"),
        "path_info_hex": environ.get("PATH_INFO", "").encode("latin-1").hex(),
    }
    out = json.dumps(doc, sort_keys=True).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
