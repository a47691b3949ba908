"""Which rule decides a query and why, as one typed object (``Explanation``) that the
policy makes, the control API carries, and ``coderun rules explain`` and the dashboard
both render."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from snitch.core.grammar import format_port, is_address
from snitch.core.model import Action, Decision, Proto, Query, Rule

NO_MATCH = "no rule matches; the mode's default applies"


def endpoint_query(
    host: str, port: int, proto: Proto, *, profile: str | None = None, image: str | None = None,
    session: str | None = None, path: str | None = None, method: str | None = None,
    exe: str | None = None,
) -> Query:  # fmt: skip
    """The query for a connection to ``host:port`` (``rules explain``, the API's explain): an
    address is matched by address rules, a name as if the sandbox connected by that name;
    a DNS lookup has no port; ``exe``: as asked by that program."""
    dst, names = (host, ()) if is_address(host) else (None, (host,))
    port = 0 if proto is Proto.DNS else port
    return Query(proto, dst, port, names, profile, image, session, None, path, method, exe)


def file_query(
    path: str, access: str | None = "read", *, exe: str | None = None,
    profile: str | None = None, image: str | None = None, session: str | None = None,
) -> Query:  # fmt: skip
    """The query for an open of ``path`` (the ``~/...`` form of ``snitch.core.filepaths``),
    for reading or writing, by the program ``exe`` when known."""
    return Query(Proto.FILE, profile=profile, image=image, session=session, exe=exe,
                 file=path, access=access)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that matched a query, and on what."""

    rule: Rule
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.to_dict(), "describe": self.rule.describe(), "why": self.why}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Match:
        return cls(Rule.from_dict(d["rule"]), str(d.get("why", "")))


@dataclass(frozen=True, slots=True)
class Explanation:
    """Every rule that matched, in precedence order (the deciding one first)."""

    query: Query
    decision: Decision | None
    matches: tuple[Match, ...]
    reason: str  # why the first match beat the second one

    @property
    def rule(self) -> Rule | None:
        return self.matches[0].rule if self.matches else None

    def to_dict(self) -> dict[str, Any]:
        q = {f.name: getattr(self.query, f.name) for f in dataclasses.fields(self.query)}
        q["proto"], q["names"] = str(self.query.proto), list(self.query.names)
        q["labels"] = list(self.query.labels)
        return {
            "query": q,
            "decision": self.decision.to_dict() if self.decision else None,
            "reason": self.reason,
            "matches": [m.to_dict() for m in self.matches],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Explanation:
        """What ``to_dict`` wrote (the control API's answer to ``POST /v1/explain``)."""
        q = dict(d.get("query") or {})
        names = {f.name for f in dataclasses.fields(Query)}
        kw = {k: v for k, v in q.items() if k in names}
        kw["proto"] = Proto(kw.get("proto", "any"))
        kw["names"] = tuple(kw.get("names") or ())
        kw["labels"] = tuple(kw.get("labels") or ())
        decision = d.get("decision")
        return cls(
            Query(**kw),
            Decision.from_dict(decision) if decision else None,
            tuple(Match.from_dict(m) for m in d.get("matches") or ()),
            str(d.get("reason", "")),
        )

    @property
    def headline(self) -> str:
        """The decision in one line (unescaped: the reason may name what the sandbox sent)."""
        d = self.decision
        return f"{d.action}: {d.reason}" if d else NO_MATCH


def match_why(rule: Rule, host: str | None, wild: bool, on: str, q: Query) -> str:
    """How ``rule`` matched ``q`` (on the name or address ``on``); ``host`` is the rule's
    name without the ``*.`` of a wildcard."""
    r = rule
    if r.source == "blocklist" and r.id is None:
        what = f"blocklisted {host or r.cidr} covers {on}"
    elif r.cidr is not None:
        what = f"{r.cidr} contains {on}"
    elif r.host is not None:
        what = f"{on} is a subdomain of {host}" if wild else f"exact host {on}"
    elif r.proto is Proto.FILE:
        parts = [f"{q.file} matches {r.file}", f"{r.access} only" if r.access else "read or write"]
        parts += [f"program {r.exe}"] if r.exe else []
        parts += [f"priority {r.priority}"] if r.priority else []
        parts += [f"scope {r.scope}"] if r.scope != "global" else []
        return ", ".join(parts)
    else:
        what = "any destination"
    if q.proto is Proto.DNS and r.action is Action.ALLOW and r.proto is not Proto.DNS:
        what += f" (a name you may reach over {r.proto} may be resolved)"
    parts = [what, f"port {format_port(r.port_lo, r.port_hi)}", f"proto {r.proto}"]
    if r.priority:
        parts.append(f"priority {r.priority}")
    if r.scope != "global":
        parts.append(f"scope {r.scope}")
    if r.path_prefix:
        parts.append(f"path {r.path_prefix}*")
    if r.method:
        parts.append(f"method {r.method}")
    if r.exe:
        parts.append(f"program {r.exe}")
    return ", ".join(parts)
