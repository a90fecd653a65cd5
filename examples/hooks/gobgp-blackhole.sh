#!/bin/sh
# scrubber --on-event hook: announce a blackhole route (RFC 7999 community 65535:666) for an
# attacked service's prefix through GoBGP while the attack lasts, and withdraw it when it stops.
#
#   scrubber run … --on-event '/usr/share/doc/scrubber/examples/gobgp-blackhole.sh 192.0.2.1:50051 web=198.18.30.10/32'
#
# Arguments: the gobgpd API (HOST:PORT, gobgpd --api-hosts), then SERVICE=PREFIX for every
# service that may be diverted (services not listed are left alone). The event (one JSON object)
# comes on stdin; scrubber runs the hook with `sh -c`, at most 10 s, failures counted. gobgpd
# peers with the upstream router, which turns routes with the blackhole community into
# blackholes (or, with flowspec, into a filter) — see docs/scale-out.md.
set -eu
api="$1"
shift
host="${api%:*}"
port="${api##*:}"
event="$(cat)"
kind="$(printf '%s' "$event" | sed -n 's/.*"event" *: *"\([a-z]*\)".*/\1/p')"
target="$(printf '%s' "$event" | sed -n 's/.*"target" *: *"\([^"]*\)".*/\1/p')"
for map in "$@"; do
    svc="${map%%=*}"
    prefix="${map#*=}"
    [ "$svc" = "$target" ] || continue
    case "$kind" in
        start)
            gobgp -u "$host" -p "$port" global rib -a ipv4 add "$prefix" community 65535:666
            echo "announced blackhole $prefix for $target"
            ;;
        stop)
            gobgp -u "$host" -p "$port" global rib -a ipv4 del "$prefix"
            echo "withdrew blackhole $prefix for $target"
            ;;
    esac
done
