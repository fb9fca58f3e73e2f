"""An app that cannot be imported: its dependency does not exist."""
import emperor_e2e_module_that_does_not_exist  # noqa: F401


def application(environ, start_response):
    start_response("200 OK", [])
    return [b"unreachable"]
