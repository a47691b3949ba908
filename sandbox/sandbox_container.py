"""The sandbox container of a session: what it mounts, sees and may not do."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import docker.errors
from docker.models.containers import Container

from sandbox import paths

if TYPE_CHECKING:
    from sandbox.session import Session

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def create_sandbox(session: Session, name: str) -> Container:
    """Create (not start) the sandbox in the holder's network namespace."""
    from sandbox.session import SessionError

    cfg = session.config
    assert session.holder is not None
    resolv = session.dir / "resolv.conf"
    resolv.write_text(f"nameserver {session.gateway_ip}\noptions timeout:2 attempts:2\n")
    volumes: dict[str, dict[str, str]] = {
        str(resolv): {"bind": "/etc/resolv.conf", "mode": "ro"},
    }
    env = dict(cfg.env)
    if cfg.intercept_tls:
        volumes[str(ca_bundle(session))] = {"bind": SYSTEM_BUNDLE, "mode": "ro"}
        volumes[str(ca_cert())] = {"bind": "/coderun/ca.pem", "mode": "ro"}
        for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT",
                    "GIT_SSL_CAINFO"):  # fmt: skip
            env.setdefault(var, SYSTEM_BUNDLE)
        env.setdefault("NODE_EXTRA_CA_CERTS", "/coderun/ca.pem")
    command = list(cfg.command)
    if cfg.script is not None:
        target = f"/coderun/{cfg.script.name}"
        volumes[str(cfg.script.resolve())] = {"bind": target, "mode": "ro"}
        interpreter = ["python3"] if cfg.script.suffix == ".py" else ["bash"]
        command = [*interpreter, target, *command]
    for spec in cfg.volumes:
        parts = spec.split(":")
        if len(parts) < 2:
            raise SessionError(f"--volume {spec!r}: expected HOST:CONTAINER[:ro]")
        mode = parts[2] if len(parts) > 2 else "rw"
        volumes[str(Path(parts[0]).resolve())] = {"bind": parts[1], "mode": mode}
    container: Container = session.client.containers.create(
        cfg.image,
        command=command,
        name=f"{name}-sandbox",
        network_mode=f"container:{session.holder.id}",
        labels=session.role_labels("sandbox"),
        environment=env,
        volumes=volumes,
        working_dir=cfg.workdir,
        tty=cfg.tty,
        stdin_open=False,
        cap_drop=["NET_RAW", "NET_ADMIN", "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE"],
        security_opt=["no-new-privileges"],
        pids_limit=cfg.pids,
        mem_limit=cfg.memory,
    )
    return container


def ca_cert() -> Path:
    return paths.data_dir() / "ca" / "mitmproxy-ca-cert.pem"


def ca_bundle(session: Session) -> Path:
    """The sandbox image's own CA bundle plus the install's interception CA."""
    probe = session.client.containers.create(session.config.image, command=["true"],
                                             labels=session.role_labels("probe"))  # fmt: skip
    try:
        chunks, _ = probe.get_archive(SYSTEM_BUNDLE)
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            extracted = tar.extractfile(tar.getmembers()[0])
            system = extracted.read() if extracted is not None else b""
    except docker.errors.NotFound:
        system = b""
    finally:
        probe.remove(force=True)
    bundle = session.dir / "ca-bundle.pem"
    bundle.write_bytes(system + b"\n" + ca_cert().read_bytes())
    return bundle
