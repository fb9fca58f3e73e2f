#!/usr/bin/env bash
# Quick start: the emperor serving the bundled example app, with no root.
#
# Lays out a private copy of etc/emperor the way a server has /etc/emperor and /run:
#   $dir/apps-available/example-app.ini + example-app/   (copied from etc/emperor/apps-available)
#   $dir/apps-enabled/example-app.ini -> ../apps-available/example-app.ini   (ln -s, as in production)
#   $dir/run/                                            (sockets; /run in production)
#   $dir/emperor.ini                                     ([emperor] section pointing at the above)
# with dir=${XDG_RUNTIME_DIR:-/tmp}/emperor-example-$UID, then runs the emperor in the
# foreground. example-app speaks the uwsgi protocol on $dir/run/example-app/socket (what
# nginx's uwsgi_pass talks to). So that curl works without nginx, a second app,
# example-app-http, serves the same code over plain HTTP on 127.0.0.1:${PORT:-8080}.
# Ctrl-C stops the emperor, which stops its vassals gracefully.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
port="${PORT:-8080}"
dir="${XDG_RUNTIME_DIR:-/tmp}/emperor-example-$(id -u)"
bin="$root/target/debug"
sock="$dir/run/emperor/control.sock"

cargo build -q -p emperor -p emperorctl -p vassal --bins

if "$bin/emperorctl" --socket "$sock" status >/dev/null 2>&1; then
    echo "an example emperor already runs on $dir: stop it (Ctrl-C in its terminal) first" >&2
    exit 1
fi
rm -rf "$dir"
mkdir -p "$dir/apps-available" "$dir/apps-enabled" "$dir/run"
cp -R etc/emperor/apps-available/. "$dir/apps-available/"
cat >"$dir/apps-available/example-app-http.ini" <<INI
[uwsgi]
; example-app once more, over plain HTTP for curl (the quick start runs no nginx).
ini = %d../apps-available/example-app.ini
http-socket = 127.0.0.1:$port
INI
ln -s ../apps-available/example-app.ini "$dir/apps-enabled/example-app.ini"
ln -s ../apps-available/example-app-http.ini "$dir/apps-enabled/example-app-http.ini"
cat >"$dir/emperor.ini" <<INI
[emperor]
apps-enabled = $dir/apps-enabled
run-dir = $dir/run
control-socket = $sock
vassal = $bin/vassal
INI

cat <<MSG
The emperor is starting on $dir (Ctrl-C stops it). In another terminal:

    curl http://127.0.0.1:$port/

    export EMPEROR_CONTROL_SOCKET=$sock
    $bin/emperorctl status
    $bin/emperorctl reload example-app      # blue/green; returns once the new generation serves
    touch $dir/apps-available/example-app.ini   # the same, through the watch
    $bin/emperorctl stop example-app-http   # then: start example-app-http
    rm $dir/apps-enabled/example-app-http.ini   # stops it; ln -s ../apps-available/example-app-http.ini back

nginx in front of example-app:
    location / { include uwsgi_params; uwsgi_pass unix:$dir/run/example-app/socket; }

MSG
exec "$bin/emperor" --config "$dir/emperor.ini"
