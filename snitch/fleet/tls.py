"""The decision service's certificate and token.

Never plain HTTP, never without a token: ``coderun serve`` generates a self-signed
certificate (openssl, an EC P-256 key) for the names it listens on into the data dir when
none is given, and a random token into ``--token-file`` when that file does not exist.
Clients trust that certificate only (``--ca``, or the service's own file on its machine).
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
from collections.abc import Sequence
from pathlib import Path

from snitch.core.grammar import is_address

MIN_TOKEN = 16
DAYS = 825


class TlsError(RuntimeError):
    """A certificate or token that cannot be made or used."""


def subject_alt_names(hosts: Sequence[str]) -> str:
    names = dict.fromkeys([*hosts, "localhost", "127.0.0.1"])
    return ",".join(f"IP:{h}" if is_address(h) else f"DNS:{h}" for h in names if h)


def certificate_covers(cert: Path, hosts: Sequence[str]) -> bool:
    """Whether ``cert`` names every one of ``hosts`` (as openssl prints its SAN)."""
    try:
        text = subprocess.run(
            ["openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName",
             "-checkend", "86400"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    names = {
        part.strip().replace("IP Address:", "IP:") for part in text.replace("\n", ",").split(",")
    }
    return all(part in names for part in subject_alt_names(hosts).split(","))


def ensure_certificate(folder: Path, hosts: Sequence[str]) -> tuple[Path, Path]:
    """``folder``/cert.pem and key.pem for ``hosts`` (made, or made again when they do
    not name every host or expire within a day)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.exists() and key.exists() and certificate_covers(cert, hosts):
        return cert, key
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    old = os.umask(0o077)  # the key is private from its first byte
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", str(DAYS), "-subj", "/CN=coderun decision service",
             "-addext", f"subjectAltName={subject_alt_names(hosts)}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
             "-addext", "extendedKeyUsage=serverAuth",
             "-keyout", str(key), "-out", str(cert)],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise TlsError("openssl is needed to make the service's certificate "
                       "(or give --tls-cert and --tls-key)") from exc  # fmt: skip
    except subprocess.CalledProcessError as exc:
        raise TlsError(f"openssl could not make a certificate: {exc.stderr.strip()}") from exc
    finally:
        os.umask(old)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot use {cert} / {key}: {exc}") from exc
    return context


def read_token(path: Path, *, create: bool = False) -> str:
    """The bearer token in ``path`` (made, 0600, when absent and ``create``)."""
    if create and not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise TlsError(f"token file {path}: {exc.strerror or exc}") from exc
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token) or not token.isprintable():
        raise TlsError(f"token file {path}: the token must be at least {MIN_TOKEN} printable "
                       "characters without spaces")  # fmt: skip
    return token
