"""The pod rules that `coderun k8s render` puts in its init step, loaded into a real kernel.

Two network namespaces this test creates (a "pod" and an "outside" over a veth pair with
10.241.0.0/16 addresses), deleted in a ``finally``; processes run as the gateway's uid
and as the workload's (setpriv). No gateway reads the queue here, so a workload's flow
that is queued goes nowhere: that is the fail-closed case. Needs root and ``ip netns``.
"""

from __future__ import annotations

import random
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sandbox.k8s.podnet import DNS_PORT, PROXY_PORT, init_rules
from sandbox.k8s.spec import GATEWAY_UID
from tests.export.test_netns import CONNECT, SERVER, namespaces
from tests.needs import need, need_root

WORKLOAD_UID = 1000


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def _as(ns: str, uid: int, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, "setpriv", f"--reuid={uid}", f"--regid={uid}",
            "--clear-groups", *args]  # fmt: skip


def _connects(ns: str, uid: int, addr: str, port: int, timeout: float = 1.0) -> bool:
    code = _as(ns, uid, sys.executable, "-c", CONNECT, addr, str(port), str(timeout))
    return _run(*code, check=False).returncode == 0


@contextmanager
def _server(ns: str, uid: int, *ports: int) -> Iterator[None]:
    proc = subprocess.Popen(_as(ns, uid, sys.executable, "-c", SERVER, *map(str, ports)),
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture()
def tools() -> None:
    need_root("ip netns and iptables in a namespace of its own")
    missing = [t for t in ("ip", "iptables-restore", "ip6tables-restore", "setpriv")
               if shutil.which(t) is None]  # fmt: skip
    need(not missing, f"missing tools: {', '.join(missing)}")


def test_pod_rules_hold_the_workload_and_exempt_the_gateway(tools: None, tmp_path: Path) -> None:
    rules = init_rules(GATEWAY_UID, (80, 443))
    v4, v6 = tmp_path / "pod-rules.v4", tmp_path / "pod-rules.v6"
    v4.write_text(rules.v4)
    v6.write_text(rules.v6)
    net = random.randrange(0, 256)
    outside_ip, pod_ip = f"10.241.{net}.1", f"10.241.{net}.2"
    port, own = 17000 + random.randrange(100), 17200 + random.randrange(100)
    tag = secrets.token_hex(3)
    with namespaces(2) as (outside, pod):
        _run("ip", "-n", pod, "link", "add", f"cpp{tag}", "type", "veth", "peer", "name",
             f"cpo{tag}", "netns", outside)  # fmt: skip
        for ns, dev, addr in ((outside, f"cpo{tag}", outside_ip), (pod, f"cpp{tag}", pod_ip)):
            _run("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        with _server(outside, 0, port), _server(pod, GATEWAY_UID, DNS_PORT, PROXY_PORT):
            assert _connects(pod, WORKLOAD_UID, outside_ip, port)  # before the rules
            _run("ip", "netns", "exec", pod, "iptables-restore", "--noflush", str(v4))
            _run("ip", "netns", "exec", pod, "ip6tables-restore", "--noflush", str(v6))

            # The gateway's uid is exempt: its own flows leave as they are.
            assert _connects(pod, GATEWAY_UID, outside_ip, port)
            # The workload's new flow is queued; no gateway reads the queue: it goes nowhere.
            assert not _connects(pod, WORKLOAD_UID, outside_ip, port, timeout=1.0)
            # Its lookups (here TCP 53 to a host with no resolver) reach the gateway's
            # forwarder instead.
            assert _connects(pod, WORKLOAD_UID, outside_ip, 53)
            # It cannot reach the gateway's ports directly, the gateway can.
            assert not _connects(pod, WORKLOAD_UID, "127.0.0.1", PROXY_PORT)
            assert not _connects(pod, WORKLOAD_UID, "127.0.0.1", DNS_PORT)
            assert _connects(pod, GATEWAY_UID, "127.0.0.1", PROXY_PORT)
            # Its own servers in the pod stay its own.
            with _server(pod, WORKLOAD_UID, own):
                assert _connects(pod, WORKLOAD_UID, "127.0.0.1", own)
