#!/usr/bin/env bash
# The emperor under a real systemd (Debian 12's systemd 252 as PID 1 of a systemd-nspawn
# container), from `dpkg -i` to `dpkg -P`. Needs root with CAP_SYS_ADMIN; tests/systemd.rs
# runs it (and skips elsewhere). See shared/reference/systemd.md for how and why.
#
#   EMPEROR_DEB=/path/to/emperor_X_amd64.deb tests/systemd/run.sh
#   tests/systemd/run.sh --rootfs-only     (only build the cached rootfs, if missing)
#
# Once per package list, a Debian rootfs is built with debootstrap and cached under
# /var/cache/emperor-nspawn/<hash>/ (built in a temp dir and renamed, so an interrupted build
# is never reused). Every run boots it on a throw-away overlayfs, installs the package and
# prints one `CHECK <name>: ok|FAIL <detail>` line per check, with figures. Exits 1 if any
# check failed. Every wait has a deadline; a failed check prints the emperor's journal.
# The host side (rootfs, overlay, nspawn, `inside`, the EXIT trap) is in container.sh.
set -Eeuo pipefail
# Functions here are called through wait_for and load_during.
# shellcheck disable=SC2317

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# shellcheck source=tests/systemd/container.sh
. "$here/container.sh"

# --- preconditions ---------------------------------------------------------------------

rootfs_only=false
case "${1:-}" in
    --rootfs-only) rootfs_only=true ;;
    "") ;;
    *) die "usage: EMPEROR_DEB=FILE.deb $0 | $0 --rootfs-only" ;;
esac
[ "$(id -u)" -eq 0 ] || die "must run as root (systemd-nspawn, mount, nsenter)"
if ! $rootfs_only; then
    [ -n "${EMPEROR_DEB:-}" ] || die "EMPEROR_DEB must name the .deb to install"
    [ -f "$EMPEROR_DEB" ] || die "EMPEROR_DEB=$EMPEROR_DEB does not exist"
fi


install_host_tools
ensure_rootfs
$rootfs_only && exit 0
make_overlay

# --- checks ----------------------------------------------------------------------------

failed=0
pass() { echo "CHECK $1: ok${2:+ ($2)}"; }
fail() {
    echo "CHECK $1: FAIL $2"
    failed=1
    echo "--- journalctl -u emperor -n 50 (inside) ---"
    inside journalctl -u emperor -n 50 --no-pager 2>&1 || true
    echo "---"
}

# wait_for TIMEOUT_S COMMAND...: polls COMMAND every 0.1 s until it succeeds or the deadline.
wait_for() {
    local deadline=$(($(now_ms) + $1 * 1000))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# get PORT [PATH]: the body of a 200 answer from the container's nginx, else fails.
get() { inside curl -fsS --max-time 5 "http://127.0.0.1:$1${2:-/}"; }
serves() { get "$@" >/dev/null; }
unit_prop() { inside systemctl show -p "$1" --value emperor; }
restarts_above() { [ "$(unit_prop NRestarts)" -gt "$1" ]; }
exited() { ! kill -0 "$1"; }
# The inode of sdtest's socket (a new one means the socket did not survive the emperor).
socket_inode() { inside stat -c %i /run/sdtest/socket 2>/dev/null || echo none; }
# app_error APP: prints the first line of APP's `error` in `emperorctl status --json`;
# fails when it has none.
app_error() {
    inside emperorctl status --json 2>/dev/null | inside python3 -c '
import json, sys
def apps(v):
    if isinstance(v, dict):
        if "name" in v and "state" in v:
            yield v
        for x in v.values():
            yield from apps(x)
    elif isinstance(v, list):
        for x in v:
            yield from apps(x)
errors = [a.get("error") for a in apps(json.load(sys.stdin)) if a["name"] == sys.argv[1]]
if not errors or not errors[0]:
    sys.exit(1)
print(errors[0].strip().splitlines()[-1])
' "$1"
}

boot

log "installing $(basename "$EMPEROR_DEB")"
mkdir -p "$merged/root/emperor-test"
cp "$EMPEROR_DEB" "$merged/root/emperor-test/emperor.deb"
cp "$here/load.py" "$merged/root/emperor-test/load.py"
t0=$(now_ms)
if ! inside dpkg -i /root/emperor-test/emperor.deb >"$tmp/dpkg.log" 2>&1; then
    cat "$tmp/dpkg.log"
    fail install "dpkg -i exited non-zero"
fi
install_ms=$(($(now_ms) - t0))
active=$(inside systemctl is-active emperor || true)
enabled=$(inside systemctl is-enabled emperor || true)
if [ "$active" = active ] && [ "$enabled" = enabled ]; then
    nofile=$(inside awk '/^Max open files/ { print $4 "/" $5 }' "/proc/$(unit_prop MainPID)/limits" || true)
    pass install "dpkg -i ${install_ms} ms; is-active $active, is-enabled $enabled; emperor's open-files limit (soft/hard) $nofile"
else
    fail install "is-active '$active', is-enabled '$enabled'"
fi

# Apps: example-app exactly as shipped in etc/, and sdtest (tests/systemd/apps), served by
# nginx on 127.0.0.1:8001 and :8002.
avail="$merged/etc/emperor/apps-available"
mkdir -p "$avail" "$merged/etc/emperor/apps-enabled"
cp -r "$here/../../etc/emperor/apps-available/example-app.ini" "$here/../../etc/emperor/apps-available/example-app" "$avail/"
cp -r "$here/apps/sdtest.ini" "$here/apps/sdtest" "$avail/"
rm -f "$merged/etc/nginx/sites-enabled/default"
cp "$here/nginx-site.conf" "$merged/etc/nginx/sites-enabled/emperor-test.conf"
inside systemctl reload-or-restart nginx
t0=$(now_ms)
inside ln -s /etc/emperor/apps-available/example-app.ini /etc/emperor/apps-enabled/example-app.ini
inside ln -s /etc/emperor/apps-available/sdtest.ini /etc/emperor/apps-enabled/sdtest.ini
if ! wait_for 30 inside test -S /run/example-app/socket; then
    fail app "no /run/example-app/socket 30 s after linking example-app.ini"
elif ! wait_for 30 serves 8001; then
    fail app "nginx -> example-app did not answer 200 within 30 s: $(get 8001 2>&1 | sed -n 1p)"
else
    pass app "example-app answered 200 through nginx $(($(now_ms) - t0)) ms after the link: $(get 8001 | sed -n 1p)"
fi
wait_for 30 serves 8002 || fail app-sdtest "nginx -> sdtest did not answer 200 within 30 s"

# STATUS= from sd_notify, as `systemctl status` shows it.
status_shows() {
    status_line=$(inside systemctl status emperor --no-pager 2>/dev/null | sed -n 's/^ *Status: "\(.*\)"$/\1/p' || true)
    [[ "$status_line" == *"$1"* ]]
}
if wait_for 10 status_shows "2 apps ready"; then
    pass status "systemctl status: Status: \"$status_line\""
else
    status_shows "" || true
    fail status "systemctl status shows Status: '$status_line' (StatusText '$(unit_prop StatusText)'), want '2 apps ready'"
fi

# systemctl reload: every app gets a new generation, and both still serve.
pids_before=$(get 8002 || true)
t0=$(now_ms)
if inside systemctl reload emperor; then
    reload_ms=$(($(now_ms) - t0))
    if wait_for 10 serves 8001 && wait_for 10 serves 8002; then
        pass reload "systemctl reload exit 0 in ${reload_ms} ms; both apps serve; sdtest before: ${pids_before}, after: $(get 8002 || true)"
    else
        fail reload "apps stopped serving after systemctl reload"
    fi
else
    fail reload "systemctl reload emperor exited $?"
fi

# New code that fails to import: the old generation must keep serving, and systemctl reload
# must fail (ExecReload=emperorctl reload --all waits for every app's verdict).
cp "$here/apps/broken_wsgi.py" "$avail/sdtest/wsgi.py"
set +e
inside systemctl reload emperor
reload_rc=$?
set -e
# Watch the app until the emperor reports the new generation's import error (the `error`
# of `emperorctl status --json`), and 1 s beyond, counting answers that are not the old
# code's 200. 30 s at most.
samples=0
bad=0
error_seen=""
window_end=$(($(now_ms) + 30000))
while [ "$(now_ms)" -lt "$window_end" ]; do
    samples=$((samples + 1))
    body=$(get 8002 2>&1) || body="failed: $body"
    [[ "$body" == "sdtest v1"* ]] || bad=$((bad + 1))
    if [ -z "$error_seen" ] && error_seen=$(app_error sdtest); then
        window_end=$(($(now_ms) + 1000))
    fi
    sleep 0.1
done
detail="$samples requests while waiting for the emperor's verdict; emperorctl error: ${error_seen:-none within 30 s}"
if [ "$bad" -ne 0 ]; then
    fail reload-failing-app "exit $reload_rc; the app stopped serving: $bad of $detail"
elif [ "$reload_rc" -eq 0 ]; then
    fail reload-failing-app "systemctl reload exited 0 although sdtest's new code failed; $detail"
else
    pass reload-failing-app "systemctl reload exited $reload_rc; old code kept serving: all $detail"
fi
cp "$here/apps/sdtest/wsgi.py" "$avail/sdtest/wsgi.py"
inside systemctl reload emperor || log "systemctl reload after restoring sdtest exited $?"
wait_for 30 serves 8002 || fail reload-restore "sdtest does not serve after its good code was restored"

# systemctl stop lets an in-flight request finish: /sleep takes 2 s.
inside rm -f /tmp/sdtest-sleeping
inside curl -sS --max-time 30 -o /root/emperor-test/sleep.out -w '%{http_code}' http://127.0.0.1:8002/sleep \
    >"$tmp/sleep.code" 2>"$tmp/sleep.err" &
curl_pid=$!
background_pids+=("$curl_pid")
if ! wait_for 10 inside test -e /tmp/sdtest-sleeping; then
    fail stop-inflight "the /sleep request did not reach the app within 10 s"
else
    t0=$(now_ms)
    inside systemctl stop emperor || log "systemctl stop emperor exited $?"
    stop_ms=$(($(now_ms) - t0))
    set +e
    wait "$curl_pid"
    set -e
    code=$(cat "$tmp/sleep.code")
    body=$(cat "$merged/root/emperor-test/sleep.out" 2>/dev/null || true)
    state=$(inside systemctl is-active emperor || true)
    if [ "$code" = 200 ] && [ "$body" = slept ] && [ "$state" = inactive ]; then
        pass stop-inflight "in-flight /sleep answered 200 'slept'; systemctl stop took ${stop_ms} ms; is-active $state"
    else
        fail stop-inflight "in-flight /sleep got '$code' '$body' $(cat "$tmp/sleep.err"); stop took ${stop_ms} ms; is-active $state"
    fi
fi
if ! inside systemctl start emperor; then
    fail start "systemctl start emperor exited non-zero"
elif ! wait_for 30 serves 8002; then
    fail start "sdtest does not serve 30 s after systemctl start"
fi

# Watchdog: a frozen emperor (SIGSTOP) is restarted by systemd. WatchdogSec=3s in a
# drop-in keeps this short.
mkdir -p "$merged/etc/systemd/system/emperor.service.d"
printf '[Service]\nWatchdogSec=3s\n' >"$merged/etc/systemd/system/emperor.service.d/watchdog.conf"
inside systemctl daemon-reload
inside systemctl restart emperor || log "systemctl restart emperor (WatchdogSec=3s) exited $?"
wait_for 30 serves 8002 || fail watchdog-setup "sdtest does not serve after the restart with WatchdogSec=3s"
restarts0=$(unit_prop NRestarts)
main0=$(unit_prop MainPID)
t0=$(now_ms)
if [ "$main0" -le 0 ]; then
    fail watchdog "emperor not running before SIGSTOP (MainPID $main0)"
elif inside kill -STOP "$main0" && wait_for 30 restarts_above "$restarts0"; then
    restart_ms=$(($(now_ms) - t0))
    if wait_for 30 serves 8002; then
        pass watchdog "SIGSTOP main pid $main0: NRestarts $restarts0 -> $(unit_prop NRestarts) after ${restart_ms} ms, new main pid $(unit_prop MainPID), serving again after $(($(now_ms) - t0)) ms"
    else
        fail watchdog "restarted after ${restart_ms} ms but sdtest does not serve"
    fi
else
    fail watchdog "NRestarts still $(unit_prop NRestarts) 30 s after SIGSTOP of $main0 (WatchdogSec=$(unit_prop WatchdogUSec))"
    [ "$main0" -le 0 ] || inside kill -CONT "$main0" || true
fi
rm -f "$merged/etc/systemd/system/emperor.service.d/watchdog.conf"
inside systemctl daemon-reload

# Journald: the emperor logs natively, with the app as a field and priorities from the
# levels: the fields seen in the last entries are printed; asserted are EMPEROR_APP and
# EMPEROR_GENERATION on app entries, `journalctl EMPEROR_APP=sdtest` showing only sdtest,
# a WARNING entry (the vassal's "runs as root") and the failed reload's traceback as one
# PRIORITY 3 entry.
journal_checks=$(inside journalctl -u emperor -o json --no-pager 2>/dev/null | inside python3 -c '
import json, sys
entries = [json.loads(l) for l in sys.stdin]
apps = [e for e in entries if "EMPEROR_APP" in e]
problems = []
if not apps:
    problems.append("no entry has EMPEROR_APP")
if apps and not all("EMPEROR_GENERATION" in e for e in apps if e.get("MESSAGE", "").startswith("[")):
    problems.append("an app output entry has no EMPEROR_GENERATION")
sd = [e for e in apps if e["EMPEROR_APP"] == "sdtest"]
if any("example-app" in e.get("MESSAGE", "") for e in sd):
    problems.append("an EMPEROR_APP=sdtest entry is about example-app")
if not any(e.get("PRIORITY") == "4" and "runs as root" in e.get("MESSAGE", "") for e in apps):
    problems.append("no PRIORITY 4 entry for the vassal warning")
reqs = [e for e in sd if "EMPEROR_STATUS" in e]
if not reqs or not all("EMPEROR_WORKER" in e and "EMPEROR_URI" in e for e in reqs):
    problems.append("request lines carry no EMPEROR_STATUS/EMPEROR_WORKER/EMPEROR_URI fields")
tb = [e for e in sd if e.get("PRIORITY") == "3" and "Traceback" in e.get("MESSAGE", "")]
if not tb or "\n" not in tb[0]["MESSAGE"]:
    problems.append("the failed import traceback is not one PRIORITY 3 entry")
prio = {}
for e in entries:
    prio[e.get("PRIORITY")] = prio.get(e.get("PRIORITY"), 0) + 1
print(("FAIL " + "; ".join(problems)) if problems else "ok", end="; ")
print("%d entries, %d with EMPEROR_APP (%d sdtest, %d request lines with fields), PRIORITY %s, traceback entries %d (%d lines in the first)" % (
    len(entries), len(apps), len(sd), len(reqs), " ".join("%s x%d" % kv for kv in sorted(prio.items(), key=str)),
    len(tb), tb[0]["MESSAGE"].count("\n") + 1 if tb else 0))
' 2>&1) || journal_checks="FAIL cannot read the journal: $journal_checks"
filter_count=$(inside journalctl -u emperor EMPEROR_APP=sdtest -o json --no-pager 2>/dev/null | inside python3 -c '
import json, sys
es = [json.loads(l) for l in sys.stdin]
print(len(es), sum(e.get("EMPEROR_APP") != "sdtest" for e in es))
' 2>&1 || echo "error")
case "$journal_checks" in
ok*) pass journald-native "${journal_checks#ok; }; journalctl EMPEROR_APP=sdtest: $filter_count (entries, others)" ;;
*) fail journald-native "${journal_checks#FAIL }" ;;
esac
if journal=$(inside journalctl -u emperor -o json -n 20 --no-pager 2>/dev/null | inside python3 -c '
import json, sys
fields, prio, ident, emperor, n = set(), {}, {}, set(), 0
for line in sys.stdin:
    e = json.loads(line)
    n += 1
    fields.update(k for k in e if not k.startswith("_"))
    for counts, key in ((prio, "PRIORITY"), (ident, "SYSLOG_IDENTIFIER")):
        counts[e.get(key)] = counts.get(e.get(key), 0) + 1
    emperor.update(k for k in e if k.startswith("EMPEROR_"))
def fmt(counts):
    return " ".join("%s x%d" % kv for kv in sorted(counts.items(), key=str))
print("%d entries; fields %s; PRIORITY %s; SYSLOG_IDENTIFIER %s; EMPEROR_* %s" % (
    n, ",".join(sorted(fields)), fmt(prio), fmt(ident), ",".join(sorted(emperor)) or "none"))
' 2>&1); then
    pass journald "$journal"
else
    fail journald "cannot read the journal: $journal"
fi

# load_during NAME ACTION...: runs the load client (through nginx to sdtest, 3 s, 4
# connections at a time) and ACTION once the first request has been answered, then prints
# the figures. FAIL only when sdtest does not serve afterwards.
load_during() {
    local name=$1 load_pid result inode_before
    shift
    inside rm -f /root/emperor-test/load.started
    inside python3 /root/emperor-test/load.py http://127.0.0.1:8002/ 3 4 /root/emperor-test/load.started \
        >"$tmp/load.out" 2>"$tmp/load.err" &
    load_pid=$!
    background_pids+=("$load_pid")
    if ! wait_for 10 test -e "$merged/root/emperor-test/load.started"; then
        fail "$name" "the load client answered nothing within 10 s: $(cat "$tmp/load.err")"
        wait "$load_pid" || true
        return
    fi
    inode_before=$(socket_inode)
    "$@"
    set +e
    wait_for 30 exited "$load_pid"
    wait "$load_pid"
    set -e
    result=$(cat "$tmp/load.out")
    [ -n "$result" ] || result="no result from the load client: $(cat "$tmp/load.err")"
    if wait_for 30 serves 8002; then
        echo "CHECK $name: $result; sdtest's socket inode $inode_before -> $(socket_inode)"
    else
        fail "$name" "$result; sdtest does not serve 30 s afterwards"
    fi
}

restart_emperor() { inside systemctl restart emperor || log "systemctl restart emperor exited $?"; }
load_during restart-under-load restart_emperor
restart_result=$(grep -o '^[0-9]* requests, [0-9]* failed' "$tmp/load.out" || true)
case "$restart_result" in
*", 0 failed") ;;
*) fail restart-no-failures "systemctl restart under load: ${restart_result:-no result}" ;;
esac

kill9_emperor() {
    local restarts main
    restarts=$(unit_prop NRestarts)
    main=$(unit_prop MainPID)
    # MainPID 0 would make `kill -9 0` hit our own process group.
    [ "$main" -gt 0 ] || { log "kill -9: the emperor is not running (MainPID $main)"; return; }
    inside kill -9 "$main" || log "kill -9 $main exited $?"
    wait_for 30 restarts_above "$restarts" || log "kill -9: NRestarts still $restarts after 30 s"
    log "kill -9 $main: NRestarts $restarts -> $(unit_prop NRestarts), main pid $(unit_prop MainPID)"
}
load_during kill9-under-load kill9_emperor
kill9_result=$(grep -o '^[0-9]* requests, [0-9]* failed' "$tmp/load.out" || true)
case "$kill9_result" in
*", 0 failed") ;;
*) fail kill9-no-failures "kill -9 of the emperor under load: ${kill9_result:-no result}" ;;
esac

# An upgrade: installing the package again runs postinst's upgrade path, which hands over
# (SIGUSR2) to the newly installed emperor on the same sockets.
upgrade_emperor() {
    local main
    main=$(unit_prop MainPID)
    inside dpkg -i /root/emperor-test/emperor.deb >"$tmp/dpkg-upgrade.log" 2>&1 ||
        log "dpkg -i (upgrade) exited $?: $(cat "$tmp/dpkg-upgrade.log")"
    log "upgrade: main pid $main -> $(unit_prop MainPID)"
}
load_during upgrade-under-load upgrade_emperor
upgrade_result=$(grep -o '^[0-9]* requests, [0-9]* failed' "$tmp/load.out" || true)
case "$upgrade_result" in
*", 0 failed") ;;
*) fail upgrade-no-failures "dpkg -i upgrade under load: ${upgrade_result:-no result}" ;;
esac

# Reboot: nspawn exits 133, the same overlay boots again, the apps come back.
inside systemctl reboot || log "systemctl reboot exited $?"
deadline=$(($(now_ms) + 60000))
while kill -0 "$nspawn_pid" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.1; done
if kill -0 "$nspawn_pid" 2>/dev/null; then
    fail reboot "nspawn still running 60 s after systemctl reboot"
else
    set +e
    wait "$nspawn_pid"
    nspawn_rc=$?
    set -e
    nspawn_pid=""
    t0=$(now_ms)
    boot
    if wait_for 30 serves 8001 && wait_for 30 serves 8002; then
        pass reboot "nspawn exit $nspawn_rc; both apps serve $(($(now_ms) - t0)) ms after boot started"
    else
        fail reboot "nspawn exit $nspawn_rc; apps do not serve 30 s after boot"
    fi
    [ "$nspawn_rc" -eq 133 ] || fail reboot-exit "nspawn exited $nspawn_rc, not 133"
fi

# dpkg -r stops the service and removes the binaries; dpkg -P removes the conffile.
if inside dpkg -r emperor >"$tmp/dpkg.log" 2>&1; then
    state=$(inside systemctl is-active emperor || true)
    left=$(inside ls /usr/bin/emperor /usr/bin/vassal /usr/bin/emperorctl 2>/dev/null || true)
    if [ "$state" != active ] && [ -z "$left" ] && ! inside pgrep -x emperor >/dev/null; then
        pass dpkg-remove "is-active $state; binaries gone; emperor.ini kept: $(inside test -e /etc/emperor/emperor.ini && echo yes || echo no)"
    else
        fail dpkg-remove "is-active '$state'; left: ${left//$'\n'/ }"
    fi
else
    cat "$tmp/dpkg.log"
    fail dpkg-remove "dpkg -r emperor exited non-zero"
fi
if inside dpkg -P emperor >"$tmp/dpkg.log" 2>&1; then
    if inside test -e /etc/emperor/emperor.ini; then
        fail dpkg-purge "/etc/emperor/emperor.ini still there"
    else
        pass dpkg-purge "/etc/emperor/emperor.ini removed"
    fi
else
    cat "$tmp/dpkg.log"
    fail dpkg-purge "dpkg -P emperor exited non-zero"
fi

log "done; $([ "$failed" -eq 0 ] && echo 'every check passed' || echo 'some checks FAILED')"
exit "$failed"
