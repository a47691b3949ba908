"""The gateway's code on the host: what is mounted into its container, and its digest.

Only what runs in the gateway goes in (``snitch/core`` and ``snitch/gateway``, from
wherever the package is installed); host-side code (``snitch/review``: exports, log
queries, the API client) never does, so editing it does not change the warm pool's shape.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import snitch

MOUNT_ROOT = "/opt/coderun/snitch"  # on the gateway image's PYTHONPATH
PARTS = ("core", "gateway")  # subpackages of snitch that run in the gateway


def snitch_root() -> Path:
    return Path(snitch.__file__).resolve().parent


def gateway_volumes() -> dict[str, dict[str, str]]:
    """Docker volume specs for the gateway's code, read-only."""
    root = snitch_root()
    volumes = {str(root / "__init__.py"): {"bind": f"{MOUNT_ROOT}/__init__.py", "mode": "ro"}}
    for part in PARTS:
        volumes[str(root / part)] = {"bind": f"{MOUNT_ROOT}/{part}", "mode": "ro"}
    return volumes


def code_digest() -> str:
    """Changes whenever the gateway's code (mounted, not in the image) changes."""
    h = hashlib.sha256()
    root = snitch_root()
    files = [root / "__init__.py", *(p for part in PARTS for p in (root / part).rglob("*.py"))]
    for path in sorted(files):
        st = path.stat()
        h.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
