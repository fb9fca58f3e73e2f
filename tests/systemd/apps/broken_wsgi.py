"""New code for sdtest that fails to import: run.sh installs it as sdtest's wsgi.py and
reloads, and the old generation must keep serving."""

raise ImportError("sdtest: this new code fails to import on purpose (tests/systemd)")
