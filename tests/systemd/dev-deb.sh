#!/usr/bin/env bash
# Builds a development emperor .deb by hand, for tests/systemd/run.sh to install while the
# real package (scripts/package.sh -> target/debian/emperor_<version>_amd64.deb) is not
# available. Not a release artifact: no lintian, no debhelper, no changelog.
#
#   tests/systemd/dev-deb.sh [OUTDIR]     (default /tmp/emperor-dev-deb)
#
# Runs `cargo build --release --workspace --bins` in this checkout, then packs
#   /usr/bin/{emperor,vassal,emperorctl}
#   /lib/systemd/system/emperor.service        (packaging/systemd/emperor.service)
#   /usr/lib/tmpfiles.d/emperor.conf           (packaging/tmpfiles.d/emperor.conf)
#   /etc/emperor/emperor.ini                   (etc/emperor/emperor.ini, a conffile)
#   /etc/emperor/apps-available/, /etc/emperor/apps-enabled/ (empty)
# with a postinst that runs systemd-tmpfiles --create and `systemctl enable --now emperor`
# and a prerm that stops and disables it. Everything the build prints goes to stderr; the
# only line on stdout is the path of the .deb.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-/tmp/emperor-dev-deb}

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
[ -n "$version" ] || { echo "dev-deb: no version in $root/Cargo.toml" >&2; exit 1; }
version="$version~dev"

(cd "$root" && cargo build --release --workspace --bins) >&2

stage=$(mktemp -d /tmp/emperor-dev-deb.XXXXXX)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/usr/lib/tmpfiles.d" \
    "$pkg/etc/emperor/apps-available" "$pkg/etc/emperor/apps-enabled"
for bin in emperor vassal emperorctl; do
    install -m 0755 "${CARGO_TARGET_DIR:-$root/target}/release/$bin" "$pkg/usr/bin/$bin"
done
install -m 0644 "$root/packaging/systemd/emperor.service" "$pkg/lib/systemd/system/emperor.service"
install -m 0644 "$root/packaging/tmpfiles.d/emperor.conf" "$pkg/usr/lib/tmpfiles.d/emperor.conf"
install -m 0644 "$root/etc/emperor/emperor.ini" "$pkg/etc/emperor/emperor.ini"

cat >"$pkg/DEBIAN/control" <<CONTROL
Package: emperor
Version: $version
Architecture: amd64
Maintainer: emperor developers <emperor@localhost>
Depends: libc6, libpython3.11, systemd
Section: web
Priority: optional
Description: WSGI app supervisor (uWSGI Emperor replacement), development build
 Built by tests/systemd/dev-deb.sh for the systemd test; not a release package.
CONTROL
echo /etc/emperor/emperor.ini >"$pkg/DEBIAN/conffiles"

cat >"$pkg/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/emperor.conf
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable --now emperor
    else
        systemctl enable emperor
    fi
fi
SCRIPT
cat >"$pkg/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = deconfigure ]; then
    if [ -d /run/systemd/system ]; then
        systemctl disable --now emperor
    else
        systemctl disable emperor
    fi
fi
SCRIPT
cat >"$pkg/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
SCRIPT
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/emperor_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zgzip -z1 --build "$pkg" "$deb" >&2
echo "$deb"
