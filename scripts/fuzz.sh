#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ (cargo-afl, stable Rust): every target in tests/fuzz for
# SECONDS seconds each (default 30), starting from the committed corpora in
# tests/fuzz/corpus/TARGET. Fails when a target crashed or hung; the inputs are then in
# tests/fuzz/out/TARGET/default/crashes (add each as a regression test, then fix it).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs cargo-afl (`cargo install cargo-afl --locked`; scripts/test.sh installs it). The fuzz crate
# has its own Cargo.lock: after changing the dependencies of scrubber or rulespec, run
# `cargo update -w` in tests/fuzz (the build is --locked).
set -euo pipefail
cd "$(dirname "$0")/../tests/fuzz"
secs="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dissect tcp_options engine rules pcap http)

cargo afl config --build >/dev/null 2>&1 || true # already built: fine
cargo afl build --release --quiet --locked

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 \
    AFL_SKIP_CRASHES=0 AFL_QUIET=1
failed=0
mkdir -p out
for t in "${targets[@]}"; do
    out="out/$t"
    rm -rf "$out"
    echo "fuzz: $t for ${secs}s"
    # -V: stop after SECONDS; -t: 2 s per input at most (a hang counts as a failure).
    timeout $((secs + 60)) cargo afl fuzz -i "corpus/$t" -o "$out" -V "$secs" -t 2000 "target/release/$t" \
        >"out-$t.log" 2>&1 || { echo "fuzz: $t: afl-fuzz failed:"; tail -20 "out-$t.log"; failed=1; continue; }
    stats="$out/default/fuzzer_stats"
    execs=$(awk -F': ' '/^execs_done/{print $2}' "$stats")
    paths=$(awk -F': ' '/^corpus_count/{print $2}' "$stats")
    crashes=$(find "$out/default/crashes" -type f ! -name README.txt | wc -l)
    hangs=$(find "$out/default/hangs" -type f | wc -l)
    echo "fuzz: $t: $execs executions, $paths inputs in the queue, $crashes crashes, $hangs hangs"
    if [ "$crashes" -gt 0 ] || [ "$hangs" -gt 0 ]; then
        failed=1
        find "$out/default/crashes" "$out/default/hangs" -type f ! -name README.txt | head -5
    fi
done
# The canary: the set-up must find a planted crash, or the numbers above mean nothing.
if [ "${FUZZ_SKIP_CANARY:-0}" != 1 ]; then
    rm -rf out/canary
    AFL_BENCH_UNTIL_CRASH=1 timeout 120 cargo afl fuzz -i corpus/canary -o out/canary -V 60 -t 1000 target/release/canary >out-canary.log 2>&1 || true
    found=$(find out/canary/default/crashes -type f ! -name README.txt 2>/dev/null | wc -l)
    if [ "$found" -gt 0 ]; then
        echo "fuzz: canary: the planted crash was found ($found input(s)): the set-up works"
    else
        echo "fuzz: canary: the planted crash was NOT found in 60 s: instrumentation or afl-fuzz is broken"
        tail -20 out-canary.log
        failed=1
    fi
fi
rm -f out-*.log
exit $failed
