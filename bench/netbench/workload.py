"""Traffic for the network benchmarks: servers and clients, stdlib only.

Runs *inside* the benchmark containers (bind-mounted at /bench, run by the image's
python3), never on the host, so every byte stays between containers the benchmark
started. Each client prints one JSON object.

    python3 workload.py serve                      # all servers below, until killed
    python3 workload.py connect HOST PORT N        # N sequential connect() timings
    python3 workload.py rate HOST PORT SECONDS     # new flows/s of one sequential client
    python3 workload.py bulk HOST PORT BYTES       # one connection, BYTES sent, MB/s
    python3 workload.py http HOST PORT N [keep]    # N sequential GETs, keep: one connection

Servers: ACCEPT_PORT accepts and closes, SINK_PORT reads to EOF and answers the byte
count, HTTP_PORT answers every GET with a 2-byte body (HTTP/1.1, keep-alive aware).
Clients close with a RST (SO_LINGER 0) so that hundreds of thousands of flows never
wait in TIME_WAIT for an ephemeral port.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
import time

ACCEPT_PORT = 5001
SINK_PORT = 5002
HTTP_PORT = 80
LINGER_RST = struct.pack("ii", 1, 0)
LATE_S = 0.2  # a connect slower than this counts as late (a SYN retry is 1 s)
TIMEOUT_S = 3.0  # a connect that fails or takes longer counts as lost
CHUNK = 1 << 20
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def _listener(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(4096)
    return s


def _accept_close() -> None:
    s = _listener(ACCEPT_PORT)
    while True:
        c, _ = s.accept()
        c.close()


def _sink_one(c: socket.socket) -> None:
    total = 0
    buf = bytearray(CHUNK)
    with c:
        while True:
            n = c.recv_into(buf)
            if not n:
                break
            total += n
        c.sendall(struct.pack("!Q", total))


def _http_one(c: socket.socket) -> None:
    with c:
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                data = c.recv(65536)
                if not data:
                    return
                pending += data
            head, _, pending = pending.partition(b"\r\n\r\n")
            c.sendall(RESPONSE)
            if b"connection: close" in head.lower():
                return


def _serve_threads(port: int, handler) -> None:  # type: ignore[no-untyped-def]
    s = _listener(port)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()


def serve() -> None:
    threading.Thread(target=_accept_close, daemon=True).start()
    threading.Thread(target=_serve_threads, args=(SINK_PORT, _sink_one), daemon=True).start()
    threading.Thread(target=_serve_threads, args=(HTTP_PORT, _http_one), daemon=True).start()
    print("BENCH_SERVER_READY", flush=True)
    while True:
        time.sleep(3600)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


def _connect_once(addr: tuple[str, int]) -> float:
    """Seconds one connect() took (socket creation excluded); the socket is reset."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    s.settimeout(TIMEOUT_S)
    try:
        t0 = time.perf_counter()
        s.connect(addr)
        return time.perf_counter() - t0
    finally:
        s.close()


def connect(host: str, port: int, n: int) -> dict[str, object]:
    addr = (host, port)
    lat: list[float] = []
    errors = 0
    for _ in range(min(50, n)):  # warm-up: ARP, route and conntrack caches
        with contextlib.suppress(OSError):
            _connect_once(addr)
    for _ in range(n):
        try:
            lat.append(_connect_once(addr))
        except OSError:
            errors += 1
    lat.sort()
    us = [x * 1e6 for x in lat]
    return {
        "n": n, "ok": len(lat), "errors": errors,
        "p50_us": _percentile(us, 50), "p90_us": _percentile(us, 90),
        "p99_us": _percentile(us, 99), "max_us": us[-1] if us else float("nan"),
        "mean_us": sum(us) / len(us) if us else float("nan"),
    }  # fmt: skip


def rate(host: str, port: int, seconds: float) -> dict[str, object]:
    addr = (host, port)
    ok = errors = late = 0
    worst = 0.0
    start = time.perf_counter()
    end = start + seconds
    now = start
    while now < end:
        try:
            took = _connect_once(addr)
            ok += 1
            if took > worst:
                worst = took
            if took > LATE_S:
                late += 1
        except OSError:
            errors += 1
        now = time.perf_counter()
    elapsed = now - start
    return {
        "flows": ok, "errors": errors, "late": late, "seconds": elapsed,
        "flows_per_s": ok / elapsed, "max_ms": worst * 1e3,
    }  # fmt: skip


def bulk(host: str, port: int, nbytes: int) -> dict[str, object]:
    block = memoryview(bytes(CHUNK))
    s = socket.create_connection((host, port), timeout=60)
    t0 = time.perf_counter()
    with s:
        left = nbytes
        while left > 0:
            n = min(left, CHUNK)
            s.sendall(block[:n])
            left -= n
        s.shutdown(socket.SHUT_WR)
        got = b""
        while len(got) < 8:
            data = s.recv(8 - len(got))
            if not data:
                break
            got += data
    seconds = time.perf_counter() - t0
    received = struct.unpack("!Q", got)[0] if len(got) == 8 else -1
    return {"bytes": nbytes, "received": received, "seconds": seconds,
            "mb_per_s": nbytes / seconds / 1e6}  # fmt: skip


def _read_response(f) -> bool:  # type: ignore[no-untyped-def]
    status = f.readline()
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = f.read(length)
    return status.startswith(b"HTTP/1.1 200") and len(body) == length


def http(host: str, port: int, n: int, keep: bool) -> dict[str, object]:
    request = (
        f"GET /bench HTTP/1.1\r\nHost: {host}\r\nUser-Agent: coderun-bench\r\n"
        + ("" if keep else "Connection: close\r\n")
        + "\r\n"
    ).encode()
    ok = errors = 0
    lat: list[float] = []
    t_start = time.perf_counter()
    conn = None
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = socket.create_connection((host, port), timeout=TIMEOUT_S)
                reader = conn.makefile("rb")
            conn.sendall(request)
            good = _read_response(reader)
            if not keep:
                reader.close()
                conn.close()
                conn = None
            ok += good
            errors += not good
            lat.append(time.perf_counter() - t0)
        except OSError:
            errors += 1
            conn = None
    elapsed = time.perf_counter() - t_start
    if conn is not None:
        conn.close()
    lat.sort()
    ms = [x * 1e3 for x in lat]
    return {
        "requests": ok, "errors": errors, "seconds": elapsed, "req_per_s": ok / elapsed,
        "p50_ms": _percentile(ms, 50), "p99_ms": _percentile(ms, 99),
    }  # fmt: skip


def main(argv: list[str]) -> None:
    cmd = argv[0]
    if cmd == "serve":
        serve()
        return
    host, port = argv[1], int(argv[2])
    if cmd == "connect":
        out = connect(host, port, int(argv[3]))
    elif cmd == "rate":
        out = rate(host, port, float(argv[3]))
    elif cmd == "bulk":
        out = bulk(host, port, int(argv[3]))
    elif cmd == "http":
        out = http(host, port, int(argv[3]), len(argv) > 4 and argv[4] == "keep")
    else:
        raise SystemExit(f"unknown command {cmd!r}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
