"""A tiny YAML writer for the Kubernetes formats (dicts, lists, strings, numbers, bools).

Strings are always double-quoted JSON strings, which YAML reads back unchanged, so no
value can turn into another type (``"53"`` stays a string, ``on`` stays text).
"""

from __future__ import annotations

import json
import re

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _key(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) else json.dumps(key)


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, list) and not value:
        return "[]"
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict) and value:
        out = []
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                out.append(f"{pad}{_key(str(k))}:")
                out.extend(_lines(v, indent + 2))
            else:
                out.append(f"{pad}{_key(str(k))}: {_scalar(v)}")
        return out
    if isinstance(value, list) and value:
        out = []
        for item in value:
            sub = _lines(item, indent + 2)
            sub[0] = f"{pad}- {sub[0][indent + 2 :]}"
            out.extend(sub)
        return out
    return [pad + _scalar(value)]


def dump_yaml(value: object, comments: list[str] | None = None) -> str:
    """``value`` as a YAML document, preceded by ``# comment`` lines."""
    head = [f"# {c}" if c else "#" for c in comments or []]
    return "\n".join([*head, *_lines(value, 0)]) + "\n"
