"""The measurements, each run on several paths side by side (interleaved repetitions).

Every function takes the paths to compare and returns plain dicts: per path, the list
of repetitions' results plus their medians, so the caller can print and tabulate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from netbench.common import median
from netbench.topology import WORKLOAD, Path_, cpu_seconds, rss_mb
from netbench.workload import ACCEPT_PORT, HTTP_PORT, SINK_PORT

SETTLE_S = 0.6  # the gateway's log is flushed every 0.1 s, bare.json written every 0.2 s


class Sampler:
    """Samples a process's RSS every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (monotonic time, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.pid:
                try:
                    self.samples.append((time.monotonic(), rss_mb(self.pid)))
                except OSError:
                    return
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def max_mb(self) -> float:
        return max((mb for _, mb in self.samples), default=float("nan"))


def _cpu(p: Path_) -> tuple[float, float]:
    return cpu_seconds(p.gateway_pid) if p.gateway_pid else (0.0, 0.0)


def _medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))] if runs else []
    return {k: median(float(r[k]) for r in runs) for k in keys}


def _summary(per_path: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {name: {"runs": runs, "median": _medians(runs)} for name, runs in per_path.items()}


def connect_latency(paths: Sequence[Path_], server: str, n: int, reps: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {p.name: [] for p in paths}
    for _ in range(reps):
        for p in paths:
            runs[p.name].append(p.run("connect", server, ACCEPT_PORT, n))
    return _summary(runs)


def flow_rate(paths: Sequence[Path_], server: str, seconds: float, reps: int) -> dict[str, Any]:
    """Flows/s of one sequential client, with the gateway's verdicts, CPU time and RSS."""
    runs: dict[str, list[dict[str, Any]]] = {p.name: [] for p in paths}
    for _ in range(reps):
        for p in paths:
            time.sleep(SETTLE_S)
            v0, u0 = p.verdicts(), p.unlogged()
            user0, sys0 = _cpu(p)
            with Sampler(p.gateway_pid) as sampler:
                res = p.run("rate", server, ACCEPT_PORT, seconds)
            user1, sys1 = _cpu(p)
            time.sleep(SETTLE_S)
            verdicts = p.verdicts() - v0
            if p.session is not None:
                res["verdicts"] = verdicts
                # Each connection's SYN should be queued once (a retried SYN: once more);
                # fewer verdicts than connections = connections that never were judged.
                res["missing_verdicts"] = max(0, res["flows"] - verdicts)
                res["unlogged_counted"] = p.unlogged() - u0  # of those, said in the log
                per = 1e6 / max(1, verdicts)
                res["gw_cpu_share"] = (user1 - user0 + sys1 - sys0) / res["seconds"]
                res["gw_cpu_us_per_verdict"] = (user1 - user0 + sys1 - sys0) * per
                res["gw_user_us_per_verdict"] = (user1 - user0) * per
                res["gw_sys_us_per_verdict"] = (sys1 - sys0) * per
                res["gw_rss_max_mb"] = sampler.max_mb
            runs[p.name].append(res)
    return _summary(runs)


def bulk(paths: Sequence[Path_], server: str, nbytes: int, reps: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {p.name: [] for p in paths}
    for _ in range(reps):
        for p in paths:
            cpu0 = sum(_cpu(p))
            res = p.run("bulk", server, SINK_PORT, nbytes)
            if res["received"] != nbytes:
                raise RuntimeError(f"{p.name}: server got {res['received']} of {nbytes} bytes")
            if p.gateway_pid:
                res["gw_cpu_s"] = sum(_cpu(p)) - cpu0
            runs[p.name].append(res)
    return _summary(runs)


def http(paths: Sequence[Path_], server: str, n_new: int, n_keep: int, reps: int) -> dict[str, Any]:
    """Sequential GETs: a new connection per request, and one keep-alive connection."""
    out: dict[str, Any] = {}
    for mode, n in (("new", n_new), ("keep", n_keep)):
        runs: dict[str, list[dict[str, Any]]] = {p.name: [] for p in paths}
        for _ in range(reps):
            for p in paths:
                cpu0 = sum(_cpu(p))
                args = [server, HTTP_PORT, n] + (["keep"] if mode == "keep" else [])
                res = p.run("http", *args)
                if p.gateway_pid:
                    used = sum(_cpu(p)) - cpu0
                    res["gw_cpu_us_per_request"] = used / max(1, res["requests"]) * 1e6
                runs[p.name].append(res)
        out[mode] = _summary(runs)
    return out


def breakdown(paths: Sequence[Path_], server: str, seconds: float) -> dict[str, Any]:
    """Per-verdict time of each timed step (bare and timed kinds), over one rate run."""
    out: dict[str, Any] = {}
    for p in paths:
        time.sleep(SETTLE_S)
        before = p.timing()
        res = p.run("rate", server, ACCEPT_PORT, seconds)
        time.sleep(SETTLE_S)
        after = p.timing()
        delta = {k: (v[0] - before.get(k, [0, 0])[0], v[1] - before.get(k, [0, 0])[1])
                 for k, v in after.items()}  # fmt: skip
        verdicts = max(1, delta.get("verdict_syscall", (0, 0))[0])
        steps = {k: {"calls": n, "us_per_call": ns / max(1, n) / 1e3,
                     "us_per_verdict": ns / verdicts / 1e3}
                 for k, (n, ns) in delta.items()}  # fmt: skip
        out[p.name] = {"run": res, "verdicts": verdicts, "steps": steps}
    return out


def connect_under_load(
    paths: Sequence[Path_], server: str, n: int, load_s: float, reps: int
) -> dict[str, Any]:
    """connect() latency to a decided destination, alone and while the same sandbox makes
    HTTP requests (a new connection each) for ``load_s`` seconds: does the verdict loop
    wait behind the web traffic? (The paths should have no kernel verdict cache, so
    every connect is decided by the loop.)"""
    out: dict[str, Any] = {}
    for label, loaded in (("idle", False), ("loaded", True)):
        runs: dict[str, list[dict[str, Any]]] = {p.name: [] for p in paths}
        for _ in range(reps):
            for p in paths:
                if not loaded:
                    runs[p.name].append(p.run("connect", server, ACCEPT_PORT, n))
                    continue
                cmd = ["timeout", str(load_s), *WORKLOAD, "http", server, str(HTTP_PORT),
                       "1000000"]  # fmt: skip
                load = threading.Thread(target=p.container.exec_run, args=(cmd,))
                load.start()
                time.sleep(min(0.5, load_s / 4))  # the load is under way
                runs[p.name].append(p.run("connect", server, ACCEPT_PORT, n))
                load.join()
        out[label] = _summary(runs)
    return out
