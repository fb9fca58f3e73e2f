"""An app with a syntax error (the vassal must report it and exit non-zero)."""


def application(environ, start_response)
    start_response("200 OK", [])
    return [b"unreachable"]
