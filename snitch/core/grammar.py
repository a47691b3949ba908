"""The one grammar of coderun: every word a person types or a process sends, parsed once.

Standard library only, importable from every layer (the gateway, the CLI, the dashboard).
The CLI, the dashboard, policy files and the gateway's API use these parsers and no copy
of them:

- durations: ``30s``, ``5m``, ``1.5h``, ``1h30m``, ``2d``, ``1w``, a bare number of seconds;
  shown in their shortest chained form (3600 s is ``1h``);
- ports: ``443``, ``8000-8100``, ``any``/``*`` (every port);
- rule targets: an exact name, ``*.domain``, an address, a CIDR, ``any``/``*``;
- endpoints: ``HOST[:PORT]``, ``IP[:PORT]``, ``[IPv6]:PORT``, a bare IPv6 address;
- lifetimes: ``once``, ``session``, ``always`` or a duration;
- (HTTP methods, URL paths and path globs: snitch/core/pathgrammar.py)

and the enumerations of strings that cross process boundaries (verdicts, lifetimes, event
topics, gateway states, the origin of a decision). Each is a ``StrEnum``: equal to its
string, so JSON written before them reads the same.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import Protocol


class Verdict(enum.StrEnum):
    """A log line's ``verdict`` (``allow``/``deny`` are an Action's values)."""

    ALLOW = "allow"
    DENY = "deny"
    # Refused: a DNS answer or a flow that an allowed *name* would have led inside
    # (loopback, the host, private ranges; snitch/gateway/addresses.py). A kind of deny.
    REBIND = "rebind"
    ASK = "ask"
    PENDING = "pending"
    EXPIRED = "expired"


class Lifetime(enum.StrEnum):
    """How long a decision lasts, besides a duration (``5m``): see ``parse_lifetime``."""

    ONCE = "once"  # this one connection (no rule is stored)
    SESSION = "session"  # until the session ends
    ALWAYS = "always"  # until removed


class Topic(enum.StrEnum):
    """The topics of the gateway's event bus and of the API's event stream."""

    PENDING = "pending"  # data: Pending (new, or updated under the same id)
    DECIDED = "decided"  # data: {id, action, by, rule_id, reason, origin}
    EXPIRED = "expired"  # data: as decided: the deadline decided
    LOG = "log"  # data: LogEntry
    RULES = "rules"  # data: {}: the rules changed
    SESSION = "session"  # data: the session info, sent first on every stream
    PROMPTS = "prompts"  # data: PromptCounts, when they changed
    PORTS = "ports"  # data: the sandbox's listening ports and their forwards


class GatewayState(enum.StrEnum):
    """The ``state`` a gateway writes to ``gateway.json`` in its session folder."""

    STANDBY = "standby"  # a warm pool's gateway waiting for its claim (no packet judged)
    READY = "ready"  # judging the sandbox's packets
    STOPPED = "stopped"  # stopped, its log flushed


class Origin(enum.StrEnum):
    """Who made a decision (instead of searching its reason text)."""

    RULE = "rule"  # a stored rule, a policy-file rule or a blocklist entry
    DEFAULT = "default"  # the mode's default, or the gateway itself (no rule, a guard, an error)
    PERSON = "person"  # a person's answer in ask mode, without a stored rule
    DEADLINE = "deadline"  # ask mode's deadline passed: its default applied
    AUDIT = "audit"  # audit mode let it through whatever the rules say
    LIMIT = "limit"  # ask mode refused it at once: too many items waiting, or too fast


def choices(enum_type: type[enum.StrEnum]) -> list[str]:
    """The values of an enumeration, e.g. for a click.Choice (one list, never a copy)."""
    return [str(member) for member in enum_type]


# -- durations --------------------------------------------------------------------------

DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}  # largest first
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ValueError for anything that is not a positive duration.

    A bare number is seconds. Parts may be chained, largest first or not: ``1h30m``;
    a part may be fractional: ``1.5h``.
    """
    s = text.strip().lower()
    if not s:
        raise ValueError("empty duration")
    if _NUMBER.fullmatch(s):
        seconds = float(s)
    else:
        pos, seconds = 0, 0.0
        for m in _PART.finditer(s):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * DURATION_UNITS[m.group(2)]
            pos = m.end()
        if pos != len(s):
            raise ValueError(f"bad duration {text!r} (use e.g. 30s, 5m, 1h, 2d)")
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return seconds


def format_duration(seconds: float, parts: int | None = None) -> str:
    """The shortest chained form, rounded down to whole seconds: ``5400`` -> ``1h30m``.

    ``parts`` keeps only the largest units (``parts=2``: ``1d2h3m`` -> ``1d2h``)."""
    rest = max(0, int(seconds))
    found = []
    for unit, size in DURATION_UNITS.items():
        if rest >= size:
            found.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(found[:parts]) or "0s"


# -- ports ------------------------------------------------------------------------------

ANY_WORDS = frozenset({"", "any", "*"})  # every port / every destination


def parse_port(value: object) -> tuple[int, int]:
    """``443``, ``"443"`` or ``"8000-8100"`` -> (lo, hi); ``any``, ``*``, ``0`` -> (0, 0)."""
    if isinstance(value, bool):
        raise ValueError(f"bad port {value!r}")
    if isinstance(value, int):
        lo = hi = value
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in ANY_WORDS:  # ("0" is (0, 0) below)
            return (0, 0)
        a, sep, b = text.partition("-")
        try:
            lo, hi = (int(a), int(b)) if sep else (int(a), int(a))
        except ValueError:
            raise ValueError(f"bad port {value!r} (want 443, 8000-8100 or any)") from None
    else:
        raise ValueError(f"bad port {value!r} (want 443, 8000-8100 or any)")
    if lo == hi == 0:
        return (0, 0)
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"bad port {value!r} (ports are 1..65535, low before high)")
    return (lo, hi)


def format_port(lo: int, hi: int) -> str:
    """``any``, ``443`` or ``8000-8100`` (what ``parse_port`` reads back)."""
    return "any" if lo == 0 else str(lo) if lo == hi else f"{lo}-{hi}"


# -- names, addresses and rule targets ----------------------------------------------------

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# The addresses coderun makes up for undecided names in ask mode (snitch.gateway.fakeip.POOL):
# the same address goes to whichever name is looked up first in the next session, so no
# rule may ever target them.
SYNTHETIC_NET = ipaddress.IPv4Network("198.18.0.0/15")


def normalize_name(name: str) -> str:
    return name.strip().lower().rstrip(".")


def is_address(text: str) -> bool:
    """True for an IPv4 or IPv6 address (not a network, not a name)."""
    if ":" not in text and not text.replace(".", "").isdigit():
        return False  # a name, most often (the exception below costs ~2 us)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parent_pattern(name: str) -> str:
    """The rule target for a name's parent domain: ``api.example.test`` ->
    ``*.example.test``; a two-label name covers its own subdomains (never ``*.test``)."""
    labels = name.rstrip(".").split(".")
    if len(labels) >= 3:
        return "*." + ".".join(labels[1:])
    return "*." + name.rstrip(".")


def network_of(address: str, prefix: int) -> str:
    """The network of ``prefix`` bits around ``address``: (192.0.2.7, 24) -> 192.0.2.0/24."""
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def normalize_host(host: str) -> str:
    """A rule's ``host``: an exact name or ``*.domain``, lower-cased; ValueError if invalid."""
    h = normalize_name(host)
    body = h[2:] if h.startswith("*.") else h
    labels = body.split(".")
    bad = not body or len(body) > 253 or not set(body) <= _HOST_CHARS or "" in labels
    if bad or labels[-1].isdigit():  # (a numeric last label is a broken address)
        raise ValueError(f"bad host {host!r} (want a name or *.domain)")
    if any(lbl.startswith("-") or lbl.endswith("-") for lbl in labels):
        raise ValueError(f"bad host {host!r} (a label starts or ends with '-')")
    return h


def is_synthetic_net(net: IPNetwork) -> bool:
    return isinstance(net, ipaddress.IPv4Network) and net.subnet_of(SYNTHETIC_NET)


def is_synthetic_cidr(cidr: str | None) -> bool:
    """True when a rule's ``cidr`` lies inside SYNTHETIC_NET (such a rule never matches)."""
    if cidr is None:
        return False
    try:
        return is_synthetic_net(ipaddress.ip_network(cidr, strict=False))
    except ValueError:
        return False


def is_synthetic_address(ip: str) -> bool:
    """True for an address coderun may have made up for an undecided name (ask mode)."""
    return ip.startswith(("198.18.", "198.19."))


def synthetic_target(target: str) -> str:
    """Why a rule for ``target`` (inside SYNTHETIC_NET) is refused."""
    return (
        f"{target} is inside {SYNTHETIC_NET}, the addresses coderun makes up for undecided "
        "names in ask mode: a rule for it would apply to whichever name gets that address "
        "next; give the name instead"
    )


def normalize_cidr(text: str) -> str:
    """A rule's ``cidr``: a bare address for a single host, else ``net/len``. Strict.

    Refuses targets inside SYNTHETIC_NET (ValueError, see ``synthetic_target``)."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as e:
        raise ValueError(f"bad address or CIDR {text!r}: {e}") from None
    if is_synthetic_net(net):
        raise ValueError(synthetic_target(text.strip()))
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def parse_target(text: str) -> tuple[str | None, str | None]:
    """A rule's destination -> (host, cidr): ``any``/``*`` -> (None, None); a name or
    ``*.domain`` -> (host, None); an address or a CIDR -> (None, cidr). ValueError else."""
    t = text.strip()
    if t.lower() in ("any", "*"):
        return None, None
    if not t:
        raise ValueError("no target (want a name, *.domain, an address, a CIDR or any)")
    try:
        ipaddress.ip_network(t, strict=False)
    except ValueError:
        if "/" in t:
            raise ValueError(f"bad CIDR {text!r}") from None
        return normalize_host(t), None
    return None, normalize_cidr(t)


def format_target(host: str | None, cidr: str | None) -> str:
    """What ``parse_target`` reads back: the host, the CIDR or ``*``."""
    return host or cidr or "*"


# A label as Kubernetes writes one: an optional DNS-subdomain prefix and "/", a name of
# 1..63 alphanumerics, "-", "_", "." (alphanumeric at both ends); a value of 0..63 of the same.
_LABEL_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
LABEL_RE = re.compile(
    rf"^(?:[a-z0-9]([a-z0-9.-]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}=(?:{_LABEL_NAME})?$"
)


def check_label(label: str) -> str:
    """A session label ``KEY=VALUE`` (Kubernetes label syntax); ValueError else."""
    if not LABEL_RE.match(label):
        raise ValueError(f"bad label {label!r} (want KEY=VALUE, as a Kubernetes label)")
    return label


def check_scope(scope: str) -> str:
    """A rule's scope: ``global``, ``profile:NAME``, ``image:NAME`` or ``label:KEY=VALUE``
    (the rule applies to sessions carrying that label); ValueError else."""
    kind, _, name = scope.partition(":")
    if scope == "global" or (kind in ("profile", "image") and name and name.strip() == name):
        return scope
    if kind == "label" and LABEL_RE.match(name):
        return scope
    raise ValueError(
        f"bad scope {scope!r} (want global, profile:NAME, image:NAME or label:KEY=VALUE)"
    )


# -- endpoints (host:port) ----------------------------------------------------------------


def parse_endpoint(text: str) -> tuple[str, int]:
    """``HOST[:PORT]``, ``IP[:PORT]``, ``[IPv6]:PORT`` or a bare IPv6 -> (host or IP, port);
    port 0 when none is given. ValueError for no host or a port outside 1..65535."""
    t = text.strip()
    host, port = t, ""
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        port = rest.removeprefix(":")
    elif t.count(":") == 1:
        host, _, port = t.partition(":")
    if not host:
        raise ValueError(f"no host in {text!r} (want e.g. api.example.test:443)")
    if not port:
        return host, 0
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"bad port in {text!r} (1..65535)")
    return host, int(port)


def format_endpoint(host: str, port: int) -> str:
    """``host:port`` (``[v6]:port``), or the host alone for port 0: what ``parse_endpoint``
    reads back."""
    if not port:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- lifetimes --------------------------------------------------------------------------


def parse_lifetime(text: str) -> Lifetime | float:
    """``once``, ``session``, ``always`` -> the Lifetime; a duration -> its seconds."""
    s = text.strip().lower()
    try:
        return Lifetime(s)
    except ValueError:
        pass
    try:
        return parse_duration(s)
    except ValueError:
        raise ValueError(
            f"bad lifetime {text!r} (want once, session, always or a duration: 30s, 5m, 1.5h, 2d)"
        ) from None


class Lasting(Protocol):
    """The lifetime fields of a rule (snitch.core.model.Rule)."""

    @property
    def once_key(self) -> str | None: ...
    @property
    def session(self) -> str | None: ...
    @property
    def expires_at(self) -> float | None: ...


def lifetime_value(rule: Lasting, now: float) -> str:
    """A rule's lifetime as ``parse_lifetime`` reads it: once, a duration left (at least
    1s), session or always."""
    if rule.once_key is not None:
        return Lifetime.ONCE
    if rule.expires_at is not None:
        return format_duration(max(1.0, rule.expires_at - now))
    return Lifetime.SESSION if rule.session is not None else Lifetime.ALWAYS


def lifetime_text(rule: Lasting, now: float, parts: int | None = None) -> str:
    """A rule's lifetime for people: once, ``5m left``, expired, session or always."""
    if rule.once_key is not None:
        return Lifetime.ONCE
    if rule.expires_at is not None:
        left = rule.expires_at - now
        return f"{format_duration(left, parts)} left" if left > 0 else "expired"
    return Lifetime.SESSION if rule.session is not None else Lifetime.ALWAYS
