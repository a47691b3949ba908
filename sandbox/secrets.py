"""Placeholder secrets on the host: ``--secret NAME[=@FILE]`` and ``--secret-host NAME=HOSTS``.

Each secret gets a placeholder (``coderun-secret-`` and 32 random hex digits): the
sandbox's environment has ``NAME=<placeholder>``, the run's settings carry the name, the
placeholder and the bound hosts (``SecretBinding``), and the real value (from this
process's environment, or a file with ``NAME=@FILE``) goes to the gateway container as
one private file written straight into its own filesystem (``put_archive``: no host
path, not the session folder, removed with the container, and by the gateway once read).
The value is never written to the session folder, the logs or the settings.
"""

from __future__ import annotations

import io
import json
import posixpath
import secrets
import tarfile
from collections.abc import Mapping
from pathlib import Path

from docker.models.containers import Container

from snitch.core.grammar import is_address
from snitch.core.settings import SECRET_NAME, SECRETS_FILE, SecretBinding

PLACEHOLDER_PREFIX = "coderun-secret-"
MAX_VALUE = 64 * 1024  # bytes: a credential, not a file


class SecretSpecError(ValueError):
    """A --secret or --secret-host that cannot be used."""


def placeholder() -> str:
    return PLACEHOLDER_PREFIX + secrets.token_hex(16)


def _value(spec: str, environ: Mapping[str, str]) -> tuple[str, str]:
    name, sep, source = spec.partition("=")
    if not SECRET_NAME.fullmatch(name):
        raise SecretSpecError(f"--secret {name!r}: a name of letters, digits and _")
    if sep:
        if not source.startswith("@") or len(source) < 2:
            raise SecretSpecError(f"--secret {name}: expected NAME or NAME=@FILE")
        path = Path(source[1:]).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SecretSpecError(f"--secret {name}: cannot read {path}: {exc.strerror}") from exc
        if len(data) > MAX_VALUE:
            raise SecretSpecError(f"--secret {name}: {path} is over {MAX_VALUE} bytes")
        try:
            value = data.decode().rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise SecretSpecError(f"--secret {name}: {path} is not UTF-8 text") from exc
    elif name in environ:
        value = environ[name]
    else:
        raise SecretSpecError(f"--secret {name}: no {name} in the environment (or NAME=@FILE)")
    if not value:
        raise SecretSpecError(f"--secret {name}: the value is empty")
    return name, value


def parse_host_list(what: str, hosts: str) -> tuple[str, ...]:
    """``HOST[,HOST...]`` (names, ``*`` globs allowed; never addresses) for ``what``."""
    out = []
    for host in (h.strip().rstrip(".").lower() for h in hosts.split(",")):
        if not host or is_address(host) or "/" in host or ":" in host:
            raise SecretSpecError(f"{what}: {host!r} is not a host name")
        out.append(host)
    return tuple(out)


def _hosts(specs: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, hosts = spec.partition("=")
        if not sep or not name:
            raise SecretSpecError(f"--secret-host {spec!r}: expected NAME=HOST[,HOST...]")
        out.setdefault(name, []).extend(parse_host_list(f"--secret-host {spec!r}", hosts))
    return out


def parse_secrets(
    specs: tuple[str, ...], host_specs: tuple[str, ...], environ: Mapping[str, str]
) -> tuple[tuple[SecretBinding, ...], dict[str, str]]:
    """The run's bindings (placeholders made) and the values by name."""
    values = dict(_value(spec, environ) for spec in specs)
    hosts = _hosts(host_specs)
    unknown = sorted(set(hosts) - set(values))
    if unknown:
        raise SecretSpecError(f"--secret-host names no --secret: {', '.join(unknown)}")
    bindings = tuple(SecretBinding(name, placeholder(), tuple(hosts.get(name, ())))
                     for name in values)  # fmt: skip
    return bindings, values


def put_values(gateway: Container, values: Mapping[str, str]) -> None:
    """Write the values into the gateway container's own filesystem, 0600 root."""
    data = json.dumps(dict(values)).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(posixpath.basename(SECRETS_FILE))
        info.size, info.mode, info.uid, info.gid = len(data), 0o600, 0, 0
        tar.addfile(info, io.BytesIO(data))
    if not gateway.put_archive(posixpath.dirname(SECRETS_FILE), buf.getvalue()):
        raise RuntimeError("copying the secrets into the gateway failed")
