"""Sampling the gateway's Python with py-spy (from the host, by its host PID).

``py-spy record --format raw`` writes one line per distinct stack, ``frame;frame;... N``
with frames like ``func (path:line)``. We fold those by function (file + name, line
dropped): *self* is the share of busy samples where the function is the innermost
frame, *total* where it is anywhere on the stack. Samples whose innermost frame is the
event loop's ``select`` are the loop waiting for work: they count as idle, not busy.
Only the main thread (the event loop's) is counted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RATE = 250  # samples/s
# Frames on every stack (interpreter start, the event loop's dispatch): no information.
SCAFFOLD = {
    "<frozen runpy>:_run_module_as_main", "<frozen runpy>:_run_code", "asyncio/runners.py:run",
    "asyncio/runners.py:Runner.run", "asyncio/base_events.py:BaseEventLoop.run_until_complete",
    "asyncio/base_events.py:BaseEventLoop.run_forever", "snitch/gateway/main.py:<module>",
    "asyncio/base_events.py:BaseEventLoop._run_once", "asyncio/events.py:Handle._run",
    "snitch/gateway/main.py:main", "netbench/timed_gateway.py:main",
}  # fmt: skip
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    venv = Path(sys.executable).with_name("py-spy")
    return str(venv) if venv.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    seconds: float
    samples: int = 0
    idle: int = 0
    self_counts: Counter[str] = field(default_factory=Counter)
    total_counts: Counter[str] = field(default_factory=Counter)
    error: str = ""

    @property
    def busy(self) -> int:
        return self.samples - self.idle

    @property
    def busy_share(self) -> float:
        """Share of wall time the gateway's main thread was busy (0..1)."""
        return self.busy / self.samples if self.samples else float("nan")

    def top(self, n: int = 12, by: str = "self") -> list[tuple[str, float, float]]:
        """(function, self %, total %) of busy samples, biggest first."""
        counts = self.self_counts if by == "self" else self.total_counts
        busy = max(1, self.busy)
        top = [f for f, _ in counts.most_common(n + len(SCAFFOLD)) if f not in SCAFFOLD][:n]
        return [(f, 100 * self.self_counts[f] / busy, 100 * self.total_counts[f] / busy)
                for f in top]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds, "samples": self.samples, "idle": self.idle,
            "busy_share": self.busy_share, "error": self.error,
            "top_self": self.top(15, "self"), "top_total": self.top(25, "total"),
        }  # fmt: skip


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("/site-packages/", "/dist-packages/", "/opt/coderun/", "/python3.13/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{m.group('func')}"


def parse_raw(text: str, seconds: float) -> Profile:
    prof = Profile(seconds)
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames or frames[0].startswith("threading.py:Thread._bootstrap"):
            continue  # another thread (an idle worker of asyncio.to_thread, say): not the loop
        prof.samples += count
        leaf = frames[-1]
        if leaf.startswith("selectors.py:") and leaf.endswith("select"):
            prof.idle += count
            continue
        prof.self_counts[leaf] += count
        for f in set(frames):
            prof.total_counts[f] += count
    return prof


def record(pid: int, seconds: float, during: Callable[[], Any]) -> tuple[Profile, Any]:
    """Sample ``pid`` for ``seconds`` while ``during()`` runs; returns (profile, its result)."""
    exe = py_spy()
    if exe is None:
        return Profile(seconds, error="py-spy not installed (pip install py-spy)"), during()
    with tempfile.TemporaryDirectory(prefix="coderun-bench-prof-") as tmp:
        out = Path(tmp) / "raw.txt"
        cmd = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)),
               "--rate", str(RATE), "--format", "raw", "--idle",
               "--output", str(out)]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        result: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: result.setdefault("value", during()))
        worker.start()
        log, _ = proc.communicate(timeout=seconds + 60)
        worker.join()
        if proc.returncode != 0 or not out.exists():
            return Profile(seconds, error=f"py-spy failed: {log.strip()[-500:]}"), result.get(
                "value"
            )
        return parse_raw(out.read_text(), seconds), result.get("value")


def markdown(prof: Profile, title: str, n: int = 10) -> str:
    if prof.error:
        return f"{title}: not profiled ({prof.error})."
    lines = [
        f"{title} — py-spy, {prof.samples} samples at {RATE}/s over {prof.seconds:.0f} s; "
        f"the gateway's main thread was busy {100 * prof.busy_share:.0f} % of the time. "
        "Shares are of busy samples (*self*: innermost frame; *total*: anywhere on the stack).",
        "",
        "| function | self | total |",
        "| --- | --- | --- |",
    ]
    for func, self_pct, total_pct in prof.top(n, "self"):
        lines.append(f"| `{func}` | {self_pct:.1f} % | {total_pct:.1f} % |")
    lines += ["", "Biggest inclusive shares (interpreter and event-loop frames left out):", "",
              "| function | total |", "| --- | --- |"]  # fmt: skip
    for func, _s, total_pct in prof.top(n + 8, "total"):
        lines.append(f"| `{func}` | {total_pct:.1f} % |")
    return "\n".join(lines)
