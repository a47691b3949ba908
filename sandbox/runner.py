"""Run one session to its end: stream output, watch the gateway, always clean up.

A *front* (the dashboard, the line prompt) may take over the main thread while the
command runs: it gets the command's output and is told when the command ends. Without
one, output goes to this process's stdout/stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

import docker
import requests

from sandbox import calltrace, paths
from sandbox.cleanup import gc
from sandbox.config import SessionConfig, SessionError
from sandbox.pool import claim
from sandbox.ports import HostForwards, PortWatch
from sandbox.session import Session

GATEWAY_DIED = 125  # like docker run: the failure is coderun's, not the command's
USER_QUIT = 130
LEFTOVERS_WAIT = 30.0  # seconds the run's end waits for the leftovers' removal at most


class Interrupted(BaseException):
    """A signal asked us to stop; carries the exit status to use (128 + signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.status = 128 + signum


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


class Front(Protocol):
    """Something that shows a running session and lets a person act on it."""

    def output(self, stream: str, data: bytes) -> None:
        """A chunk of the command's stdout or stderr (called from another thread)."""

    def finished(self, status: int, error: str | None) -> None:
        """The command ended (called from another thread)."""

    def run(self, session: Session) -> None:
        """Take the main thread until the person is done (returns when they quit)."""


class PlainOutput:
    """No front end: output goes to our stdout/stderr; run() just waits for the end."""

    def __init__(self, out: Any = None, err: Any = None) -> None:
        self.out = out or sys.stdout.buffer
        self.err = err or sys.stderr.buffer
        self.done = threading.Event()

    def output(self, stream: str, data: bytes) -> None:
        target = self.out if stream == "stdout" else self.err
        target.write(data)
        target.flush()

    def finished(self, status: int, error: str | None) -> None:
        self.done.set()

    def run(self, session: Session) -> None:
        while not self.done.wait(0.5):
            pass


def _pump(stream: Any, front: Front) -> None:
    try:
        for chunk in stream:
            stdout, stderr = chunk if isinstance(chunk, tuple) else (chunk, None)
            if stdout:
                front.output("stdout", stdout)
            if stderr:
                front.output("stderr", stderr)
    except (requests.RequestException, docker.errors.APIError, ValueError):
        pass


class _Watch:
    """Waits for the command's end in a thread; kills it if the gateway dies."""

    def __init__(self, session: Session, front: Front, pump: threading.Thread) -> None:
        self.session = session
        self.front = front
        self.pump = pump
        self.status: int | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sandbox = self.session.sandbox
        assert sandbox is not None
        status: int | None = None
        try:
            while status is None:
                try:
                    status = int(sandbox.wait(timeout=0.5)["StatusCode"])
                except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                    if not self.session.gateway_alive():
                        self.error = "the gateway stopped: the sandbox was cut off and stopped"
                        sandbox.kill()
                        status = GATEWAY_DIED
        except docker.errors.DockerException as exc:  # removed under us (cleanup)
            self.error, status = str(exc), status if status is not None else GATEWAY_DIED
        self.pump.join(timeout=2)
        self.status = status
        self.front.finished(status, self.error)


def prune_logs() -> None:
    """Log retention, off the critical path: ``CODERUN_LOG_KEEP_DAYS`` (default 30) and
    ``CODERUN_LOG_MAX_MB`` (default 1024); running sessions are never pruned."""
    # Start-up time: the log queries load in this thread, off the run's critical path.
    from snitch.review.logquery import prune

    try:
        days = float(os.environ.get("CODERUN_LOG_KEEP_DAYS") or 30)
        max_mb = float(os.environ.get("CODERUN_LOG_MAX_MB") or 1024)
        prune(paths.sessions_dir(), days, int(max_mb * 1024 * 1024))
    except (OSError, ValueError, paths.DataDirError):
        pass  # retention must never stop a run


def remove_leftovers(client: docker.DockerClient) -> None:
    """Leftovers of runs that were killed before they could clean up, removed beside
    this run's start (off its critical path: never this run's own objects, whose owner,
    this process, runs); another run cleaning up at the same time may remove some under
    us (they are going anyway)."""
    with contextlib.suppress(docker.errors.DockerException):
        gc(client)
    calltrace.mark("gc done")


def _warm_session(client: docker.DockerClient, config: SessionConfig) -> Session | None:
    """A started session from ``coderun pool``'s warm pairs, if one fits this run."""
    session = claim(client, config)
    if session is None:
        return None
    try:
        session.start()
    except (SessionError, docker.errors.DockerException) as exc:
        print(f"coderun: a warm session failed ({exc}); starting a new one", file=sys.stderr)
        with contextlib.suppress(docker.errors.DockerException, OSError):
            session.finish(None, f"warm session failed: {exc}")
            session.close()
        return None
    return session


def _start_ports(session: Session) -> tuple[PortWatch, HostForwards]:
    """Watch what listens in the sandbox; forward what ``-p`` asks (sandbox/ports.py)."""
    from sandbox.ports import parse_publish

    watch = PortWatch(session)
    watch.start()
    forwards = HostForwards(session)
    forwards.start([parse_publish(p) for p in session.config.publish])
    return watch, forwards


def run_session(
    client: docker.DockerClient,
    config: SessionConfig,
    front: Front | None = None,
    started: Callable[[Session], None] | None = None,
) -> int:
    """Run the command in a new session; returns its exit status (or 125/128+N).
    ``started`` is told the session once it is up (before the command starts)."""
    front = front or PlainOutput()
    calltrace.mark("run_session")
    cleaner = threading.Thread(target=remove_leftovers, args=(client,), daemon=True)
    cleaner.start()
    threading.Thread(target=prune_logs, daemon=True).start()
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    session: Session | None = None
    status: int | None = None
    error: str | None = None
    ports: tuple[PortWatch, HostForwards] | None = None
    try:
        session = _warm_session(client, config)
        if session is None:
            session = Session(client, config)
            session.start()
        calltrace.mark("Session.start done")
        assert session.sandbox is not None
        if started is not None:
            started(session)
        # Attach before start, so not a byte of a short-lived command's output is lost.
        attach = getattr(front, "attach", None)  # a front that takes stdin (terminal.py)
        if attach is not None:
            stream = attach(session)
        else:
            stream = session.sandbox.attach(stdout=True, stderr=True, stream=True, logs=True,
                                            demux=True)  # fmt: skip
        session.sandbox.start()
        calltrace.mark("sandbox started")
        session.sandbox_started()
        ports = _start_ports(session)
        pump = threading.Thread(target=_pump, args=(stream, front), daemon=True)
        pump.start()
        watch = _Watch(session, front, pump)
        watch.thread.start()
        front.run(session)
        if watch.status is None:  # the person quit before the command ended
            status, error = USER_QUIT, "stopped from the dashboard"
        else:
            status, error = watch.status, watch.error
        if error:
            print(f"coderun: {error}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        status, error = USER_QUIT, "interrupted (SIGINT)"
        return status
    except Interrupted as exc:
        status, error = exc.status, f"interrupted (signal {exc.status - 128})"
        return status
    except (SessionError, docker.errors.DockerException) as exc:
        status, error = GATEWAY_DIED, str(exc)
        print(f"coderun: {exc}", file=sys.stderr)
        return status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if ports is not None:
            ports[0].stop()
            ports[1].stop()
            for problem in ports[1].errors:
                print(f"coderun: {problem}", file=sys.stderr)
        if session is not None:
            # Ignore further signals while cleaning up: a second Ctrl-C must not leak.
            masked = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                calltrace.mark("close")
                session.finish(status, error)
                session.close()
                calltrace.mark("closed")
            finally:
                for sig, handler in masked.items():
                    signal.signal(sig, handler)
        cleaner.join(LEFTOVERS_WAIT)  # the leftovers go before we do (os._exit follows)
