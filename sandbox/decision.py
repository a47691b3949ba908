"""A run's decision service on the host: ``--decision-service URL``, its token file and
certificate (``--decision-token-file``, ``--decision-ca``), checked before anything
starts; the token and certificate go to the gateway as one private file written into its
own filesystem (like the secrets: sandbox/secrets.py), never the settings or a log."""

from __future__ import annotations

import io
import json
import posixpath
import ssl
import tarfile
from pathlib import Path

from docker.models.containers import Container

from sandbox import paths
from snitch.core.fleetwire import client_context, parse_label, parse_url
from snitch.core.settings import DECISION_FILE

MIN_TOKEN = 16


class DecisionError(ValueError):
    """Options of a decision service that cannot work (said before anything starts)."""


def check_labels(labels: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tuple(parse_label(label) for label in labels)
    except ValueError as exc:
        raise DecisionError(str(exc)) from exc


def credentials(url: str | None, token_file: Path | None, ca_file: Path | None) -> dict[str, str]:
    """``{"token", "ca"}`` for the gateway ({} without a service). The certificate is
    ``ca_file`` or, on the service's own machine, the one ``coderun serve`` made."""
    if url is None:
        if token_file is not None or ca_file is not None:
            raise DecisionError("--decision-token-file and --decision-ca need --decision-service")
        return {}
    try:
        parse_url(url)
    except ValueError as exc:
        raise DecisionError(str(exc)) from exc
    if token_file is None:
        raise DecisionError("--decision-service needs --decision-token-file (its bearer token)")
    token = token_file.read_text().strip()
    if len(token) < MIN_TOKEN or not token.isprintable() or " " in token:
        raise DecisionError(f"{token_file}: not a token (at least {MIN_TOKEN} characters)")
    ca = ca_file or paths.fleet_tls_dir() / "cert.pem"
    if not ca.exists():
        raise DecisionError(f"no certificate of the decision service: give --decision-ca "
                            f"(the service's, from {ca} on its machine)")  # fmt: skip
    pem = ca.read_text()
    try:
        client_context(pem)
    except (ssl.SSLError, ValueError) as exc:
        raise DecisionError(f"{ca}: not a PEM certificate ({exc})") from exc
    return {"token": token, "ca": pem}


def put_credentials(gateway: Container, values: dict[str, str]) -> None:
    """Write them into the gateway container's own filesystem, 0600 root."""
    data = json.dumps(values).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(posixpath.basename(DECISION_FILE))
        info.size, info.mode, info.uid, info.gid = len(data), 0o600, 0, 0
        tar.addfile(info, io.BytesIO(data))
    if not gateway.put_archive(posixpath.dirname(DECISION_FILE), buf.getvalue()):
        raise RuntimeError("copying the decision service's token into the gateway failed")
