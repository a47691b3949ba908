"""Executable profiles: one TOML file that names everything a run needs, and its rules.

Format (docs/profiles.md)::

    #!/usr/bin/env -S coderun exec
    image = "node"                       # bash, python, node, ... or a local image
    command = ["npm", "test"]            # the extra arguments of a run are appended
    workdir = "/work"
    mounts = [".:/work"]                 # HOST:CONTAINER[:ro]; HOST relative to the cwd
    mode = "enforce"                     # ask | enforce | audit
    ask_timeout = 60
    env = { NODE_ENV = "test" }

    [limits]
    memory = "2g"

    [[rule]]                             # as in policy files; they apply to this profile
    action = "allow"
    host = "registry.npmjs.org"

Top-level keys come before the first table (TOML puts later keys into that table). The
file is checked whole before anything starts: the first problem raises PolicyError
(``FILE:LINE:COL: message``), as policy files do.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import shlex
import time
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snitch.core.grammar import format_port
from snitch.core.model import Mode, Rule
from snitch.core.policyfile import (
    Locator,
    PolicyError,
    dump_rule,
    parse_toml,
    policy_from_data,
    toml_string,
)
from snitch.core.settings import NetworkShape, Option, RunSettings, option_of

SHEBANG = "#!/usr/bin/env -S coderun exec"
SUFFIX = ".toml"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SIZE = re.compile(r"[1-9][0-9]*[kmgKMG]?")

Check = Callable[[Any], Any]


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


def _name(value: Any) -> str:
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
    "name": ("profile", _name),
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


@dataclass
class Profile:
    path: Path
    name: str
    options: dict[str, Any] = field(default_factory=dict)  # `coderun run` option -> value
    rules: list[Rule] = field(default_factory=list)
    description: str = ""

    @property
    def command(self) -> list[str]:
        return list(self.options.get("command", []))

    def run_options(self, args: Iterable[str] = (), cwd: Path | None = None) -> dict[str, Any]:
        """The options of `coderun run` this profile means, with ``args`` appended to its
        command and relative mount sources made absolute against ``cwd``."""
        out = dict(self.options)
        out["profile"] = self.name
        out["command"] = [*self.command, *args]
        if "volumes" in out:
            out["volumes"] = [resolve_mount(m, cwd or Path.cwd()) for m in out["volumes"]]
        if "env" in out:
            out["env"] = tuple(f"{k}={v}" for k, v in out["env"].items())
        if "publish" in out:
            out["publish"] = tuple(out["publish"])
        if "secret" in out:
            out["secret"] = tuple(out["secret"])
        if "secret_host" in out:
            out["secret_host"] = tuple(f"{k}={','.join(v)}" for k, v in out["secret_host"].items())
        if "share" in out:
            out["share"] = tuple(resolve_mount(m, cwd or Path.cwd()) if ":" in m
                                 else str(resolve_path(m, cwd or Path.cwd()))
                                 for m in out["share"])  # fmt: skip
        return out


def resolve_path(host: str, cwd: Path) -> Path:
    path = Path(os.path.expanduser(host))
    return (path if path.is_absolute() else cwd / path).resolve()


def resolve_mount(mount: str, cwd: Path) -> str:
    host, rest = mount.split(":", 1)
    return f"{resolve_path(host, cwd)}:{rest}"


def _check_keys(
    data: dict[str, Any],
    keys: dict[str, tuple[str, Check]],
    where: Callable[[str], tuple[int, int]],
    file: str,
    prefix: str,
    out: dict[str, Any],
) -> None:
    for key, value in data.items():
        if key not in keys:
            known = ", ".join(keys)
            raise PolicyError(file, *where(key), f"unknown key {prefix}{key!r} (known: {known})")
        option, check = keys[key]
        try:
            out[option or key] = check(value)
        except ValueError as exc:
            raise PolicyError(file, *where(key), f"{prefix}{key}: {exc}") from None


def loads_profile(text: str, path: Path, *, now: float | None = None) -> Profile:
    """A profile from its TOML ``text``; PolicyError at the first problem."""
    file = str(path)
    data, loc = parse_toml(text, file)
    options: dict[str, Any] = {}
    top = {k: v for k, v in data.items() if k not in TABLES}
    _check_keys(top, TOP_KEYS, loc.top, file, "", options)
    limits = data.get("limits", {})
    if not isinstance(limits, dict):
        raise PolicyError(file, *loc.top("limits"), "limits must be a table: [limits]")
    _check_keys(limits, LIMIT_KEYS, lambda k: loc.in_table("limits", k), file, "limits.", options)
    if "command" not in options:
        raise PolicyError(file, 1, 1, 'no command (e.g. command = ["npm", "test"])')
    policy = policy_from_data(data, loc, file, time.time() if now is None else now)
    name = options.pop("profile", None) or _default_name(path, loc, file)
    description = str(options.pop("description", ""))
    return Profile(path, name, options, policy.rules, description)


def _default_name(path: Path, loc: Locator, file: str) -> str:
    stem = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
    try:
        return _name(stem)
    except ValueError as exc:
        raise PolicyError(file, 1, 1, f"the file name is no profile name ({exc}): set name = "
                          "...") from None  # fmt: skip


def load_profile(path: Path) -> Profile:
    """The profile in ``path``; PolicyError (``FILE:LINE:COL: ...``) if it is malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(str(path), 1, 1, f"not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise PolicyError(str(path), 1, 1, exc.strerror or str(exc)) from None
    return loads_profile(text, path)


def new_profile(image: str, command: list[str], *, name: str | None = None,
                workdir: str | None = None,
                mode: str | None = None, description: str = "") -> str:  # fmt: skip
    """The text of a starter profile."""
    lines = [SHEBANG, "# coderun profile: `coderun profiles check FILE`; docs/profiles.md"]
    if name:
        lines.append(f"name = {toml_string(name)}")
    if description:
        lines.append(f"description = {toml_string(description)}")
    lines.append(f"image = {toml_string(image)}")
    lines.append("command = [" + ", ".join(toml_string(c) for c in command) + "]")
    if workdir:
        lines.append(f"workdir = {toml_string(workdir)}")
        lines.append(f"mounts = [{toml_string('.:' + workdir)}]")
    lines.append(f"mode = {toml_string(mode or 'ask')}")
    lines += [
        "ask_timeout = 60",
        "",
        "[limits]",
        'memory = "2g"',
        "",
        "# Rules of this profile (as in policy files); `coderun exec --save-rules` adds the",
        "# ones decided while it runs.",
        "# [[rule]]",
        '# action = "allow"',
        '# host = "registry.example.org"',
        "# port = 443",
        '# proto = "tcp"',
    ]
    return "\n".join(lines) + "\n"


def rule_key(rule: Rule) -> tuple[object, ...]:
    """What a rule decides on (not its bookkeeping): equal keys, the same rule."""
    return (rule.action, rule.host, rule.cidr, rule.port_lo, rule.port_hi, rule.proto,
            rule.path_prefix, rule.scope, rule.priority)  # fmt: skip


def lasting(rule: Rule) -> bool:
    """A rule worth keeping in a file: not bound to one session, flow or deadline."""
    return rule.session is None and rule.once_key is None and rule.expires_at is None


def append_rules(profile: Profile, rules: Iterable[Rule]) -> list[Rule]:
    """Add ``rules`` the profile lacks to its file (checked whole, replaced atomically,
    its mode kept); returns the ones added."""
    have = {rule_key(r) for r in profile.rules}
    added: list[Rule] = []
    for rule in rules:
        if lasting(rule) and rule_key(rule) not in have:
            have.add(rule_key(rule))
            added.append(rule)
    if not added:
        return []
    text = profile.path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    for rule in added:
        copy = Rule(rule.action, host=rule.host, cidr=rule.cidr, port_lo=rule.port_lo,
                    port_hi=rule.port_hi, proto=rule.proto, scope=rule.scope,
                    priority=rule.priority, path_prefix=rule.path_prefix, source="profile",
                    note=rule.note, created=rule.created)  # fmt: skip
        text += "\n" + dump_rule(copy)
    loads_profile(text, profile.path)  # never write a file that would not load
    tmp = profile.path.with_name(f".{profile.path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, profile.path.stat().st_mode & 0o7777)
    os.replace(tmp, profile.path)
    return added


def describe(profile: Profile) -> list[tuple[str, str]]:
    """(field, value) lines for `coderun profiles show` (values are not yet made safe)."""
    rows = [("file", str(profile.path)), ("name", profile.name)]
    if profile.description:
        rows.append(("description", profile.description))
    for option, value in profile.options.items():
        if option == "command":
            rows.append(("command", shlex.join(value)))
        elif option == "volumes":
            rows.extend(("mount", m) for m in value)
        elif option == "env":
            rows.extend(("env", f"{k}={v}") for k, v in value.items())
        else:
            rows.append((option.replace("_", "-"), str(value)))
    for rule in profile.rules:
        rows.append(("rule", describe_rule(rule)))
    return rows


def describe_rule(rule: Rule) -> str:
    dest = rule.host or rule.cidr or "*"
    port = f":{format_port(rule.port_lo, rule.port_hi)}" if rule.port_lo else ""
    path = rule.path_prefix or ""
    return f"{rule.action} {dest}{port}/{rule.proto}{path}"
