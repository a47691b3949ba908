"""The benchmark's containers: one server, and the paths a client reaches it by.

- ``direct``: a client container on the server's own bridge network (the baseline);
- ``gateway``: a real coderun Session (enforce mode, a policy allowing the server) whose
  sandbox runs the client; the server's network is the gateway's egress network;
- ``bare``: the same Session topology, but the gateway container runs
  ``bare_handler.py`` (accept everything, no parsing, rules or log) instead of snitch;
- ``timed``: the same again, the gateway running the unchanged snitch code with timers
  around its packet path (``timed_gateway.py``), for the per-verdict breakdown.

Everything runs ``workload.py`` (bind-mounted at /bench). Only the containers started
here are ever addressed. Containers and networks carry the ``coderun.bench`` label (the
Sessions carry coderun's own labels) and are removed by ``Lab.close()``; leftovers of a
killed run are removed by the next one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from sandbox.config import SessionConfig
from sandbox.session import Session
from snitch.core.model import Mode
from snitch.core.settings import NetworkShape, RunSettings

HERE = Path(__file__).resolve().parent
BENCH_LABEL = "coderun.bench"
OWNER_PID = "coderun.bench.owner-pid"
WORKLOAD = ["python3", "/bench/workload.py"]
FLOWCLIENT = "/benchbin/flowclient"
FAST_COMMANDS = ("connect", "rate")  # what flowclient does (when it could be built)
# Session kinds whose gateway container runs one of our scripts instead of snitch.gateway.
# The router kind is the bare handler's script without rules or queue (``--router``).
VARIANTS = {"bare": ("bare_handler.py",), "timed": ("timed_gateway.py",),
            "router": ("bare_handler.py", "--router")}  # fmt: skip


def docker_client() -> docker.DockerClient:
    client = docker.from_env(timeout=900)
    client.ping()
    return client


def gc_bench(client: docker.DockerClient) -> None:
    """Remove what killed benchmark runs left behind (their owner process is gone)."""

    def orphan(labels: dict[str, str]) -> bool:
        try:
            os.kill(int(labels.get(OWNER_PID, "0")), 0)
        except (ProcessLookupError, ValueError):
            return True
        except PermissionError:
            return False
        return False

    for c in client.containers.list(all=True, filters={"label": BENCH_LABEL}):
        if orphan(c.labels):
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True)
    for n in client.networks.list(filters={"label": BENCH_LABEL}):
        if orphan(n.attrs.get("Labels") or {}):
            with contextlib.suppress(docker.errors.APIError):
                n.remove()


def gateway_variant_image(
    client: docker.DockerClient, gateway_tag: str, script: str, *args: str
) -> str:
    """The gateway image with one of our scripts (and its ``args``) as its entrypoint
    (built once per gateway image; older builds are removed)."""
    text = (HERE / script).read_bytes()
    repo = "coderun-bench-" + "-".join([Path(script).stem, *(a.strip("-") for a in args)])
    repo = repo.replace("_", "-")
    digest = hashlib.sha256(gateway_tag.encode() + text + " ".join(args).encode())
    tag = f"{repo}:" + digest.hexdigest()[:12]
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(tag)
        return tag
    with tempfile.TemporaryDirectory(prefix="coderun-bench-") as tmp:
        (Path(tmp) / script).write_bytes(text)
        (Path(tmp) / "Dockerfile").write_text(
            f"FROM {gateway_tag}\n"
            f"COPY {script} /opt/bench/{script}\n"
            f"ENTRYPOINT {json.dumps(['python3', f'/opt/bench/{script}', *args])}\n"
        )
        client.images.build(path=tmp, tag=tag, rm=True, labels={BENCH_LABEL: "image"})
    for old in client.images.list(name=repo):
        if tag not in old.tags:
            with contextlib.suppress(docker.errors.APIError):  # in use by a running bench
                client.images.remove(old.id)
    return tag


def build_flowclient(folder: Path) -> Path | None:
    """Compile flowclient.c (static, so any image runs it); None without a compiler."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None or os.environ.get("CODERUN_BENCH_PY_CLIENT") == "1":
        return None
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "flowclient"
    proc = subprocess.run([cc, "-O2", "-static", "-o", str(out), str(HERE / "flowclient.c")],
                          capture_output=True, text=True)  # fmt: skip
    return out if proc.returncode == 0 else None


def host_pid(container: Container, needle: str) -> int:
    """The host PID of the container process whose command line contains ``needle``."""
    top = container.top(ps_args="-eo pid,args")
    titles = [t.upper() for t in top["Titles"]]
    pid_col = titles.index("PID")
    cmd_col = len(titles) - 1
    for row in top["Processes"]:
        if needle in row[cmd_col] and row[cmd_col].startswith("python"):
            return int(row[pid_col])
    raise RuntimeError(f"no process matching {needle!r} in {container.name}: {top}")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds the process has used, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


@dataclass
class Path_:
    """One way for a client to reach the server."""

    name: str
    container: Container
    session: Session | None = None
    gateway_pid: int = 0  # host PID of the gateway's python (sessions only)
    fast: bool = False  # flowclient is mounted: use it for connect and rate

    def run(self, *args: object) -> dict[str, Any]:
        argv = [str(a) for a in args]
        cmd = [FLOWCLIENT, *argv] if self.fast and argv[0] in FAST_COMMANDS else [*WORKLOAD, *argv]
        code, out = self.container.exec_run(cmd)
        text = out.decode(errors="replace")
        lines = [line for line in text.splitlines() if line.startswith("{")]
        if code != 0 or not lines:
            raise RuntimeError(f"{self.name}: workload {args} failed ({code}):\n{text[-2000:]}")
        return dict(json.loads(lines[-1]))

    def timing(self) -> dict[str, list[int]]:
        """The gateway's timers, ``{label: [calls, ns]}`` (bare and timed kinds only)."""
        if self.session is None:
            return {}
        for name, key in (("bare.json", "timing"), ("timing.json", None)):
            path = self.session.dir / name
            if path.exists():
                data = json.loads(path.read_text())
                return dict(data[key] if key else data)
        return {}

    def verdicts(self) -> int:
        """Verdicts the gateway gave so far (bare: its count; snitch: flows logged)."""
        if self.session is None:
            return 0
        bare = self.session.dir / "bare.json"
        if bare.exists():
            return int(json.loads(bare.read_text())["verdicts"])
        log = self.session.log_path
        if not log.exists():
            return 0
        with open(log, "rb") as f:
            return sum(1 for line in f if b'"kind":"flow"' in line)

    def unlogged(self) -> int:
        """Flows the kernel verdict cache passed whose line was lost, as the log counts
        them (``kernel-cache-unlogged`` events, snitch/gateway/cacheguard.py)."""
        log = self.session.log_path if self.session is not None else None
        if log is None or not log.exists():
            return 0
        with open(log, "rb") as f:
            return sum(int(json.loads(line).get("dropped", 0)) for line in f
                       if b'"reason":"kernel-cache-unlogged"' in line)  # fmt: skip


class Lab:
    """The server, its network, the direct client and any sessions; ``close()`` ends all."""

    def __init__(self, client: docker.DockerClient, tags: dict[str, str]) -> None:
        self.client = client
        self.tags = tags
        self.id = uuid.uuid4().hex[:8]
        self.labels = {BENCH_LABEL: self.id, OWNER_PID: str(os.getpid())}
        self.home = Path(tempfile.mkdtemp(prefix="coderun-bench-home-"))
        self._old_home = os.environ.get("CODERUN_HOME")
        os.environ["CODERUN_HOME"] = str(self.home)  # fresh rules.db, sessions, CA
        self.network: Any = None
        self.containers: list[Container] = []
        self.sessions: list[Session] = []
        self.server_ip = ""
        self.flowclient = build_flowclient(self.home / "bin")
        self.client_kind = "C (flowclient.c)" if self.flowclient else "Python (workload.py)"

    def __enter__(self) -> Lab:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _volumes(self) -> dict[str, dict[str, str]]:
        volumes = {str(HERE): {"bind": "/bench", "mode": "ro"}}
        if self.flowclient is not None:
            volumes[str(self.flowclient.parent)] = {"bind": "/benchbin", "mode": "ro"}
        return volumes

    def _container(self, role: str, command: list[str]) -> Container:
        c = self.client.containers.run(
            self.tags["sandbox-bash"],
            command=command,
            name=f"coderun-bench-{self.id}-{role}",
            detach=True,
            network=self.network.name,
            labels={**self.labels, "coderun.bench.role": role},
            volumes=self._volumes(),
        )
        self.containers.append(c)
        return c

    def start(self) -> None:
        gc_bench(self.client)
        self.network = self.client.networks.create(
            f"coderun-bench-{self.id}", driver="bridge", labels=self.labels
        )
        server = self._container("server", [*WORKLOAD, "serve"])
        deadline = time.monotonic() + 30
        while b"BENCH_SERVER_READY" not in server.logs():
            server.reload()
            if server.status == "exited" or time.monotonic() > deadline:
                raise RuntimeError("bench server did not start:\n" + server.logs().decode())
            time.sleep(0.05)
        server.reload()
        self.server_ip = server.attrs["NetworkSettings"]["Networks"][self.network.name]["IPAddress"]
        client = self._container("client", ["sleep", "infinity"])
        self.direct = Path_("direct", client, fast=self.flowclient is not None)

    def policy(self, more_rules: str = "") -> Path:
        path = self.home / "bench-policy.toml"
        path.write_text(
            f'[[rule]]\naction = "allow"\ncidr = "{self.server_ip}"\nproto = "tcp"\n'
            'note = "the benchmark server"\n' + more_rules
        )
        return path

    def session(self, kind: str, web: bool = False, more_rules: str = "") -> Path_:
        """A started session whose sandbox idles: ``kind`` is "gateway", "bare" or "timed";
        ``more_rules`` are added to its policy file."""
        gateway_image = self.tags["gateway"]
        if kind in VARIANTS:
            gateway_image = gateway_variant_image(self.client, gateway_image, *VARIANTS[kind])
        config = SessionConfig(
            image=self.tags["sandbox-bash"],
            network=NetworkShape(
                gateway_image=gateway_image, egress_network=self.network.name,
                dns_upstream=self.server_ip,  # never asked: no lookups in the benchmark
                web_ports=(80, 443) if web else (),
            ),
            run=RunSettings(command=("sleep", "infinity"), mode=Mode.ENFORCE),
            policy_file=self.policy(more_rules),
            volumes=[f"{host}:{v['bind']}:ro" for host, v in self._volumes().items()],
        )  # fmt: skip
        session = Session(self.client, config)
        self.sessions.append(session)
        session.start()
        assert session.sandbox is not None and session.gateway is not None
        session.sandbox.start()
        if web:
            self._wait_for_mitmproxy(session)
        needle = VARIANTS.get(kind, ("snitch.gateway",))[0].removesuffix(".py")
        pid = host_pid(session.gateway, needle)
        name = kind + ("+mitmproxy" if web else "")
        return Path_(name, session.sandbox, session, pid, fast=self.flowclient is not None)

    @staticmethod
    def _wait_for_mitmproxy(session: Session, timeout: float = 30.0) -> None:
        """Gateways that start mitmproxy after reporting ready say ``mitm: true`` once it
        listens; older ones started it before. Wait for that (or give up quietly)."""
        deadline = time.monotonic() + timeout
        state = session.dir / "gateway.json"
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(state.read_text()).get("mitm"):
                    return
            time.sleep(0.05)

    def end_session(self, path: Path_) -> None:
        if path.session is not None and path.session in self.sessions:
            self.sessions.remove(path.session)
            path.session.close()

    def close(self) -> None:
        for session in self.sessions:
            with contextlib.suppress(Exception):
                session.close()
        self.sessions.clear()
        for c in self.containers:
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True)
        self.containers.clear()
        if self.network is not None:
            with contextlib.suppress(docker.errors.APIError):
                self.network.remove()
            self.network = None
        if self._old_home is None:
            os.environ.pop("CODERUN_HOME", None)
        else:
            os.environ["CODERUN_HOME"] = self._old_home
        shutil.rmtree(self.home, ignore_errors=True)


def tags_for(client: docker.DockerClient) -> dict[str, str]:
    from sandbox import images

    tags: dict[str, str] = images.build(client, names=("gateway", "sandbox-bash"))
    return tags
