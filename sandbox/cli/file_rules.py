"""The file-rule words of ``coderun rules``: the ``allow-file``/``deny-file`` actions, which
argument of ``explain`` is a path, and a file rule's cells in ``rules list``."""

from __future__ import annotations

import os

from sandbox.textout import show_name
from snitch.core.filepaths import HOME, shown_path
from snitch.core.grammar import choices, format_port
from snitch.core.model import Action, Proto, Rule
from snitch.core.safetext import safe

FILE_SUFFIX = "-file"
FILE_ACTIONS = {f"{a}{FILE_SUFFIX}": a for a in Action}  # allow-file, deny-file
ACTIONS = [*choices(Action), *FILE_ACTIONS]
NETWORK_PROTOS = [p for p in choices(Proto) if p != Proto.FILE]


def is_file_target(text: str) -> bool:
    """An ``explain`` argument naming a file: it has a ``/`` or starts with ``~`` (a
    ``HOST[:PORT]`` never has either, a bracketed IPv6 address included)."""
    return "/" in text or text.startswith(HOME)


def home() -> str:
    return os.path.expanduser(HOME)


def query_path(text: str) -> str:
    """A path typed by a person as file rules see it: ``~`` expanded, a relative path taken
    from the working folder, then under the home folder written ``~/...`` again."""
    return shown_path(os.path.abspath(os.path.expanduser(text)), home())


def home_hint(glob: str) -> str | None:
    """A hint when a glob spells out the home folder: opens there are matched as ``~/...``."""
    base = home().rstrip("/")
    if base and glob.startswith(base + "/"):
        return f"paths under {base} are matched as ~/...: did you mean {HOME}{glob[len(base) :]}?"
    return None


def action_cell(rule: Rule) -> str:
    return f"{rule.action}{FILE_SUFFIX}" if rule.proto is Proto.FILE else str(rule.action)


def target_cell(rule: Rule) -> str:
    """What a rule matches, made safe: a host (a look-alike marked), address or ``*`` and URL
    path; a file rule's glob and access; the program of either."""
    if rule.proto is Proto.FILE:
        text = safe(rule.file or "") + (f" ({safe(rule.access)})" if rule.access else "")
    else:
        text = show_name(rule.host) if rule.host else safe(rule.cidr or "*")
        text += safe(rule.path_prefix or "")
        text += f" [{safe(rule.method)}]" if rule.method else ""
    return text + (f" exe={safe(rule.exe)}" if rule.exe else "")


def port_cell(rule: Rule) -> str:
    return "-" if rule.proto is Proto.FILE else format_port(rule.port_lo, rule.port_hi)
