"""Package managers (issue #16): the size of each runtime image, and ``coderun npm ci``
on a fixture project against a plain ``docker run`` of the same ``npm ci``.

    python bench/bench_pm.py            # hyperfine, 5 runs each; updates docs/benchmarks.md
    python bench/bench_pm.py --smoke    # 1 run each, prints only

Both commands install the fixture project ``npm`` (sandbox/registry.py) from the local
registry fixture, served beside the demo internet: nothing leaves the machine. Before
each run ``node_modules`` is removed; each side keeps its npm cache between runs (coderun
its per-user cache, docker a bind-mounted folder), so both measure a warm-cache ``npm
ci``. ``coderun npm`` runs in enforce mode with examples/pm-fixture-policy.toml; the
plain ``docker run`` is on the registry's network with ``--add-host``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_startup import hyperfine  # noqa: E402
from netbench.common import fmt, machine, preamble, ratio, table, update_section  # noqa: E402

SECTION = "Package managers: image sizes, coderun npm ci"
RUNTIMES = ("bash", "python", "node", "go", "ruby", "rails")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="1 run each, print only")
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs

    import docker

    from sandbox import images
    from sandbox.image_list import human_size
    from sandbox.internet import start_internet
    from sandbox.registry import TOOL_ENV, start_registry

    client = docker.from_env(timeout=300)
    wanted = ("gateway", "internet", "registry", *(images.RUNTIMES[r] for r in RUNTIMES))
    tags = images.build(client, wanted)
    from sandbox.image_list import list_images

    listed = {row.name: row for row in list_images(client) if row.current}
    net = start_internet(client, tags["internet"])
    try:
        reg = start_registry(client, tags["registry"], net)
        try:
            with tempfile.TemporaryDirectory(prefix="coderun-bench-pm-") as tmp:
                results = measure(Path(tmp), net, reg, tags["sandbox-node"], TOOL_ENV["npm"],
                                  runs)  # fmt: skip
        finally:
            reg.stop()
    finally:
        net.stop()
    coderun, plain = results["coderun npm ci"], results["docker run npm ci"]
    rows = [
        [f"`{r}` (`{tags[images.RUNTIMES[r]]}`)", human_size(listed[images.RUNTIMES[r]].size),
         human_size(listed[images.RUNTIMES[r]].added)]
        for r in RUNTIMES
    ]  # fmt: skip
    body = "\n".join([
        preamble(machine(), [
            f"- hyperfine: {runs} runs per command after 1 warm-up; `node_modules` removed "
            "before each run (`--prepare`), the npm cache kept (warm)",
            "- project: the registry fixture's `npm` project (one dependency, from "
            "`registry.npmjs.test`, the local registry fixture)",
        ]),
        "",
        "Image sizes as `coderun images list` shows them: Docker's `Size` (the shared "
        "base, Debian trixie minbase with Python, is counted in each) and what the image "
        "adds to what it is built on (the base; rails: the ruby image):",
        "",
        table(["runtime (image)", "size", "added"], rows),
        "",
        table(["figure", "docker run", "coderun", "ratio"], [
            ["`npm ci` (median)", fmt(plain["median"], "s"), fmt(coderun["median"], "s"),
             f"{ratio(coderun['median'], plain['median']):.2f}×"],
            ["mean ± σ", f"{fmt(plain['mean'])} ± {fmt(plain['stddev'])} s",
             f"{fmt(coderun['mean'])} ± {fmt(coderun['stddev'])} s", "–"],
            ["failed runs", str(plain["failures"]), str(coderun["failures"]), "–"],
        ]),
        "",
        "`coderun npm ci` adds a session (networks, gateway with mitmproxy, holder: see "
        "*Startup* above) and routes the registry's HTTP through the gateway's proxy; "
        "`npm ci` itself is the same command in the same image. Absolute times follow the "
        "machine's load (the load average above: other builds and tests shared the 2 "
        "cores); compare the ratio.",
    ])  # fmt: skip
    print(body)
    if not args.smoke:
        update_section(SECTION, body)


def measure(
    tmp: Path, net: object, reg: object, node_image: str, env: dict[str, str], runs: int
) -> dict[str, dict[str, Any]]:
    from sandbox.internet import DemoInternet
    from sandbox.registry import HOSTS, Registry

    assert isinstance(net, DemoInternet) and isinstance(reg, Registry)
    project = reg.project("npm", tmp / "npm")
    plain_cache = tmp / "docker-npm-cache"
    plain_cache.mkdir()
    home = tmp / "coderun-home"
    policy = ROOT / "examples" / "pm-fixture-policy.toml"
    coderun = " ".join([
        shlex.quote(sys.executable), "-m", "sandbox.cli", "npm", "--mode", "enforce",
        "--policy", shlex.quote(str(policy)), "--egress-network", net.network_name,
        "--dns-upstream", net.ip, *(f"-e {k}={v}" for k, v in env.items()), "ci",
    ])  # fmt: skip
    hosts = " ".join(f"--add-host {h}:{reg.ip}" for h in HOSTS)
    plain = " ".join([
        "docker run --rm", f"--network {net.network_name}", hosts,
        f"-v {project}:{project}", f"-w {project}", f"-v {plain_cache}:/npm-cache",
        "-e npm_config_cache=/npm-cache", *(f"-e {k}={v}" for k, v in env.items()),
        node_image, "npm ci",
    ])  # fmt: skip
    run_env = {**os.environ, "CODERUN_HOME": str(home), "PYTHONPATH": str(ROOT)}
    commands = {"docker run npm ci": f"cd {project} && {plain}",
                "coderun npm ci": f"cd {project} && {coderun}"}  # fmt: skip
    out: dict[str, dict[str, Any]] = hyperfine(
        commands, runs, run_env, prepare=f"rm -rf {project}/node_modules"
    )
    return out


if __name__ == "__main__":
    main()
