"""Decision service benchmark (issue 19): decisions/s with 50 simulated gateways.

    python bench/bench_decision_service.py            # full run, updates docs/benchmarks.md
    python bench/bench_decision_service.py --smoke    # short, prints only

``coderun serve`` runs as its own process on 127.0.0.1 (its own certificate, token and
rule store in a temporary data dir); this process simulates the gateways: 50 asyncio
clients, each with its own keep-alive TLS connections and a few questions in flight, as
a busy gateway has. Two figures, each beside a baseline measured in the same run:

- *answered by rule*: every question is one the service's rules decide (a ``.test`` name
  with an allow rule; the sessions carry labels and the rules are label-scoped, so the
  label matching is in the path). Baseline: the same rules asked in-process
  (``Fleet.ask`` without the network): what TLS, HTTP and JSON cost.
- *decided by a person*: every question waits until a dashboard (one client following
  all 50 sessions' event streams) answers it "allow once". Baseline: the gateway's local
  asker, in-process (``Asker.hold`` then ``Asker.decide``), as the line prompt would.

Only loopback is used. Figures are decisions per second (median of the repetitions).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from netbench.common import machine, update_section  # noqa: E402

from snitch.core import fleetclient  # noqa: E402
from snitch.core.apitypes import SessionInfo  # noqa: E402
from snitch.core.fleetclient import ServiceClient  # noqa: E402
from snitch.core.fleetwire import session_path  # noqa: E402
from snitch.core.model import Action, DecisionRequest, Pending, Rule  # noqa: E402

SECTION = "Decision service: decisions/s with 50 gateways"
GATEWAYS = 50
IN_FLIGHT = 4  # questions a gateway has open at once
TOKEN = "bench-token-" + "x" * 24
fleetclient.CONNECT_TIMEOUT = 60.0  # a loaded machine sets up 250 TLS connections at once


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def item(session: str, n: int, name: str) -> Pending:
    return Pending(id=f"{session}-{n}", session=session, kind="flow", proto="tcp",
                   src="10.0.0.2", sport=40000 + n % 20000, dst="198.51.100.7", dport=443,
                   names=[name], created=time.time(), deadline=time.time() + 60)  # fmt: skip


def team(g: int) -> str:
    return f"team=t{g % 10}"


class Service:
    """``coderun serve`` in its own process."""

    def __init__(self, tmp: Path) -> None:
        tmp.mkdir()
        self.home = tmp / "home"
        self.home.mkdir(mode=0o700)
        (tmp / "token").write_text(TOKEN + "\n")
        os.chmod(tmp / "token", 0o600)
        from snitch.core.store import RuleStore

        with RuleStore(tmp / "rules.db") as store:
            for t in range(10):  # label-scoped rules: one per team, and noise beside them
                store.add(Rule(Action.ALLOW, host="*.pkgs.example.test", scope=f"label:team=t{t}"))
                for k in range(20):
                    store.add(Rule(Action.DENY, host=f"blocked{k}.t{t}.example.test"))
        self.port = free_port()
        env = {**os.environ, "CODERUN_HOME": str(self.home), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox.cli", "serve", "--listen", f"127.0.0.1:{self.port}",
             "--token-file", str(tmp / "token"), "--rules", str(tmp / "rules.db")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.url = f"https://127.0.0.1:{self.port}"
        self.cert = self.home / "fleet" / "tls" / "cert.pem"

    def wait(self, deadline: float = 60.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coderun serve exited: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                if self.cert.exists():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("coderun serve did not listen in time")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def join_all(clients: list[ServiceClient]) -> None:
    """Every gateway joins, with its connections open (TLS set up before the clock runs,
    as a running gateway's are)."""
    for g, client in enumerate(clients):
        info = SessionInfo(f"gw{g}", "ask", labels=(team(g),))
        await client.request("PUT", session_path(f"gw{g}"), info.to_dict())
        path = session_path(f"gw{g}", "info")
        await asyncio.gather(*(client.request("GET", path) for _ in range(IN_FLIGHT)))


async def allowed_rate(
    clients: list[ServiceClient], seconds: float, name: Callable[[int], str]
) -> float:
    """Questions asked for ``seconds``, IN_FLIGHT at a time from each gateway's client
    (the n-th about ``name(n)``), each to be answered "allow": answers/s."""
    done = 0
    end = time.monotonic() + seconds

    async def worker(g: int, client: ServiceClient, w: int) -> None:
        nonlocal done
        path = session_path(f"gw{g}", "ask")
        for n in itertools.count(w * 1_000_000):
            if time.monotonic() >= end:
                return
            body = item(f"gw{g}", n, name(n)).to_dict()
            answer = await client.request("POST", path, body, timeout=None)
            if answer["decision"]["action"] != "allow":
                raise RuntimeError(f"unexpected answer {answer}")
            done += 1

    start = time.monotonic()
    await asyncio.gather(
        *(worker(g, c, w) for g, c in enumerate(clients) for w in range(IN_FLIGHT))
    )
    return done / (time.monotonic() - start)


async def by_rule(service: Service, seconds: float) -> float:
    """Questions the service's rules answer, from 50 gateways: answers/s."""
    ca = service.cert.read_text()
    clients = [ServiceClient(service.url, TOKEN, ca, idle=IN_FLIGHT) for _ in range(GATEWAYS)]
    await join_all(clients)
    rate = await allowed_rate(clients, seconds, lambda n: f"h{n % 97}.pkgs.example.test")
    for client in clients:
        client.close()
    return rate


async def by_person(service: Service, seconds: float) -> float:
    """Questions a dashboard answers "allow once" (it follows all 50 sessions): answers/s."""
    ca = service.cert.read_text()
    clients = [ServiceClient(service.url, TOKEN, ca, idle=IN_FLIGHT) for _ in range(GATEWAYS)]
    await join_all(clients)
    dashboard = ServiceClient(service.url, TOKEN, ca, idle=8)
    deciders: list[asyncio.Task[None]] = []
    pending: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def follow(g: int) -> None:
        async for event in dashboard.stream(session_path(f"gw{g}", "events")):
            if event["topic"] == "pending":
                pending.put_nowait((f"gw{g}", event["data"]["id"]))

    async def decide() -> None:
        while True:
            session, pid = await pending.get()
            request = DecisionRequest(Action.ALLOW, pid)
            await dashboard.request("POST", session_path(session, "decide"), request.to_dict())

    followers = [asyncio.create_task(follow(g)) for g in range(GATEWAYS)]
    deciders = [asyncio.create_task(decide()) for _ in range(8)]
    await asyncio.sleep(0.5)  # the streams are open
    rate = await allowed_rate(clients, seconds, lambda n: f"h{n}.undecided.example.test")
    for task in [*followers, *deciders]:
        task.cancel()
    await asyncio.gather(*followers, *deciders, return_exceptions=True)
    for client in [*clients, dashboard]:
        client.close()
    return rate


async def in_process_rules(tmp: Path, seconds: float) -> float:
    """Baseline: the same rules asked in-process (no TLS, HTTP or JSON)."""
    from snitch.core.store import RuleStore
    from snitch.fleet.hub import Fleet
    from snitch.fleet.rules import FleetRules

    store = RuleStore(tmp / "rules.db")
    fleet = Fleet(FleetRules(store))
    for g in range(GATEWAYS):
        fleet.join(SessionInfo(f"gw{g}", "ask", labels=(team(g),)))
    done, n = 0, 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        for g in range(GATEWAYS):
            answer = fleet.ask(f"gw{g}", item(f"gw{g}", n, f"h{n % 97}.pkgs.example.test"))
            n += 1
            if answer.result().decision.action is not Action.ALLOW:
                raise RuntimeError("unexpected answer")
            done += 1
    rate = done / (time.monotonic() - start)
    store.close()
    return rate


async def in_process_asker(tmp: Path, seconds: float) -> float:
    """Baseline: the gateway's own asker, a flow held then decided "allow once" in-process."""
    from snitch.core.model import FlowKey, Mode, Proto
    from snitch.gateway.asker import Asker
    from snitch.gateway.events import EventBus
    from snitch.gateway.rulebook import RuleBook

    class Held:
        def retain(self) -> None: ...
        def accept(self) -> None: ...
        def drop(self) -> None: ...
        def set_mark(self, mark: int) -> None: ...

    rules = RuleBook(tmp / "asker-rules.db", [], Mode.ASK, "local")
    asker = Asker(rules, EventBus(), "local", lambda *a: None, max_pending=10_000)
    asker._bucket.take = lambda: True  # type: ignore[method-assign]  # a person, not a flood
    done, n = 0, 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        n += 1
        key = FlowKey(Proto.TCP, "10.0.0.2", 40000 + n % 20000, "198.51.100.7", 443)
        asker.hold(Held(), key, (f"h{n}.undecided.example.test",))  # type: ignore[arg-type]
        (pid,) = list(asker.held)
        asker.decide(DecisionRequest(Action.ALLOW, pid))
        done += 1
    rules.close()
    return done / (time.monotonic() - start)


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip() or "?"


async def measure(seconds: float, reps: int) -> dict[str, Any]:
    found: dict[str, list[float]] = {"rule": [], "person": [], "rule_base": [], "person_base": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for rep in range(reps):  # interleaved: the machine is shared and noisy
            for name, figure in (("rule", by_rule), ("person", by_person)):
                service = Service(tmp / f"{name}{rep}")  # a fresh service for each run
                try:
                    service.wait()
                    found[name].append(await figure(service, seconds))
                finally:
                    service.stop()
            found["rule_base"].append(await in_process_rules(tmp / f"rule{rep}", seconds))
            found["person_base"].append(await in_process_asker(tmp / f"person{rep}", seconds))
    return {k: statistics.median(v) for k, v in found.items()} | {"runs": found}


def table(r: dict[str, Any]) -> str:
    m = machine()
    rows = [
        "Measured by `python bench/bench_decision_service.py` on "
        f"{m['date']}, commit {commit()}: {m['cpu']} (load {m['load']}, shared with other "
        f"work), Python {m['python']}. `coderun serve` in its own process on loopback; "
        f"{GATEWAYS} simulated gateways (asyncio clients in one other process, keep-alive "
        f"TLS, {IN_FLIGHT} questions in flight each); median of the repetitions.",
        "",
        "| figure | baseline (same run) | decision service | ratio |",
        "| --- | --- | --- | --- |",
        f"| questions answered by the service's (label-scoped) rules, 50 gateways | "
        f"{r['rule_base']:,.0f} /s in-process (no network) | {r['rule']:,.0f} /s | "
        f"{r['rule'] / r['rule_base']:.2f}× |",
        f'| questions held until a dashboard answers "allow once", 50 gateways | '
        f"{r['person_base']:,.0f} /s the gateway's local asker in-process | "
        f"{r['person']:,.0f} /s | {r['person'] / r['person_base']:.2f}× |",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="short, print only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    seconds, reps = (1.0, 1) if args.smoke else (4.0, 3)
    result = asyncio.run(measure(seconds, reps))
    text = table(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result))
    if not args.smoke:
        update_section(SECTION, text)


if __name__ == "__main__":
    main()
