"""Issue 15's rows: open+read of 1,000 small files through a --share (FUSE) vs a plain
bind mount, and what an intercepted, substituted request to a secret's bound host adds.

    python bench/bench_files.py        # about a minute; prints the rows (markdown)

Everything runs against containers it starts (the demo internet), in audit mode. Each
run reads the 1,000 files (64 bytes each) five times in one ``cat`` per pass, timed
inside the sandbox; the request figures are curl's ``time_total`` medians of 20.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import docker

from sandbox import images
from sandbox.internet import start_internet

PASSES = 5
REQUESTS = 20


def coderun(net: object, *args: str, env: dict[str, str] | None = None) -> str:
    from sandbox.internet import DemoInternet

    assert isinstance(net, DemoInternet)
    cmd = [sys.executable, "-m", "sandbox.cli", "run", "--egress-network", net.network_name,
           "--dns-upstream", net.ip, "--mode", "audit", *args]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"coderun failed: {proc.stderr}")
    return proc.stdout


def reads(net: object, folder: Path) -> tuple[float, float]:
    timed = ('for i in $(seq {n}); do s=$(date +%s%N); cat {d}/* >/dev/null; e=$(date +%s%N); '
             'echo {tag} $(( (e - s) / 1000 )); done')  # fmt: skip
    script = "; ".join([timed.format(n=PASSES, d="/s", tag="share"),
                        timed.format(n=PASSES, d="/b", tag="bind")])  # fmt: skip
    out = coderun(net, "--share", f"{folder}:/s", "-v", f"{folder}:/b:ro", "--",
                  "sh", "-c", script)  # fmt: skip
    got: dict[str, list[int]] = {"share": [], "bind": []}
    for line in out.splitlines():
        tag, micros = line.split()
        got[tag].append(int(micros))
    # The first pass of each warms the page cache (and the FUSE lookups): medians.
    return statistics.median(got["share"]) / 1000, statistics.median(got["bind"]) / 1000


def requests(net: object, ca: Path) -> tuple[float, float]:
    curl = "curl -sS -o /dev/null -w '%{time_total}\\n' --max-time 10"
    script = (f'for i in $(seq {REQUESTS}); do {curl} -H "X-Token: $TOKEN" '
              'https://api.example.test/x; done; '
              f"for i in $(seq {REQUESTS}); do {curl} -k https://other.example.test/x; done")
    out = coderun(net, "--upstream-ca", str(ca), "--secret", "TOKEN", "--secret-host",
                  "TOKEN=api.example.test", "--", "sh", "-c", script,
                  env={"TOKEN": "bench-value"})  # fmt: skip
    times = [float(x) * 1000 for x in out.split()]
    return statistics.median(times[:REQUESTS]), statistics.median(times[REQUESTS:])


def main() -> None:
    client = docker.from_env()
    tags = images.build(client)
    net = start_internet(client, tags["internet"])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "files"
            folder.mkdir()
            os.chmod(tmp, 0o755)
            for i in range(1000):
                (folder / f"f{i:04}.txt").write_bytes(b"x" * 64)
            share, bind = reads(net, folder)
            ca = Path(tmp) / "ca.pem"
            ca.write_bytes(net.ca_pem())
            bound, relayed = requests(net, ca)
    finally:
        net.stop()
    print("| figure | baseline | coderun | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| open+read 1,000 files of 64 B (one `cat`), plain bind mount vs --share (FUSE) "
          f"| {bind:.1f} ms | {share:.1f} ms | {share / bind:.1f}× |")
    print(f"| HTTPS GET, new connection: relayed TLS (other host, no secret) vs a secret's "
          f"bound host (TLS terminated, placeholder replaced) | {relayed:.1f} ms | "
          f"{bound:.1f} ms | +{bound - relayed:.1f} ms |")


if __name__ == "__main__":
    main()
