#!/usr/bin/env bash
# Builds the Debian package: target/debian/emperor_<version>_amd64.deb.
#
#   scripts/package.sh                  cargo build --release --workspace --bins, then package
#   apt install ./target/debian/emperor_*.deb
#
# No cargo-deb and no debhelper: the tree is laid out here and packed with
# `dpkg-deb --build --root-owner-group` (dpkg-dev provides dpkg-shlibdeps, used for
# Depends when present). The version is [workspace.package] version in Cargo.toml.
#
# Environment:
#   PACKAGE_PROFILE=release|debug   which cargo profile to build and package (default
#                                   release; debug is for tests, and goes to
#                                   target/debian/debug/ unless PACKAGE_OUT says otherwise)
#   PACKAGE_NO_BUILD=1              do not run cargo: package the binaries already built
#                                   (tests/packaging.rs runs inside `cargo test`, which
#                                   holds cargo's build lock)
#   PACKAGE_OUT=DIR                 where the .deb (and its staging tree) go
#   SOURCE_DATE_EPOCH               timestamps in the package (default: the last commit's)
#
# Binaries are stripped as dh_strip strips them (--strip-unneeded, no .comment or
# .note sections); the release build's debug info stays in target/release.
set -euo pipefail
umask 022

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

die() {
    echo "package.sh: $*" >&2
    exit 1
}
step() { printf '==> %s\n' "$*"; }

profile=${PACKAGE_PROFILE:-release}
case $profile in
release | debug) ;;
*) die "PACKAGE_PROFILE must be release or debug, not '$profile'" ;;
esac
for tool in dpkg-deb objcopy gzip; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: apt-get install dpkg-dev"
done

# [workspace.package] version = "X"
version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
[ -n "$version" ] || die "no version in [workspace.package] of Cargo.toml"
arch=amd64

target_dir=${CARGO_TARGET_DIR:-$root/target}
bindir=$target_dir/$profile
if [ "$profile" = release ]; then
    out=${PACKAGE_OUT:-$target_dir/debian}
else
    out=${PACKAGE_OUT:-$target_dir/debian/debug}
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ "${PACKAGE_NO_BUILD:-0}" != 1 ]; then
    # PYO3_PYTHON=/usr/bin/python3 comes from .cargo/config.toml: the vassal links
    # Debian's libpython3.11, which the package then depends on.
    if [ "$profile" = release ]; then
        step "cargo build --release --workspace --bins"
        cargo build --release --workspace --bins
    else
        step "cargo build --workspace --bins"
        cargo build --workspace --bins
    fi
fi
build_flag=""
[ "$profile" = release ] && build_flag="--release "
for bin in emperor vassal emperorctl emperor-docgen; do
    [ -x "$bindir/$bin" ] || die "$bindir/$bin is missing: run cargo build ${build_flag}--workspace --bins"
done

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && ! git -C "$root" diff --quiet HEAD 2>/dev/null; then
    commit="$commit+dirty"
fi

deb=$out/emperor_${version}_${arch}.deb
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The tree is laid out as debhelper would, in debian/<package>/, where
# dpkg-shlibdeps expects binaries.
stage=$tmp/debian/emperor
mkdir -p "$stage"
step "laying out the package tree"

# Binaries.
install -d "$stage/usr/bin"
for bin in emperor vassal emperorctl; do
    objcopy --strip-unneeded --remove-section=.comment --remove-section=.note \
        "$bindir/$bin" "$stage/usr/bin/$bin"
    chmod 0755 "$stage/usr/bin/$bin"
done

# The unit. Its ExecStart must name the installed binary and config file.
unit=packaging/systemd/emperor.service
grep -qx 'ExecStart=/usr/bin/emperor --config /etc/emperor/emperor.ini' "$unit" ||
    die "$unit: ExecStart is not /usr/bin/emperor --config /etc/emperor/emperor.ini"
install -D -m 0644 "$unit" "$stage/lib/systemd/system/emperor.service"
install -D -m 0644 packaging/tmpfiles.d/emperor.conf "$stage/usr/lib/tmpfiles.d/emperor.conf"

# Configuration: emperor.ini is a conffile (DEBIAN/conffiles below); the app
# directories ship empty.
install -D -m 0644 etc/emperor/emperor.ini "$stage/etc/emperor/emperor.ini"
install -d "$stage/etc/emperor/apps-available" "$stage/etc/emperor/apps-enabled"

# Man pages and completions, generated from the binaries' clap definitions.
"$bindir/emperor-docgen" "$tmp/docs" >/dev/null
install -d "$stage/usr/share/man/man8"
for page in "$tmp"/docs/man8/*.8; do
    gzip -9n -c "$page" >"$stage/usr/share/man/man8/$(basename "$page").gz"
done
chmod 0644 "$stage"/usr/share/man/man8/*
for bin in emperor vassal emperorctl; do
    install -D -m 0644 "$tmp/docs/completions/bash/$bin" "$stage/usr/share/bash-completion/completions/$bin"
    install -D -m 0644 "$tmp/docs/completions/zsh/_$bin" "$stage/usr/share/zsh/vendor-completions/_$bin"
    install -D -m 0644 "$tmp/docs/completions/fish/$bin.fish" "$stage/usr/share/fish/vendor_completions.d/$bin.fish"
done

# /usr/share/doc/emperor.
doc=$stage/usr/share/doc/emperor
install -D -m 0644 packaging/debian/copyright "$doc/copyright"
install -m 0644 packaging/debian/README.Debian "$doc/README.Debian"
# For systemd >= 253 (copy to /etc/systemd/system/emperor.service.d/).
install -D -m 0644 packaging/systemd/notify-reload.conf "$doc/examples/notify-reload.conf"
maintainer=$(sed -n 's/^Maintainer: *//p' packaging/debian/control.in)
{
    echo "emperor ($version) bookworm; urgency=medium"
    echo
    echo "  * Built by scripts/package.sh from commit $commit."
    echo
    echo " -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} >"$tmp/changelog.Debian"
gzip -9n -c "$tmp/changelog.Debian" >"$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

# Depends: what the binaries link (dpkg-shlibdeps reads the symbols files of the
# libraries' packages), always libpython3.11 (the vassal embeds it; its stdlib comes
# with it).
depends="libc6 (>= 2.34), libgcc-s1 (>= 4.2), libpython3.11 (>= 3.11.0)"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
    # dpkg-shlibdeps insists on a debian/control naming the package, and finds the
    # package's root by its DEBIAN directory.
    install -d "$stage/DEBIAN"
    printf 'Source: emperor\n\nPackage: emperor\nArchitecture: %s\n' "$arch" >"$tmp/debian/control"
    computed=$(cd "$tmp" && dpkg-shlibdeps -O \
        debian/emperor/usr/bin/emperor debian/emperor/usr/bin/vassal debian/emperor/usr/bin/emperorctl |
        sed -n 's/^shlibs:Depends=//p')
    [ -n "$computed" ] || die "dpkg-shlibdeps computed no dependencies"
    depends=$computed
else
    echo "package.sh: dpkg-shlibdeps not found (apt-get install dpkg-dev); Depends: $depends" >&2
fi
case ", $depends," in
*", libpython3.11 "* | *", libpython3.11,"*) ;;
*) depends="$depends, libpython3.11" ;;
esac

# DEBIAN/.
install -d "$stage/DEBIAN"
installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" \
    -e "s/@INSTALLED_SIZE@/$installed_size/" \
    -e "s/@DEPENDS@/$depends/" \
    packaging/debian/control.in >"$stage/DEBIAN/control"
echo /etc/emperor/emperor.ini >"$stage/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$stage/DEBIAN/$script"
done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage"/DEBIAN/{control,conffiles,md5sums}

# Reproducible timestamps inside the archive.
find "$stage" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

step "dpkg-deb --build --root-owner-group"
dpkg-deb --build --root-owner-group "$stage" "$deb" >/dev/null
echo "$deb ($(du -h "$deb" | cut -f1), $profile binaries, Depends: $depends)"
