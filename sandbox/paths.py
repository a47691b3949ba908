"""Where coderun keeps its data on the host (rules, sessions, CA, API tokens).

The data dir is private: mode 0700, owned by the user running coderun, and everything
coderun puts in it is 0600/0700. A data dir owned by someone else is refused
(``DataDirError``): its rules would decide this user's runs and its logs would be
readable by its owner. A data dir made by an older coderun (0755, 0644 files) is
tightened once, the first time it is used.

Layout: ``api-token``, ``rules/rules.db`` (the rule store; it moved there from
``rules.db`` so that a gateway can be given the rules and nothing else), ``sessions/<id>/``,
``pool/``, ``ca/`` (the interception CA).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path

import platformdirs

from snitch.core.atomic import write_atomic

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_checked: set[str] = set()  # data dirs already verified by this process


class DataDirError(RuntimeError):
    """The data dir cannot be used (owned by someone else, not a directory)."""


def data_dir_path() -> Path:
    """Where the data dir is (``$CODERUN_HOME``, else ``~/.local/share/coderun``),
    without making or checking it."""
    env = os.environ.get("CODERUN_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("coderun", appauthor=False))


def cache_dir_path() -> Path:
    """What coderun can make again (the wheels for the gateway image):
    ``$CODERUN_CACHE``, else ``~/.cache/coderun`` (``$XDG_CACHE_HOME``). Never inside
    the installed package."""
    env = os.environ.get("CODERUN_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("coderun", appauthor=False))


def keys_file() -> Path:
    """The dashboard's key remapping (``tui/keymap.py``): ``$CODERUN_CONFIG/keys.toml``,
    else ``~/.config/coderun/keys.toml`` (``$XDG_CONFIG_HOME``)."""
    env = os.environ.get("CODERUN_CONFIG")
    folder = Path(env) if env else Path(platformdirs.user_config_dir("coderun", appauthor=False))
    return folder / "keys.toml"


def cache_dir() -> Path:
    """``cache_dir_path()``, made if missing."""
    path = cache_dir_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """``$CODERUN_HOME`` if set, else the XDG data dir (``~/.local/share/coderun``);
    made private (0700) and checked to be this user's."""
    path = data_dir_path()
    key = str(path)
    if key in _checked and path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=PRIVATE_DIR)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise DataDirError(f"coderun's data dir {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise DataDirError(
            f"coderun's data dir {path} belongs to uid {st.st_uid}, not to you "
            f"(uid {os.geteuid()}): refusing to use it (its rules would decide your runs "
            "and its owner could read your logs). Set CODERUN_HOME to a folder you own."
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        tighten(path)
    _checked.add(key)
    return path


def tighten(root: Path) -> None:
    """Make ``root`` and everything under it private (for data dirs of older versions)."""
    os.chmod(root, PRIVATE_DIR)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(dirpath, name), PRIVATE_DIR)
        for name in filenames:
            full = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                mode = os.lstat(full).st_mode
                if stat.S_ISREG(mode) or stat.S_ISSOCK(mode):
                    os.chmod(full, stat.S_IMODE(mode) & 0o700)


def private_dir(path: Path) -> Path:
    """``path`` made (0700) if missing; returned."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=PRIVATE_DIR)
    return path


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``path`` atomically (a temporary file renamed over it), mode 0600."""
    write_atomic(path, data)


def rules_dir() -> Path:
    """The rule store's folder (a gateway mounts it, and only it, for the rules)."""
    folder = private_dir(data_dir() / "rules")
    migrate_rules(data_dir(), folder)
    return folder


def rules_db() -> Path:
    return rules_dir() / "rules.db"


def migrate_rules(data: Path, folder: Path) -> None:
    """Move a store of an older version (``rules.db`` and its WAL, shared memory and
    backups beside it) into ``rules/``; a store already there wins."""
    if not (data / "rules.db").exists() or (folder / "rules.db").exists():
        return
    # The store itself last: whoever finds it in rules/ finds its WAL there too.
    for old in sorted(data.glob("rules.db*"), key=lambda p: p.name == "rules.db"):
        with contextlib.suppress(FileNotFoundError):
            old.rename(folder / old.name)


def sessions_dir() -> Path:
    return private_dir(data_dir() / "sessions")


def ca_dir() -> Path:
    """The interception CA (made by the first gateway that intercepts TLS)."""
    return private_dir(data_dir() / "ca")


def api_token_path() -> Path:
    api_token()
    return data_dir() / "api-token"


def api_token() -> str:
    """The control API's token (made on first use, readable by this user only)."""
    import secrets  # start-up time: only the first run makes a token

    path = data_dir() / "api-token"
    if not path.exists():
        # Whole or not at all, and the first of two runs starting at once wins: written
        # aside, then linked (a link never replaces an existing file).
        aside = path.with_name(f".api-token.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(aside)
    os.chmod(path, PRIVATE_FILE)
    return path.read_text().strip()


def fleet_tls_dir() -> Path:
    """The decision service's generated certificate and key (``coderun serve``)."""
    return private_dir(private_dir(data_dir() / "fleet") / "tls")
