"""``[[secret]]`` tables of a policy file: placeholder secrets for the runs that use it.

A run's policy file (``coderun run --policy FILE``) may name the secrets the run needs,
as ``--secret``/``--secret-host`` do::

    [[secret]]
    name = "GITHUB_TOKEN"            # the value: coderun's environment variable of that name
    hosts = ["api.github.com"]       # where the gateway may put the real value

    [[secret]]
    name = "NPM_TOKEN"
    file = "~/.config/npm-token"     # the value: this file (as --secret NAME=@FILE)
    hosts = ["registry.npmjs.org"]

The value itself never goes in a policy file (a ``value`` key is refused). The rule store
does not keep secrets: ``rules import`` leaves these tables out and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

SECRET = "secret"  # the array-of-tables name
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_KEYS = ("name", "file", "hosts")


@dataclass(frozen=True, slots=True)
class PolicySecret:
    name: str
    hosts: tuple[str, ...] = ()
    file: str | None = None  # the value's file; None: the environment variable ``name``

    def secret_spec(self) -> str:
        """As ``coderun run --secret`` takes it."""
        return self.name if self.file is None else f"{self.name}=@{self.file}"

    def host_spec(self) -> str | None:
        """As ``coderun run --secret-host`` takes it (None: bound nowhere)."""
        return f"{self.name}={','.join(self.hosts)}" if self.hosts else None


def secret_from_table(table: dict[str, Any]) -> PolicySecret:
    """One ``[[secret]]`` table; ValueError(message, key) for a bad one."""
    if "value" in table:
        raise ValueError("a secret's value never goes in a policy file (name its "
                         "environment variable, or file = PATH)", "value")  # fmt: skip
    for key in table:
        if key not in _KEYS:
            raise ValueError(f"unknown key {key!r} (want {', '.join(_KEYS)})", key)
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError("name must be a variable name (letters, digits and _)", "name")
    file = table.get("file")
    if file is not None and (not isinstance(file, str) or not file):
        raise ValueError("file must be a path", "file")
    hosts = table.get("hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise ValueError('hosts must be a list of host names, e.g. ["api.example.com"]', "hosts")
    return PolicySecret(name, tuple(hosts), file)
