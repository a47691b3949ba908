"""What a policy file's ``[[rule]]`` and ``[[file]]`` tables share: the typed values of
their keys, the keys every rule has (scope, priority, lifetime, bookkeeping), and how
those are written back (``snitch.core.policyfile`` reads and writes the tables)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from snitch.core.grammar import Lifetime, check_scope, parse_lifetime
from snitch.core.model import Rule

COMMON_KEYS = (
    "scope", "priority", "lifetime", "session", "expires_at", "enabled", "source", "note",
    "created", "hits", "last_hit",
)  # fmt: skip


def time_value(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | dt.datetime):
        raise ValueError(f"{what} must be a date-time (2024-05-01T12:00:00Z) or epoch seconds")
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return float(stamp.timestamp())
    return float(value)


def str_value(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    return value


def int_value(value: Any, what: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}")
    return value


def set_common(rule: Rule, key: str, value: Any) -> None:
    """Set one of ``COMMON_KEYS`` but ``lifetime`` (see ``apply_lifetime``) on ``rule``."""
    if key == "scope":
        rule.scope = check_scope(str_value(value, key))
    elif key == "priority":
        rule.priority = int_value(value, key)
    elif key == "session":
        rule.session = str_value(value, key)
    elif key in ("expires_at", "created", "last_hit"):
        setattr(rule, key, time_value(value, key))
    elif key == "enabled":
        if not isinstance(value, bool):
            raise ValueError("enabled must be true or false")
        rule.enabled = value
    elif key in ("source", "note"):
        setattr(rule, key, str_value(value, key))
    elif key == "hits":
        rule.hits = int_value(value, key, 0)


def apply_lifetime(rule: Rule, table: dict[str, Any], now: float) -> None:
    if "lifetime" not in table:
        return
    text = str_value(table["lifetime"], "lifetime").strip()
    try:
        life: Lifetime | float | None = parse_lifetime(text)
    except ValueError:
        life = None
    if life is Lifetime.ONCE:
        raise ValueError("lifetime 'once' is not allowed in a policy file (one connection only)")
    if life is Lifetime.ALWAYS:
        if "session" in table or "expires_at" in table:
            raise ValueError("lifetime 'always' contradicts session/expires_at")
    elif life is Lifetime.SESSION:
        if "session" not in table:
            raise ValueError("lifetime 'session' needs a session key with the session id")
    else:
        if "expires_at" in table:
            raise ValueError("give either a lifetime duration or expires_at, not both")
        if life is None:
            raise ValueError(
                f"bad lifetime {text!r} (want always, session or a duration: 30s, 5m, 1h, 2d)"
            )
        rule.expires_at = now + life


# -- writing -----------------------------------------------------------------------------


def toml_string(s: str) -> str:
    """``s`` as a TOML basic string (control characters escaped)."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def timestamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def scope_lines(rule: Rule) -> list[str]:
    """``scope`` and ``priority`` when not the defaults."""
    lines = [f"scope = {toml_string(rule.scope)}"] if rule.scope != "global" else []
    return lines + ([f"priority = {rule.priority}"] if rule.priority else [])


def tail_lines(rule: Rule) -> list[str]:
    """Lifetime, state and bookkeeping, the defaults left out."""
    q = toml_string
    lines = []
    if rule.session is not None:
        lines += ['lifetime = "session"', f"session = {q(rule.session)}"]
    if rule.expires_at is not None:
        lines.append(f"expires_at = {timestamp(rule.expires_at)}")
    if not rule.enabled:
        lines.append("enabled = false")
    lines.append(f"source = {q(rule.source)}")
    if rule.note:
        lines.append(f"note = {q(rule.note)}")
    lines.append(f"created = {timestamp(rule.created)}")
    if rule.hits:
        lines.append(f"hits = {rule.hits}")
    if rule.last_hit is not None:
        lines.append(f"last_hit = {timestamp(rule.last_hit)}")
    return lines
