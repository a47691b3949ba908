"""Reading a dataclass back from the plain dict another process (or version) wrote."""

from __future__ import annotations

import dataclasses
from typing import Any


def known_fields(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """The items of ``d`` that name a field of the dataclass ``cls``: a newer peer's dict
    may carry fields this version does not know, and they are left out."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}
