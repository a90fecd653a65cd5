#!/usr/bin/env bash
# Build the .deb (cargo deb) and test it: its contents, and the installed files in a private
# mount namespace (the package's /etc mounted over /etc there, nothing on the host touched):
# `scrubber --version` and `scrubber check` of the shipped rule file, with the cookie secret the
# postinst makes. Run from the repository; needs root (unshare) and cargo-deb.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v cargo-deb >/dev/null || { echo "error: cargo-deb missing: cargo install cargo-deb --locked" >&2; exit 1; }
cargo deb -p scrubber --locked --quiet >/dev/null
deb=$(ls -t target/debian/scrubber_*.deb | head -1)
echo "package: $deb ($(du -h "$deb" | cut -f1))"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$root/DEBIAN"
for f in usr/bin/scrubber etc/scrubber/scrubber.rules etc/default/scrubber lib/systemd/system/scrubber.service DEBIAN/postinst; do
    [ -e "$root/$f" ] || [ -e "$root/usr/$f" ] || { echo "error: the package lacks $f" >&2; exit 1; }
done
unit="$root/usr/lib/systemd/system/scrubber.service"
[ -e "$unit" ] || unit="$root/lib/systemd/system/scrubber.service"
grep -q '^AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_IPC_LOCK$' "$unit" || { echo "error: unit capabilities" >&2; exit 1; }
grep -q '^User=scrubber$' "$unit" || { echo "error: the unit must not run as root" >&2; exit 1; }
if "$root/usr/bin/scrubber" lab --help >/dev/null 2>&1; then
    echo "error: the packaged binary has the lab (build it with default-features = false)" >&2; exit 1
fi
# What the postinst does for the secret, then the installed files in a namespace of their own.
"$root/usr/bin/scrubber" gen-secret > "$root/etc/scrubber/cookie.secret"
unshare --mount --propagation private sh -ec "
    mount --bind '$root/etc' /etc
    '$root/usr/bin/scrubber' --version
    '$root/usr/bin/scrubber' check /etc/scrubber/scrubber.rules
"
echo "package OK"
