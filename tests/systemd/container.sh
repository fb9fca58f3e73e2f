# Sourced by tests/systemd/run.sh: the host side of the systemd test. Installs the host
# tools, builds and caches the Debian rootfs, mounts a throw-away overlay on it, boots it
# with systemd-nspawn, runs commands inside (`inside CMD...`), and cleans all of it up in
# an EXIT trap: the container is powered off, the overlay unmounted, temp dirs removed. Only
# processes started here are ended, by PID (debootstrap: its own process group).
# shellcheck shell=bash
# Functions here are called through traps and by run.sh.
# shellcheck disable=SC2317

# The rootfs: Debian 12 with what the package needs (libpython3.11, and nginx-light for the
# site in front of the apps) and what the checks use. The cache is keyed on this list.
suite=bookworm
packages=(systemd systemd-sysv dbus libpython3.11 python3 curl nginx-light procps)
cache_root=/var/cache/emperor-nspawn
container_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '[%6ss] %s\n' "$(elapsed)" "$*"; }
die() { log "ERROR: $*"; exit 2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
start_ms=$(now_ms)
elapsed() { local ms=$(($(now_ms) - start_ms)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }

# State the EXIT trap cleans up. Only processes this script started are ended, by PID.
tmp=""
build_dir=""
merged=""
nspawn_pid=""
pid1=""
debootstrap_pid=""
background_pids=()

# Unmounts whatever is mounted below $1 (debootstrap mounts /proc in its target) and
# removes it.
remove_tree() {
    local mnt
    findmnt -rn -o TARGET | grep -F "$1/" | sort -r | while read -r mnt; do
        umount "$mnt" 2>/dev/null || umount -l "$mnt"
    done
    rm -rf "$1"
}

cleanup() {
    local rc=$?
    trap - ERR
    set +e
    for pid in "${background_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    if [ -n "$debootstrap_pid" ] && kill -0 "$debootstrap_pid" 2>/dev/null; then
        # debootstrap runs in its own session (setsid): end its whole process group.
        kill -TERM -- "-$debootstrap_pid"
        local deadline=$(($(now_ms) + 10000))
        while kill -0 "$debootstrap_pid" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do
            sleep 0.1
        done
        kill -KILL -- "-$debootstrap_pid" 2>/dev/null
        wait "$debootstrap_pid" 2>/dev/null
    fi
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # SIGTERM to nspawn powers the container off cleanly.
        kill -TERM "$nspawn_pid"
        local deadline=$(($(now_ms) + 20000))
        while kill -0 "$nspawn_pid" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do
            sleep 0.1
        done
        if kill -0 "$nspawn_pid" 2>/dev/null; then
            echo "nspawn $nspawn_pid did not power off in 20 s: SIGKILL" >&2
            kill -KILL "$nspawn_pid"
        fi
        wait "$nspawn_pid" 2>/dev/null
    fi
    for pid in "${background_pids[@]}"; do
        wait "$pid" 2>/dev/null
    done
    if [ -n "$merged" ] && mountpoint -q "$merged"; then
        umount "$merged" || umount -l "$merged"
    fi
    [ -n "$tmp" ] && rm -rf "$tmp"
    [ -n "$build_dir" ] && remove_tree "$build_dir"
    exit "$rc"
}
trap cleanup EXIT
# A command that fails outside a check ends the run (set -e): say which one.
# (ERR also fires where set +e is in effect: only report what set -e is about to act on.)
trap 'rc=$?; [[ $- != *e* ]] || log "unexpected failure (exit $rc) at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# Installs systemd-container and debootstrap when missing.
install_host_tools() {
    local missing=()
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
            apt-get update >/dev/null
            apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
        }
    fi
}

# The Debian mirror the host itself uses (deb822 sources first, then the one-line format).
host_mirror() {
    local mirror=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        mirror=$(awk '/^URIs:/ && !/security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
        mirror=$(awk '$1 == "deb" && !/security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list)
    fi
    echo "${mirror:-http://deb.debian.org/debian}"
}

# Sets $rootfs to the cached rootfs for $suite and ${packages[@]}, building it first if
# needed: into a temp dir renamed into place, under a lock, so an interrupted or concurrent
# build is never used.
ensure_rootfs() {
    local mirror
    mirror=$(host_mirror)
    key=$(printf '%s\n' "$suite" minbase "${packages[@]}" | sha256sum | cut -c1-16)
    rootfs="$cache_root/$key"
    mkdir -p "$cache_root"
    exec 9>"$cache_root/.lock"
    flock 9
    if [ ! -d "$rootfs" ]; then
        # Leftovers of interrupted builds (we hold the lock, so none is in progress).
        for stale in "$cache_root"/*.building.*; do
            [ -e "$stale" ] && remove_tree "$stale"
        done
        build_dir=$(mktemp -d "$cache_root/$key.building.XXXXXX")
        log "building the rootfs (debootstrap $suite from $mirror) into $build_dir"
        t0=$(now_ms)
        include=$(IFS=,; echo "${packages[*]}")
        # In the background, so that a signal to this script is handled at once (bash runs
        # traps only between foreground commands) and the trap can end the build.
        setsid debootstrap --variant=minbase --include="$include" "$suite" "$build_dir/rootfs" "$mirror" \
            </dev/null >"$build_dir/debootstrap.log" 2>&1 &
        debootstrap_pid=$!
        set +e
        wait "$debootstrap_pid"
        debootstrap_rc=$?
        set -e
        debootstrap_pid=""
        if [ "$debootstrap_rc" -ne 0 ]; then
            tail -n 30 "$build_dir/debootstrap.log" >&2
            die "debootstrap exited $debootstrap_rc"
        fi
        mv -T "$build_dir" "$rootfs"
        build_dir=""
        log "rootfs built in $(($(now_ms) - t0)) ms: $rootfs"
    else
        log "rootfs cached: $rootfs"
    fi
    flock -u 9
}

# Mounts a throw-away overlay on $rootfs at $merged and raises the hard open-files limit
# nspawn will pass on.
make_overlay() {
    tmp=$(mktemp -d /var/tmp/emperor-nspawn.XXXXXX)
    mkdir -p "$tmp/upper" "$tmp/work" "$tmp/merged"
    merged="$tmp/merged"
    mount -t overlay overlay -o "lowerdir=$rootfs/rootfs,upperdir=$tmp/upper,workdir=$tmp/work" "$merged"
    machine="emperor-test-$$"

    # nspawn drops CAP_SYS_RESOURCE: the container cannot raise RLIMIT_NOFILE above the hard
    # limit it inherits, and the unit asks for LimitNOFILE=65536.
    # Raising it needs CAP_SYS_RESOURCE, which some hosts lack: then the emperor gets the host's
    # hard limit, and the install check prints the figure.
    ulimit -Hn 1048576 2>/dev/null || ulimit -Hn 65536 2>/dev/null \
        || log "cannot raise ulimit -Hn above $(ulimit -Hn) (no CAP_SYS_RESOURCE?): LimitNOFILE=65536 will be capped"

    # Runs a command inside the container, in all of PID 1's namespaces, with a clean env.
}

inside() {
    nsenter -t "$pid1" -a env -i PATH="$container_path" LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

boot() {
    local t0 deadline child exe state
    t0=$(now_ms)
    : >"$tmp/console.log"
    systemd-nspawn -b -D "$merged" -M "$machine" --register=no --keep-unit --private-network \
        --console=pipe </dev/null >>"$tmp/console.log" 2>&1 &
    nspawn_pid=$!
    pid1=""
    deadline=$(($(now_ms) + 30000))
    while [ -z "$pid1" ]; do
        kill -0 "$nspawn_pid" 2>/dev/null || { tail -n 30 "$tmp/console.log"; die "systemd-nspawn exited during boot"; }
        [ "$(now_ms)" -lt "$deadline" ] || { tail -n 30 "$tmp/console.log"; die "no systemd child of nspawn $nspawn_pid after 30 s"; }
        for child in $(cat /proc/"$nspawn_pid"/task/*/children 2>/dev/null); do
            exe=$(readlink "/proc/$child/exe" 2>/dev/null || true)
            case "$exe" in */systemd) pid1=$child; break ;; esac
        done
        [ -n "$pid1" ] || sleep 0.05
    done
    # is-system-running prints nothing until PID 1's bus socket exists: retry.
    deadline=$(($(now_ms) + 60000))
    while :; do
        state=$(inside timeout 10 systemctl is-system-running --wait 2>/dev/null || true)
        case "$state" in
            running) break ;;
            degraded)
                log "system is degraded; failed units:"
                inside systemctl --failed --no-legend --no-pager || true
                break
                ;;
        esac
        [ "$(now_ms)" -lt "$deadline" ] || { tail -n 30 "$tmp/console.log"; die "container not running after 60 s (state '$state')"; }
        sleep 0.1
    done
    log "booted in $(($(now_ms) - t0)) ms (nspawn $nspawn_pid, container systemd $pid1, $state)"
}
