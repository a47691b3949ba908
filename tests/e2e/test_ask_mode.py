"""Issue 4 (and 5's names): held flows, decided live through the real control API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from sandbox.internet import DemoInternet
from snitch.core.apitypes import DecideResult
from snitch.core.model import Action, DecisionRequest, Pending
from snitch.core.settings import Topology
from snitch.core.store import RuleStore
from snitch.review.client import ApiError, GatewayClient
from tests.e2e.conftest import coderun_cmd, latest_log, leftovers, wait_for

PROBE = Path(__file__).with_name("probe.py")


class LiveRun:
    """``coderun run --mode ask`` in the background, with an API client to its gateway."""

    def __init__(self, home: Path, internet: DemoInternet, *args: str, timeout: float = 60) -> None:
        self.home = home
        self.proc = subprocess.Popen(
            coderun_cmd("run", "--mode", "ask", "--ask-timeout", str(timeout),
                        "--egress-network", internet.network_name, "--dns-upstream", internet.ip,
                        "-v", f"{PROBE}:/probe.py:ro", *args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        sock = wait_for(lambda: next((home / "sessions").glob("*/api.sock"), None), "the API")
        token = (home / "api-token").read_text().strip()
        self.session = Path(str(sock)).parent.name  # its containers carry this label
        self.client = GatewayClient(Path(str(sock)), token)

    def container(self, role: str) -> Container:
        """This run's container of ``role`` (never another run's)."""
        labels = [f"coderun.session={self.session}", f"coderun.role={role}"]
        (found,) = docker.from_env().containers.list(filters={"label": labels})
        return found

    def pending(self) -> list[Pending]:
        return asyncio.run(self.client.pending())

    def wait_pending(self, n: int, timeout: float = 30) -> list[Pending]:
        return wait_for(lambda: (p := self.pending()) and len(p) >= n and p, f"{n} pending",
                        timeout)  # type: ignore[return-value]

    def decide(self, request: DecisionRequest) -> DecideResult:
        return asyncio.run(self.client.decide(request))

    def finish(self, timeout: float = 60) -> tuple[int, list[dict[str, object]], str]:
        out, err = self.proc.communicate(timeout=timeout)
        self.stdout = out
        results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return self.proc.returncode, results, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def by_label(items: list[Pending], label: str) -> Pending:
    return next(p for p in items if p.label == label)


@pytest.mark.parametrize("topology", list(Topology), ids=str)
def test_unknown_names_are_held_by_name_and_decided(
    home: Path, internet: DemoInternet, tags: dict[str, str], client: docker.DockerClient,
    topology: Topology,
) -> None:
    mark = len(internet.logs())
    run = LiveRun(home, internet, "--topology", str(topology), "--", "python3", "/probe.py",
                  "http:http://api.example.test/held", "connect:evil.example.test:80")
    try:
        items = run.wait_pending(1)
        api = by_label(items, "api.example.test")
        assert api.proto == "tcp" and api.dport == 80 and api.names == ["api.example.test"]
        # Nothing was looked up upstream: the name was answered with a synthetic address.
        assert "DNS api.example.test" not in internet.logs(mark)
        run.decide(DecisionRequest(Action.ALLOW, pending_id=api.id, lifetime="once"))
        with pytest.raises(ApiError) as second:  # the first decision wins
            run.decide(DecisionRequest(Action.DENY, pending_id=api.id, lifetime="once"))
        assert second.value.status == 409
        evil = by_label(run.wait_pending(1), "evil.example.test")
        decided_at = time.monotonic()
        run.decide(DecisionRequest(Action.DENY, pending_id=evil.id, lifetime="once"))
        status, results, err = run.finish()
    finally:
        run.kill()
    assert status == 0, err
    assert results[0]["ok"] and "hello from api.example.test /held" in str(results[0]["detail"])
    assert not results[1]["ok"] and "ConnectionRefused" in str(results[1]["detail"])
    refused_after = float(results[1]["t"]) + float(results[1]["seconds"]) - decided_at  # type: ignore[arg-type]
    assert refused_after < 1.0
    log = latest_log(home)
    flows = {e.names[0]: e for e in log if e.kind == "flow" and e.names}
    assert flows["api.example.test"].verdict == "allow"
    assert flows["api.example.test"].dst == internet.ip  # the real address, after DNAT
    assert flows["evil.example.test"].verdict == "deny"
    # Control for "nothing was looked up": once allowed, the name was looked up upstream.
    assert "DNS api.example.test" in internet.logs(mark)
    assert not leftovers(client)


def test_always_is_stored_and_the_next_run_does_not_ask(
    home: Path, internet: DemoInternet, tags: dict[str, str],
) -> None:
    run = LiveRun(home, internet, "--", "python3", "/probe.py", "http:http://api.example.test/1")
    try:
        item = run.wait_pending(1)[0]
        result = run.decide(DecisionRequest(Action.ALLOW, pending_id=item.id, lifetime="always"))
        assert result.decided == (item.id,)
        status, results, err = run.finish()
    finally:
        run.kill()
    assert status == 0 and results[0]["ok"], (results, err)
    rules = RuleStore(home / "rules" / "rules.db").list()
    assert [(r.action, r.host, r.port_lo, r.source) for r in rules] == [
        ("allow", "api.example.test", 80, "prompt")
    ]
    # The next run is decided by the stored rule: nothing is held.
    again = subprocess.run(
        coderun_cmd("run", "--mode", "ask", "--egress-network", internet.network_name,
                    "--dns-upstream", internet.ip, "-v", f"{PROBE}:/probe.py:ro", "--",
                    "python3", "/probe.py", "http:http://api.example.test/2"),
        capture_output=True, text=True, timeout=60,
    )
    assert again.returncode == 0 and '"ok": true' in again.stdout, again.stderr
    assert RuleStore(home / "rules" / "rules.db").list()[0].hits >= 1


def test_many_pending_do_not_stall_allowed_traffic(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path,
) -> None:
    evil = internet.hosts["evil.example.test"]
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\naction = "allow"\nhost = "api.example.test"\n')
    script = tmp_path / "many.py"
    script.write_text(
        "import socket, threading, time, json\n"
        "results = {}\n"
        "def hold(port):\n"
        "    try:\n"
        f"        socket.create_connection(('{evil}', port), timeout=90).close(); r = 'connected'\n"
        "    except OSError as e:\n"
        "        r = type(e).__name__\n"
        "    results[port] = r\n"
        "threads = [threading.Thread(target=hold, args=(20000 + i,)) for i in range(100)]\n"
        "for t in threads: t.start()\n"
        "print(json.dumps({'stage': 'holding'}), flush=True)\n"
        "while True:\n"
        "    try:\n"
        "        open('/tmp/coderun-go').close(); break\n"
        "    except OSError:\n"
        "        time.sleep(0.05)\n"
        "start = time.monotonic()\n"
        "socket.create_connection(('api.example.test', 80), timeout=10).close()\n"
        "print(json.dumps({'stage': 'allowed', 'seconds': time.monotonic() - start}), flush=True)\n"
        "for t in threads: t.join()\n"
        "print(json.dumps({'stage': 'done', 'results': sorted(set(results.values())),"
        " 'n': len(results)}), flush=True)\n"
    )
    run = LiveRun(home, internet, "--policy", str(policy), "--max-pending", "150", str(script),
                  timeout=8)  # fmt: skip
    try:
        items = run.wait_pending(100, timeout=40)
        assert len({p.dport for p in items}) == 100
        run.container("sandbox").exec_run(["touch", "/tmp/coderun-go"])
        status, results, err = run.finish(timeout=90)
    finally:
        run.kill()
    assert status == 0, err
    allowed = next(r for r in results if r.get("stage") == "allowed")
    assert float(allowed["seconds"]) < 0.5  # type: ignore[arg-type]
    done = next(r for r in results if r.get("stage") == "done")
    assert done["n"] == 100 and done["results"] == ["ConnectionRefusedError"]
    expired = [e for e in latest_log(home) if e.kind == "flow" and e.dst == evil]
    assert len(expired) == 100 and all("expired" in e.reason for e in expired)
