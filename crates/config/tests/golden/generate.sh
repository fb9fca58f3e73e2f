#!/bin/sh
# Regenerates the *.expected files from a real uWSGI 2.0 (`uwsgi --show-config`).
# Usage: UWSGI=/tmp/uwsgi-venv/bin/uwsgi ./generate.sh   (run from any directory)
#
# Each NAME.ini is run as `uwsgi --ini NAME.ini`, each NAME.args as `uwsgi <one argument
# per line>`, from this directory, with a fixed environment. A first
# `--socket /nonexistent/...` makes uWSGI exit right after printing the configuration
# (the bind fails before any real socket is bound); that line and `show-config = true`
# are removed. This directory's absolute path is replaced by @DIR@ so the files do not
# depend on the checkout location.
set -eu
UWSGI=${UWSGI:-uwsgi}
cd "$(dirname "$0")"
DIR=$(pwd -P)
run() {
    name=$1; shift
    env -i PATH=/usr/bin:/bin HOME=/root GOLDEN_PORT=8123 GOLDEN_HOME=/home/golden \
        timeout -s KILL 10 "$UWSGI" --socket /nonexistent/golden.sock "$@" --show-config 2>&1 \
        | sed -n '/^\[uwsgi\]$/,/^;end of configuration$/p' \
        | sed '1d;$d' \
        | grep -v -x -e 'socket = /nonexistent/golden.sock' -e 'show-config = true' \
        | sed "s|$DIR|@DIR@|g" > "$name.expected" || true
    echo "$name: $(wc -l < "$name.expected") options"
}
for f in *.ini; do
    run "${f%.ini}" --ini "$f"
done
for f in *.args; do
    # shellcheck disable=SC2046
    set -- 
    while IFS= read -r arg; do set -- "$@" "$arg"; done < "$f"
    run "${f%.args}" "$@"
done
