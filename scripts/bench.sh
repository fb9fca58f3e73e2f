#!/usr/bin/env bash
# The benchmark (issue 5): vassal/emperor vs uWSGI, gunicorn, granian and bjoern.
#
#   scripts/bench.sh                      # full run (~35-45 min on 2 cores), writes bench/results/<date>.md
#   scripts/bench.sh --quick              # smoke run: 1 round of 2 s per server (noisy; not a result)
#   scripts/bench.sh --cases 1,2 --rounds 3 --duration 5
#
# On a fresh Debian 12 with Rust and Python 3 it first installs what is missing (as root):
#   1. Debian packages nginx, wrk, libev-dev (bjoern), libpcre2-dev and python3-dev (uWSGI
#      builds from source), python3-venv — apt-get only when something is missing;
#   2. the venv .venv-bench from /usr/bin/python3 (the interpreter the vassal embeds) with
#      bench/requirements.txt (pinned), refreshed when the requirements change;
#   3. cargo build --release --workspace --bins;
# then runs bench/run.py (stdlib Python) with the arguments given here, which prints the
# markdown table and writes it to bench/results/. Options: --quick, --cases 1,2,..,
# --rounds N, --duration S, --warmup S, --connections N, --emperor-apps 50,200,
# --emperor-rounds N, --out FILE, --keep (keep the temp dir with every server's log);
# see `python3 bench/run.py --help`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
python=/usr/bin/python3
venv="$root/.venv-bench"
requirements="$root/bench/requirements.txt"

step() { printf '\n==> %s\n' "$*" >&2; }

case " $* " in
*" -h "* | *" --help "*) exec $python "$root/bench/run.py" --help ;;
esac

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
for pkg in libev-dev libpcre2-dev python3-dev python3-venv; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]} (apt-get)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages and this is not root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}" build-essential
    # The nginx package starts a system nginx on :80; the benchmark runs its own instances.
    if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx 2>/dev/null || true; fi
fi

# The venv is stale when it is missing, broken, made from another interpreter, or the
# requirements changed since it was filled.
stamp="$venv/.emperor-bench-stamp"
want_stamp="$($python -c 'import sys; print(sys.executable, sys.version)') $(sha256sum "$requirements" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null \
    || [ "$(cat "$stamp" 2>/dev/null)" != "$want_stamp" ]; then
    step "creating the benchmark venv $venv from $python (builds uWSGI and bjoern: a few minutes)"
    rm -rf "$venv"
    $python -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want_stamp" >"$stamp"
else
    echo "benchmark venv up to date: $venv" >&2
fi

step "cargo build --release --workspace --bins"
cargo build --release --workspace --bins

step "bench/run.py $*"
exec $python "$root/bench/run.py" --command "scripts/bench.sh $*" "$@"
