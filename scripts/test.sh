#!/usr/bin/env bash
# The project's test command (the README names it; .ci/run runs it).
#
# Works on a fresh Debian 12 with Rust and Python 3, as root:
#   1. cargo fmt --check and cargo clippy -D warnings (fail fast);
#   2. installs nginx (Debian package) if it is missing;
#   3. creates or refreshes the test virtualenv .venv-test from Debian's /usr/bin/python3
#      (the interpreter the vassal embeds) with tests/requirements.txt (Flask, Django);
#   4. cargo build --workspace --bins, then cargo test --workspace with
#      EMPEROR_TEST_VENV pointing at the venv.
#      That includes tests/systemd.rs (the package under a real systemd 252 in
#      systemd-nspawn; root with CAP_SYS_ADMIN, else it prints SKIPPED): its first run
#      installs systemd-container + debootstrap, caches a rootfs under
#      /var/cache/emperor-nspawn/ and makes a release build for its development .deb.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p emperor-e2e -- seed).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
python=/usr/bin/python3
venv="$root/.venv-test"
requirements="$root/tests/requirements.txt"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# The packaging test runs systemd-analyze verify and systemd-tmpfiles (package
# `systemd`; they work without systemd as PID 1).
if ! command -v systemd-analyze >/dev/null 2>&1; then
    step "installing systemd (for systemd-analyze)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "systemd-analyze is missing and this is not root: install the 'systemd' package first" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y systemd
fi

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    step "installing nginx (apt-get)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "nginx is missing and this is not root: install the 'nginx' package first" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y nginx
    # The package starts a system nginx on :80; the tests run their own instances.
    if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx 2>/dev/null || true; fi
else
    echo "nginx present: $(nginx -v 2>&1 || /usr/sbin/nginx -v 2>&1)"
fi

# The venv is stale when it is missing, broken, made from another interpreter, or the
# requirements changed since it was filled.
stamp="$venv/.emperor-test-stamp"
want_stamp="$($python -c 'import sys; print(sys.executable, sys.version)') $(sha256sum "$requirements" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null \
    || [ "$(cat "$stamp" 2>/dev/null)" != "$want_stamp" ]; then
    step "creating the test venv $venv from $python"
    if ! $python -m venv --help >/dev/null 2>&1; then
        echo "$python has no venv module: apt-get install python3-venv" >&2
        exit 1
    fi
    rm -rf "$venv"
    $python -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want_stamp" >"$stamp"
else
    echo "test venv up to date: $venv"
fi
"$venv/bin/python" -c 'import importlib.metadata as m; print("venv:", "Flask", m.version("flask"), "Django", m.version("django"))'

step "cargo build --workspace --bins"
cargo build --workspace --bins

step "cargo test --workspace (EMPEROR_TEST_VENV=$venv)"
EMPEROR_TEST_VENV="$venv" cargo test --workspace --no-fail-fast "$@"

step "all tests passed"
