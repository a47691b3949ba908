"""The line prompt's words: the question about a held item, its options, the rule an
"always" answer stores, every untrusted part escaped (sandbox/line_prompt.py asks them)."""

from __future__ import annotations

from collections.abc import Mapping

from sandbox.textout import show_name
from snitch.core.fileask import glob_escape
from snitch.core.grammar import Lifetime
from snitch.core.model import Action, Pending, PendingKind
from snitch.core.pathgrammar import request_folder, url_path
from snitch.core.process import describe_process
from snitch.core.safetext import safe

ANSWERS = {
    "a": (Action.ALLOW, Lifetime.ONCE),
    "A": (Action.ALLOW, Lifetime.ALWAYS),
    "d": (Action.DENY, Lifetime.ONCE),
    "D": (Action.DENY, Lifetime.ALWAYS),
}
FILE_ANSWERS = {**ANSWERS, "s": (Action.ALLOW, Lifetime.SESSION)}  # an open of a shared file
CMDLINE_SHOWN = 80


def is_file(item: Pending) -> bool:
    return item.kind == PendingKind.FILE


def answers(item: Pending) -> Mapping[str, tuple[Action, str]]:
    return FILE_ANSWERS if is_file(item) else ANSWERS


def answer_hint(item: Pending) -> str:
    keys = "a, s, A, d or D" if is_file(item) else "a, A, d or D"
    return f"answer {keys} (then Enter)"


def file_question(item: Pending) -> str:
    """``Allow read of ~/.aws/credentials (/home/coderun/.aws/credentials in the
    sandbox) by pid 12 "cat ..."? `` (escaped)."""
    text = f"Allow {safe(item.access)} of {safe(item.path)}"
    if item.dst and item.dst != item.path:
        text += f" ({safe(item.dst)} in the sandbox)"
    if item.pid:
        text += f" by pid {item.pid}"
    if item.cmdline:
        command = safe(item.cmdline)
        if len(command) > CMDLINE_SHOWN:
            command = command[: CMDLINE_SHOWN - 1] + "…"
        text += f' "{command}"'
    if item.flows > 1:
        text += f" [{item.flows} opens]"
    return text + "? "


def where(item: Pending) -> str:
    """``NAME 443/tcp`` for a person: the verified name (or the address), escaped."""
    if is_file(item):
        return f"{safe(item.path)} ({safe(item.access)})"
    port = "icmp" if item.proto == "icmp" else f"{item.dport}/{safe(item.proto)}"
    if item.kind == "dns":
        return f"{show_name(item.label)} (lookup)"
    return f"{show_name(item.label) if item.names else safe(item.dst)} {port}"


def lasting_target(item: Pending) -> str | None:
    """What an "always" rule on ``item`` is stored for: its verified name, else its real
    address; None for a synthetic address without a name (never a rule target). A file
    item's: its path."""
    if is_file(item):
        return item.path
    if item.names:
        return item.names[0]
    return None if item.synthetic else item.dst


def request_text(item: Pending) -> str:
    """A held request: ``POST http://api.example.test/v1/x (12 bytes, application/json)``."""
    about = [f"{item.size} bytes"] if item.size else []
    about += [safe(item.content_type)] if item.content_type else []
    extra = f" ({', '.join(about)})" if about else ""
    return f"{safe(item.method)} {safe(item.url)}{extra}"


def question_text(item: Pending) -> str:
    """The question, untrusted parts escaped (without the tag)."""
    if is_file(item):
        return file_question(item)
    if item.kind == PendingKind.REQUEST:
        return f"Allow request {request_text(item)} to {where(item)}? "
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
    if item.pid:
        text += f" by {asker_text(item)}"
    return text + "? "


def asker_text(item: Pending) -> str:
    """The program that asked, escaped: ``/usr/bin/curl (pid 7) ← /bin/sh``."""
    return safe(describe_process(item.exe, item.pid, item.parents))


def options_text(item: Pending) -> str:
    if is_file(item):
        return "[a]llow once / [s]ession / [A]lways / [d]eny / [D]eny always "
    if lasting_target(item) is None:
        return "[a]llow once / [d]eny once "
    if item.kind == PendingKind.REQUEST:
        return "[a]llow once / [A]llow this path prefix / [d]eny / [D]eny this path prefix "
    return "[a]llow once / [A]lways / [d]eny / [D]eny always "


def rule_preview(item: Pending, action: Action) -> str:
    """The lasting rule an "always" answer stores (as the gateway makes it)."""
    target = lasting_target(item) or ""
    if is_file(item):
        return f"{action}-file {safe(glob_escape(target))} ({safe(item.access)})"
    port = f":{item.dport}" if item.proto in ("tcp", "udp") else ""
    proto = "dns" if item.kind == "dns" else safe(item.proto)
    if item.kind == PendingKind.REQUEST:  # this method under the URL's folder
        folder = safe(request_folder(url_path(item.url)))
        return f"{action} {show_name(target)}{port}{folder} [{safe(item.method)}]"
    return f"{action} {show_name(target)}{port}/{proto}"


def same_target(typed: str, target: str) -> bool:
    return typed.strip().lower().rstrip(".") == target.lower().rstrip(".")
