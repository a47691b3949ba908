"""Issue 7: fail closed, proven. The gateway dies (or hangs) mid-run; nothing gets out.

A probe loop in the sandbox opens a new connection to the demo internet every few
milliseconds from several threads, each an HTTP request whose path carries its sequence
number; it prints when each attempt starts and how it ended, with CLOCK_MONOTONIC (the
same clock on the host). Then the gateway is killed (its whole process tree, or the
container) or frozen (``docker pause``: a hung handler). Proof from both sides:

- inside: no attempt that started after the gateway was gone succeeded (and there were
  such attempts: the test fails if the loop went quiet);
- outside: the demo internet logged no request whose attempt started after that.

The CLI exits 125 and says the gateway stopped; the session record says so too.
(Killing only the queue handler is in test_walking_skeleton.py.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container

from sandbox.config import SessionConfig
from sandbox.internet import DemoInternet
from sandbox.session import Session
from snitch.core.model import Mode
from snitch.core.settings import NetworkShape, RunSettings, Topology
from snitch.gateway.kernelcache import ALIVE_MS
from tests.e2e.conftest import coderun_cmd, pause, wait_for
from tests.escape.helpers import objects_of

pytestmark = pytest.mark.docker

LOOP = r"""
import json, os, selectors, socket, sys, time
host, port, nonce = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sel, pending, seq, next_start = selectors.DefaultSelector(), {}, 0, 0.0

def out(d):
    sys.stdout.write(json.dumps(d) + "\n")
    sys.stdout.flush()

def finish(s, ok, error=""):
    out({"seq": pending.pop(s)[0], "ok": ok, "error": error, "end": time.monotonic()})
    sel.unregister(s)
    s.close()

# A new connection every 5 ms however long the others take (a hung gateway must not
# silence the loop), each an HTTP request naming its sequence number.
while True:
    now = time.monotonic()
    if now >= next_start and len(pending) < 100:
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        except OSError as exc:
            out({"seq": seq, "start": now})
            out({"seq": seq, "ok": False, "error": repr(exc), "end": now})
            s.close()
            seq, next_start = seq + 1, now + 0.005
            continue
        pending[s] = [seq, now, "connect"]
        sel.register(s, selectors.EVENT_WRITE)
        out({"seq": seq, "start": now})
        seq, next_start = seq + 1, now + 0.005
    for key, _ in sel.select(timeout=0.002):
        s = key.fileobj
        state = pending[s]
        if state[2] == "connect":
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                finish(s, False, os.strerror(err))
                continue
            s.send(f"GET /fc-{nonce}-{state[0]} HTTP/1.0\r\nHost: api.example.test\r\n\r\n"
                   .encode())
            state[2] = "read"
            sel.modify(s, selectors.EVENT_READ)
        else:
            try:
                finish(s, s.recv(64).startswith(b"HTTP/1.1 200"))
            except OSError as exc:
                finish(s, False, repr(exc))
    for s, state in list(pending.items()):
        if now - state[1] > 0.5:
            finish(s, False, "timed out")
"""


@dataclass
class Loop:
    """What the probe loop printed: attempt starts and outcomes by sequence number."""

    starts: dict[int, float] = field(default_factory=dict)
    outcomes: dict[int, dict[str, Any]] = field(default_factory=dict)
    # feed() runs on the output reader's thread while the test reads: one lock for both.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, line: str) -> None:
        if not line.startswith("{"):
            return
        item = json.loads(line)
        with self.lock:
            if "start" in item:
                self.starts[item["seq"]] = item["start"]
            else:
                self.outcomes[item["seq"]] = item

    def successes(self) -> int:
        with self.lock:
            return sum(1 for o in self.outcomes.values() if o["ok"])

    def started_after(self, t: float) -> list[int]:
        with self.lock:
            return [seq for seq, start in self.starts.items() if start >= t]


def mine(client: docker.DockerClient, home: Path) -> list[str]:
    """What is left of the sessions recorded in ``home`` (other runs share the engine)."""
    ids = [d.name for d in (home / "sessions").iterdir()] if (home / "sessions").exists() else []
    return objects_of(client, ids)


def arrived(internet: DemoInternet, nonce: str) -> set[int]:
    """Sequence numbers of the loop's requests the demo internet received."""
    return {int(m) for m in re.findall(rf"/fc-{nonce}-(\d+) ", internet.logs())}


def write_loop(tmp_path: Path, internet: DemoInternet) -> tuple[Path, Path]:
    script = tmp_path / "fcloop.py"
    script.write_text(LOOP)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[[rule]]\naction = "allow"\ncidr = "{internet.ip}/32"\nport = 80\nproto = "tcp"\n'
    )
    return script, policy


class CliRun:
    """``coderun run`` (enforce mode) running the probe loop, read as it goes."""

    def __init__(
        self, home: Path, internet: DemoInternet, tmp_path: Path, extra: tuple[str, ...] = ()
    ) -> None:
        self.home = home
        self.nonce = uuid.uuid4().hex[:8]
        self.loop = Loop()
        script, policy = write_loop(tmp_path, internet)
        self.proc = subprocess.Popen(
            coderun_cmd(
                "run",
                "--mode",
                "enforce",
                "--policy",
                str(policy),
                "--egress-network",
                internet.network_name,
                "--dns-upstream",
                internet.ip,
                *extra,
                "-v",
                f"{script}:/fcloop.py:ro",
                "--",
                "python3",
                "/fcloop.py",
                internet.ip,
                "80",
                self.nonce,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.loop.feed(line)

    def gateway(self, client: docker.DockerClient) -> Container:
        session = self.session_dir().name  # this run's own session, never another's
        found = client.containers.list(
            filters={"label": [f"coderun.session={session}", "coderun.role=gateway"]}
        )
        assert len(found) == 1, found
        return found[0]

    def session_dir(self) -> Path:
        return next((self.home / "sessions").iterdir())

    def finish(self, timeout: float = 60) -> int:
        status = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture()
def cli_run(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path, topology: Topology
) -> Iterator[CliRun]:
    run = CliRun(home, internet, tmp_path, ("--topology", str(topology)))
    try:
        yield run
    finally:
        run.kill()


class Events:
    """The engine's events for one container, on this host's monotonic clock.

    ``docker kill`` may take seconds to return (the engine tears the network down), so
    the moment the gateway died is taken from its ``die`` event (``pause`` for a pause).
    """

    def __init__(self, client: docker.DockerClient, container: Container) -> None:
        self.offset = time.time() - time.monotonic()
        self.seen: dict[str, float] = {}
        self.stream = client.events(
            decode=True, since=int(time.time()) - 1,
            filters={"type": "container", "container": container.id},
        )  # fmt: skip
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # the stream is closed under us at the end
            for event in self.stream:
                self.seen.setdefault(event["status"], event["timeNano"] / 1e9 - self.offset)

    def at(self, status: str) -> float:
        return float(wait_for(lambda: self.seen.get(status), f"the {status} event"))  # type: ignore[arg-type]

    def close(self) -> None:
        self.stream.close()


def stopped(container: Container) -> bool:
    try:
        container.reload()
    except docker.errors.NotFound:
        return True
    return bool(container.status != "running")


def kill_process_tree(container: Container) -> None:
    """SIGKILL every process of the container from the host: init, python, children."""
    pids = [int(row[1]) for row in container.top()["Processes"]]
    assert len(pids) >= 2, pids  # docker-init and the gateway at least
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def docker_kill(container: Container) -> None:
    container.kill()


def docker_pause(container: Container) -> None:
    pause(container)


@pytest.mark.parametrize("topology", list(Topology), ids=str)
@pytest.mark.parametrize(
    "action", [kill_process_tree, docker_kill, docker_pause], ids=["process-tree", "kill", "pause"]
)
def test_gateway_gone_mid_run_fails_closed(
    cli_run: CliRun,
    internet: DemoInternet,
    client: docker.DockerClient,
    action: Callable[[Container], None],
) -> None:
    run = cli_run
    wait_for(lambda: run.loop.successes() >= 5, "the loop's first connections", timeout=60)
    before = arrived(internet, run.nonce)
    assert before, "control: the demo internet logged none of the loop's requests"
    gateway = run.gateway(client)
    events = Events(client, gateway)
    try:
        action(gateway)
        # From this moment no handler reads the queue: dead (or frozen) for sure.
        gone_at = events.at("pause" if action is docker_pause else "die")
    finally:
        events.close()
    status = run.finish()
    after = run.loop.started_after(gone_at)
    # Inside: attempts went on after the gateway was gone, and none of them succeeded.
    assert after, "the loop made no attempt after the gateway was gone (vacuous)"
    succeeded = [run.loop.outcomes[s] for s in after if run.loop.outcomes.get(s, {}).get("ok")]
    assert succeeded == [], succeeded
    # Outside: nothing that started after that reached the demo internet.
    late = [s for s in arrived(internet, run.nonce) if run.loop.starts.get(s, 0) >= gone_at]
    assert late == []
    # The CLI and the session record say what happened.
    assert status == 125, run.stderr
    assert "coderun: the gateway stopped" in run.stderr
    record = json.loads((run.session_dir() / "session.json").read_text())
    assert record["exit"] == 125 and "gateway" in record["error"]
    assert mine(client, run.home) == []


def test_paused_gateway_holds_new_connections_until_it_resumes(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """A hung handler (no CLI watchdog here): new flows wait in the kernel queue, none
    gets through; once the handler runs again, new connections are decided again. (The
    kernel verdict cache goes on deciding the destinations it holds for at most
    ``ALIVE_MS`` after the gateway's last heartbeat: snitch/gateway/kernelcache.py.)"""
    script, policy = write_loop(tmp_path, internet)
    nonce = uuid.uuid4().hex[:8]
    config = SessionConfig(
        image=tags["sandbox-bash"],
        network=NetworkShape(gateway_image=tags["gateway"],
                             egress_network=internet.network_name, dns_upstream=internet.ip),
        run=RunSettings(command=("python3", "/fcloop.py", internet.ip, "80", nonce),
                        mode=Mode.ENFORCE),
        policy_file=policy,
        volumes=[f"{script}:/fcloop.py:ro"],
    )  # fmt: skip
    session = Session(client, config)
    loop = Loop()

    def read() -> Loop:
        assert session.sandbox is not None
        fresh = Loop()
        for line in session.sandbox.logs(stdout=True, stderr=False).decode().splitlines():
            fresh.feed(line)
        loop.starts, loop.outcomes = fresh.starts, fresh.outcomes
        return loop

    try:
        session.start()
        assert session.sandbox is not None and session.gateway is not None
        session.sandbox.start()
        wait_for(lambda: read().successes() >= 5, "the loop's first connections", timeout=60)
        pause(session.gateway)
        paused_at = time.monotonic() + ALIVE_MS / 1000  # the cache's last heartbeat ran out
        # Wait until 20 attempts that started while paused have ended.
        wait_for(
            lambda: len([s for s in read().started_after(paused_at) if s in loop.outcomes]) >= 20,
            "attempts while paused",
        )
        session.gateway.unpause()
        resumed_at = time.monotonic()
        during = [s for s in loop.started_after(paused_at) if loop.starts[s] < resumed_at]
        assert [s for s in during if loop.outcomes.get(s, {}).get("ok")] == []
        assert [
            s
            for s in arrived(internet, nonce)
            if paused_at <= loop.starts[s] < resumed_at and loop.starts[s] + 0.4 < resumed_at
        ] == []
        # Resumed: new connections are decided (and allowed) again.
        wait_for(
            lambda: any(
                loop.outcomes.get(s, {}).get("ok") for s in read().started_after(resumed_at)
            ),
            "a connection after",
        )
        assert session.gateway_alive()
    finally:
        session.close()
    assert mine(client, home) == []


def test_corrupt_rule_store_stops_the_run_and_is_left_alone(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    client: docker.DockerClient,
    run_coderun: Callable[..., Any],
) -> None:
    store = home / "rules.db"  # where older versions kept it: moved into rules/ on first use
    garbage = b"this is not an SQLite database, but somebody's rules were here\n" * 64
    store.write_bytes(garbage)
    result = run_coderun("--", "sh", "-c", "echo the sandbox ran")
    assert result.status == 125, result.stderr
    assert "the gateway failed to start" in result.stderr and "rule store" in result.stderr
    assert "the sandbox ran" not in result.stdout
    assert (home / "rules" / "rules.db").read_bytes() == garbage  # nothing overwritten
    assert mine(client, home) == []


def test_malformed_policy_is_refused_before_anything_starts(
    home: Path, tmp_path: Path, client: docker.DockerClient
) -> None:
    policy = tmp_path / "bad.toml"
    policy.write_text(
        '[[rule]]\naction = "allow"\nhost = "ok.example.test"\n\n'
        '[[rule]]\naction = "allow"\nport = 70000\n'
    )
    proc = subprocess.Popen(
        coderun_cmd("run", "--policy", str(policy), "--", "true"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert f"{policy}:7:" in stderr and "port" in stderr, stderr
    assert not (home / "sessions").exists() or not list((home / "sessions").iterdir())
    started = client.containers.list(all=True, filters={"label": f"coderun.owner-pid={proc.pid}"})
    assert started == []
