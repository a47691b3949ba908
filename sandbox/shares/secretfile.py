"""``--secret-file PATH[:CONTAINER_PATH]=HOST[,HOST...]``: a credentials file the sandbox
reads with placeholders where its secrets were.

The file is read once on the host. Every value whose key names a secret (``token``,
``password``, ``secret``, ``auth``, ``api_key``, ...) in the line formats credentials
files use — ``key = value`` (INI, ``.env``, ``.npmrc``, properties, with ``export`` and
quotes), ``key: value`` (simple YAML), ``"key": "value"`` (JSON, one pair per line) and
``.netrc``'s ``password VALUE`` — becomes a placeholder secret bound to the given hosts,
exactly like ``--secret``: the gateway puts the real value back only in requests to those
hosts. The sandbox sees the masked text through a read-only FUSE share of that one file;
the real file is never served. Values a client transforms before sending them (an AWS
secret key signs requests, a Docker ``auth`` is base64 of user:password) are hidden the
same way, but their requests cannot be completed by the gateway (docs/files-and-secrets.md).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from sandbox.secrets import MAX_VALUE, SecretSpecError, parse_host_list, placeholder
from sandbox.shares.spec import SHARES_ROOT, Share
from snitch.core.settings import SecretBinding

MAX_FILE = 1024 * 1024  # bytes: a credentials file, not a data file
SECRET_KEY = re.compile(
    r"(secret|token|passw(or)?d|^pass$|auth|api[_-]?key|private[_-]?key|credential|session)",
    re.IGNORECASE,
)
_PAIR = re.compile(
    r"^(?P<lead>\s*(?:export\s+)?)(?P<key>[^\s#;=][^=]*?)(?P<sep>\s*=\s*)(?P<value>.*?)\s*$"
)
_YAML = re.compile(r"^(?P<lead>\s*-?\s*)(?P<key>[A-Za-z_][\w.-]*)(?P<sep>:\s+)(?P<value>.*?)\s*$")
_JSON = re.compile(r'"(?P<key>[^"\\]+)"(?P<sep>\s*:\s*)"(?P<value>(?:[^"\\]|\\.)*)"')
_NETRC = re.compile(r"(?P<key>\bpassword)(?P<sep>\s+)(?P<value>[^\s=:]\S*)")


@dataclass(frozen=True)
class MaskedFile:
    """The masked text and the secrets it hides (name -> value; bindings for the run)."""

    text: bytes
    bindings: tuple[SecretBinding, ...]
    values: dict[str, str]


def _last_word(key: str) -> str:
    """The part of a key that names it: ``//registry.example.test/:_authToken`` ->
    ``_authToken``, ``default.aws_secret_access_key`` -> ``aws_secret_access_key``."""
    return re.split(r"[:/.]", key.strip().strip("\"'"))[-1] or key


def _unquote(value: str) -> tuple[str, str]:
    """(the value, the quote around it) for ``"v"``, ``'v'`` or ``v``."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1], value[0]
    return value, ""


class _Masker:
    def __init__(self, stem: str, hosts: tuple[str, ...]) -> None:
        self.stem = re.sub(r"[^A-Za-z0-9_]", "_", stem.lstrip(".")) or "file"
        self.hosts = hosts
        self.by_value: dict[str, SecretBinding] = {}
        self.values: dict[str, str] = {}

    def placeholder_for(self, key: str, value: str) -> str | None:
        if not value or value.startswith(("${", "$(")) or value.startswith("coderun-secret-"):
            return None
        if not SECRET_KEY.search(_last_word(key)):
            return None
        if len(value.encode()) > MAX_VALUE:
            raise SecretSpecError(f"--secret-file: the value of {key!r} is over {MAX_VALUE} bytes")
        known = self.by_value.get(value)
        if known is not None:
            return known.placeholder
        base = re.sub(r"[^A-Za-z0-9_]", "_", f"{self.stem}_{_last_word(key)}")[:100]
        name, n = base, 1
        while name in self.values:
            n += 1
            name = f"{base}_{n}"
        binding = SecretBinding(name, placeholder(), self.hosts)
        self.by_value[value], self.values[name] = binding, value
        return binding.placeholder

    def line(self, line: str) -> str:
        for pattern in (_JSON, _NETRC):
            if pattern.search(line):
                return pattern.sub(self._sub, line)
        stripped = line.lstrip()
        if not stripped or stripped[0] in "#;[":
            return line
        for pattern in (_PAIR, _YAML):
            m = pattern.match(line)
            if m:
                value, quote = _unquote(m["value"])
                ph = self.placeholder_for(m["key"], value)
                if ph is None:
                    return line
                return f"{m['lead']}{m['key']}{m['sep']}{quote}{ph}{quote}"
        return line

    def _sub(self, m: re.Match[str]) -> str:
        value = m["value"]
        ph = self.placeholder_for(m["key"], value)
        if ph is None:
            return m[0]
        return m[0][: m.start("value") - m.start()] + ph + m[0][m.end("value") - m.start() :]


def mask_text(text: str, stem: str, hosts: tuple[str, ...]) -> MaskedFile:
    """``text`` with every secret value replaced by a placeholder bound to ``hosts``."""
    masker = _Masker(stem, hosts)
    lines = text.split("\n")
    out = "\n".join(masker.line(line) for line in lines)
    bindings = tuple(masker.by_value[v] for v in masker.values.values())
    return MaskedFile(out.encode(), bindings, dict(masker.values))


@dataclass(frozen=True)
class SecretFileSpec:
    host: Path  # the file on the host (resolved)
    target: str  # CONTAINER_PATH, or "" for the share's default place
    hosts: tuple[str, ...]


def parse_secret_file(spec: str) -> SecretFileSpec:
    """``PATH[:CONTAINER_PATH]=HOST[,HOST...]`` (hosts may be empty: bound nowhere)."""
    where, sep, hosts = spec.rpartition("=")
    if not sep or not where:
        raise SecretSpecError(
            f"--secret-file {spec!r}: expected PATH[:CONTAINER_PATH]=HOST[,HOST...]"
        )
    path, _, target = where.partition(":")
    host = Path(path).expanduser()
    if not host.is_file():
        raise SecretSpecError(f"--secret-file {spec!r}: {host} is not a file")
    names = parse_host_list(f"--secret-file {spec!r}", hosts) if hosts else ()
    return SecretFileSpec(host.resolve(), target, names)


def mask_file(spec: SecretFileSpec) -> MaskedFile:
    """Read and mask the file (UTF-8 text, at most ``MAX_FILE`` bytes)."""
    try:
        data = spec.host.read_bytes()
    except OSError as exc:
        raise SecretSpecError(f"--secret-file: cannot read {spec.host}: {exc.strerror}") from exc
    if len(data) > MAX_FILE:
        raise SecretSpecError(f"--secret-file: {spec.host} is over {MAX_FILE} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise SecretSpecError(f"--secret-file: {spec.host} is not UTF-8 text") from exc
    return mask_text(text, spec.host.name, spec.hosts)


def secret_file_shares(
    specs: tuple[str, ...], shares: list[Share], taken: set[str]
) -> tuple[list[Share], tuple[SecretBinding, ...], dict[str, str]]:
    """The read-only masked shares of ``--secret-file`` specs, their bindings and values.

    ``shares`` are the run's other shares (a file shared both ways is refused: it would
    be served unmasked too), ``taken`` the names of its ``--secret`` secrets."""
    out: list[Share] = []
    bindings: list[SecretBinding] = []
    values: dict[str, str] = {}
    for spec in specs:
        parsed = parse_secret_file(spec)
        if any(s.host == parsed.host for s in [*shares, *out]):
            raise SecretSpecError(f"--secret-file {spec!r}: {parsed.host} is shared twice")
        masked = mask_file(parsed)
        clash = sorted(set(masked.values) & (taken | set(values)))
        if clash:
            raise SecretSpecError(f"--secret-file {spec!r}: secret name {clash[0]} is taken")
        target = parsed.target or f"{SHARES_ROOT}/{parsed.host.name}"
        if not target.startswith("/") or posixpath.normpath(target) in ("/", "/proc", "/dev"):
            raise SecretSpecError(f"--secret-file {spec!r}: the container path must be absolute")
        out.append(Share(parsed.host, posixpath.normpath(target), False, masked.text))
        bindings.extend(masked.bindings)
        values.update(masked.values)
    return out, tuple(bindings), values
