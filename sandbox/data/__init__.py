"""coderun's files that are not Python modules, wherever the package is installed.

``images/`` (the Dockerfiles and the files beside them) and ``examples/`` (the demo's
script and policy) live at the top of the repository; the links ``sandbox/data/images``
and ``sandbox/data/examples`` point there, so a checkout, an editable install and a
wheel (which carries copies: pyproject.toml's package data) all find them here, read
with importlib.resources. Docker builds from and bind-mounts real folders: an install
that is not on a file system (a zip) is refused with a clear error.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


class DataError(RuntimeError):
    """coderun's data files are missing from this install."""


def _folder(name: str) -> Path:
    found = files(__name__) / name
    if not isinstance(found, Path) or not found.is_dir():
        raise DataError(
            f"coderun's {name}/ files are missing from this install ({found}): "
            "reinstall coderun (`pip install --force-reinstall coderun`)"
        )
    return found


def images_dir() -> Path:
    """The folder of image folders (``gateway/``, ``internet/``, ``sandbox-*``)."""
    return _folder("images")


def examples_dir() -> Path:
    """The demo's ``install.sh`` and ``demo-policy.toml``."""
    return _folder("examples")
