#!/usr/bin/env python3
"""TCP corner-case probes with the Linux TCP stack, for the end-to-end tests (tests/tests/e2e.rs).

Run inside the lab's namespaces, as root. Every client scenario prints one JSON object on stdout
({"ok": bool, "ms": float, "error": str|null, ...}) and progress markers on stderr; the test
drives the rest (a spoofed RST from the attacker namespace, the middle box).

  server  --port N               echo server; a line "ABORT" makes it reset the connection
                                 (SO_LINGER 0); listens with TCP_FASTOPEN.
  blind-rst --to IP:PORT --sport P --dev IF
                                 connect, echo once, print "SEQ n" (the client's next sequence
                                 number) on stderr, wait 2 s (the test sends a blind RST at
                                 n + 1000 meanwhile), then echo again: ok when the connection
                                 survived.
  lost-rst --to IP:PORT --sport P
                                 connect, echo once, drop incoming RSTs (nftables, this
                                 namespace), ask the server to reset, stop dropping, then send
                                 again: ok when the second RST arrives within 5 s.
  reconnect --to IP:PORT --sport P --gap-ms G
                                 connect, echo once, vanish without the server hearing it (the
                                 outgoing RST is dropped), reconnect from the same port G ms
                                 later: ok when the new connection echoes within 5 s.
  tfo --to IP:PORT --rounds N    N request/response rounds with TCP Fast Open (sendto with
                                 MSG_FASTOPEN), then N plain ones; reports the time of each.
"""

import argparse
import json
import socket
import subprocess
import sys
import threading
import time

TCP_FASTOPEN = 23
MSG_FASTOPEN = 0x20000000


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def addr(s):
    host, port = s.rsplit(":", 1)
    return host.strip("[]"), int(port)


def nft(script):
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True)


def result(ok, t0=None, error=None, **extra):
    out = {"ok": ok, "ms": None if t0 is None else round((time.monotonic() - t0) * 1000, 2), "error": error}
    out.update(extra)
    print(json.dumps(out), flush=True)
    sys.exit(0 if ok else 1)


def echo_once(s, msg, timeout=3.0):
    s.settimeout(timeout)
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed")
        got += chunk
    if got != msg:
        raise ConnectionError(f"echo mismatch: {got!r}")


def connect_from(to, sport, timeout=5.0):
    s = socket.socket(socket.AF_INET6 if ":" in to[0] else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind(("", sport))
    s.settimeout(timeout)
    s.connect(to)
    return s


def serve(port):
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
    ls.bind(("::", port))
    ls.listen(128)
    say(f"LISTEN {port}")

    def handle(c):
        buf = b""
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                buf += d
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line == b"ABORT":
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        c.close()
                        return
                    c.sendall(line + b"\n")
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    while True:
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def blind_rst(to, sport, dev):
    # The client's ISN, from its own SYN (absolute sequence numbers).
    dump = subprocess.Popen(
        ["tcpdump", "-i", dev, "-n", "-S", "-l", "-c", "1", f"tcp[tcpflags] & tcp-syn != 0 and src port {sport}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.5)
    t0 = time.monotonic()
    try:
        s = connect_from(to, sport)
        msg = b"hello\n"
        echo_once(s, msg)
        line = dump.communicate(timeout=3)[0]
        isn = int(line.split(" seq ")[1].split(",")[0].split(":")[0])
        nxt = (isn + 1 + len(msg)) % 2**32
        say(f"SEQ {nxt}")
        time.sleep(2.0)
        echo_once(s, b"after the blind reset\n")
        s.close()
        result(True, t0, isn=isn)
    except Exception as e:  # noqa: BLE001 - reported to the test
        dump.kill()
        result(False, t0, repr(e))


def lost_rst(to, sport):
    nft("add table inet probe\nadd chain inet probe in { type filter hook input priority 0; }\n"
        f"add rule inet probe in tcp sport {to[1]} tcp flags & rst != 0 counter drop\n")
    t0 = None
    try:
        s = connect_from(to, sport)
        echo_once(s, b"hello\n")
        s.sendall(b"ABORT\n")
        time.sleep(0.5)
        nft("delete table inet probe\n")
        say("RST DROPPED")
        t0 = time.monotonic()
        s.settimeout(5.0)
        s.sendall(b"anyone there?\n")
        got = s.recv(4096)
        result(False, t0, f"no reset: got {got!r}")
    except ConnectionResetError:
        result(True, t0)
    except Exception as e:  # noqa: BLE001
        subprocess.run(["nft", "delete", "table", "inet", "probe"], stderr=subprocess.DEVNULL)
        result(False, t0, repr(e))


def reconnect(to, sport, gap_ms):
    try:
        s = connect_from(to, sport)
        echo_once(s, b"first\n")
        # Vanish: the abortive close's RST never leaves this host, so the server keeps the
        # connection (as with a crashed client, or one behind a NAT that forgot it).
        nft("add table inet probe\nadd chain inet probe out { type filter hook output priority 0; }\n"
            f"add rule inet probe out tcp dport {to[1]} tcp flags & (rst | fin) != 0 counter drop\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
        time.sleep(0.05)
        nft("delete table inet probe\n")
        time.sleep(gap_ms / 1000.0)
    except Exception as e:  # noqa: BLE001
        subprocess.run(["nft", "delete", "table", "inet", "probe"], stderr=subprocess.DEVNULL)
        result(False, None, "first connection: " + repr(e))
    t0 = time.monotonic()
    try:
        s = connect_from(to, sport, timeout=5.0)
        echo_once(s, b"second\n", timeout=5.0)
        s.close()
        result(True, t0)
    except Exception as e:  # noqa: BLE001
        result(False, t0, repr(e))


def tfo(to, rounds):
    fam = socket.AF_INET6 if ":" in to[0] else socket.AF_INET
    times = {"tfo": [], "plain": []}
    try:
        for kind in ("tfo", "plain"):
            for i in range(rounds):
                s = socket.socket(fam, socket.SOCK_STREAM)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(5.0)
                msg = f"{kind} {i}\n".encode()
                t = time.monotonic()
                if kind == "tfo":
                    s.sendto(msg, MSG_FASTOPEN, to)
                else:
                    s.connect(to)
                    s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    chunk = s.recv(4096)
                    if not chunk:
                        raise ConnectionError("closed")
                    got += chunk
                times[kind].append(round((time.monotonic() - t) * 1000, 2))
                s.close()
                time.sleep(0.05)
    except Exception as e:  # noqa: BLE001
        result(False, None, repr(e), **times)
    result(True, None, None, **times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=["server", "blind-rst", "lost-rst", "reconnect", "tfo"])
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--to")
    p.add_argument("--sport", type=int, default=45000)
    p.add_argument("--dev", default="lan")
    p.add_argument("--gap-ms", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    if a.scenario == "server":
        serve(a.port)
    to = addr(a.to)
    {"blind-rst": lambda: blind_rst(to, a.sport, a.dev),
     "lost-rst": lambda: lost_rst(to, a.sport),
     "reconnect": lambda: reconnect(to, a.sport, a.gap_ms),
     "tfo": lambda: tfo(to, a.rounds)}[a.scenario]()


if __name__ == "__main__":
    main()
