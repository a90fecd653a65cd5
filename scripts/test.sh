#!/usr/bin/env bash
# The project's single test entry point. Run from anywhere:
#   sudo scripts/test.sh        (or scripts/test.sh when already root)
# Installs what the tests need (idempotently), then runs every test and a replay smoke run.
# Exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '==> %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# Prerequisites
command -v cargo >/dev/null || { echo "error: cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }

apt_updated=0
apt_install() {
    # Install the Debian packages whose command is missing: apt_install CMD:PKG ...
    local missing=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "warning: not root, cannot install ${missing[*]} (run: sudo scripts/test.sh)" >&2
        return 0
    fi
    if ! command -v apt-get >/dev/null; then
        echo "warning: no apt-get; install ${missing[*]} yourself" >&2
        return 0
    fi
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Tools for the network-namespace lab, the end-to-end tests and NIC setup: iproute2 (ip, tc),
# ethtool (offload switches), hping3 and netsniff-ng (trafgen) for floods, nftables (counters on
# the lab server), tcpdump, curl, procps (kill, sysctl), util-linux (nsenter), coreutils (timeout),
# bird2 (BGP and BFD routers of the multi-box lab), gobgpd (the diversion speaker).
apt_install ip:iproute2 tc:iproute2 ethtool:ethtool hping3:hping3 trafgen:netsniff-ng nft:nftables \
    tcpdump:tcpdump curl:curl kill:procps sysctl:procps nsenter:util-linux timeout:coreutils ping:iputils-ping \
    bird:bird2 gobgpd:gobgpd gobgp:gobgpd

# ---------------------------------------------------------------------------------------------
# Style gates: formatting, lints and documentation, as CI enforces them.
for c in rustfmt clippy; do
    if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
        say "rustup component add $c"
        rustup component add "$c"
    fi
done
say "cargo fmt --all -- --check"
cargo fmt --all -- --check || { echo "error: unformatted code: run \`cargo fmt --all\`" >&2; exit 1; }
say "cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "cargo doc --workspace --no-deps --locked (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
say "cargo build -p scrubber --no-default-features --locked (the appliance without the lab)"
cargo build -p scrubber --no-default-features --locked

# ---------------------------------------------------------------------------------------------
# Tests
# The end-to-end tests (tests/tests/e2e.rs, root only) run the release binary in the lab's
# namespaces: build it first and point them at it.
say "cargo build --release -p scrubber --locked"
cargo build --release -p scrubber --locked
export SCRUBBER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/scrubber"
[ -x "$SCRUBBER_BIN" ] || { echo "error: $SCRUBBER_BIN was not built" >&2; exit 1; }

say "cargo test --workspace --locked"
cargo test --workspace --locked

say "replay smoke run on samples/sample.pcap"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cargo run -q -p scrubber --locked -- replay samples/sample.pcap \
    --protect 198.18.0.10:80 --protect '[2001:2::10]:80' --syn-mode track \
    --pass "$out/pass.pcap" --drop "$out/drop.pcap" --answers "$out/answers.pcap"
for f in pass drop answers; do
    [ -s "$out/$f.pcap" ] || { echo "error: replay did not write $f.pcap" >&2; exit 1; }
done
# ---------------------------------------------------------------------------------------------
# Coverage-guided fuzzing (AFL++ through cargo-afl, stable Rust) of the frame dissector, TCP
# options, the engine, the rule files and the capture reader, from the committed corpora, for
# FUZZ_SECONDS (default 30) each, plus a canary the fuzzer must find.
if ! command -v cargo-afl >/dev/null 2>&1; then
    say "cargo install cargo-afl --locked"
    cargo install cargo-afl --locked --quiet
fi
say "scripts/fuzz.sh ${FUZZ_SECONDS:-30}"
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"

# ---------------------------------------------------------------------------------------------
# The Debian package (cargo deb): built, its contents checked, and the installed files tried in
# a private mount namespace. Last: it rebuilds target/release/scrubber without the lab.
if ! command -v cargo-deb >/dev/null 2>&1; then
    say "cargo install cargo-deb --locked"
    cargo install cargo-deb --locked --quiet
fi
say "scripts/package/test-deb.sh"
scripts/package/test-deb.sh

say "all tests passed"
