"""Shared bits of the network benchmarks: statistics, the machine, docs/benchmarks.md."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "benchmarks.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def median(values: Iterable[float]) -> float:
    items = [v for v in values if not math.isnan(v)]
    return statistics.median(items) if items else float("nan")


def fmt(value: float, unit: str = "", digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    big = abs(value) >= 1000 and digits <= 2
    text = f"{value:,.0f}" if big else f"{value:.{digits}f}"
    return f"{text} {unit}".strip()


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def met(ok: bool | None) -> str:
    return "–" if ok is None else ("yes" if ok else "**no**")


def cpu_model(default: str = "unknown") -> str:
    """The CPU's model name from /proc/cpuinfo (shared by every benchmark's report)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default


def machine() -> dict[str, str]:
    cpu = cpu_model()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    except OSError:
        uname = " ".join(x for x in platform.uname() if x)
    return {
        "uname": uname,
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "load": load,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def command_line() -> str:
    """The command that ran, as one would type it (``--json FILE`` left out)."""
    args: list[str] = []
    skip = False
    for a in sys.argv[1:]:
        if skip or a == "--json" or a.startswith("--json="):
            skip = a == "--json"
            continue
        args.append(a)
    argv = [Path(sys.argv[0]).resolve().relative_to(ROOT).as_posix(), *args]
    return "python " + " ".join(shlex.quote(a) for a in argv)


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def code_state() -> str:
    """The commit measured, and which product files differed from it."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.rstrip() if proc.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [
        line[3:]
        for line in git(
            "status", "--porcelain", "--", "snitch", "sandbox", "images"
        ).splitlines()  # fmt: skip
    ]
    if not changed:
        return f"commit {head}"
    return f"commit {head} plus uncommitted changes to {', '.join(sorted(changed))}"


def preamble(info: dict[str, str], extra: Sequence[str] = ()) -> str:
    lines = [
        f"Measured {info['date']} with `{command_line()}`.",
        "",
        f"- code: {code_state()}",
        f"- machine: `{info['uname']}`",
        f"- CPU: {info['cpu']}",
        "- load average when done (1, 5, 15 min): "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        f"- host Python {info['python']} (the containers run Debian trixie's Python 3.13)",
        *extra,
    ]
    return "\n".join(lines)


def update_section(title: str, body: str, path: Path = DOCS) -> None:
    """Replace (or append) the ``## title`` section of the docs file, keeping the rest.

    Read-modify-write right here, so other sections edited meanwhile are kept.
    """
    heading = f"## {title}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    new = [heading, "", *body.strip("\n").splitlines(), ""]
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", *new]
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = new
    out = "\n".join(lines).rstrip("\n") + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(out)
    tmp.replace(path)
