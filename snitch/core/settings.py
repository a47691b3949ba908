"""Settings shared by the host (which chooses them) and the gateway (which applies them).

One typed model in three parts, frozen dataclasses:

- ``NetworkShape``: what a gateway's network is made of (gateway image, egress
  network, DNS upstream, web ports, interception). A warm pair of ``coderun pool`` is
  made for one shape; the pool's shape key hashes it.
- ``RunSettings``: what belongs to one run (command, image name, mode, policy file,
  profile, ask deadline and default, max pending, private answers, log limits). A cold
  gateway starts with it; a warm one gets it in its claim (``claim.json``).
- ``GatewaySettings``: everything a gateway starts with: its session, where its data is
  mounted, the egress network's addresses, the host's networks, the owner of its
  files, the shape and, unless it stands by for a claim, the run.

They travel as one JSON document (``to_json``/``from_json``); the gateway's environment
carries it in one variable (``GatewaySettings.to_env``/``from_env``). Reading checks
every field's type and value: a bad document is a ``SettingsError``, never a
half-configured gateway.

**The one-place rule.** A ``coderun run`` option that the gateway needs is one field of
``RunSettings`` (a network option: of ``NetworkShape``) with ``option(...)`` metadata.
``sandbox/cli/options.py`` makes the click option from the field (flag, type, default,
help), the run builds the settings from what click parsed, this module carries them and
the gateway reads ``settings.run.<field>``. Nothing else names it.

Standard library only: it runs in the gateway too.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from snitch.core.fleetwire import parse_label, parse_url
from snitch.core.loglimit import LogLimits
from snitch.core.model import Action, Mode

DEFAULT_MAX_PENDING = 50  # ask mode: items waiting for a person at once (--max-pending)
PROMPT_RATE = 10.0  # ask mode: new items per second, once a burst of max_pending is used
SETTINGS_ENV = "CODERUN_SETTINGS"  # the gateway's environment: GatewaySettings as JSON
DATA_MOUNT = "/data"  # where the gateway finds what it gets of the data dir
SECRETS_FILE = "/run/coderun-secrets.json"  # in the gateway container: {name: value}, 0600
# in the gateway container, 0600: {"token": ..., "ca": PEM} of the decision service
DECISION_FILE = "/run/coderun-decision.json"
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
PLACEHOLDER = re.compile(r"coderun-secret-[0-9a-f]{32}")


class SettingsError(ValueError):
    """A settings document (or value) that cannot be used."""


class Topology(enum.StrEnum):
    """``--topology``: how the gateway stands between the sandbox and the network.

    ``routed``: the gateway is the sandbox's router (its own namespace, the sandbox's
    only route). ``pod``: the gateway is a sidecar in the sandbox's namespace, as
    containers in a Kubernetes pod are; an init step's OUTPUT rules queue the
    workload's flows (snitch/gateway/podrules.py)."""

    ROUTED = "routed"
    POD = "pod"


class PrivateAnswers(enum.StrEnum):
    """``--private-answers``: may a name lead to private and CGNAT ranges?"""

    DENY = "deny"
    ALLOW = "allow"


@dataclass(frozen=True)
class Option:
    """How a settings field appears on the command line (``sandbox/cli/options.py``)."""

    flag: str
    help: str
    min: float | None = None  # numbers: the smallest value accepted
    max: float | None = None  # numbers: the largest


def option(flag: str, help: str, *, min: float | None = None,
           max: float | None = None) -> dict[str, Option]:  # fmt: skip
    """A field's metadata that makes it a command-line option."""
    return {"option": Option(flag, help, min, max)}


def option_of(f: dataclasses.Field[Any]) -> Option | None:
    found = f.metadata.get("option")
    return found if isinstance(found, Option) else None


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise SettingsError(f"port {value} is not in 1-65535")
    return value


@dataclass(frozen=True)
class NetworkShape:
    """What a gateway's network is made of: a warm pair serves runs of its shape only."""

    gateway_image: str = ""
    egress_network: str | None = field(default=None, metadata=option(
        "--egress-network", "Docker network the gateway uses to reach the outside."))
    dns_upstream: str | None = field(default=None, metadata=option(
        "--dns-upstream", "Resolver (an IP address) the gateway forwards allowed lookups to."))
    web_ports: tuple[int, ...] = field(default=(80, 443), metadata=option(
        "--web-ports", "TCP ports relayed through mitmproxy for HTTP and TLS logs, "
        "comma-separated ('' for none)."))
    intercept_tls: bool = field(default=False, metadata=option(
        "--intercept-tls", "Terminate TLS with this install's CA (trusted in the sandbox) "
        "to log full URLs."))
    tls_ports: tuple[int, ...] = (443,)  # of the web ports, those that carry TLS
    topology: Topology = field(default=Topology.ROUTED, metadata=option(
        "--topology", "routed: the gateway is the sandbox's router; pod: a sidecar in the "
        "sandbox's network namespace, as in a Kubernetes pod (docs/architecture.md)."))

    def __post_init__(self) -> None:
        for port in (*self.web_ports, *self.tls_ports):
            _port(port)
        if self.dns_upstream:
            try:
                ipaddress.ip_address(self.dns_upstream)
            except ValueError as exc:
                raise SettingsError(f"DNS upstream {self.dns_upstream!r}: {exc}") from exc


@dataclass(frozen=True)
class SecretBinding:
    """A placeholder secret of a run (``--secret``/``--secret-host``): the sandbox's
    environment has ``name`` = ``placeholder``; the gateway puts the real value in its
    place only in requests to ``hosts``. The value itself is never part of the settings
    (it reaches the gateway as a private file: snitch/gateway/secrets.py)."""

    name: str
    placeholder: str
    hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not SECRET_NAME.fullmatch(self.name):
            raise SettingsError(f"secret name {self.name!r}: letters, digits and _")
        if not PLACEHOLDER.fullmatch(self.placeholder):
            raise SettingsError(f"secret {self.name}: bad placeholder")


@dataclass(frozen=True)
class RunSettings:
    """What belongs to one run (a warm gateway gets it with its claim)."""

    command: tuple[str, ...] = ()  # the sandboxed command, for the dashboards
    image: str = ""  # the sandbox image as the person named it: a rule scope
    mode: Mode = Mode.ENFORCE
    policy: str | None = None  # the run's policy file: its name in the session folder
    profile: str | None = field(default=None, metadata=option(
        "--profile", "Rule profile that applies to this run (besides global rules)."))
    ask_timeout: float = field(default=60.0, metadata=option(
        "--ask-timeout", "Seconds a held flow waits for a decision.", min=0.1))
    ask_default: Action = field(default=Action.DENY, metadata=option(
        "--ask-default", "What happens to a held flow nobody decides."))
    max_pending: int = field(default=DEFAULT_MAX_PENDING, metadata=option(
        "--max-pending", "Ask mode: at most this many items wait for a decision; "
        f"connections beyond it (or faster than {PROMPT_RATE:g} new items a second) are "
        "refused at once.", min=1, max=10_000))
    private_answers: PrivateAnswers = field(default=PrivateAnswers.DENY, metadata=option(
        "--private-answers", "May an allowed name lead to private and CGNAT addresses "
        "(other than the host's)? deny drops such DNS answers (rebind)."))
    log_limits: LogLimits = LogLimits()
    secrets: tuple[SecretBinding, ...] = ()  # --secret, --secret-host (placeholders only)
    # --decision-service URL (its token and certificate reach the gateway as DECISION_FILE)
    decision_service: str | None = None
    labels: tuple[str, ...] = ()  # --label KEY=VALUE: the session's (rule scopes label:K=V)

    def __post_init__(self) -> None:
        if not 1 <= self.max_pending <= 10_000:
            raise SettingsError(f"max pending {self.max_pending} is not in 1-10000")
        if not self.ask_timeout >= 0.1:
            raise SettingsError(f"ask timeout {self.ask_timeout} is under 0.1 s")
        try:
            for label in self.labels:
                parse_label(label)
            if self.decision_service is not None:
                parse_url(self.decision_service)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
        if self.decision_service and self.mode is not Mode.ASK:
            raise SettingsError("a decision service decides held flows: it needs ask mode")


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway container starts with (``$CODERUN_SETTINGS``)."""

    session: str
    egress_subnet: str  # the egress network: the gateway's way out
    egress_gateway: str | None = None
    network: NetworkShape = NetworkShape()
    run: RunSettings | None = None  # None: a warm gateway, waiting for its claim
    data: str = DATA_MOUNT
    host_networks: tuple[str, ...] = ()  # no DNS answer leads there (addresses.py)
    upstream_ca: str | None = None  # a CA it trusts upstream: a file in the session folder
    uid: int | None = None  # owner of the files it writes into the host's data dir
    gid: int | None = None
    # Fast paths the host's environment switches (benchmarks, tests: ``fast_paths_from_env``).
    # enforce mode's kernel verdict cache (kernelcache.py); it steps aside while the log
    # copies of its flows are lost (cacheguard.py)
    kernel_cache: bool = True
    nflog_buffer: int = 0  # bytes for its log copies in the kernel (0: nflog.RCVBUF; tests)
    peek: bool = True  # web flows read in passing where they can be (peeker.py, peeklog.py)

    @property
    def standby(self) -> bool:
        return self.run is None

    def to_env(self) -> dict[str, str]:
        return {SETTINGS_ENV: to_json(self)}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GatewaySettings:
        if SETTINGS_ENV not in env:
            raise SettingsError(f"no {SETTINGS_ENV} in the environment")
        return from_json(cls, env[SETTINGS_ENV])


KERNEL_CACHE_ENV = "CODERUN_KERNEL_CACHE"  # "0": the kernel verdict cache off
PEEK_ENV = "CODERUN_PEEK"  # "0": every web flow through mitmproxy, none read in passing


def fast_paths_from_env(env: Mapping[str, str]) -> tuple[bool, bool]:
    """``GatewaySettings``' fast paths (kernel cache, peek) from the host's environment:
    the cache is on unless ``CODERUN_KERNEL_CACHE=0``, peeking unless ``CODERUN_PEEK=0``."""
    return env.get(KERNEL_CACHE_ENV) != "0", env.get(PEEK_ENV) != "0"


# -- one JSON document ----------------------------------------------------------------------
T = TypeVar("T")


def to_dict(settings: object) -> dict[str, Any]:
    """A settings object as plain JSON values (enums by value, tuples as lists)."""
    encoded = _encode(settings)
    if not isinstance(encoded, dict):
        raise TypeError(f"not a settings object: {settings!r}")
    return encoded


def to_json(settings: object) -> str:
    return json.dumps(to_dict(settings), sort_keys=True)


def from_json(cls: type[T], text: str | bytes) -> T:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"{cls.__name__}: not JSON: {exc}") from exc
    return from_dict(cls, data)


def from_dict(cls: type[T], data: object, where: str = "") -> T:
    """``cls`` from ``to_dict``'s output; every field checked (missing fields take
    their defaults, unknown ones are refused)."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise SettingsError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    values = {name: _decode(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a required field missing
        raise SettingsError(f"{where}: {exc}") from exc
    except SettingsError:
        raise
    except ValueError as exc:  # a field's own check (LogLimits)
        raise SettingsError(f"{where}: {exc}") from exc


def _encode(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(tp: Any, value: object, where: str) -> object:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _decode(inner, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        item = typing.get_args(tp)[0]
        return tuple(_decode(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in tp)
            raise SettingsError(f"{where}: {value!r} is not one of {choices}") from None
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)  # type: ignore[arg-type]
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (bool, str) and isinstance(value, tp):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    raise SettingsError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
