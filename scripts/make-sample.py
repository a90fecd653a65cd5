#!/usr/bin/env python3
"""Write samples/sample.pcap: a small, deterministic capture for `scrubber replay`.

Usage:  python3 scripts/make-sample.py [OUT.pcap]        (default: samples/sample.pcap)
Needs:  scapy (apt-get install -y python3-scapy, or pip install scapy)

The output is byte-for-byte reproducible (fixed seed, fixed timestamps); it is committed, so the
tests do not need scapy. Regenerate it only when this script changes, and update the counts in
scrubber/tests/cli.rs (they are also written to samples/sample.counts.json).

What is in it
=============
Classic pcap, little endian, microsecond timestamps, Ethernet (link type 1), all checksums
correct (scapy computes them), MAC addresses locally administered (02:...). The capture starts at
2026-01-01T00:00:00Z and lasts about 8.5 s. It is what a tap between the upstream router and a
protected web server would see, both directions mixed. Only 198.18.0.0/15 and 2001:2::/48 are
used.

  protected web server   198.18.0.10:80 and [2001:2::10]:80
  DNS server             198.18.0.53 (not protected)
  legitimate clients     198.18.1.0/24, and 2001:2::1:1
  spoofed attackers      198.19.0.0/16 (every flood frame has its own source address/port pair)

Legitimate traffic, 20 complete TCP conversations of 9 frames each = 180 frames:
  SYN, SYN-ACK (server), ACK, HTTP GET (ACK+PSH), HTTP response (server, ACK+PSH), ACK,
  FIN+ACK (client), FIN+ACK (server), ACK. 18 over IPv4, 1 over IPv6 (2001:2::1:1 ->
  [2001:2::10]:80) and 1 over IPv4 tagged with 802.1Q VLAN 100. Each lasts ~2.5 ms; they start
  every 400 ms, interleaved with the floods.
Other legitimate traffic, passed by the engine = 38 frames:
  20 UDP DNS (10 queries to 198.18.0.53:53 and their answers), 10 ICMP echo (5 requests to
  198.18.0.10 and 5 replies), 6 ARP (3 who-has, 3 is-at), 2 ICMPv6 neighbour discovery (NS, NA).
Floods, all towards 198.18.0.10:80 from spoofed 198.19.0.0/16 sources, random ports, sequence and
acknowledgement numbers, spread over the whole capture:
  ACK+PSH with 1-12 bytes of payload   1800    expected drop reason ack_no_session
  bare ACK                              500    ack_no_session
  RST                                   300    rst_no_session
  FIN+ACK                               300    fin_no_session
  xmas (FIN+PSH+URG)                    100    tcp_xmas
  null (no flag)                        100    tcp_null
  SYN+FIN                               100    tcp_syn_fin
  SYN (never completed)                 500    track mode: forwarded (tracked, then expire);
                                               proxy mode: answered with cookie SYN-ACKs

Expected outcome of
  scrubber replay samples/sample.pcap --protect 198.18.0.10:80 --protect '[2001:2::10]:80'
      --syn-mode track
  frames 3918; forwarded 718 (180 legitimate TCP + 38 other + 500 spoofed SYNs); dropped 3200:
  ack_no_session 2300, rst_no_session 300, fin_no_session 300, tcp_xmas 100, tcp_null 100,
  tcp_syn_fin 100; nothing else dropped, nothing answered.
With --syn-mode proxy every SYN (the 500 spoofed and the 20 legitimate ones) is answered with a
cookie SYN-ACK (in --answers) instead of forwarded, and the recorded conversations cannot
complete: their clients' ACKs acknowledge the real server's ISNs, not cookies (dropped as
ack_no_session, cookies_failed), and the server's recorded SYN-ACKs answer no handshake the
scrubber forwarded. That is why track is the default for replay; proxy mode is for seeing what the
SYN proxy does to floods.
"""

import json
import os
import random
import struct
import sys

from scapy.all import (  # noqa: E402
    ARP,
    DNS,
    DNSQR,
    DNSRR,
    ICMP,
    IP,
    TCP,
    UDP,
    Dot1Q,
    Ether,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    Raw,
)

SEED = 20260101
T0 = 1767225600  # 2026-01-01T00:00:00Z
SPAN_US = 8_400_000  # floods spread over 8.4 s

ROUTER_MAC = "02:00:00:00:00:01"  # upstream router (ext side): every inbound frame comes from it
SERVER_MAC = "02:00:00:00:00:10"  # the protected web server
DNS_MAC = "02:00:00:00:00:53"
ROUTER_IP = "198.18.0.1"
SERVER4 = "198.18.0.10"
SERVER6 = "2001:2::10"
CLIENT6 = "2001:2::1:1"
DNS_IP = "198.18.0.53"

N_CONV = 20
FLOODS = [
    # name, TCP flags, count, expected drop reason (None: forwarded in track mode)
    ("ack_psh", "PA", 1800, "ack_no_session"),
    ("bare_ack", "A", 500, "ack_no_session"),
    ("rst", "R", 300, "rst_no_session"),
    ("fin", "FA", 300, "fin_no_session"),
    ("xmas", "FPU", 100, "tcp_xmas"),
    ("null", "", 100, "tcp_null"),
    ("syn_fin", "SF", 100, "tcp_syn_fin"),
    ("syn", "S", 500, None),
]

rng = random.Random(SEED)
events = []  # (time_us, order, frame bytes)


def add(t_us, pkt):
    events.append((t_us, len(events), bytes(pkt)))


def tcp_conversation(i, t, eth_in, eth_out, ip_c2s, ip_s2c, sport):
    """One complete HTTP conversation starting at t (µs); 9 frames."""
    rtt = 300
    cisn = rng.getrandbits(32)
    sisn = rng.getrandbits(32)
    ts_c = 1_000_000 + i * 1000
    ts_s = 5_000_000 + i * 1000
    req = b"GET /index.html HTTP/1.1\r\nHost: 198.18.0.10\r\nUser-Agent: sample/1\r\n\r\n"
    body = b"<html><body>hello from the protected server</body></html>\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    def c(flags, seq, ack, payload=b"", opts=None, dt=0):
        tcp = TCP(sport=sport, dport=80, flags=flags, seq=seq % 2**32, ack=ack % 2**32, window=502,
                  options=opts if opts is not None else [("NOP", None), ("NOP", None), ("Timestamp", (ts_c + dt, ts_s + dt))])
        p = eth_in / ip_c2s() / tcp
        return p / Raw(payload) if payload else p

    def s(flags, seq, ack, payload=b"", opts=None, dt=0):
        tcp = TCP(sport=80, dport=sport, flags=flags, seq=seq % 2**32, ack=ack % 2**32, window=509,
                  options=opts if opts is not None else [("NOP", None), ("NOP", None), ("Timestamp", (ts_s + dt, ts_c + dt))])
        p = eth_out / ip_s2c() / tcp
        return p / Raw(payload) if payload else p

    syn_opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (ts_c, 0)), ("NOP", None), ("WScale", 7)]
    synack_opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (ts_s, ts_c)), ("NOP", None), ("WScale", 7)]
    c1, s1 = cisn + 1, sisn + 1
    frames = [
        c("S", cisn, 0, opts=syn_opts),
        s("SA", sisn, c1, opts=synack_opts),
        c("A", c1, s1, dt=1),
        c("PA", c1, s1, req, dt=1),
        s("PA", s1, c1 + len(req), resp, dt=2),
        c("A", c1 + len(req), s1 + len(resp), dt=3),
        c("FA", c1 + len(req), s1 + len(resp), dt=4),
        s("FA", s1 + len(resp), c1 + len(req) + 1, dt=5),
        c("A", c1 + len(req) + 1, s1 + len(resp) + 1, dt=6),
    ]
    for k, f in enumerate(frames):
        add(t + k * rtt, f)
    return len(frames)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "samples", "sample.pcap"))

    # Legitimate TCP conversations.
    legit_tcp = 0
    for i in range(N_CONV):
        t = 200_000 + i * 400_000
        sport = 40000 + i * 7
        if i == 7:  # IPv6
            eth_in = Ether(src=ROUTER_MAC, dst=SERVER_MAC, type=0x86DD)
            eth_out = Ether(src=SERVER_MAC, dst=ROUTER_MAC, type=0x86DD)
            legit_tcp += tcp_conversation(i, t, eth_in, eth_out,
                                          lambda: IPv6(src=CLIENT6, dst=SERVER6, hlim=60),
                                          lambda: IPv6(src=SERVER6, dst=CLIENT6, hlim=64), sport)
        else:
            client = "198.18.1.%d" % (10 + i)
            ip_id = [i * 100]

            def c2s(client=client, ip_id=ip_id):
                ip_id[0] += 1
                return IP(src=client, dst=SERVER4, ttl=60, id=ip_id[0], flags="DF")

            def s2c(client=client, ip_id=ip_id):
                ip_id[0] += 1
                return IP(src=SERVER4, dst=client, ttl=64, id=ip_id[0] + 5000, flags="DF")

            if i == 13:  # 802.1Q VLAN 100
                eth_in = Ether(src=ROUTER_MAC, dst=SERVER_MAC) / Dot1Q(vlan=100)
                eth_out = Ether(src=SERVER_MAC, dst=ROUTER_MAC) / Dot1Q(vlan=100)
            else:
                eth_in = Ether(src=ROUTER_MAC, dst=SERVER_MAC)
                eth_out = Ether(src=SERVER_MAC, dst=ROUTER_MAC)
            legit_tcp += tcp_conversation(i, t, eth_in, eth_out, c2s, s2c, sport)

    # Other legitimate traffic: DNS, ICMP echo, ARP, IPv6 neighbour discovery.
    other = 0
    for k in range(10):
        t = 150_000 + k * 800_000
        client = "198.18.1.%d" % (100 + k)
        q = DNS(id=0x1000 + k, rd=1, qd=DNSQR(qname="host%d.example.test" % k, qtype="A"))
        add(t, Ether(src=ROUTER_MAC, dst=DNS_MAC) / IP(src=client, dst=DNS_IP, ttl=60, id=k + 1) /
            UDP(sport=50000 + k, dport=53) / q)
        a = DNS(id=0x1000 + k, qr=1, rd=1, ra=1, qd=DNSQR(qname="host%d.example.test" % k, qtype="A"),
                an=DNSRR(rrname="host%d.example.test" % k, type="A", ttl=300, rdata=SERVER4))
        add(t + 400, Ether(src=DNS_MAC, dst=ROUTER_MAC) / IP(src=DNS_IP, dst=client, ttl=64, id=k + 101) /
            UDP(sport=53, dport=50000 + k) / a)
        other += 2
    for k in range(5):
        t = 350_000 + k * 1_500_000
        client = "198.18.1.%d" % (200 + k)
        payload = bytes(range(32))
        add(t, Ether(src=ROUTER_MAC, dst=SERVER_MAC) / IP(src=client, dst=SERVER4, ttl=60, id=k + 1) /
            ICMP(type=8, id=0x4242, seq=k + 1) / Raw(payload))
        add(t + 250, Ether(src=SERVER_MAC, dst=ROUTER_MAC) / IP(src=SERVER4, dst=client, ttl=64, id=k + 201) /
            ICMP(type=0, id=0x4242, seq=k + 1) / Raw(payload))
        other += 2
    for k, (asker_mac, asker_ip, target_ip, target_mac) in enumerate([
        (ROUTER_MAC, ROUTER_IP, SERVER4, SERVER_MAC),
        (ROUTER_MAC, ROUTER_IP, DNS_IP, DNS_MAC),
        (SERVER_MAC, SERVER4, ROUTER_IP, ROUTER_MAC),
    ]):
        t = 50_000 + k * 3_000_000
        add(t, Ether(src=asker_mac, dst="ff:ff:ff:ff:ff:ff") /
            ARP(op=1, hwsrc=asker_mac, psrc=asker_ip, hwdst="00:00:00:00:00:00", pdst=target_ip))
        add(t + 100, Ether(src=target_mac, dst=asker_mac) /
            ARP(op=2, hwsrc=target_mac, psrc=target_ip, hwdst=asker_mac, pdst=asker_ip))
        other += 2
    t = 7 * 400_000 + 100_000  # just before the IPv6 conversation
    add(t, Ether(src=ROUTER_MAC, dst="33:33:ff:00:00:10") /
        IPv6(src=CLIENT6, dst="ff02::1:ff00:10", hlim=255) / ICMPv6ND_NS(tgt=SERVER6) /
        ICMPv6NDOptSrcLLAddr(lladdr=ROUTER_MAC))
    add(t + 100, Ether(src=SERVER_MAC, dst=ROUTER_MAC) /
        IPv6(src=SERVER6, dst=CLIENT6, hlim=255) / ICMPv6ND_NA(tgt=SERVER6, R=0, S=1, O=1) /
        ICMPv6NDOptDstLLAddr(lladdr=SERVER_MAC))
    other += 2

    # Floods. Every flood frame gets its own (source address, source port) pair, so no flood
    # frame can belong to a session another flood frame (a spoofed SYN) opened.
    used = set()
    counts = {}
    for name, flags, n, _reason in FLOODS:
        for _ in range(n):
            while True:
                src = "198.19.%d.%d" % (rng.randrange(256), rng.randrange(1, 255))
                sport = rng.randrange(1024, 65536)
                if (src, sport) not in used:
                    used.add((src, sport))
                    break
            seq = rng.getrandbits(32)
            ack = rng.getrandbits(32) if "A" in flags else 0
            opts = [("MSS", 1460)] if flags == "S" else []
            p = (Ether(src=ROUTER_MAC, dst=SERVER_MAC) /
                 IP(src=src, dst=SERVER4, ttl=rng.randrange(32, 129), id=rng.randrange(65536)) /
                 TCP(sport=sport, dport=80, flags=flags, seq=seq, ack=ack,
                     window=rng.choice([0, 512, 1024, 8192, 65535]), options=opts))
            if name == "ack_psh":
                p = p / Raw(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 13))))
            add(rng.randrange(0, SPAN_US), p)
        counts[name] = n

    events.sort(key=lambda e: (e[0], e[1]))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t_us, _, data in events:
            sec, usec = divmod(t_us, 1_000_000)
            f.write(struct.pack("<IIII", T0 + sec, usec, len(data), len(data)))
            f.write(data)

    expect = {
        "frames": len(events),
        "legit_tcp_frames": legit_tcp,
        "other_passed_frames": other,
        "floods": counts,
        "track_mode": {
            "forwarded": legit_tcp + other + counts["syn"],
            "dropped": sum(n for name, _, n, r in FLOODS if r),
            "dropped_by_reason": {},
        },
    }
    for name, _, n, reason in FLOODS:
        if reason:
            d = expect["track_mode"]["dropped_by_reason"]
            d[reason] = d.get(reason, 0) + n
    counts_path = os.path.join(os.path.dirname(os.path.abspath(out)), "sample.counts.json")
    with open(counts_path, "w") as f:
        json.dump(expect, f, indent=2, sort_keys=True)
        f.write("\n")
    print("wrote %s (%d frames, %d bytes) and %s" % (out, len(events), os.path.getsize(out), counts_path))
    print(json.dumps(expect["track_mode"], sort_keys=True))


if __name__ == "__main__":
    main()
