"""Run one session to its end: stream output, watch the gateway, always clean up."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import docker
import requests

from sandbox.cleanup import gc
from sandbox.session import Session, SessionConfig, SessionError

GATEWAY_DIED = 125  # like docker run: the failure is coderun's, not the command's


class Interrupted(BaseException):
    """A signal asked us to stop; carries the exit status to use (128 + signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.status = 128 + signum


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _pump(stream: Any, out: Any, err: Any) -> None:
    try:
        for chunk in stream:
            stdout, stderr = chunk if isinstance(chunk, tuple) else (chunk, None)
            if stdout:
                out.write(stdout)
                out.flush()
            if stderr:
                err.write(stderr)
                err.flush()
    except (requests.RequestException, docker.errors.APIError, ValueError):
        pass


def run_session(
    client: docker.DockerClient,
    config: SessionConfig,
    on_started: Callable[[Session], None] | None = None,
    out: Any = None,
    err: Any = None,
) -> int:
    """Run the command in a new session; returns its exit status (or 125/128+N)."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    gc(client)  # leftovers of runs that were killed before they could clean up
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    session: Session | None = None
    status: int | None = None
    error: str | None = None
    try:
        session = Session(client, config)
        session.start()
        assert session.sandbox is not None
        # Attach before start, so not a byte of a short-lived command's output is lost.
        stream = session.sandbox.attach(
            stdout=True, stderr=True, stream=True, logs=True, demux=True
        )
        session.sandbox.start()
        pump = threading.Thread(target=_pump, args=(stream, out, err), daemon=True)
        pump.start()
        if on_started is not None:
            on_started(session)
        while status is None:
            try:
                status = int(session.sandbox.wait(timeout=0.5)["StatusCode"])
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                if not session.gateway_alive():
                    error = "the gateway stopped: the sandbox was cut off and stopped"
                    session.sandbox.kill()
                    status = GATEWAY_DIED
        pump.join(timeout=2)
        if error:
            print(f"coderun: {error}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        status, error = 130, "interrupted (SIGINT)"
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
        if session is not None:
            # Ignore further signals while cleaning up: a second Ctrl-C must not leak.
            masked = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                session.finish(status, error)
                session.close()
            finally:
                for sig, handler in masked.items():
                    signal.signal(sig, handler)
