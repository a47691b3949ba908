"""Gateway benchmark (issue #8): connect latency, new flows/s, bulk TCP and HTTP.

    python bench/bench_gateway.py                  # full run, updates docs/benchmarks.md
    python bench/bench_gateway.py --smoke          # tiny sizes, prints only (used by a test)
    python bench/bench_gateway.py --only flows     # one figure: connect, flows, bulk, http

Every figure is measured side by side in one run, repetitions interleaved, because the
machine is noisy: a client container straight on the server's bridge network (*direct*),
a real coderun session in enforce mode whose policy allows the server (*gateway*;
``web_ports=""`` so mitmproxy is out of the path, except for the HTTP figure, which also
runs through a session with the default web ports, *gateway+mitmproxy*), and the same
session topology with a bare accept-everything NFQUEUE handler in the gateway's place
(*bare*). Only containers this benchmark starts are addressed. See netbench/ for the
pieces and docs/benchmarks.md for the results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netbench import figures, profile, report  # noqa: E402
from netbench.common import machine, update_section  # noqa: E402
from netbench.topology import Lab, Path_, docker_client, rss_mb, tags_for  # noqa: E402
from netbench.workload import ACCEPT_PORT, HTTP_PORT  # noqa: E402

FIGURES = ("connect", "flows", "bulk", "http")
SECTION = "Gateway: latency, flow rate, bulk TCP, HTTP"


@dataclass
class Sizes:
    reps: int
    connects: int
    flow_s: float
    bulk: int
    http_new: int
    http_keep: int
    profile_s: int
    breakdown_s: float
    bulk_reps: int
    connect_reps: int


FULL = Sizes(reps=5, connects=2000, flow_s=4.0, bulk=500_000_000, http_new=1000,
             http_keep=3000, profile_s=8, breakdown_s=6.0, bulk_reps=9,
             connect_reps=9)  # fmt: skip
SMOKE = Sizes(reps=1, connects=200, flow_s=1.0, bulk=50_000_000, http_new=50, http_keep=100,
              profile_s=0, breakdown_s=1.0, bulk_reps=1, connect_reps=1)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; print, do not write docs")
    ap.add_argument("--only", action="append", choices=FIGURES, help="run only this figure")
    ap.add_argument("--reps", type=int, help="repetitions per path (default 5-9, smoke 1)")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    return ap.parse_args(argv)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = SMOKE if args.smoke else FULL
    if args.reps:
        sizes = replace(sizes, reps=args.reps, bulk_reps=args.reps, connect_reps=args.reps)
    if args.no_profile:
        sizes = replace(sizes, profile_s=0, breakdown_s=0)
    chosen = args.only or list(FIGURES)
    client = docker_client()
    tags = tags_for(client)
    out: dict[str, Any] = {"sizes": asdict(sizes), "figures": chosen, "profiles": {}}
    reps = sizes.reps
    with Lab(client, tags) as lab:
        out["client"] = lab.client_kind
        ip = lab.server_ip
        direct = lab.direct
        log(f"server {ip}; client {lab.client_kind}; starting sessions")
        gw = lab.session("gateway")
        time.sleep(1.0)
        out["rss_idle_mb"] = {"gateway": rss_mb(gw.gateway_pid)}
        bare = lab.session("bare") if {"connect", "flows", "bulk"} & set(chosen) else None
        if bare is not None:
            out["rss_idle_mb"]["bare"] = rss_mb(bare.gateway_pid)
        queued = [direct, *([bare] if bare else []), gw]
        if "connect" in chosen:
            n, r = sizes.connects, sizes.connect_reps
            log(f"connect latency: {n} connects x {r} per path")
            out["connect"] = figures.connect_latency(queued, ip, n, r)
        if "flows" in chosen:
            log(f"flow rate: {sizes.flow_s} s x {reps} per path")
            out["flows"] = figures.flow_rate(queued, ip, sizes.flow_s, reps)
            if sizes.profile_s:
                log("profiling the gateway under the flow-rate load")
                seconds = sizes.profile_s + 1
                prof, res = profile.record(
                    gw.gateway_pid, sizes.profile_s,
                    lambda: gw.run("rate", ip, ACCEPT_PORT, seconds),
                )  # fmt: skip
                out["profiles"]["flows"] = {"profile": prof.to_dict(), "run": res}
                out["_prof_flows"] = prof
            if sizes.breakdown_s and bare is not None:
                log("timing the packet path: bare handler vs the gateway with timers")
                timed = lab.session("timed")
                out["breakdown"] = figures.breakdown([bare, timed], ip, sizes.breakdown_s)
                lab.end_session(timed)
        if "bulk" in chosen:
            log(f"bulk TCP: {sizes.bulk / 1e6:.0f} MB x {sizes.bulk_reps} per path")
            router = lab.session("router")
            out["bulk"] = figures.bulk([*queued, router], ip, sizes.bulk, sizes.bulk_reps)
            lab.end_session(router)
        if bare is not None:
            lab.end_session(bare)
        if "http" in chosen:
            log("HTTP: starting a session with mitmproxy (web ports 80,443)")
            web = lab.session("gateway", web=True)
            time.sleep(1.0)
            out["rss_idle_mb"]["gateway+mitmproxy"] = rss_mb(web.gateway_pid)
            log(f"HTTP: {sizes.http_new} new-connection + {sizes.http_keep} keep-alive GETs")
            out["http"] = figures.http([direct, gw, web], ip, sizes.http_new, sizes.http_keep, reps)
            if sizes.profile_s:
                log("profiling the gateway under HTTP load through mitmproxy")
                for mode in ("new", "keep"):
                    prof, res = profile.record(
                        web.gateway_pid, sizes.profile_s,
                        partial(_http_for, web, ip, mode, sizes.profile_s),
                    )  # fmt: skip
                    out["profiles"][f"http_{mode}"] = {"profile": prof.to_dict(), "run": res}
                    out[f"_prof_http_{mode}"] = prof
    return out


def _http_for(path: Path_, ip: str, mode: str, seconds: float) -> dict[str, Any]:
    """HTTP load for about ``seconds``: the request count sized from a short first run."""
    keep = ["keep"] if mode == "keep" else []
    probe = path.run("http", ip, HTTP_PORT, 50, *keep)
    return path.run("http", ip, HTTP_PORT, max(50, int(probe["req_per_s"] * (seconds + 1))), *keep)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    out = run(args)
    out["seconds"] = time.monotonic() - started
    info = machine()
    rows = report.gateway_rows(out)
    print(report.console(rows))
    if "breakdown" in out:
        print()
        print(report.console(report.breakdown_rows(out["breakdown"])))
    for key in ("flows", "http_new", "http_keep"):
        prof = out.get(f"_prof_{key}")
        if prof is not None:
            print()
            print(profile.markdown(prof, f"profile: {key}"))
    if args.json:
        clean = {k: v for k, v in out.items() if not k.startswith("_")}
        args.json.write_text(json.dumps(clean, indent=1, default=str))
    if not args.smoke and not args.no_docs:
        update_section(SECTION, report.gateway_markdown(out, rows, info))
        log("docs/benchmarks.md updated")
    log(f"done in {out['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
