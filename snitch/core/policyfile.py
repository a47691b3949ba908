"""Policy files: rules (and blocklist entries) as TOML, for review, sharing and backup.

Format (see docs/rules.md)::

    blocklist = ["ads.example.com", "203.0.113.0/24"]   # optional, before any table

    [[rule]]
    action = "allow"                 # required: allow | deny
    host = "*.example.com"           # or cidr = "10.0.0.0/8"; neither = any destination
    port = 443                       # or "8000-8100"; omitted = any port
    proto = "tcp"                    # tcp | udp | icmp | dns | any (default)
    lifetime = "1h"                  # always (default) | session | a duration

A file is loaded whole or not at all: the first problem raises PolicyError with a
``FILE:LINE:COL: message`` text.
"""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snitch.core.blocklist import normalize_entry
from snitch.core.grammar import format_port, normalize_cidr, normalize_host, parse_port
from snitch.core.model import Action, Proto, Rule
from snitch.core.pathgrammar import normalize_methods, normalize_path_prefix
from snitch.core.policy import FILE_ACCESS, check_rule
from snitch.core.policyfields import (
    COMMON_KEYS,
    apply_lifetime,
    scope_lines,
    set_common,
    str_value,
    tail_lines,
)
from snitch.core.policyfields import toml_string as toml_string  # re-exported (profiles)
from snitch.core.policysecrets import SECRET, PolicySecret, secret_from_table

RULE_KEYS = (
    "action", "host", "cidr", "port", "proto", "scope", "priority", "path", "method", "exe",
    "lifetime", "session", "expires_at", "enabled", "source", "note", "created", "hits",
    "last_hit",
)  # fmt: skip
FILE_KEYS = ("allow", "deny", "action", "path", "access", "exe", *COMMON_KEYS)
RULE, FILE = "rule", "file"  # the array-of-tables names
_q = toml_string
_TABLE = re.compile(r"""\s*\[\[?\s*[\w."' -]+\]\]?\s*(?:#.*)?$""")
_HEADER = re.compile(r"\s*\[\[\s*(rule|file|secret)\s*\]\]")
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


class PolicyError(ValueError):
    """A policy file is malformed; ``str()`` is ``FILE:LINE:COL: what is wrong``."""

    def __init__(self, file: str, line: int, col: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{col}: {message}")
        self.file, self.line, self.col, self.message = file, line, col, message


@dataclass(slots=True)
class PolicyFile:
    rules: list[Rule] = field(default_factory=list)
    blocklist: list[str] = field(default_factory=list)
    secrets: list[PolicySecret] = field(default_factory=list)  # for runs, never the store


class Locator:
    """Finds the source position of a key, knowing only the table it belongs to."""

    def __init__(self, text: str) -> None:
        self.lines: list[str | None] = []  # None for lines inside multi-line strings
        inside: str | None = None
        for line in text.splitlines():
            start = inside
            for m in re.finditer(r'"""|\'\'\'', line):
                if inside is None:
                    inside = m.group()
                elif m.group() == inside:
                    inside = None
            self.lines.append(None if start is not None else line)
        self.headers: dict[str, list[int]] = {RULE: [], FILE: [], SECRET: []}
        for i, s in enumerate(self.lines):
            head = _HEADER.match(s) if s is not None else None
            if head:
                self.headers[head.group(1)].append(i)
        self.rule_headers = self.headers[RULE]

    def _find_key(self, start: int, key: str) -> tuple[int, int] | None:
        pat = re.compile(rf"""\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
        for i in range(start, len(self.lines)):
            s = self.lines[i]
            if s is None:
                continue
            if i > start and _TABLE.match(s):
                return None
            m = pat.match(s)
            if m:
                return i + 1, len(s) - len(s.lstrip()) + 1
        return None

    def rule(self, index: int, key: str | None = None, table: str = RULE) -> tuple[int, int]:
        """Position of ``key`` in the ``index``-th ``[[rule]]`` (or ``[[file]]``: ``table``),
        its header if key is None or absent."""
        headers = self.headers[table]
        if index >= len(headers):
            return (1, 1)
        header = headers[index]
        if key is not None:
            pos = self._find_key(header, key)
            if pos is not None:
                return pos
        s = self.lines[header] or ""
        return header + 1, len(s) - len(s.lstrip()) + 1

    def top(self, key: str) -> tuple[int, int]:
        for i, s in enumerate(self.lines):
            if s is not None and re.match(rf"\s*\[+\s*{re.escape(key)}\s*\]", s):
                return i + 1, len(s) - len(s.lstrip()) + 1
        return self._find_key(0, key) or (1, 1)

    def in_table(self, table: str, key: str | None = None) -> tuple[int, int]:
        """Position of ``key`` in the ``[table]`` (its header if key is None or absent)."""
        header = re.compile(rf"\s*\[\s*{re.escape(table)}\s*\]\s*(?:#.*)?$")
        for i, s in enumerate(self.lines):
            if s is not None and header.match(s):
                pos = self._find_key(i, key) if key is not None else None
                return pos or (i + 1, len(s) - len(s.lstrip()) + 1)
        return self.top(table)

    def text_after(self, key: str, needle: str) -> tuple[int, int]:
        line, _ = self.top(key)
        for i in range(line - 1, len(self.lines)):
            s = self.lines[i]
            if s is not None and needle in s:
                return i + 1, s.index(needle) + 1
        return line, 1


def _rule_from_table(table: dict[str, Any], now: float) -> Rule:
    """Build a Rule; on error raise ValueError with ``args == (message, key)``."""
    key: str | None = None
    try:
        for key in table:
            if key not in RULE_KEYS:
                raise ValueError(f"unknown key {key!r} (known: {', '.join(RULE_KEYS)})")
        key = "action"
        if "action" not in table:
            key = None
            raise ValueError("rule has no action (allow or deny)")
        action = str_value(table["action"], "action")
        if action not in ("allow", "deny"):
            raise ValueError(f"unknown action {action!r} (want allow or deny)")
        rule = Rule(Action(action), source="policy", created=now)
        for key, value in table.items():
            set_common(rule, key, value)
            if key == "host":
                rule.host = normalize_host(str_value(value, key))
            elif key == "cidr":
                rule.cidr = normalize_cidr(str_value(value, key))
            elif key == "port":
                rule.port_lo, rule.port_hi = parse_port(value)
            elif key == "proto":
                p = str_value(value, key)
                if p == Proto.FILE:
                    raise ValueError('a file rule is a [[file]] table (allow = "~/.aws/*")')
                if p not in set(Proto):
                    raise ValueError(f"unknown proto {p!r} (want tcp, udp, icmp, dns or any)")
                rule.proto = Proto(p)
            elif key == "path":
                rule.path_prefix = normalize_path_prefix(str_value(value, key))
            elif key == "method":
                rule.method = normalize_methods(str_value(value, key))
            elif key == "exe":
                rule.exe = str_value(value, key)
        key = "lifetime"
        apply_lifetime(rule, table, now)
        key = "port" if "port" in table else None
        check_rule(rule)
    except ValueError as e:
        raise ValueError(str(e), key) from None
    return rule


def _file_from_table(table: dict[str, Any], now: float) -> Rule:
    """A file rule from a ``[[file]]`` table: ``allow = GLOB`` / ``deny = GLOB``, or
    ``action`` and ``path``; on error ValueError with ``args == (message, key)``."""
    key: str | None = None
    try:
        for key in table:
            if key not in FILE_KEYS:
                raise ValueError(f"unknown key {key!r} (known: {', '.join(FILE_KEYS)})")
        given = [k for k in ("allow", "deny", "action") if k in table]
        key = given[1] if len(given) > 1 else None
        if len(given) != 1:
            raise ValueError("give one of allow = GLOB, deny = GLOB or action and path")
        key = given[0]
        glob_key = "path" if key == "action" else key
        if key == "action":
            action = str_value(table["action"], key)
            if action not in ("allow", "deny"):
                raise ValueError(f"unknown action {action!r} (want allow or deny)")
            if "path" not in table:
                raise ValueError("a [[file]] with an action needs a path (a glob)")
        elif "path" in table:
            key = "path"
            raise ValueError(f"path and {given[0]} both give the glob: keep one")
        else:
            action = key
        key = glob_key
        glob = str_value(table[key], key)
        rule = Rule(Action(action), proto=Proto.FILE, file=glob, source="policy", created=now)
        for key, value in table.items():
            set_common(rule, key, value)
            if key == "access":
                rule.access = str_value(value, key)
                if rule.access not in FILE_ACCESS:
                    raise ValueError(f"bad access {value!r} (want read or write)")
            elif key == "exe":
                rule.exe = str_value(value, key)
                if not rule.exe.startswith(("/", "*")):
                    raise ValueError(f"bad exe {value!r} (want an absolute path or a glob)")
        key = "lifetime"
        apply_lifetime(rule, table, now)
        key = glob_key
        check_rule(rule)
    except ValueError as e:
        raise ValueError(str(e), key) from None
    return rule


def parse_toml(text: str, file: str) -> tuple[dict[str, Any], Locator]:
    """TOML ``text`` as data, and a locator of its keys; PolicyError at the bad spot."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = _TOML_POS.search(str(e))
        if m:
            line, col = int(m.group(1)), int(m.group(2))
        else:  # "at end of document"
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
        raise PolicyError(file, line, col, _TOML_POS.sub("", str(e)).strip()) from None
    return data, Locator(text)


def policy_from_data(data: dict[str, Any], loc: Locator, file: str, now: float) -> PolicyFile:
    """The ``blocklist`` and ``[[rule]]`` tables of parsed TOML (other keys are the
    caller's to check)."""
    out = PolicyFile()
    entries = data.get("blocklist", [])
    if not isinstance(entries, list) or not all(isinstance(x, str) for x in entries):
        raise PolicyError(file, *loc.top("blocklist"), "blocklist must be a list of strings")
    for entry in entries:
        n = normalize_entry(entry)
        if n is None:
            msg = f"bad blocklist entry {entry!r} (want a domain or CIDR)"
            raise PolicyError(file, *loc.text_after("blocklist", entry), msg)
        out.blocklist.append(n)
    tables = data.get("rule", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise PolicyError(file, *loc.top("rule"), "rule must be an array of tables: [[rule]]")
    for i, table in enumerate(tables):
        try:
            out.rules.append(_rule_from_table(table, now))
        except ValueError as e:
            message, key = e.args
            raise PolicyError(file, *loc.rule(i, key), f"rule {i + 1}: {message}") from None
    tables = data.get(FILE, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise PolicyError(file, *loc.top(FILE), "file must be an array of tables: [[file]]")
    for i, table in enumerate(tables):
        try:
            out.rules.append(_file_from_table(table, now))
        except ValueError as e:
            message, key = e.args
            raise PolicyError(file, *loc.rule(i, key, FILE), f"file {i + 1}: {message}") from None
    tables = data.get(SECRET, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        msg = "secret must be an array of tables: [[secret]]"
        raise PolicyError(file, *loc.top(SECRET), msg)
    for i, table in enumerate(tables):
        try:
            out.secrets.append(secret_from_table(table))
        except ValueError as e:
            message, key = e.args
            where = loc.rule(i, key, SECRET)
            raise PolicyError(file, *where, f"secret {i + 1}: {message}") from None
    return out


def loads_policy(text: str, file: str = "<policy>", *, now: float | None = None) -> PolicyFile:
    """Parse policy TOML ``text``; ``file`` only names it in error messages."""
    t = time.time() if now is None else now
    data, loc = parse_toml(text, file)
    for key in data:
        if key not in (RULE, FILE, SECRET, "blocklist"):
            msg = f"unknown key {key!r} (want [[rule]], [[file]] or [[secret]] tables)"
            raise PolicyError(file, *loc.top(key), msg)
    return policy_from_data(data, loc, file, t)


def load_policy_file(path: Path, *, now: float | None = None) -> PolicyFile:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PolicyError(str(path), 1, 1, f"not UTF-8 text: {e}") from None
    return loads_policy(text, str(path), now=now)


def load_policy(path: Path, *, now: float | None = None) -> list[Rule]:
    """The rules of a policy file; PolicyError (``FILE:LINE:COL: ...``) if it is malformed."""
    return load_policy_file(path, now=now).rules


# -- writing -----------------------------------------------------------------------------


def dump_rule(rule: Rule) -> str:
    """One ``[[rule]]`` table (a ``[[file]]`` table for a file rule); defaults are left out."""
    if rule.proto is Proto.FILE:
        return dump_file_rule(rule)
    lines = ["[[rule]]", f"action = {_q(str(rule.action))}"]
    if rule.host is not None:
        lines.append(f"host = {_q(rule.host)}")
    if rule.cidr is not None:
        lines.append(f"cidr = {_q(rule.cidr)}")
    if rule.port_lo:
        port = format_port(rule.port_lo, rule.port_hi)
        lines.append(f"port = {port}" if rule.port_lo == rule.port_hi else f"port = {_q(port)}")
    lines.append(f"proto = {_q(str(rule.proto))}")
    lines += scope_lines(rule)
    if rule.path_prefix is not None:
        lines.append(f"path = {_q(rule.path_prefix)}")
    if rule.method is not None:
        lines.append(f"method = {_q(rule.method)}")
    if rule.exe is not None:
        lines.append(f"exe = {_q(rule.exe)}")
    return "\n".join(lines + tail_lines(rule)) + "\n"


def dump_file_rule(rule: Rule) -> str:
    """One ``[[file]]`` table: ``allow``/``deny`` = the glob, then access and program."""
    lines = ["[[file]]", f"{rule.action} = {_q(rule.file or '')}"]
    if rule.access is not None:
        lines.append(f"access = {_q(rule.access)}")
    if rule.exe is not None:
        lines.append(f"exe = {_q(rule.exe)}")
    return "\n".join(lines + scope_lines(rule) + tail_lines(rule)) + "\n"


def dump_policy(rules: Iterable[Rule], blocklist: Iterable[str] = ()) -> str:
    """TOML for ``rules`` (once-rules are skipped: they cannot outlive their connection);
    network rules first, then file rules, each in the given order."""
    out = ["# coderun policy file: load with `coderun rules import FILE`\n"]
    entries = list(blocklist)
    if entries:
        out.append("blocklist = [\n" + "".join(f"  {_q(e)},\n" for e in entries) + "]\n")
    skipped = 0
    for rule in sorted(rules, key=lambda r: r.proto is Proto.FILE):
        if rule.once_key is not None:
            skipped += 1
            continue
        out.append(dump_rule(rule))
    if skipped:
        out.append(f"# {skipped} once-rule(s) not exported\n")
    return "\n".join(out)
