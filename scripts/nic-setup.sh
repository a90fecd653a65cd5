#!/usr/bin/env bash
# Prepare two real NICs for the scrubber: worker i serves queue i of both, so both NICs need
# the same number of queues, a symmetric RSS hash (both directions of a flow land on the same
# queue index), and the IRQ of queue i on core i.
#
# Usage: scripts/nic-setup.sh IFEXT IFINT [--queues N] [--cores LIST] [--dry-run]
#
#   --queues N     combined channels per NIC (default: the smaller of the NICs' maximums and
#                  the number of cores in LIST)
#   --cores LIST   cores for queue 0, 1, ... (e.g. 2-5 or 0,2,4,6; default 0..N-1); queue i's
#                  IRQ goes to the i-th core of the list (wrapping)
#   --dry-run      print what would be done, change nothing
#
# What it does, per NIC:
#   ethtool -L IF combined N                     equal queue counts
#   ethtool -X IF hkey 6d:5a:6d:5a:... equal N   symmetric Toeplitz key, spread over N queues
#   ethtool -N IF rx-flow-hash tcp4|tcp6|udp4|udp6 sdfn   hash addresses and ports
#   echo CORE > /proc/irq/IRQ/smp_affinity_list  for the IRQs named IF-TxRx-i in /proc/interrupts
#
# Virtual devices (veth, bridges, tun, ...) have no queues, RSS or IRQs to set: it refuses them.
# Stop irqbalance first (`systemctl disable --now irqbalance`) or it moves the IRQs again.
set -euo pipefail

prog=nic-setup.sh
die() { echo "$prog: error: $*" >&2; exit 1; }
warn() { echo "$prog: warning: $*" >&2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

ext="" int="" queues="" cores="" dry=0
while [ $# -gt 0 ]; do
    case "$1" in
        --queues) [ $# -ge 2 ] || die "--queues needs a number"; queues="$2"; shift 2 ;;
        --queues=*) queues="${1#*=}"; shift ;;
        --cores) [ $# -ge 2 ] || die "--cores needs a list, e.g. 0-3"; cores="$2"; shift 2 ;;
        --cores=*) cores="${1#*=}"; shift ;;
        --dry-run) dry=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *)
            if [ -z "$ext" ]; then ext="$1"
            elif [ -z "$int" ]; then int="$1"
            else die "unexpected argument $1 (see --help)"; fi
            shift ;;
    esac
done
[ -n "$ext" ] && [ -n "$int" ] || { usage >&2; die "give the two interfaces: $prog IFEXT IFINT"; }
[ "$ext" != "$int" ] || die "IFEXT and IFINT are the same interface ($ext): give two different NICs"
if [ -n "$queues" ]; then
    [[ "$queues" =~ ^[1-9][0-9]*$ ]] || die "--queues $queues: give a positive number"
fi

command -v ethtool >/dev/null || die "ethtool not found: install it (apt-get install ethtool)"
if [ "$dry" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (or try --dry-run to see what would be done)"
fi

# Expand a core list like 0-3,6 into "0 1 2 3 6".
expand_cores() {
    local out=() part a b i
    IFS=',' read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        if [[ "$part" =~ ^([0-9]+)-([0-9]+)$ ]]; then
            a="${BASH_REMATCH[1]}" b="${BASH_REMATCH[2]}"
            [ "$a" -le "$b" ] || die "--cores: bad range $part"
            for ((i = a; i <= b; i++)); do out+=("$i"); done
        elif [[ "$part" =~ ^[0-9]+$ ]]; then
            out+=("$part")
        else
            die "--cores: '$part' is not a core number or range (e.g. 0-3,6)"
        fi
    done
    echo "${out[*]}"
}

# Refuse what is not a real NIC with channels; print the maximum combined channel count.
max_combined() {
    local ifname="$1" driver chans max
    [ -d "/sys/class/net/$ifname" ] ||
        die "interface $ifname does not exist; interfaces here: $(ls /sys/class/net | tr '\n' ' ')"
    driver="$(ethtool -i "$ifname" 2>/dev/null | awk '/^driver:/ {print $2}')"
    case "$driver" in
        veth|bridge|dummy|tun|bonding|team|vxlan|macvlan|ipvlan|geneve|gre*|ip6*|vrf|"")
            die "$ifname is a ${driver:-software} (virtual) device: it has no hardware queues, RSS key or IRQs to set; $prog is for real NICs (on veth the lab needs nothing from it)" ;;
    esac
    [ -e "/sys/class/net/$ifname/device" ] ||
        die "$ifname (driver $driver) is a virtual device with no PCI device behind it; $prog is for real NICs"
    chans="$(ethtool -l "$ifname" 2>&1)" ||
        die "$ifname (driver $driver) does not report channels (ethtool -l: ${chans##*: }); set its queues by other means"
    # First "Combined:" line is under "Pre-set maximums".
    max="$(awk '/^Combined:/ {print $2; exit}' <<<"$chans")"
    [[ "$max" =~ ^[0-9]+$ ]] && [ "$max" -ge 1 ] ||
        die "$ifname (driver $driver) has no combined channels (ethtool -l shows separate rx/tx only); set them by hand with ethtool -L"
    echo "$max"
}

# Length in bytes of the NIC's RSS hash key (from ethtool -x).
key_len() {
    local out
    out="$(ethtool -x "$1" 2>&1)" || die "$1 does not show its RSS settings (ethtool -x: ${out##*: }); it cannot get a symmetric hash key"
    awk '/RSS hash key:/ {getline; n = split($0, a, ":"); print n; exit}' <<<"$out"
}

max_ext="$(max_combined "$ext")"
max_int="$(max_combined "$int")"

if [ -n "$cores" ]; then
    core_list=($(expand_cores "$cores"))
else
    core_list=()
fi
if [ -z "$queues" ]; then
    queues=$((max_ext < max_int ? max_ext : max_int))
    ncpu="$(nproc)"
    [ "${#core_list[@]}" -gt 0 ] && ncpu="${#core_list[@]}"
    [ "$queues" -gt "$ncpu" ] && queues="$ncpu"
fi
[ "$queues" -le "$max_ext" ] || die "--queues $queues: $ext supports at most $max_ext combined channels"
[ "$queues" -le "$max_int" ] || die "--queues $queues: $int supports at most $max_int combined channels"
if [ "${#core_list[@]}" -eq 0 ]; then
    for ((i = 0; i < queues; i++)); do core_list+=("$i"); done
fi
ncores="$(nproc --all)"
for c in "${core_list[@]}"; do
    [ "$c" -lt "$ncores" ] || die "--cores: core $c does not exist (this machine has $ncores: 0-$((ncores - 1)))"
done

run() {
    if [ "$dry" -eq 1 ]; then
        echo "would run: $*"
    else
        echo "+ $*"
        "$@"
    fi
}

write() { # write VALUE FILE
    if [ "$dry" -eq 1 ]; then
        echo "would write: echo $1 > $2"
    else
        echo "+ echo $1 > $2"
        echo "$1" >"$2"
    fi
}

echo "$prog: $ext and $int: $queues queue(s), queue i on core ${core_list[*]} (in order)$([ "$dry" -eq 1 ] && echo ', dry run')"

for ifname in "$ext" "$int"; do
    run ethtool -L "$ifname" combined "$queues"

    len="$(key_len "$ifname")"
    [[ "$len" =~ ^[0-9]+$ ]] && [ "$len" -ge 2 ] || { warn "$ifname: cannot tell its RSS key length; assuming 40 bytes"; len=40; }
    key=""
    for ((i = 0; i < len; i++)); do
        if ((i % 2 == 0)); then b=6d; else b=5a; fi
        key+="${key:+:}$b"
    done
    run ethtool -X "$ifname" hkey "$key" equal "$queues"

    for t in tcp4 tcp6 udp4 udp6; do
        run ethtool -N "$ifname" rx-flow-hash "$t" sdfn
    done

    pinned=0
    for ((q = 0; q < queues; q++)); do
        core="${core_list[$((q % ${#core_list[@]}))]}"
        # IRQ names: IF-TxRx-Q (ixgbe, igb), i40e-IF-TxRx-Q, ice-IF-TxRx-Q, ...
        irqs="$(awk -v name="$ifname-TxRx-$q" '{ n = $NF; if (n == name || substr(n, length(n) - length(name)) == "-" name) { sub(":", "", $1); print $1 } }' /proc/interrupts)"
        for irq in $irqs; do
            write "$core" "/proc/irq/$irq/smp_affinity_list"
            pinned=$((pinned + 1))
        done
    done
    if [ "$pinned" -eq 0 ]; then
        warn "$ifname: no IRQ named $ifname-TxRx-N in /proc/interrupts (this driver names them differently, e.g. mlx5_compN): pin queue i's IRQ to core i yourself (/proc/irq/IRQ/smp_affinity_list)"
    fi
done

if pgrep -x irqbalance >/dev/null 2>&1; then
    warn "irqbalance is running and will move the IRQs again: systemctl disable --now irqbalance"
fi
echo "$prog: done$([ "$dry" -eq 1 ] && echo ' (dry run: nothing changed)'). Start the scrubber with $queues worker(s) on cores ${core_list[*]}."
