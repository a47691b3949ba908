"""The host's attribution service: answers the gateway's "who made this flow?".

Started with the session (sandbox/session.py) on ``attribution.sock`` in the session
folder, which the gateway has mounted; one thread per connection (the gateway keeps one
open), one JSON line per question and answer (snitch/core/process.py). The sandbox's
init pid comes from ``init_pid`` (Docker's ``State.Pid``), asked again until the
sandbox runs; before that, and for anything not found, the answer is "not found".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.attribution.finder import ProcessFinder
from snitch.core.process import Lookup, ProcessInfo

log = logging.getLogger(__name__)
MAX_LINE = 4096


class Attribution:
    """Finds processes for one sandbox (thread-safe); ``init_pid`` says the sandbox's
    init pid on the host, 0 while it does not run yet."""

    def __init__(self, init_pid: Callable[[], int], proc: Path = Path("/proc")) -> None:
        self._init_pid = init_pid
        self._proc = proc
        self._finder: ProcessFinder | None = None
        self._lock = threading.Lock()
        self.answered = 0
        self.found = 0
        self.busy_ns = 0  # time spent finding (for bench/bench_attribution.py)

    def finder(self) -> ProcessFinder | None:
        if self._finder is None:
            try:
                pid = self._init_pid()
            except Exception as exc:  # the engine is slow or the container gone
                log.debug("attribution: no init pid: %s", exc)
                return None
            if pid > 0:
                try:
                    self._finder = ProcessFinder(pid, self._proc)
                except OSError as exc:
                    log.debug("attribution: cannot read pid %d: %s", pid, exc)
        return self._finder

    def lookup(self, q: Lookup) -> ProcessInfo | None:
        with self._lock:
            start = time.perf_counter_ns()
            self.answered += 1
            try:
                finder = self.finder()
                found = finder.find(q.proto, q.src, q.sport, q.dst, q.dport) if finder else None
            except OSError as exc:
                log.debug("attribution of %s: %s", q, exc)
                found = None
            self.found += found is not None
            self.busy_ns += time.perf_counter_ns() - start
            return found

    def close(self) -> None:
        with self._lock:
            if self._finder is not None:
                self._finder.close()

    def answer(self, line: bytes) -> bytes:
        """One question line -> its answer line (a bad question: an error, no process)."""
        try:
            q = Lookup.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            return json.dumps({"id": None, "error": str(exc)[:200]}).encode() + b"\n"
        found = self.lookup(q)
        out: dict[str, Any] = {"id": q.id}
        if found is not None:
            out.update(found.to_dict())
        return json.dumps(out).encode() + b"\n"


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            self.wfile.write(self.server.attribution.answer(line))
            self.wfile.flush()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    attribution: Attribution


class AttributionService:
    """``Attribution`` served on ``path`` in a background thread until ``stop``."""

    def __init__(self, path: Path, attribution: Attribution) -> None:
        self.path = path
        self.attribution = attribution
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        # A unix socket's path is limited to 107 bytes; a deep data dir passes it. Bound
        # through /proc/self/fd/N of the folder, the path is short whatever the folder's.
        folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            server = _Server(f"/proc/self/fd/{folder}/{self.path.name}", _Handler)
        finally:
            os.close(folder)
        server.attribution = self.attribution
        # The session folder is private to the user; the gateway (root in its container,
        # maybe without DAC_OVERRIDE) must be able to connect.
        os.chmod(self.path, 0o666)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.2,),
                                        name="attribution", daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.attribution.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
