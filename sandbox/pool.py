"""Warm sessions: gateway + holder pairs started ahead of time, so a run starts fast.

``coderun pool start`` runs a small daemon (``python -m sandbox.pool``) that keeps
``size`` pairs standing by: networks made, the holder's namespace set up, the gateway
container up with mitmproxy loaded, waiting for its claim (``snitch.gateway.standby``).
A ``coderun run`` whose settings match the pool's *shape* claims one, hands the gateway
its own settings (mode, rules, command) and only has to start the sandbox. Nothing of
a pair is ever used twice: after the run the daemon removes it and warms a new one.

The pool folder (``$CODERUN_HOME/pool``) holds one file per pair, named
``<session>.<state>``; a state change is a rename, so two runs never claim one pair:

``warming`` (being started) → ``ready`` → ``claimed`` (a run's) → ``done`` (the run
ended; the daemon removes the containers and networks; the session's log stays).

The daemon owns its pairs (their ``coderun.owner-pid`` label), so ``coderun gc``
removes them if it dies; it stops on ``coderun pool stop`` (SIGTERM) or after ``idle``
seconds without a claim, and removes every pair no run holds before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from sandbox import paths
from sandbox.cleanup import pid_alive, remove_session, session_objects_left
from sandbox.config import SessionConfig, SessionError
from sandbox.gateway_code import code_digest
from sandbox.labels import LABEL, ROLE
from sandbox.session import Session
from snitch.core.grammar import GatewayState
from snitch.core.session_dir import SessionDir
from snitch.core.settings import NetworkShape, from_json, to_json

TICK_SECONDS = 0.1
CLAIM_GRACE_SECONDS = 30.0  # a claimed pair whose run never said who it is
STOP_WAIT_SECONDS = 3.0
HEALTH_SECONDS = 5.0  # how often ready pairs are checked for a running gateway
DISCARD_SECONDS = 10.0  # how long a discarded pair's removal is retried
REAP_DELAY_SECONDS = 0.5  # a used pair is removed this long after its run ended


def pool_dir() -> Path:
    return paths.private_dir(paths.data_dir() / "pool")


def shape_key(config: SessionConfig) -> str | None:
    """What a warm pair was made for; None when this run cannot use one."""
    if config.upstream_ca is not None:
        return None  # a per-run file the gateway reads at start
    shape = [to_json(config.network), code_digest(), os.getuid()]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


def daemon_info() -> dict[str, Any] | None:
    """The running daemon's ``daemon.json`` (None when no daemon runs)."""
    with contextlib.suppress(OSError, ValueError):
        info: dict[str, Any] = json.loads((pool_dir() / "daemon.json").read_text())
        if pid_alive(int(info["pid"])):
            return info
    return None


def entries(state: str | None = None) -> list[tuple[str, str, Path]]:
    """``(session, state, file)`` of every pair (of one state)."""
    found = []
    for path in pool_dir().iterdir():
        sid, _, st = path.name.partition(".")
        if st in ("warming", "ready", "claimed", "done") and (state is None or st == state):
            found.append((sid, st, path))
    return found


def _read(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    return {}


def _age(path: Path) -> float:
    """When the file last changed (0 when it is gone: another run renamed it)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _write(path: Path, data: dict[str, Any]) -> None:
    paths.write_private(path, json.dumps(data))


# -- the run's side ------------------------------------------------------------------------
def claim(client: docker.DockerClient, config: SessionConfig) -> Session | None:
    """A warm session for this run, or None (no daemon, no pair of this shape ready)."""
    key = shape_key(config)
    if key is None or config.uses_ca != config.network.intercept_tls:
        return None  # secrets: the gateway needs the CA, which a warm one was not given
    if config.run.decision_service:
        return None  # its token goes into a gateway that starts with this run
    if daemon_info() is None:
        return None
    for sid, _, path in sorted(entries("ready"), key=lambda e: _age(e[2])):
        data = _read(path)  # {} when another run took it meanwhile
        if data.get("shape") != key:
            continue
        claimed = path.with_name(f"{sid}.claimed")
        try:
            path.rename(claimed)  # atomic: exactly one run wins a pair
        except FileNotFoundError:
            continue
        _write(claimed, {**data, "claimer": os.getpid(), "claimed": time.time()})
        session = Session(client, config, warm_id=sid)
        session.hand_back = hand_back
        return session
    return None


def hand_back(session: Session) -> bool:
    """End a warm session's run: the gateway flushes and stops, the sandbox goes; the
    pair goes to the daemon. False when no daemon is there (remove it yourself)."""
    gw = session.gateway
    if gw is not None:
        with contextlib.suppress(docker.errors.APIError):
            gw.kill(signal="SIGTERM")
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        stopped = GatewayState.STOPPED
        while time.monotonic() < deadline and session.folder.gateway_state() != stopped:
            time.sleep(0.01)
    if session.sandbox is not None:
        with contextlib.suppress(docker.errors.NotFound):
            session.sandbox.remove(force=True)
    claimed = pool_dir() / f"{session.id}.claimed"
    if daemon_info() is None:
        claimed.unlink(missing_ok=True)
        return False
    try:
        done = claimed.with_name(f"{session.id}.done")
        claimed.rename(done)
        os.utime(done)  # when the run ended (see REAP_DELAY_SECONDS)
    except FileNotFoundError:
        return False
    return True


# -- the daemon ----------------------------------------------------------------------------
class PoolDaemon:
    """Keeps ``size`` pairs of one shape ready; removes used and abandoned ones."""

    def __init__(self, client: docker.DockerClient, config: SessionConfig, size: int,
                 idle: float) -> None:  # fmt: skip
        self.client = client
        self.config = config
        self.size = size
        self.idle = idle
        self.key = shape_key(config)
        self.stop = threading.Event()
        self.last_claim = time.monotonic()
        self.failures = 0
        self.next_check = 0.0

    def run(self) -> None:
        _write(pool_dir() / "daemon.json", {"pid": os.getpid(), "size": self.size,
               "idle": self.idle, "shape": self.key, "started": time.time()})  # fmt: skip
        try:
            while not self.stop.is_set():
                if time.monotonic() - self.last_claim > self.idle:
                    break
                try:
                    self.tick()
                except (OSError, docker.errors.DockerException) as exc:  # try again later
                    print(f"coderun pool: {exc}", file=sys.stderr, flush=True)
                    self.stop.wait(1.0)
        finally:
            self.shutdown()

    def tick(self) -> None:
        self.reap()
        if time.monotonic() > self.next_check:
            self.drop_dead()
        warm = len(entries("ready")) + len(entries("warming"))
        if warm < self.size and self.failures < 3:
            self.warm_one()
        else:
            self.stop.wait(TICK_SECONDS)

    def warm_one(self) -> None:
        session = Session(self.client, self.config, record=False)
        marker = pool_dir() / f"{session.id}.warming"
        _write(marker, {"shape": self.key, "created": time.time()})
        try:
            session.start_standby()
        except (SessionError, docker.errors.DockerException) as exc:
            print(f"coderun pool: warming a pair failed: {exc}", file=sys.stderr, flush=True)
            self.failures += 1
            self._discard(session.id, marker)
            return
        self.failures = 0
        marker.rename(marker.with_name(f"{session.id}.ready"))

    def reap(self) -> None:
        for sid, state, path in entries():
            if state == "done":
                if time.time() - _age(path) < REAP_DELAY_SECONDS:
                    continue  # let the run that just ended exit first
                remove_session(self.client, sid)
                path.unlink(missing_ok=True)
                self.last_claim = time.monotonic()
            elif state == "claimed":
                self.last_claim = time.monotonic()
                data = _read(path)
                if not data:
                    continue  # handed back meanwhile
                claimer = int(data.get("claimer", 0))
                if claimer:
                    abandoned = not pid_alive(claimer)
                else:  # claimed a moment ago, the run's pid not written yet
                    abandoned = time.time() - _age(path) > CLAIM_GRACE_SECONDS
                if abandoned:
                    remove_session(self.client, sid)
                    path.unlink(missing_ok=True)

    def drop_dead(self) -> None:
        """Discard ready pairs whose gateway stopped (``gc --all``, a crash) now and then."""
        self.next_check = time.monotonic() + HEALTH_SECONDS
        running = {c.labels.get(LABEL) for c in self.client.containers.list(
            filters={"label": f"{ROLE}=gateway"})}  # fmt: skip
        for sid, _, path in entries("ready"):
            if sid not in running:
                self._discard(sid, path)

    def _discard(self, sid: str, path: Path) -> None:
        """Remove an unused pair, its pool file and its (empty) session folder. A pair
        removed under the daemon may still be going away (someone else's removal holds its
        network a moment): tried again until nothing of it is left, for a few seconds."""
        deadline = time.monotonic() + DISCARD_SECONDS
        while True:
            with contextlib.suppress(docker.errors.DockerException):
                remove_session(self.client, sid)
                if not session_objects_left(self.client, sid):
                    break
            if time.monotonic() > deadline:
                print(f"coderun pool: pair {sid} not fully removed (coderun gc will)",
                      file=sys.stderr, flush=True)
                break
            time.sleep(0.5)
        path.unlink(missing_ok=True)
        shutil.rmtree(SessionDir.of(paths.sessions_dir(), sid).path, ignore_errors=True)

    def shutdown(self) -> None:
        """Remove what no run holds; claimed pairs are their runs' to remove now."""
        with contextlib.suppress(OSError, docker.errors.DockerException):
            self.reap()
        for sid, state, path in entries():
            if state in ("ready", "warming"):
                self._discard(sid, path)
        (pool_dir() / "daemon.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.pool")
    parser.add_argument("--size", type=int, default=1)
    parser.add_argument("--idle", type=float, default=900.0)
    parser.add_argument("--network", required=True, help="a NetworkShape as JSON")
    args = parser.parse_args(argv)
    config = SessionConfig(image="", network=from_json(NetworkShape, args.network))
    daemon = PoolDaemon(docker.from_env(timeout=120), config, args.size, args.idle)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: daemon.stop.set())
    daemon.run()


if __name__ == "__main__":
    main()
