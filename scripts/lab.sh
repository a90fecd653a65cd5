#!/usr/bin/env bash
# The lab: `sudo scripts/lab.sh [--seconds N] [--middle scrubber|bridge] [--keep]`, or
# `sudo scripts/lab.sh --boxes N [--json] [--no-sync] [--divert]` for the multi-box lab.
# Installs what the lab needs (idempotently, Debian/Ubuntu), builds the release binary and runs
# `scrubber lab`: namespaces for a client, an attacker, a switch, the scrubber (bump in the wire)
# and an HTTP server; legit clients, then an ACK-PSH flood, then a spoofed SYN flood, then HTTP
# floods from a botnet; live counters; a summary of what got through. Everything is removed at
# the end or on Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '==> %s\n' "$*"; }
if [ "$(id -u)" -ne 0 ]; then
    echo "error: the lab creates network namespaces and attaches XDP programs: run it as root (sudo scripts/lab.sh)" >&2
    exit 1
fi
command -v cargo >/dev/null || { echo "error: cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
missing=()
for spec in ip:iproute2 tc:iproute2 ethtool:ethtool hping3:hping3 trafgen:netsniff-ng nft:nftables \
    kill:procps nsenter:util-linux timeout:coreutils bird:bird2 gobgpd:gobgpd gobgp:gobgpd; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || { echo "error: install ${missing[*]} first (no apt-get here)" >&2; exit 1; }
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
say "cargo build --release -p scrubber"
cargo build --release -q -p scrubber --locked
exec "${CARGO_TARGET_DIR:-$PWD/target}/release/scrubber" lab "$@"
