"""The gateway's code on the host: what is mounted into its container, and its digest.

Only what runs in the gateway goes in (``snitch/core`` and ``snitch/gateway``, from
wherever the package is installed); host-side code (``snitch/review``: exports, log
queries, the API client) never does, so editing it does not change the warm pool's shape.

It is mounted from a *compiled copy* when there is one (``sandbox/gateway_pyc.py``): the
code as installed, with the bytecode of the image's Python beside it, made once per
digest in the cache dir. The gateway writes no bytecode (its mount is read-only), so
without the copy it compiles every module at each start.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import snitch
from sandbox import paths

MOUNT_ROOT = "/opt/coderun/snitch"  # on the gateway image's PYTHONPATH
PARTS = ("core", "gateway")  # subpackages of snitch that run in the gateway
COMPILED = "gateway-code"  # in the cache dir: a compiled copy per code digest


def snitch_root() -> Path:
    return Path(snitch.__file__).resolve().parent


def compiled_root() -> Path:
    return paths.cache_dir_path() / COMPILED


def compiled_copy(digest: str | None = None) -> Path | None:
    """The compiled copy of the code (``snitch`` as mounted), if one was made."""
    root = compiled_root() / (digest or code_digest()) / "snitch"
    return root if root.is_dir() else None


def gateway_volumes() -> dict[str, dict[str, str]]:
    """Docker volume specs for the gateway's code, read-only (the compiled copy if
    there is one, else the installed package)."""
    copy = compiled_copy()
    if copy is not None:  # only what runs in the gateway, its package's bytecode too
        return {str(copy): {"bind": MOUNT_ROOT, "mode": "ro"}}
    root = snitch_root()
    volumes = {str(root / "__init__.py"): {"bind": f"{MOUNT_ROOT}/__init__.py", "mode": "ro"}}
    for part in PARTS:
        volumes[str(root / part)] = {"bind": f"{MOUNT_ROOT}/{part}", "mode": "ro"}
    return volumes


def code_digest() -> str:
    """Changes whenever the gateway's code (mounted, not in the image) changes."""
    h = hashlib.sha256()
    root = snitch_root()
    files = [root / "__init__.py",
             *(p for part in PARTS for p in (root / part).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts)]  # fmt: skip
    for path in sorted(files):
        st = path.stat()
        h.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
