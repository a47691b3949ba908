"""The line prompt's words: the question about a held item, its options, the rule an
"always" answer stores, every untrusted part escaped (sandbox/line_prompt.py asks them)."""

from __future__ import annotations

from sandbox.textout import show_name
from snitch.core.grammar import Lifetime
from snitch.core.model import Action, Pending
from snitch.core.safetext import safe

ANSWERS = {
    "a": (Action.ALLOW, Lifetime.ONCE),
    "A": (Action.ALLOW, Lifetime.ALWAYS),
    "d": (Action.DENY, Lifetime.ONCE),
    "D": (Action.DENY, Lifetime.ALWAYS),
}


def where(item: Pending) -> str:
    """``NAME 443/tcp`` for a person: the verified name (or the address), escaped."""
    port = "icmp" if item.proto == "icmp" else f"{item.dport}/{safe(item.proto)}"
    if item.kind == "dns":
        return f"{show_name(item.label)} (lookup)"
    return f"{show_name(item.label) if item.names else safe(item.dst)} {port}"


def lasting_target(item: Pending) -> str | None:
    """What an "always" rule on ``item`` is stored for: its verified name, else its real
    address; None for a synthetic address without a name (never a rule target)."""
    if item.names:
        return item.names[0]
    return None if item.synthetic else item.dst


def question_text(item: Pending) -> str:
    """The question, untrusted parts escaped (without the tag)."""
    what = "lookup of" if item.kind == "dns" else "connection to"
    text = f"Allow {what} {where(item)}"
    if item.names and not item.synthetic and item.kind != "dns":
        text += f" (address {safe(item.dst)})"
    elif item.synthetic:
        text += " (not looked up yet)"
    if item.claimed:
        text += f", which claims to be {show_name(item.claimed)} (unverified)"
    if item.flows > 1:
        text += f" [{item.flows} connections]"
    return text + "? "


def options_text(item: Pending) -> str:
    if lasting_target(item) is None:
        return "[a]llow once / [d]eny once "
    return "[a]llow once / [A]lways / [d]eny / [D]eny always "


def rule_preview(item: Pending, action: Action) -> str:
    """The lasting rule an "always" answer stores (as the gateway makes it)."""
    target = lasting_target(item) or ""
    port = f":{item.dport}" if item.proto in ("tcp", "udp") else ""
    proto = "dns" if item.kind == "dns" else safe(item.proto)
    return f"{action} {show_name(target)}{port}/{proto}"


def same_target(typed: str, target: str) -> bool:
    return typed.strip().lower().rstrip(".") == target.lower().rstrip(".")
