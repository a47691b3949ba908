"""coderun as a user installs it: a wheel built from a clean copy of this checkout,
installed into a fresh venv outside the checkout, run from a temporary directory with
an environment that knows nothing of the checkout (no PYTHONPATH, no CI venv on PATH).

The wheel's dependencies come from a wheelhouse cached under /var/cache/coderun-ci
(``CODERUN_CI_WHEELHOUSE`` overrides), filled once from the package index by this
environment's pip; installs into the fresh venv then use ``--no-index``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import client  # noqa: F401  (the one Docker client fixture)

ROOT = Path(__file__).resolve().parents[2]
CI_CACHE = Path("/var/cache/coderun-ci")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _run(cmd: list[str], timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    proc: subprocess.CompletedProcess[str] = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, **kw  # type: ignore[call-overload]
    )
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


JUNK = ("build", "dist", "*.egg-info", "__pycache__", ".venv", "wheels", ".mypy_cache",
        ".ruff_cache", ".pytest_cache", ".hypothesis", ".grimp_cache")


def copy_source(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked and new, not ignored): no stale
    build/, egg-info or wheels/ can slip into the wheel. Links are copied as links.
    Outside a git checkout (an unpacked tarball), everything but build leftovers."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"], capture_output=True, check=True,
        ).stdout.decode().split("\0")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, dest, symlinks=True, ignore=shutil.ignore_patterns(".git", *JUNK))
        return dest
    for name in filter(None, listed):
        src = ROOT / name
        if not os.path.lexists(src):
            continue  # deleted in the work tree, not yet in the index
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    return dest


def requirements_of(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    wanted = (line for line in lines if line.startswith("Requires-Dist:"))
    return sorted(line for line in wanted if "extra" not in line)


def wheelhouse_for(wheel: Path, fallback: Path, env: dict[str, str]) -> Path:
    """A folder with wheels of every dependency of ``wheel`` (filled once, then reused)."""
    env = os.environ.get("CODERUN_CI_WHEELHOUSE")
    house = Path(env) if env else CI_CACHE / "wheelhouse"
    try:
        house.mkdir(parents=True, exist_ok=True)
    except OSError:
        house = fallback
        house.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(
        ("\n".join(requirements_of(wheel)) + sys.version.split()[0]).encode()
    ).hexdigest()[:16]
    stamp = house / f".complete-{key}"
    with open(house / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                  "-d", str(house), str(wheel)], env=env)  # fmt: skip
            for ours in house.glob("coderun-*.whl"):
                ours.unlink()
            stamp.touch()
    return house


@dataclass
class Installed:
    venv: Path
    wheel: Path
    workdir: Path  # an empty temporary folder: every command runs here
    env: dict[str, str]

    def coderun(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.venv / "bin" / "coderun"), *args]
        proc: subprocess.CompletedProcess[str] = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=self.workdir,
            env=self.env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check:
            assert proc.returncode == 0, f"{cmd}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def python(self, code: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return _run([str(self.venv / "bin" / "python"), "-c", code], timeout=timeout,
                    cwd=self.workdir, env=self.env)  # fmt: skip


@pytest.fixture(scope="session")
def installed() -> Iterator[Installed]:
    """The wheel, built and installed into a fresh venv outside the checkout (in a
    folder of its own, not pytest's numbered ones, which other test runs prune)."""
    top = Path(tempfile.mkdtemp(prefix="coderun-install-"))
    try:
        yield _install(top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def clean_env(top: Path, venv: Path) -> dict[str, str]:
    """This environment without anything that points into the checkout or the CI venv
    (PYTHONPATH would even make pip think coderun is installed: the checkout's
    coderun.egg-info), with a data dir, cache and home of the test's own."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")}  # fmt: skip
    env.update(PATH=f"{venv / 'bin'}:{SYSTEM_PATH}", CODERUN_HOME=str(top / "home"),
               CODERUN_CACHE=str(top / "cache"), HOME=str(top / "user"))  # fmt: skip
    return env


def _install(top: Path) -> Installed:
    venv = top / "venv"
    env = clean_env(top, venv)
    (top / "user").mkdir()
    # Building and installing may use pip's cache in the real home (coderun never does).
    build_env = {**env, "HOME": os.environ.get("HOME", str(top / "user"))}
    src = copy_source(top / "src")
    dist = top / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
         env=build_env, cwd=top)  # fmt: skip
    (wheel,) = dist.glob("coderun-*.whl")
    house = wheelhouse_for(wheel, top / "wheelhouse", build_env)
    _run([sys.executable, "-m", "venv", str(venv)], env=build_env, cwd=top)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
          "--find-links", str(house), str(wheel)], env=build_env, cwd=top)  # fmt: skip
    shutil.rmtree(src)  # nothing can come from the copy either
    workdir = top / "cwd"
    workdir.mkdir()
    return Installed(venv, wheel, workdir, env)
