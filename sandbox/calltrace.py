"""Every Docker API call of a run, timed (for the start-up benchmark).

``CODERUN_TRACE_DOCKER=FILE`` makes the CLI's Docker client append one JSON line per
call to FILE: when it began (Unix time), how long it took, the HTTP method, the path
(ids shortened, no query) and the thread that made it; ``mark`` adds a named moment of
the run (session started, sandbox started, closed). Lines are written as they happen:
the CLI leaves with ``os._exit``, so nothing may wait for the end. Off by default: the
client is untouched.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import docker

ENV = "CODERUN_TRACE_DOCKER"
_ID = re.compile(r"/[0-9a-f]{64}")
_VERSION = re.compile(r"^/v[0-9.]+")


def short_path(url: str) -> str:
    """``/v1.41/containers/<64 hex>/start?x=1`` -> ``/containers/<id>/start``."""
    path = url.split("://", 1)[-1]
    path = path[path.find("/") :] if "/" in path else path
    path = path.split("?", 1)[0]
    return _ID.sub("/<id>", _VERSION.sub("", path))


class CallTrace:
    """Appends a line per Docker call (and per ``mark``) to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        with self.lock, self.path.open("a") as f:
            f.write(line)

    def mark(self, name: str) -> None:
        self.write({"mark": name, "at": time.time()})

    def attach(self, client: docker.DockerClient) -> None:
        """Time every request the client's API object sends."""
        api: Any = client.api
        send = api.send

        def timed_send(request: Any, **kwargs: Any) -> Any:
            at, t0 = time.time(), time.perf_counter()
            try:
                return send(request, **kwargs)
            finally:
                self.write({"at": at, "seconds": time.perf_counter() - t0,
                            "method": request.method, "path": short_path(request.url),
                            "thread": threading.current_thread().name})  # fmt: skip

        api.send = timed_send


_active: CallTrace | None = None


def from_env(environ: dict[str, str] | Any) -> CallTrace | None:
    """The trace the environment asks for (kept for ``mark``), or None."""
    global _active
    target = environ.get(ENV)
    if target and _active is None:
        _active = CallTrace(Path(target))
    return _active


def mark(name: str) -> None:
    """A named moment of the run, when tracing (a no-op otherwise)."""
    if _active is not None:
        _active.mark(name)
