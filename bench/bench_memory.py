"""Gateway memory benchmark (issue #8): RSS idle, under the flow-rate load, over a soak.

    python bench/bench_memory.py             # 10-minute soak; updates docs/benchmarks.md
    python bench/bench_memory.py --smoke     # 20-second soak, prints only (used by a test)

Two sessions (enforce mode, a policy allowing the benchmark server) run side by side:
*flows* (``web_ports=""``) takes a sequential client opening and closing new TCP
connections, *HTTP* (the default web ports: mitmproxy) takes sequential HTTP GETs, each
on a new connection. The gateway's Python RSS is read from ``/proc/PID/status`` on the
host (the host PID of the container's process). Target: no growth over the soak; the
first tenth of the soak is warm-up, "growth" is the last sample minus the first one
after it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netbench.common import fmt, machine, met, preamble, table, update_section  # noqa: E402
from netbench.figures import Sampler  # noqa: E402
from netbench.topology import Lab, Path_, docker_client, rss_mb, tags_for  # noqa: E402
from netbench.workload import ACCEPT_PORT, HTTP_PORT  # noqa: E402

SECTION = "Gateway memory"
GROWTH_LIMIT_MB = 1.0


def load(path: Path_, ip: str, kind: str, until: float, chunk_s: float, done: list[Any]) -> None:
    """Flows or HTTP GETs in chunks until ``until`` (monotonic); results into ``done``."""
    while time.monotonic() < until - 0.5:
        left = min(chunk_s, until - time.monotonic())
        if kind == "flows":
            done.append(path.run("rate", ip, ACCEPT_PORT, max(0.5, left)))
        else:
            res = path.run("http", ip, HTTP_PORT, max(20, int(150 * left)))
            done.append(res)


def soak_stats(samples: list[tuple[float, float]], t0: float, seconds: float) -> dict[str, float]:
    warm = t0 + seconds / 10
    after = [(t, mb) for t, mb in samples if t >= warm] or samples
    start, end = after[0][1], after[-1][1]
    minutes = max(1e-9, (after[-1][0] - after[0][0]) / 60)
    n = len(after)
    mean_t = sum(t for t, _ in after) / n
    mean_m = sum(m for _, m in after) / n
    var = sum((t - mean_t) ** 2 for t, _ in after)
    slope = sum((t - mean_t) * (m - mean_m) for t, m in after) / var * 60 if var else 0.0
    return {"start": start, "end": end, "max": max(mb for _, mb in samples),
            "growth": end - start, "slope_mb_per_min": slope, "minutes": minutes}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="20 s soak; print, do not write docs")
    ap.add_argument("--minutes", type=float, help="soak length (default 10, smoke 1/3)")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args(argv)
    soak_s = 60 * (args.minutes or (1 / 3 if args.smoke else 10))
    load_s = 3.0 if args.smoke else 20.0
    interval = 0.5 if args.smoke else 5.0
    client = docker_client()
    tags = tags_for(client)
    out: dict[str, Any] = {"soak_s": soak_s, "load_s": load_s}
    with Lab(client, tags) as lab:
        ip = lab.server_ip
        flows = lab.session("gateway")
        web = lab.session("gateway", web=True)
        time.sleep(2.0)
        out["idle"] = {"flows": rss_mb(flows.gateway_pid), "http": rss_mb(web.gateway_pid)}
        print(f"idle RSS: {out['idle']}", file=sys.stderr)
        with Sampler(flows.gateway_pid, 0.25) as s:
            out["load_run"] = flows.run("rate", ip, ACCEPT_PORT, load_s)
        out["under_load"] = {"flows": s.max_mb}
        with Sampler(web.gateway_pid, 0.25) as s:
            out["http_run"] = web.run("http", ip, HTTP_PORT, int(100 * load_s))
        out["under_load"]["http"] = s.max_mb
        print(f"under load: {out['under_load']}; soak {soak_s:.0f} s", file=sys.stderr)
        done: dict[str, list[Any]] = {"flows": [], "http": []}
        t0 = time.monotonic()
        until = t0 + soak_s
        chunk = 2.0 if args.smoke else 30.0
        threads = [
            threading.Thread(target=load, args=(p, ip, kind, until, chunk, done[kind]))
            for p, kind in ((flows, "flows"), (web, "http"))
        ]
        with Sampler(flows.gateway_pid, interval) as sf, Sampler(web.gateway_pid, interval) as sw:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        out["soak"] = {"flows": soak_stats(sf.samples, t0, soak_s),
                       "http": soak_stats(sw.samples, t0, soak_s)}  # fmt: skip
        out["soak"]["flows"]["count"] = sum(r["flows"] for r in done["flows"])
        out["soak"]["flows"]["errors"] = sum(r["errors"] for r in done["flows"])
        out["soak"]["http"]["count"] = sum(r["requests"] for r in done["http"])
        out["soak"]["http"]["errors"] = sum(r["errors"] for r in done["http"])
        out["samples"] = {"flows": sf.samples, "http": sw.samples}
        for name, p in (("flows", flows), ("http", web)):
            assert p.session is not None
            log = p.session.log_path
            out["soak"][name]["log_mb"] = log.stat().st_size / 1e6 if log.exists() else 0.0
    rows = []
    for name, label, unit in (("flows", "flows (web_ports=\"\")", "flows"),
                              ("http", "HTTP via mitmproxy", "GETs")):  # fmt: skip
        s = out["soak"][name]
        rows.append((
            f"gateway Python RSS, {label}: idle → max under load ({load_s:.0f} s)",
            fmt(out["idle"][name], "MB", 1), fmt(out["under_load"][name], "MB", 1), "–",
            "reported", "–",
        ))  # fmt: skip
        rows.append((
            f"soak {soak_s / 60:.1f} min, {s['count']:,} {unit} "
            f"({s['errors']} errors): RSS after warm-up → end (max)",
            fmt(s["start"], "MB", 1), f"{fmt(s['end'], 'MB', 1)} (max {fmt(s['max'], 'MB', 1)})",
            f"{s['growth']:+.1f} MB, {s['slope_mb_per_min']:+.2f} MB/min",
            f"growth ≤ {GROWTH_LIMIT_MB:.0f} MB", met(s["growth"] <= GROWTH_LIMIT_MB),
        ))  # fmt: skip
    header = ("figure", "direct/baseline", "coderun", "ratio", "target", "met?")
    print(table(header, rows))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    if not args.smoke and not args.no_docs:
        body = "\n".join([
            preamble(machine(), [
                f"- two sessions side by side; soak {soak_s / 60:.0f} min with both loads at "
                f"once (so each gets about half the machine); RSS sampled every "
                f"{interval:.0f} s; flows.jsonl written: "
                f"{out['soak']['flows']['log_mb']:.0f} MB (flows), "
                f"{out['soak']['http']['log_mb']:.0f} MB (HTTP)",
            ]),
            "",
            "The *baseline* column is the earlier figure (idle, or the RSS after the soak's "
            "warm-up), *coderun* the later one.",
            "",
            table(header, rows),
        ])  # fmt: skip
        update_section(SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
