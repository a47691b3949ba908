"""The fail-closed harness (tests/e2e/test_failclosed.py, test_kernel_cache*.py): a probe
loop in the sandbox that opens a new connection every few milliseconds and prints when
each attempt started and how it ended (CLOCK_MONOTONIC, the host's clock too), the
``coderun run`` that runs it (``CliRun``), the engine's events of a container
(``Events``) and the ways a test makes a gateway go away."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.models.containers import Container

from sandbox.internet import DemoInternet
from snitch.core.logfile import read_log
from tests.e2e.conftest import coderun_cmd, pause, wait_for
from tests.escape.helpers import objects_of

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


def write_loop(tmp_path: Path, internet: DemoInternet, more_rules: str = "") -> tuple[Path, Path]:
    script = tmp_path / "fcloop.py"
    script.write_text(LOOP)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[[rule]]\naction = "allow"\ncidr = "{internet.ip}/32"\nport = 80\nproto = "tcp"\n'
        + more_rules
    )
    return script, policy


class CliRun:
    """``coderun run`` (enforce mode) running the probe loop, read as it goes."""

    def __init__(
        self,
        home: Path,
        internet: DemoInternet,
        tmp_path: Path,
        extra: tuple[str, ...] = (),
        more_rules: str = "",
    ) -> None:
        self.home = home
        self.nonce = uuid.uuid4().hex[:8]
        self.loop = Loop()
        script, policy = write_loop(tmp_path, internet, more_rules)
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


def timeline(
    internet: DemoInternet, run: CliRun, events: Events, gone_at: float, late: list[int]
) -> str:
    """What a failure needs: when each late request started and reached the server, and
    the gateway's events, all in seconds from the moment it was gone."""
    got: dict[int, float] = {}
    logs = bytes(internet.container.logs(timestamps=True)).decode(errors="replace")
    for line in logs.splitlines():
        found = re.search(rf"/fc-{run.nonce}-(\d+) ", line)
        if found:
            stamp = line.split(" ", 1)[0]
            wall = datetime.datetime.fromisoformat(stamp[:26] + "+00:00").timestamp()
            got[int(found.group(1))] = wall - events.offset
    judged: dict[int, float] = {}
    for entry in read_log(run.session_dir() / "flows.jsonl"):
        found = re.search(rf"/fc-{run.nonce}-(\d+)$", entry.url or "")
        if found:
            judged[int(found.group(1))] = entry.time - events.offset
    rows = [f"{s}: started {run.loop.starts.get(s, 0) - gone_at:+.3f}s, judged "
            f"{judged.get(s, 0) - gone_at:+.3f}s, arrived {got.get(s, 0) - gone_at:+.3f}s"
            for s in sorted(late)]  # fmt: skip
    seen = sorted(events.seen.items(), key=lambda kv: kv[1])
    marks = ", ".join(f"{k} {v - gone_at:+.3f}s" for k, v in seen)
    return f"late requests: {'; '.join(rows)} | gateway events: {marks}"


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
