"""What the command groups share: their exit-code errors, the rule store, a session by id.

Exit codes: 1 not found, 3 the rule store is unusable (corrupt, locked, too new).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import click

from sandbox import paths
from sandbox.records import find_session
from snitch.core.store import RuleStore, StoreError


class NotFound(click.ClickException):
    exit_code = 1


class StoreFailed(click.ClickException):
    exit_code = 3


@contextlib.contextmanager
def open_store() -> Iterator[RuleStore]:
    """The rule store; StoreFailed (exit 3) when it cannot be used."""
    try:
        with RuleStore(paths.rules_db()) as store:
            yield store
    except StoreError as e:
        raise StoreFailed(str(e)) from e


def session_folder(session: str | None) -> Path:
    """The folder of a session id (or unique prefix; the latest for None), or NotFound."""
    folder = find_session(paths.sessions_dir(), session)
    if folder is None:
        if session is None:
            raise NotFound("no session recorded yet")
        raise NotFound(f"no session {session!r} (see `coderun sessions`; a prefix must be unique)")
    return folder
