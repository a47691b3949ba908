"""The escape arena (arena.py) as a whole: every denied attempt is in the log, and the
sessions leave nothing behind. The other ways out are in the ``test_escape_*.py``
modules; docs/security.md has the table."""

from __future__ import annotations

import pytest

from tests.escape.arena import Arena

pytestmark = pytest.mark.docker


def test_every_denied_attempt_is_in_the_log(arena: Arena) -> None:
    """Nothing the hostile script sent through the gateway went unlogged (bar the holes)."""
    a = arena.a
    denied = {(e.proto, e.dst) for e in a.flows(verdict="deny")}
    for proto, dst in (
        ("tcp", a.bridge),
        ("udp", a.bridge),
        ("tcp", arena.target),
        ("tcp", a.session.gateway_ip),
        ("udp", arena.internet.ip),
        ("icmp", arena.other),
        ("udp", arena.other),
        ("tcp", arena.b.session.sandbox_ip),
        ("tcp", arena.tracker),
    ):
        assert (proto, dst) in denied, (proto, dst)


def test_sessions_leave_nothing_behind(arena: Arena) -> None:
    assert arena.left == []
