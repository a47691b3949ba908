"""Where coderun keeps its data on the host (rules, sessions, CA, API tokens)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    """``$CODERUN_HOME`` if set, else the XDG data dir (``~/.local/share/coderun``)."""
    env = os.environ.get("CODERUN_HOME")
    path = Path(env) if env else Path(platformdirs.user_data_dir("coderun", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def rules_db() -> Path:
    return data_dir() / "rules.db"


def sessions_dir() -> Path:
    path = data_dir() / "sessions"
    path.mkdir(parents=True, exist_ok=True)
    return path


def api_token() -> str:
    """The control API's token (made on first use, readable by this user only)."""
    import secrets

    path = data_dir() / "api-token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    os.chmod(path, 0o600)
    return path.read_text().strip()
