"""Load benchmark: the scenarios of tests/e2e/test_load_*.py at full size.

    python bench/bench_load.py            # 20 sessions at once, 1000 held flows, 100 runs;
                                          # writes the "Load" section of docs/benchmarks.md
    python bench/bench_load.py --smoke    # CI sizes (4, 200, 10), prints only

Needs a Docker engine and the images (``coderun images build``); starts its own demo
internet and uses a fresh CODERUN_HOME per scenario. Every scenario's invariants (each
flow logged once, every decision applied, nothing left behind) are checked and reported
next to the timings: a broken invariant is a result too, not a crash.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netbench.common import cpu_model  # bench/ is the script's own folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from sandbox import images  # noqa: E402
from sandbox.internet import start_internet  # noqa: E402
from tests.e2e.test_load_held import check_held, held_flows, repeated_held  # noqa: E402
from tests.e2e.test_load_runs import check_runs, runs_in_a_row  # noqa: E402
from tests.e2e.test_load_sessions import check_concurrent, concurrent_sessions  # noqa: E402

SECTION = "## Load"
DOCS = ROOT / "docs" / "benchmarks.md"


def machine() -> dict[str, str]:
    cpu = cpu_model()
    docker_version = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "uname": " ".join(platform.uname()),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "docker": docker_version or "unknown",
        "python": platform.python_version(),
    }


def check(fn: Callable[[dict[str, Any]], None], stats: dict[str, Any]) -> str:
    try:
        fn(stats)
    except AssertionError as exc:
        first = (str(exc).splitlines() or ["an assertion"])[0][:200]
        return "FAILED: " + first.replace("|", "/")
    return "all hold"


def scenario(name: str, run: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="coderun-bench-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        os.environ["CODERUN_HOME"] = str(home)
        print(f"{name} ...", flush=True)
        start = time.monotonic()
        stats = run(Path(tmp))
        stats["wall"] = time.monotonic() - start
        summary = {k: v for k, v in stats.items() if k not in ("sessions", "flows", "outcome")}
        print(f"{name}: {json.dumps(summary, default=str)[:1500]}", flush=True)
        return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CI sizes; do not touch the docs")
    parser.add_argument("--sessions", type=int, help="sessions at once (default 20)")
    parser.add_argument("--flows", type=int, default=10, help="flows of each kind per session")
    parser.add_argument("--held", type=int, help="held flows in one session (default 1000)")
    parser.add_argument("--runs", type=int, help="runs in a row (default 100)")
    args = parser.parse_args()
    n_sessions = args.sessions or (4 if args.smoke else 20)
    n_held = args.held or (200 if args.smoke else 1000)
    n_runs = args.runs or (10 if args.smoke else 100)
    k = 5 if args.smoke else args.flows

    client = docker.from_env(timeout=300)
    tags = images.build(client)
    internet = start_internet(client, tags["internet"])
    try:
        conc = scenario(
            "sessions at once",
            lambda tmp: concurrent_sessions(
                Path(os.environ["CODERUN_HOME"]), internet, tmp, n_sessions, k
            ),
        )
        held = scenario(
            "held flows",
            lambda tmp: held_flows(Path(os.environ["CODERUN_HOME"]), internet, tmp, n_held),
        )
        runs = scenario(
            "runs in a row",
            lambda tmp: runs_in_a_row(Path(os.environ["CODERUN_HOME"]), internet, client, n_runs),
        )
    finally:
        internet.stop()

    kinds: dict[str, int] = {}
    for st in runs["statuses"]:
        kinds[st[0] or "normal"] = kinds.get(st[0] or "normal", 0) + 1
    duplicates = sum(s["duplicates"] for s in conc["sessions"])
    ran = [s for s in conc["sessions"] if s["status"] == 0]
    crashed = [s for s in conc["sessions"] if "NotFound" in s["stderr"] and "gc(" in s["stderr"]]
    other_failures = len(conc["sessions"]) - len(ran) - len(crashed)
    lines = [
        SECTION,
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC with "
        f"`python bench/bench_load.py{' --smoke' if args.smoke else ''}` (scenarios in "
        "`tests/e2e/test_load_*.py`; the CI runs them at 4 / 200 / 10).",
        "",
        *(f"- {key}: {value}" for key, value in machine().items()),
        "- load average when done (1, 5, 15 min): "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "",
        "| scenario | size | wall time | result | invariants |",
        "| --- | --- | --- | --- | --- |",
        f"| sessions at once, each {k} allowed TCP + {k} allowed UDP + {k} denied TCP + {k} "
        f"denied UDP | {n_sessions} sessions, {conc['flows']:,} logged flows | "
        f"{conc['seconds']:.1f} s | {len(ran)}/{n_sessions} runs exit 0"
        + (
            f", {len(crashed)} crashed at start (NotFound in gc: hole 7 in docs/security.md)"
            if crashed
            else ""
        )
        + (f", {other_failures} failed otherwise" if other_failures else "")
        + f"; {duplicates} flows logged twice (hole 6) | on the runs that ran: "
        f"{check(check_concurrent, dict(conc, sessions=ran))} |",
        f"| held flows in one ask-mode session, decided through the API (half allow, half "
        f"deny, 16 requests at a time) | {n_held} flows | {held['wall']:.1f} s (all held "
        f"after {held['held_seconds']:.1f} s, all decided in {held['decide_seconds']:.1f} s: "
        f"{n_held / max(held['decide_seconds'], 1e-9):,.0f} decisions/s) | "
        f"{held['decided']}/{n_held} decided, {repeated_held(held)} retransmitted SYNs "
        f"logged again (hole 6) | {check(check_held, held)} |",
        f"| runs in a row ({', '.join(f'{v} {k_}' for k_, v in kinds.items())}), then "
        f"`coderun gc` | {n_runs} runs | {runs['seconds']:.1f} s "
        f"({runs['seconds'] / n_runs:.1f} s a run) | {runs['cleaned_by_next']} killed runs "
        f"cleaned by the next run, {len(re.findall('removed', runs['gc_output']))} objects "
        f"by gc, {len(runs['left'])} left | {check(check_runs, runs)} |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.smoke:
        docs = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
        if SECTION in docs:
            head, _, rest = docs.partition(SECTION)
            tail = rest[rest.find("\n## ") :] if "\n## " in rest else ""
            docs = head + text + tail
        else:
            docs = docs.rstrip("\n") + "\n\n" + text
        DOCS.write_text(docs.rstrip("\n") + "\n")
        print(f"wrote the Load section of {DOCS}")


if __name__ == "__main__":
    main()
