"""The package registry fixture as a running container, beside the demo internet.

It joins the demo internet's network and registers its names there (the demo
internet's DNS answers them), so a gateway whose upstream is the demo internet reaches
``registry.npmjs.test``, ``pypi.test``, ``rubygems.test`` and ``proxy.golang.test``
and nothing here ever resolves a real name. What it serves is built into the
``registry`` image (images/registry/build_fixtures.py): harmless packages, backdoored
ones, and example projects that ``project()`` copies out.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.models.containers import Container

from sandbox.config import SessionError
from sandbox.internet import DemoInternet
from sandbox.labels import LABEL, OWNER_HOST, OWNER_PID, ROLE

HOSTS = ("registry.npmjs.test", "pypi.test", "rubygems.test", "proxy.golang.test")
NAMES_FILE = "/etc/internet/names.json"  # images/internet/internet.py reads it
# What a sandbox needs to use the fixture instead of the real registries (``-e``).
TOOL_ENV = {
    "npm": {"npm_config_registry": "http://registry.npmjs.test/"},
    "pip": {"PIP_INDEX_URL": "http://pypi.test/simple/", "PIP_TRUSTED_HOST": "pypi.test"},
    "bundle": {},  # the Gemfile names its source (http://rubygems.test)
    "go": {"GOPROXY": "http://proxy.golang.test", "GOSUMDB": "off"},
}


@dataclass
class Registry:
    container: Container
    ip: str

    def logs(self, since: int = 0) -> str:
        """Its request lines (``GET host path status``) from character ``since`` on."""
        return bytes(self.container.logs()).decode(errors="replace")[since:]

    def project(self, name: str, dest: Path) -> Path:
        """Copy the example project ``name`` (npm, npm-backdoor, pip, pip-backdoor, ruby,
        ruby-backdoor, go) into ``dest`` (made, must not exist) and return it."""
        chunks, _ = self.container.get_archive(f"/srv/projects/{name}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.TemporaryDirectory(dir=dest.parent) as tmp,
            tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar,
        ):
            tar.extractall(tmp, filter="data")
            shutil.move(Path(tmp) / name, dest)
        return dest

    def stop(self) -> None:
        from sandbox.cleanup import remove_session

        remove_session(self.container.client, self.container.labels[LABEL])


def register_names(internet: DemoInternet, names: dict[str, str]) -> None:
    """Add ``names`` to what the demo internet's DNS answers (merged, atomic rename)."""
    code, out = internet.container.exec_run(["cat", NAMES_FILE])
    table = json.loads(out) if code == 0 and out.strip() else {}
    table.update(names)
    data = json.dumps(table).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("names.json.new")
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
    internet.container.exec_run(["mkdir", "-p", os.path.dirname(NAMES_FILE)])
    if not internet.container.put_archive(os.path.dirname(NAMES_FILE), buf.getvalue()):
        raise SessionError("could not give the demo internet the registry's names")
    code, out = internet.container.exec_run(["mv", f"{NAMES_FILE}.new", NAMES_FILE])
    if code != 0:
        raise SessionError(f"could not give the demo internet the registry's names: {out!r}")


def start_registry(
    client: docker.DockerClient, image: str, internet: DemoInternet, timeout: float = 30.0
) -> Registry:
    """Start the registry fixture on the demo internet's network and name it there."""
    ident = "internet-registry-" + uuid.uuid4().hex[:8]
    labels = {LABEL: ident, OWNER_PID: str(os.getpid()), OWNER_HOST: socket.gethostname()}
    container = client.containers.run(
        image,
        name=f"coderun-{ident}",
        detach=True,
        network=internet.network_name,
        labels={**labels, ROLE: "registry"},
    )
    try:
        deadline = time.monotonic() + timeout
        while b"READY" not in container.logs():
            container.reload()
            if container.status == "exited" or time.monotonic() > deadline:
                logs = container.logs().decode(errors="replace")
                raise SessionError(f"the registry fixture did not start:\n{logs}")
            time.sleep(0.05)
        container.reload()
        ip = container.attrs["NetworkSettings"]["Networks"][internet.network_name]["IPAddress"]
        register_names(internet, dict.fromkeys(HOSTS, ip))
    except BaseException:
        container.remove(force=True)
        raise
    return Registry(container, ip)


PROJECTS = ("npm", "npm-backdoor", "pip", "pip-backdoor", "ruby", "ruby-backdoor", "go")


def main() -> None:
    """``python -m sandbox.registry [DIR]``: start the demo internet and the registry
    fixture, copy the example projects into DIR (default ``./pm-fixtures``), print the
    options a `coderun npm|pip|bundle|go` run needs, and keep both up until Ctrl-C."""
    import signal
    import sys

    from sandbox import images

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)  # even where a shell started us ignoring it
    signal.signal(signal.SIGTERM, interrupt)

    dest = Path(sys.argv[1] if len(sys.argv) > 1 else "pm-fixtures").resolve()
    client = docker.from_env()
    tags = images.build(client, ("internet", "registry"))
    from sandbox.internet import start_internet

    net = start_internet(client, tags["internet"])
    try:
        reg = start_registry(client, tags["registry"], net)
        try:
            for name in PROJECTS:
                if not (dest / name).exists():
                    reg.project(name, dest / name)
            print(f"example projects in {dest}: {' '.join(PROJECTS)}")
            print(f"options: --egress-network {net.network_name} --dns-upstream {net.ip} "
                  "--policy examples/pm-fixture-policy.toml")  # fmt: skip
            for tool, env in TOOL_ENV.items():
                print(f"  {tool}: " + " ".join(f"-e {k}={v}" for k, v in env.items()))
            print("Ctrl-C stops the demo internet and the registry.", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            reg.stop()
    finally:
        net.stop()


if __name__ == "__main__":
    main()
