"""The keys a profile (sandbox/profiles.py) may have and the check of each value: the
run's own keys, every option of the settings model by its field name, and ``[limits]``."""

from __future__ import annotations

import dataclasses
import enum
import re
import typing
from collections.abc import Callable
from typing import Any

from snitch.core.model import Mode
from snitch.core.settings import NetworkShape, Option, RunSettings, option_of

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
Check = Callable[[Any], Any]

SIZE = re.compile(r"[1-9][0-9]*[kmgKMG]?")



def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    return value


def _choice(*choices: str) -> Check:
    def check(value: Any) -> str:
        text = _string(value)
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return check


def _number(minimum: float, maximum: float | None = None, integer: bool = False) -> Check:
    def check(value: Any) -> float | int:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError("must be an integer" if integer else "must be a number")
        if value < minimum or (maximum is not None and value > maximum):
            top = f" and <= {maximum:g}" if maximum is not None else ""
            raise ValueError(f"must be >= {minimum:g}{top}")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def check_name(value: Any) -> str:
    text = _string(value)
    if not NAME.fullmatch(text):
        raise ValueError(f"{text!r}: letters, digits, '.', '_' and '-' (at most 64)")
    return text


def _command(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
        raise ValueError('must be a non-empty list of strings, e.g. ["npm", "test"]')
    return list(value)


def _abs_path(value: Any) -> str:
    text = _string(value)
    if not text.startswith("/"):
        raise ValueError(f"{text!r} must be an absolute path in the sandbox")
    return text


def _mounts(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError('must be a list of "HOST:CONTAINER[:ro]" strings')
    for item in value:
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/") or (
            len(parts) == 3 and parts[2] not in ("ro", "rw")
        ):
            raise ValueError(f"{item!r}: want HOST:CONTAINER[:ro] (CONTAINER absolute)")
    return list(value)


def _publish(value: Any) -> list[str]:
    from sandbox.ports import parse_publish

    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError('must be a list of "[BIND:]HOSTPORT:PORT" strings')
    for item in value:
        try:
            parse_publish(item)
        except OSError:
            raise ValueError(f"{item!r}: bad bind address") from None
    return list(value)


def _strings(what: str) -> Check:
    def check(value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise ValueError(f"must be a list of {what} strings")
        return list(value)

    return check


def _secret_hosts(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise ValueError('must be a table, e.g. { GITHUB_TOKEN = ["api.github.com"] }')
    for key, hosts in value.items():
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            raise ValueError(f"{key!r}: a list of host names")
    return {k: list(v) for k, v in value.items()}


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError('must be a table of strings, e.g. { NODE_ENV = "test" }')
    for key, item in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or not isinstance(item, str):
            raise ValueError(f"{key!r}: names are [A-Za-z_][A-Za-z0-9_]*, values strings")
    return dict(value)


def _size(value: Any) -> str:
    text = _string(value)
    if not SIZE.fullmatch(text):
        raise ValueError(f"{text!r}: a size like 512m or 2g")
    return text


def _user(value: Any) -> str:
    from sandbox.sandbox_container import parse_user

    text = _string(value)
    parse_user(text)
    return text


# Top-level keys -> (the `coderun run` option they set, the check of their value).
TOP_KEYS: dict[str, tuple[str, Check]] = {
    "name": ("profile", check_name),
    "description": ("", _string),
    "image": ("image", _string),
    "command": ("command", _command),
    "workdir": ("workdir", _abs_path),
    "mounts": ("volumes", _mounts),
    "env": ("env", _env),
    "mode": ("mode", _choice(*(m.value for m in Mode))),
    "prompt": ("prompt", _choice("dashboard", "line", "none")),
    "interactive": ("interactive", _bool),
    "tty": ("tty", _bool),
    "publish": ("publish", _publish),
    # docs/files-and-secrets.md: the values never go in a profile, only their names.
    "secrets": ("secret", _strings('"NAME" or "NAME=@FILE"')),
    "secret_hosts": ("secret_host", _secret_hosts),
    "shares": ("share", _strings('"PATH[:CONTAINER_PATH][:ro|rw]"')),
    "secret_files": ("secret_file", _strings('"PATH[:CONTAINER_PATH]=HOST[,HOST]"')),
}


def _setting_check(kind: Any, opt: Option) -> Check:
    """The check of a settings-model option as a profile writes it (its type and range
    from the model; sandbox/cli/options.py converts the value as it does the CLI's)."""
    if kind is bool:
        return _bool
    if kind in (int, float):
        low = -float("inf") if opt.min is None else opt.min
        return _number(low, opt.max, integer=kind is int)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return _choice(*(str(m.value) for m in kind))
    return _string  # names, addresses, and ports as the CLI writes them ("80,443")


# Every option of the settings model (snitch/core/settings.py) is a profile key too, by
# its field name: a new `coderun run` option the gateway needs is one without more code.
for _cls in (NetworkShape, RunSettings):
    _hints = typing.get_type_hints(_cls)
    for _f in dataclasses.fields(_cls):
        _opt = option_of(_f)
        if _opt is not None and _f.name != "profile":  # the profile's name is its `name`
            _args = [a for a in typing.get_args(_hints[_f.name]) if a is not type(None)]
            _kind = _args[0] if len(_args) == 1 else _hints[_f.name]
            TOP_KEYS[_f.name] = (_f.name, _setting_check(_kind, _opt))
LIMIT_KEYS: dict[str, tuple[str, Check]] = {
    "cpus": ("cpus", _number(0.01)),
    "memory": ("memory", _size),
    "pids": ("pids", _number(16, integer=True)),
    "tmpfs_size": ("tmpfs_size", _size),
    "user": ("user", _user),
    "runtime": ("runtime", _string),
}
TABLES = ("limits", "rule")


