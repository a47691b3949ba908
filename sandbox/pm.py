"""Package managers in a sandbox: ``coderun npm|pip|bundle|go ARGS``.

Each tool runs for the current directory (the project), in its ecosystem's runtime
image, with:

- the project folder mounted read-write at the same path, as the working directory
  (what the tool installs lands there: ``node_modules/``, ``.venv/``, ``vendor/bundle/``),
  except ``.git/``, read-only (its hooks run on the host);
- the sandbox running as the calling user's uid:gid, so the files it writes are yours;
- the tool's cache in a per-user folder of coderun's cache dir (``pm/<tool>/`` in
  ``~/.cache/coderun``, ``$CODERUN_CACHE``; mounted at ``CACHE_MOUNT``), kept between
  runs and projects: ``coderun pm cache`` shows and removes it (``coderun gc`` leaves it
  alone: it is not a leftover);
- a starter policy naming the ecosystem's registry and CDN hosts: shipped in
  ``sandbox/pm_policies/<tool>.toml``, replaced by ``$CODERUN_HOME/pm/<tool>.toml``
  where that exists, and by ``--policy FILE`` for one run.

Everything else the install does (a postinstall script, a setup.py, a native
extension's build) is held in ask mode and denied in enforce mode, and logged.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import paths

POLICY_DIR = Path(__file__).resolve().parent / "pm_policies"
CACHE_MOUNT = "/coderun-cache"
VENV = ".venv"  # where `coderun pip` installs, in the project
# `coderun pip ARGS`: pip of the project's virtualenv, made on first use.
PIP_SCRIPT = f'test -x {VENV}/bin/pip || python3 -m venv {VENV} || exit 1; exec {VENV}/bin/pip "$@"'


class PmError(RuntimeError):
    pass


@dataclass(frozen=True)
class Tool:
    name: str  # the command: npm, pip, bundle, go
    runtime: str  # the default --image
    env: dict[str, str] = field(default_factory=dict)

    def command(self, args: tuple[str, ...]) -> list[str]:
        if self.name == "pip":
            return ["sh", "-c", PIP_SCRIPT, "pip", *args]
        return [self.name, *args]


TOOLS = {
    "npm": Tool("npm", "node", {
        "npm_config_cache": CACHE_MOUNT,
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
    }),
    "pip": Tool("pip", "python", {
        "PIP_CACHE_DIR": CACHE_MOUNT,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }),
    "bundle": Tool("bundle", "ruby", {
        "BUNDLE_PATH": "vendor/bundle",  # relative to the Gemfile's folder
        "BUNDLE_USER_HOME": f"{CACHE_MOUNT}/home",
        "BUNDLE_GLOBAL_GEM_CACHE": "true",  # .gem files in BUNDLE_USER_HOME/cache
    }),
    "go": Tool("go", "go", {
        "GOMODCACHE": f"{CACHE_MOUNT}/mod",
        "GOCACHE": f"{CACHE_MOUNT}/build",
        "GOPATH": f"{CACHE_MOUNT}/path",
        "GOFLAGS": "-modcacherw",
        "GOTOOLCHAIN": "local",
    }),
}  # fmt: skip


def shipped_policy(tool: str) -> Path:
    return POLICY_DIR / f"{tool}.toml"


def user_policy(tool: str) -> Path:
    return paths.data_dir() / "pm" / f"{tool}.toml"


def policy_for(tool: str, override: Path | None = None) -> Path:
    """The policy file of a run: ``--policy``, else the user's copy, else the shipped one."""
    if override is not None:
        return override
    mine = user_policy(tool)
    return mine if mine.is_file() else shipped_policy(tool)


def cache_dir(tool: str) -> Path:
    """This user's cache folder for ``tool`` (made private on first use)."""
    folder = paths.cache_dir() / "pm" / tool
    folder.mkdir(parents=True, exist_ok=True, mode=paths.PRIVATE_DIR)
    return folder


def project_dir(cwd: Path | None = None) -> Path:
    """The folder a tool runs for: the current one, but never ``/`` or your home
    (mounting it read-write would hand the sandbox your keys and dotfiles)."""
    here = (cwd or Path.cwd()).resolve()
    home = Path.home().resolve()
    if here == Path("/") or here == home or here in home.parents:
        raise PmError(
            f"refusing to mount {here} into the sandbox read-write: run this from the "
            "project's own folder"
        )
    return here


# Folders of the project a package's install scripts must not change: git runs the
# hooks in .git/ on the host (a post-checkout hook is code the host would run).
READ_ONLY = (".git",)


def project_mounts(project: Path) -> list[str]:
    """The project read-write at its own path, and its ``READ_ONLY`` parts read-only."""
    mounts = [f"{project}:{project}"]
    for name in READ_ONLY:
        if (project / name).exists():
            mounts.append(f"{project / name}:{project / name}:ro")
    return mounts


def caller_user() -> str:
    """The sandbox's user: yours, so that what it writes in the project is yours."""
    return "root" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"


def cache_usage(tool: str) -> int:
    folder = paths.cache_dir() / "pm" / tool
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
