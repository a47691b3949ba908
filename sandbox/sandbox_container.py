"""The sandbox container of a session: what it mounts, sees and may not do.

By default the sandbox runs as uid 1000 (the images' ``coderun`` user) with no
capabilities at all, ``no-new-privileges``, a CPU quota, a memory limit without swap, a
pids limit and a read-only root: it writes only to size-limited tmpfs mounts (``/tmp``,
``/var/tmp``, its home, the working directory) and to the ``-v`` mounts it was given.
The engine here (overlay2 on ext4) cannot limit the size of a writable layer
(``--storage-opt size`` needs xfs with project quotas), so the root is read-only rather
than unbounded. Its resolver is written into the holder's own ``/etc/resolv.conf``
(which Docker gives a sandbox sharing the holder's network), and the script and CA
bundle come from the session's files volume (``sandbox/injected.py``): the sandbox's
mount table shows no host path of coderun's. ``/etc/hosts`` and ``/etc/hostname`` are
the holder's, mounted read-only with the root.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.volumes import Volume

from sandbox import injected, paths
from sandbox.config import SessionConfig, SessionError
from sandbox.images import RUNTIMES

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
USER_HOME = "/home/coderun"
RUNTIME_WORKDIR = "/work"  # the WORKDIR of coderun's own sandbox images
CPU_PERIOD = 100_000  # microseconds; the quota is cpus * this


@dataclass(frozen=True)
class SandboxUser:
    uid: int
    gid: int

    @property
    def spec(self) -> str:
        return f"{self.uid}:{self.gid}"

    @property
    def home(self) -> str:
        return "/root" if self.uid == 0 else USER_HOME


def parse_user(text: str) -> SandboxUser:
    """``root``, ``UID`` or ``UID:GID`` (numbers: the image's names are not looked up)."""
    if text == "root":
        return SandboxUser(0, 0)
    uid, sep, gid = text.partition(":")
    if not re.fullmatch(r"[0-9]+", uid) or (sep and not re.fullmatch(r"[0-9]+", gid)):
        raise ValueError(f"--user {text!r}: expected root, UID or UID:GID (numbers)")
    return SandboxUser(int(uid), int(gid) if sep else int(uid))


def default_cpus() -> float:
    """Half of this machine's CPUs, at least one: the gateway and the person's terminal
    keep their share while the sandbox builds."""
    return max(1.0, (os.cpu_count() or 2) / 2)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def writable_mounts(cfg: SessionConfig, user: SandboxUser, targets: list[str]) -> dict[str, str]:
    """The size-limited tmpfs mounts of a read-only root (none where a ``-v`` mount
    covers the place: its files go to the host folder the person chose)."""
    size = cfg.tmpfs_size
    owned = f"size={size},uid={user.uid},gid={user.gid},exec,nosuid,nodev"
    shared = f"size={size},mode=1777,exec,nosuid,nodev"
    wanted = {"/tmp": shared, "/var/tmp": shared, user.home: f"{owned},mode=0700"}
    workdir = cfg.workdir or (RUNTIME_WORKDIR if cfg.run.image in RUNTIMES else None)
    if workdir and posixpath.normpath(workdir) != "/":
        wanted.setdefault(posixpath.normpath(workdir), f"{owned},mode=0755")
    return {
        path: options
        for path, options in wanted.items()
        if not any(_inside(path, target) for target in targets)
    }


def create_sandbox(
    client: docker.DockerClient, cfg: SessionConfig, holder: Container,
    files_volume: Volume | None, labels: Callable[[str], dict[str, str]], name: str,
) -> Container:  # fmt: skip
    """Create (not start) the sandbox ``NAME-sandbox`` in the holder's network
    namespace; ``labels(role)`` labels what it creates."""
    try:
        user = parse_user(cfg.user)
    except ValueError as exc:
        raise SessionError(str(exc)) from exc
    volumes: dict[str, dict[str, str]] = {}
    targets: list[str] = []
    for spec in cfg.volumes:
        parts = spec.split(":")
        if len(parts) < 2 or not parts[0] or not parts[1].startswith("/"):
            raise SessionError(f"--volume {spec!r}: expected HOST:/CONTAINER[:ro]")
        mode = parts[2] if len(parts) > 2 else "rw"
        volumes[str(Path(parts[0]).resolve())] = {"bind": parts[1], "mode": mode}
        targets.append(posixpath.normpath(parts[1]))
    env = dict(cfg.env)
    env.setdefault("HOME", user.home)
    files: dict[str, tuple[bytes, int]] = {}
    places: dict[str, str] = {}
    for binding in cfg.run.secrets:
        env[binding.name] = binding.placeholder
    if cfg.uses_ca:
        files["ca-bundle.pem"] = (ca_bundle(client, cfg.image, labels("probe")), 0o444)
        files["ca.pem"] = (ca_cert().read_bytes(), 0o444)
        places.update({"ca-bundle.pem": SYSTEM_BUNDLE, "ca.pem": "/coderun/ca.pem"})
        for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT",
                    "GIT_SSL_CAINFO"):  # fmt: skip
            env.setdefault(var, SYSTEM_BUNDLE)
        env.setdefault("NODE_EXTRA_CA_CERTS", "/coderun/ca.pem")
    command = list(cfg.run.command)
    if cfg.script is not None:
        target = f"/coderun/{cfg.script.name}"
        files["script"] = (cfg.script.read_bytes(), 0o555)
        places["script"] = target
        interpreter = ["python3"] if cfg.script.suffix == ".py" else ["bash"]
        command = [*interpreter, target, *command]
    if files:
        if files_volume is None:
            raise SessionError(f"session {name} has no files volume")
        try:
            injected.put_files(holder, files)
        except (RuntimeError, docker.errors.APIError) as exc:
            raise SessionError(f"putting the script/CA into the sandbox failed: {exc}") from exc
        volumes.update(injected.binds(files_volume, places))
    cpus = cfg.cpus if cfg.cpus is not None else default_cpus()
    options: dict[str, Any] = {}
    if cfg.runtime:
        options["runtime"] = cfg.runtime
    container: Container = client.containers.create(
        cfg.image,
        command=command,
        name=f"{name}-sandbox",
        network_mode=f"container:{holder.id}",
        labels=labels("sandbox"),
        environment=env,
        volumes=volumes,
        working_dir=cfg.workdir,
        tty=cfg.tty,
        stdin_open=cfg.stdin,
        user=user.spec,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        read_only=True,
        tmpfs=writable_mounts(cfg, user, targets),
        pids_limit=cfg.pids,
        mem_limit=cfg.memory,
        memswap_limit=cfg.memory,  # the same: no swap
        cpu_period=CPU_PERIOD,
        cpu_quota=int(cpus * CPU_PERIOD),
        **options,
    )
    return container


def ca_cert() -> Path:
    return paths.ca_dir() / "mitmproxy-ca-cert.pem"


def ca_bundle(client: docker.DockerClient, image: str, labels: dict[str, str]) -> bytes:
    """The sandbox image's own CA bundle plus the install's interception CA."""
    probe = client.containers.create(image, command=["true"], labels=labels)
    try:
        chunks, _ = probe.get_archive(SYSTEM_BUNDLE)
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            extracted = tar.extractfile(tar.getmembers()[0])
            system = extracted.read() if extracted is not None else b""
    except docker.errors.NotFound:
        system = b""
    finally:
        probe.remove(force=True)
    return system + b"\n" + ca_cert().read_bytes()
