#!/usr/bin/env bash
# Quick start: serve the bundled example app with no root.
# HTTP on 127.0.0.1:${PORT:-8080} for curl, and the uwsgi protocol on a unix socket
# for nginx (uwsgi_pass unix:...). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p vassal
run_dir="${XDG_RUNTIME_DIR:-/tmp}/emperor-example-$(id -u)"
mkdir -p "$run_dir"
port="${PORT:-8080}"
cat <<MSG
example-app is starting. Try:
    curl http://127.0.0.1:$port/
uwsgi socket for nginx: $run_dir/socket   (include uwsgi_params; uwsgi_pass unix:$run_dir/socket;)
MSG
exec target/debug/vassal --ini etc/emperor/apps-available/example-app.ini \
    --http-socket "127.0.0.1:$port" --socket "$run_dir/socket"
