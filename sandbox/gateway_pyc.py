"""The compiled copy of the gateway's code: bytecode made once, not at every start.

The gateway's code is mounted read-only and the gateway writes no bytecode, so each
gateway compiled every module it imports at its start (~75 ms of a quiet machine's
CPU, on the critical path of ``coderun run``). ``prepare`` copies the code that is
mounted (``snitch/__init__.py``, ``core``, ``gateway``; sandbox/gateway_code.py) into
the cache dir and compiles it there with the gateway image's own Python (its version
decides the bytecode), in a container with no network that runs as this user; the copy
is renamed into place under the code's digest only once complete, so a gateway mounts
a whole copy or none. A copy is never changed after: new code has a new digest.
Copies not used for ``KEEP_SECONDS`` are removed when a new one is made.

Without a copy (it could not be made) everything works as before: the gateway mounts the
installed package and compiles at its start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import docker
import docker.errors

from sandbox.gateway_code import PARTS, code_digest, compiled_copy, compiled_root, snitch_root
from sandbox.labels import ROLE, owner_labels

KEEP_SECONDS = 7 * 86400
COMPILE = ["python3", "-m", "compileall", "-q", "-o", "0", "-o", "1", "/code"]


def prepare(client: docker.DockerClient, image: str) -> Path | None:
    """The compiled copy of the current code, made with ``image`` if missing; None
    (said on stderr) when it cannot be made."""
    digest = code_digest()
    found = compiled_copy(digest)
    if found is not None:
        return found
    try:
        made = _make(client, image, digest)
    except (OSError, docker.errors.DockerException) as exc:
        print(f"coderun: the gateway's code was not compiled ahead ({exc}): the gateway "
              "compiles it at each start", file=sys.stderr)  # fmt: skip
        return None
    _prune(digest)
    return made


def _make(client: docker.DockerClient, image: str, digest: str) -> Path | None:
    root = compiled_root()
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=root))
    try:
        work.chmod(0o755)  # as readable as the installed package it stands for
        code = work / "snitch"
        source = snitch_root()
        code.mkdir()
        shutil.copy2(source / "__init__.py", code / "__init__.py")
        for part in PARTS:  # copy2 keeps the times the bytecode is checked against
            shutil.copytree(source / part, code / part,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        client.containers.run(
            image, entrypoint=COMPILE, network_mode="none", cap_drop=["ALL"],
            user=f"{os.getuid()}:{os.getgid()}", remove=True,
            labels={**owner_labels(f"compile-{digest}"), ROLE: "compile"},
            volumes={str(work): {"bind": "/code", "mode": "rw"}},
        )  # fmt: skip
        with contextlib.suppress(OSError):  # another run made the same copy meanwhile
            work.rename(root / digest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return compiled_copy(digest)


def _prune(keep: str) -> None:
    """Remove the copies of other code not touched for ``KEEP_SECONDS``."""
    root = compiled_root()
    with contextlib.suppress(OSError):
        (root / keep).touch()
        for old in root.iterdir():
            if old.name != keep and time.time() - old.stat().st_mtime > KEEP_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
