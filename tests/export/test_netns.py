"""The nftables and iptables exports load in a real kernel, and the nftables one enforces.

Every test works inside network namespaces it creates (``coderun-test-<random>``) and
deletes in a ``finally``; traffic only goes between two of them over a veth pair with
addresses from 10.240.0.0/16. Needs root and ``ip netns``: skipped otherwise, unless
CODERUN_REQUIRE_DOCKER=1 or CI=true, where it fails instead.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from snitch.core.model import Action, Proto, Rule
from snitch.review.export import ExportOptions, export
from tests.needs import need

from .samples import sample_resolutions, sample_rules

SERVER = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(16)
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.close()
"""

CONNECT = """
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
"""


def _unavailable(reason: str) -> None:
    need(False, f"network namespace test cannot run: {reason}")


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def netns_ok() -> None:
    missing = [t for t in ("ip", "nft", "iptables-restore") if shutil.which(t) is None]
    if missing:
        _unavailable(f"missing tools: {', '.join(missing)}")
    if os.geteuid() != 0:
        _unavailable("ip netns needs root")
    probe = f"coderun-test-{secrets.token_hex(4)}"
    proc = _run("ip", "netns", "add", probe, check=False)
    if proc.returncode != 0:
        _unavailable(f"ip netns add is not permitted here: {proc.stderr.strip()}")
    _run("ip", "netns", "del", probe, check=False)


@contextlib.contextmanager
def namespaces(count: int) -> Iterator[list[str]]:
    names = [f"coderun-test-{secrets.token_hex(4)}" for _ in range(count)]
    made: list[str] = []
    try:
        for n in names:
            _run("ip", "netns", "add", n)
            made.append(n)
        yield names
    finally:
        for n in made:
            _run("ip", "netns", "del", n, check=False)


def _in(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run("ip", "netns", "exec", ns, *args, check=check)


def test_nftables_export_passes_nft_check(netns_ok: None, tmp_path: Path) -> None:
    opts = ExportOptions(resolvers=["192.0.2.53", "2001:db8::53"])
    result = export(sample_rules(), sample_resolutions(), "nftables", opts)
    script = tmp_path / "rules.nft"
    script.write_text(result.text)
    with namespaces(1) as (ns,):
        _in(ns, "nft", "-c", "-f", str(script))
        _in(ns, "nft", "-f", str(script))  # and really loads, twice (the table is replaced)
        _in(ns, "nft", "-f", str(script))
        listing = _in(ns, "nft", "list", "table", "inet", "coderun").stdout
    assert "policy drop" in listing
    assert "api.example.test" in listing  # element comments survive the round trip


def test_nftables_export_without_rules_loads(netns_ok: None, tmp_path: Path) -> None:
    script = tmp_path / "empty.nft"
    script.write_text(export([], {}, "nftables").text)
    with namespaces(1) as (ns,):
        _in(ns, "nft", "-c", "-f", str(script))


def test_iptables_export_passes_restore_test(netns_ok: None, tmp_path: Path) -> None:
    result = export(sample_rules(), sample_resolutions(), "iptables")
    v4 = tmp_path / "rules.v4"
    v4.write_text(result.text)
    v6 = tmp_path / "rules.v6"
    v6.write_text(
        "".join(line[3:] + "\n" for line in result.text.splitlines() if line.startswith("#6 "))
    )
    assert "-A OUTPUT" in v6.read_text()
    with namespaces(1) as (ns,):
        _in(ns, "iptables-restore", "--test", str(v4))
        if shutil.which("ip6tables-restore"):
            _in(ns, "ip6tables-restore", "--test", str(v6))


def _connects(ns: str, addr: str, port: int, timeout: float = 1.0) -> bool:
    code = sys.executable, "-c", CONNECT, addr, str(port), str(timeout)
    return _in(ns, *code, check=False).returncode == 0


def test_nftables_rules_pass_allowed_and_drop_denied(netns_ok: None, tmp_path: Path) -> None:
    net = random.randrange(0, 256)
    server_ip, client_ip = f"10.240.{net}.1", f"10.240.{net}.2"
    allowed, denied = 18080 + random.randrange(100), 19090 + random.randrange(100)
    tag = secrets.token_hex(3)
    with namespaces(2) as (srv, cli):
        _run("ip", "-n", cli, "link", "add", f"crc{tag}", "type", "veth", "peer", "name",
             f"crs{tag}", "netns", srv)  # fmt: skip
        for ns, dev, addr in ((srv, f"crs{tag}", server_ip), (cli, f"crc{tag}", client_ip)):
            _run("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", srv, sys.executable, "-c", SERVER, str(allowed), str(denied)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            assert _connects(cli, server_ip, allowed) and _connects(cli, server_ip, denied)

            # 1. Allow one port by name: the other is not allowed, and the policy drops it.
            rules = [Rule(Action.ALLOW, host="svc.test", port_lo=allowed, port_hi=allowed,
                          proto=Proto.TCP)]  # fmt: skip
            seen = {"svc.test": [server_ip]}
            script = tmp_path / "one.nft"
            script.write_text(export(rules, seen, "nftables").text)
            _in(cli, "nft", "-f", str(script))
            assert _connects(cli, server_ip, allowed)
            assert not _connects(cli, server_ip, denied, timeout=0.5)

            # 2. Allow every port of the name, but an address deny (which outranks a name
            #    in coderun) takes one port back: tiers keep coderun's precedence.
            rules = [
                Rule(Action.ALLOW, host="svc.test", proto=Proto.TCP),
                Rule(Action.DENY, cidr=server_ip, port_lo=denied, port_hi=denied),
            ]
            script = tmp_path / "two.nft"
            script.write_text(export(rules, seen, "nftables").text)
            _in(cli, "nft", "-f", str(script))
            assert _connects(cli, server_ip, allowed)
            assert not _connects(cli, server_ip, denied, timeout=0.5)
        finally:
            server.kill()
            server.wait(timeout=10)
