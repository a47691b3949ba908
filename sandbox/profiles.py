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

import os
import shlex
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.profile_keys import LIMIT_KEYS, TABLES, TOP_KEYS, Check, check_name
from snitch.core.grammar import format_port
from snitch.core.model import Rule
from snitch.core.policyfile import (
    Locator,
    PolicyError,
    dump_rule,
    parse_toml,
    policy_from_data,
    toml_string,
)

SHEBANG = "#!/usr/bin/env -S coderun exec"
SUFFIX = ".toml"
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
            out["share"] = tuple(_resolve_share(m, cwd) for m in out["share"])
        if "secret_file" in out:  # PATH[:CONTAINER_PATH]=HOSTS
            split = (item.rpartition("=") for item in out["secret_file"])
            out["secret_file"] = tuple(f"{_resolve_share(w, cwd)}={h}" for w, _, h in split)
        return out


def _resolve_share(share: str, cwd: Path | None) -> str:
    """A profile's share (PATH[:REST]) with PATH resolved against ``cwd``."""
    here = cwd or Path.cwd()
    return resolve_mount(share, here) if ":" in share else str(resolve_path(share, here))


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
        return check_name(stem)
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
