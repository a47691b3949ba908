"""What crosses between gateways, dashboards and the decision service (``coderun serve``).

The service speaks HTTP/1.1 + JSON over TLS and wants ``Authorization: Bearer <token>``
on every request (docs/scale.md). Its per-session routes are the gateway control API's
(docs/api.md) under ``/v1/sessions/<id>``, so a dashboard reads a fleet session with the
same client and wire types (``snitch/core/apitypes.py``) as a local one. A gateway uses
three more: it joins (``PUT /v1/sessions/<id>``, its ``SessionInfo`` with its labels),
asks (``POST .../ask``, a ``Pending``; the answer, a ``FleetAnswer``, comes when the
service's rules or a person decide) and reports its log in batches (``POST .../log``).

Standard library only: the gateway imports it.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from snitch.core.model import Decision, Rule

API_PREFIX = "/v1"
SESSIONS = "/sessions"  # GET: every session of the fleet (SessionInfo dicts)
ASK = "ask"  # POST /v1/sessions/<id>/ask: a Pending; answered with a FleetAnswer
LOG = "log"  # POST /v1/sessions/<id>/log: a list of log lines (LogEntry dicts)
UNREACHABLE = "decision service unreachable"  # the gateway's log says this, once per outage
REACHABLE = "decision service reachable again"
BY_SERVICE = "decision service"  # ``by`` of decisions that came from the service
LOG_BATCH = 500  # at most this many log lines in one report
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}=[A-Za-z0-9._-]{0,63}")
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def parse_label(text: str) -> str:
    """A ``KEY=VALUE`` label as given (Kubernetes' label syntax, roughly); ValueError
    with the reason when it is not one."""
    if not LABEL.fullmatch(text):
        raise ValueError(
            f"bad label {text!r} (want KEY=VALUE: letters, digits, '.', '_', '-', "
            "a key of at most 63 characters)"
        )
    return text


def parse_url(url: str) -> tuple[str, int]:
    """``https://HOST[:PORT]`` -> (host, port); ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValueError(f"the decision service is reached over https:// only, not {url!r}")
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"want https://HOST[:PORT], not {url!r}")
    return parts.hostname, parts.port or 443


def session_path(session: str, rest: str = "") -> str:
    """The path (under ``/v1``) of a session's route: ``/sessions/<id>[/rest]``."""
    if not SESSION_ID.fullmatch(session):
        raise ValueError(f"bad session id {session!r}")
    return f"{SESSIONS}/{session}" + (f"/{rest.lstrip('/')}" if rest else "")


@dataclass(frozen=True, slots=True)
class FleetAnswer:
    """The service's verdict on one asked item: the decision, and the lasting rule it
    came from (None for a decision "once"); the gateway keeps that rule for its session."""

    decision: Decision
    rule: Rule | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.to_dict(),
            "rule": self.rule.to_dict() if self.rule is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FleetAnswer:
        rule = d.get("rule")
        return cls(Decision.from_dict(d["decision"]), Rule.from_dict(rule) if rule else None)


def client_context(ca_pem: str) -> ssl.SSLContext:
    """TLS to the decision service, trusting only its certificate (``ca_pem``), with the
    name or address of the URL checked against it."""
    context = ssl.create_default_context(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
