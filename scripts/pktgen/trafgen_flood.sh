#!/bin/bash
# TCP and UDP floods with trafgen (netsniff-ng) from random sources in a /16: fills in one of the
# profiles in trafgen/ (syn, ack-psh, rst, udp) and runs it, bounded in count and time.
#
#   sudo scripts/pktgen/trafgen_flood.sh -k syn -i eth1 -m 02:00:5b:00:00:02 -d 198.18.0.10 \
#        -s 198.19.0.0 [-p 80] -n 1000000 [-r 300000] [-c 1] [-T 60]
#
#   -k KIND   syn | ack-psh | rst | udp (required)
#   -i DEV    interface to send on (required)
#   -m MAC    destination MAC: the scrubber's ext port, or the router in front (required)
#   -d IP     destination IPv4 address (required)
#   -s NET    source /16 as a.b.0.0 (default 198.19.0.0); each frame gets a random a.b.x.y
#   -p PORT   destination port (default 80; 9 for udp)
#   -n COUNT  frames in total (required: a flood always stops by itself)
#   -r PPS    rate (frames per second; default: as fast as trafgen goes)
#   -c CPUS   trafgen processes, one per CPU (default 1; the rate and count are per process)
#   -T SECS   stop after this many seconds whatever the count (default 600)
#
# trafgen tops out near 0.5-1 Mpps per core on small VMs; for more, use several CPUs (-c),
# kernel pktgen (pktgen_udp_flood.sh, UDP only) or `scrubber-perf gen` (AF_XDP, all kinds).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
KIND="" DEV="" MAC="" DST="" NET="198.19.0.0" PORT="" COUNT="" RATE="" CPUS=1 SECS=600
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while getopts "k:i:m:d:s:p:n:r:c:T:h" o; do
    case "$o" in
    k) KIND=$OPTARG ;; i) DEV=$OPTARG ;; m) MAC=$OPTARG ;; d) DST=$OPTARG ;; s) NET=$OPTARG ;;
    p) PORT=$OPTARG ;; n) COUNT=$OPTARG ;; r) RATE=$OPTARG ;; c) CPUS=$OPTARG ;; T) SECS=$OPTARG ;;
    h) usage 0 ;; *) usage ;;
    esac
done
die() { echo "error: $*" >&2; exit 1; }
[ -n "$KIND" ] && [ -n "$DEV" ] && [ -n "$MAC" ] && [ -n "$DST" ] && [ -n "$COUNT" ] ||
    { echo "error: -k, -i, -m, -d and -n are required" >&2; usage; }
cfg_in="$here/trafgen/$KIND.cfg"
[ -f "$cfg_in" ] || die "-k $KIND: no profile $cfg_in (syn, ack-psh, rst, udp)"
[[ "$COUNT" =~ ^[1-9][0-9]*$ ]] || die "-n $COUNT: give a positive frame count"
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || die "-T $SECS: give a positive number of seconds"
[[ "$CPUS" =~ ^[1-9][0-9]*$ ]] || die "-c $CPUS: give a positive number of CPUs"
[ -z "$RATE" ] || [[ "$RATE" =~ ^[1-9][0-9]*$ ]] || die "-r $RATE: give a positive rate in frames per second"
[[ "$MAC" =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] || die "-m $MAC: not a MAC address"
[[ "$DST" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "-d $DST: give an IPv4 address"
[[ "$NET" =~ ^[0-9]+\.[0-9]+\.0\.0$ ]] || die "-s $NET: give a /16 as a.b.0.0"
[ -n "$PORT" ] || { [ "$KIND" = udp ] && PORT=9 || PORT=80; }
command -v trafgen >/dev/null || die "trafgen is missing: apt-get install netsniff-ng"
[ "$(id -u)" -eq 0 ] || die "trafgen needs root: run with sudo"
[ -e "/sys/class/net/$DEV" ] || die "no interface $DEV in this network namespace"
src_mac=$(cat "/sys/class/net/$DEV/address")

cfg=$(mktemp --suffix=.cfg)
trap 'rm -f "$cfg"' EXIT
sed -e "s/DST_MAC/$MAC/; s/SRC_MAC/$src_mac/; s/SRC_NET/$NET/; s/DST_IP/$DST/; s/DST_PORT/$PORT/" "$cfg_in" >"$cfg"

args=(--dev "$DEV" --conf "$cfg" --cpus "$CPUS" -n "$COUNT" --no-sock-mem --notouch-irq)
if [ -n "$RATE" ]; then
    args+=(-b "${RATE}pps")
else
    args+=(-t 0) # the sendto path: it waits when a veth peer is slow, where TX_RING fails
fi
echo "trafgen: $KIND flood, $COUNT frames${RATE:+ at $RATE pps} on $DEV -> $DST:$PORT ($MAC), sources $NET/16, at most $SECS s"
exec timeout -s INT "$SECS" trafgen "${args[@]}"
