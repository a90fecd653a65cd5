#!/bin/bash
# UDP flood with random sources from the Linux kernel's packet generator (pktgen), in the style of
# the kernel's samples/pktgen scripts (pktgen_sample03_burst_single_flow.sh and friends): one
# pktgen kernel thread per CPU, each sending its share, sources random in a range, random source
# ports, one destination. For driving a scrubber under test from a separate generator box.
#
#   sudo scripts/pktgen/pktgen_udp_flood.sh -i eth1 -d 198.18.0.10 -m 02:00:5b:00:00:02 \
#        -s 198.19.0.1 -e 198.19.255.254 -n 10000000 -t 4 [-r 1000000] [-p 53] [-z 64] [-b 64]
#
#   -i DEV      interface to send on (required)
#   -d IP       destination IPv4 address (required)
#   -m MAC      destination MAC: the scrubber's ext port, or the router in front (required)
#   -s IP -e IP first and last source address (random between them; default 198.19.0.1-198.19.255.254)
#   -p PORT     destination UDP port (default 9); source ports random 1024-65535
#   -n COUNT    frames per thread (required: a flood always stops by itself)
#   -t THREADS  pktgen threads, one per CPU starting at CPU 0 (default 1)
#   -r PPS      rate per thread, frames per second (default: as fast as it goes)
#   -z SIZE     frame size without the CRC (default 64)
#   -b BURST    frames per skb handed to the driver (burst, default 1; >1 needs a driver with
#               xmit_more, which veth has not)
#
# Needs root and the pktgen module (`modprobe pktgen`; on some distributions it ships in a
# linux-modules-extra package). Ctrl-C stops every thread. Prints, per thread, what pktgen reports.
set -euo pipefail

DEV="" DST="" MAC="" SRC_MIN="198.19.0.1" SRC_MAX="198.19.255.254" PORT=9 COUNT="" THREADS=1 RATE="" SIZE=64 BURST=1
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while getopts "i:d:m:s:e:p:n:t:r:z:b:h" o; do
    case "$o" in
    i) DEV=$OPTARG ;; d) DST=$OPTARG ;; m) MAC=$OPTARG ;; s) SRC_MIN=$OPTARG ;; e) SRC_MAX=$OPTARG ;;
    p) PORT=$OPTARG ;; n) COUNT=$OPTARG ;; t) THREADS=$OPTARG ;; r) RATE=$OPTARG ;; z) SIZE=$OPTARG ;;
    b) BURST=$OPTARG ;; h) usage 0 ;; *) usage ;;
    esac
done
die() { echo "error: $*" >&2; exit 1; }
[ -n "$DEV" ] && [ -n "$DST" ] && [ -n "$MAC" ] && [ -n "$COUNT" ] || { echo "error: -i, -d, -m and -n are required" >&2; usage; }
[[ "$COUNT" =~ ^[1-9][0-9]*$ ]] || die "-n $COUNT: give a positive frame count (a flood must stop by itself)"
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "-t $THREADS: give a positive thread count"
[ -z "$RATE" ] || [[ "$RATE" =~ ^[1-9][0-9]*$ ]] || die "-r $RATE: give a positive rate in frames per second"
[[ "$SIZE" =~ ^[0-9]+$ ]] && [ "$SIZE" -ge 60 ] && [ "$SIZE" -le 9000 ] || die "-z $SIZE: give 60 to 9000 bytes"
[ "$(id -u)" -eq 0 ] || die "pktgen needs root: run with sudo"
[ -e "/sys/class/net/$DEV" ] || die "no interface $DEV in this network namespace"
ncpu=$(nproc)
[ "$THREADS" -le "$ncpu" ] || die "-t $THREADS: this machine has $ncpu CPUs"
if [ ! -d /proc/net/pktgen ]; then
    modprobe pktgen 2>/dev/null || true
fi
[ -d /proc/net/pktgen ] || die "no kernel pktgen here (/proc/net/pktgen is missing and 'modprobe pktgen' failed): install the module (e.g. linux-modules-extra-\$(uname -r)), or use scripts/pktgen/trafgen_flood.sh or 'scrubber-perf gen'"

pg() { # pg FILE COMMAND: write a pktgen command; fail when pktgen reports an error for it
    local file=$1; shift
    echo "$*" >"$file" || die "cannot write '$*' to $file"
    local res; res=$(grep -m1 "^Result:" "$file" 2>/dev/null || true)
    case "$res" in *ERROR*|*"No such"*) die "pktgen refused '$*' in $file: $res" ;; esac
}

devs=()
cleanup() {
    echo "stop" >/proc/net/pktgen/pgctrl 2>/dev/null || true
    for ((t = 0; t < THREADS; t++)); do echo "rem_device_all" >"/proc/net/pktgen/kpktgend_$t" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

for ((t = 0; t < THREADS; t++)); do
    dev="$DEV@$t"
    devs+=("$dev")
    thread="/proc/net/pktgen/kpktgend_$t"
    [ -e "$thread" ] || die "no pktgen thread $t ($thread)"
    pg "$thread" "rem_device_all"
    pg "$thread" "add_device $dev"
    f="/proc/net/pktgen/$dev"
    pg "$f" "flag QUEUE_MAP_CPU"
    pg "$f" "count $COUNT"
    pg "$f" "clone_skb 0"
    pg "$f" "pkt_size $((SIZE - 4))"
    pg "$f" "burst $BURST"
    pg "$f" "delay 0"
    [ -z "$RATE" ] || pg "$f" "ratep $RATE"
    pg "$f" "dst_mac $MAC"
    pg "$f" "dst $DST"
    pg "$f" "src_min $SRC_MIN"
    pg "$f" "src_max $SRC_MAX"
    pg "$f" "flag IPSRC_RND"
    pg "$f" "udp_dst_min $PORT"
    pg "$f" "udp_dst_max $PORT"
    pg "$f" "udp_src_min 1024"
    pg "$f" "udp_src_max 65535"
    pg "$f" "flag UDPSRC_RND"
    pg "$f" "flag NO_TIMESTAMP"
done

echo "pktgen: $THREADS thread(s) x $COUNT frames of $SIZE bytes on $DEV -> $DST ($MAC), sources $SRC_MIN-$SRC_MAX${RATE:+, $RATE pps per thread}"
echo "start" >/proc/net/pktgen/pgctrl || true
for dev in "${devs[@]}"; do
    echo "== $dev"
    grep -A2 "^Result:" "/proc/net/pktgen/$dev" || true
done
