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

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
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
from tests.e2e.probeloop import (
    CliRun,
    Events,
    Loop,
    arrived,
    docker_kill,
    docker_pause,
    kill_process_tree,
    mine,
    timeline,
    write_loop,
)

pytestmark = pytest.mark.docker


# A deny rule that names a host: while one is in force, every web head is held until read.
NAMES_A_HOST = '\n[[rule]]\naction = "deny"\nhost = "denied.example.test"\n'


@pytest.fixture()
def cli_run(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    tmp_path: Path,
    topology: Topology,
    heads_held: bool,
) -> Iterator[CliRun]:
    more = NAMES_A_HOST if heads_held else ""
    run = CliRun(home, internet, tmp_path, ("--topology", str(topology)), more)
    try:
        yield run
    finally:
        run.kill()


@pytest.mark.parametrize("topology", list(Topology), ids=str)
@pytest.mark.parametrize(
    ("action", "heads_held"),
    [(kill_process_tree, False), (docker_kill, False), (docker_pause, False), (docker_pause, True)],
    ids=["process-tree", "kill", "pause", "pause-heads-held"],
)
def test_gateway_gone_mid_run_fails_closed(
    cli_run: CliRun,
    internet: DemoInternet,
    client: docker.DockerClient,
    action: Callable[[Container], None],
    topology: Topology,
    heads_held: bool,
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
        status = run.finish()
    finally:
        events.close()
    # A frozen gateway's kernel cache goes on deciding the destinations it holds for at
    # most ALIVE_MS after its last heartbeat (snitch/gateway/kernelcache.py); while no deny
    # rule names a host, a plain-HTTP head is not held either (nothing could refuse it), so
    # such connections may complete in that window. A held head never passes; a dead
    # gateway takes its cache with it.
    cached = action is docker_pause and topology is Topology.ROUTED and not heads_held
    closed_at = gone_at + (ALIVE_MS / 1000 if cached else 0.0)
    # Inside: attempts went on after the gateway was gone, and none of them succeeded.
    assert run.loop.started_after(gone_at), "the loop made no attempt after the gateway was gone"
    after = run.loop.started_after(closed_at)
    succeeded = [run.loop.outcomes[s] for s in after if run.loop.outcomes.get(s, {}).get("ok")]
    assert succeeded == [], succeeded
    # Outside: nothing that started after that reached the demo internet.
    late = [s for s in arrived(internet, run.nonce) if run.loop.starts.get(s, 0) >= closed_at]
    assert late == [], timeline(internet, run, events, gone_at, late)
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
        # Every request that arrived printed its start first: read the loop after them.
        reached = arrived(internet, nonce)
        starts = read().starts
        late = [s for s in reached if paused_at <= starts[s] < resumed_at - 0.4]
        assert late == [], late
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
