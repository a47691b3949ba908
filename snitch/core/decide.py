"""What a person's answer to a pending item means as a rule (the asker's semantics, used
by the gateway's asker and by the decision service alike).

A lasting decision is stored by verified name where one is known (never a claimed one),
by address otherwise, and never for a synthetic address: the real address once resolved
(``real_address``), else the name, else it is refused (``DecideError``). A held HTTP
request's rule is for its method under its URL's folder (``--path /v1/items/``).
"""

from __future__ import annotations

from collections.abc import Callable

from snitch.core.fileask import file_rule
from snitch.core.grammar import (
    Lifetime,
    is_synthetic_address,
    network_of,
    parent_pattern,
    parse_lifetime,
    synthetic_target,
)
from snitch.core.model import DecisionRequest, Pending, PendingKind, Proto, Rule, Target
from snitch.core.pathgrammar import (
    normalize_methods,
    normalize_path_prefix,
    request_folder,
    url_path,
)


class DecideError(ValueError):
    """A decision that cannot be applied; ``status`` is the HTTP status to report."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def set_lifetime(rule: Rule, lifetime: str, session: str, now: float) -> None:
    """``lifetime`` (session, always or a duration) on ``rule``."""
    life = parse_lifetime(lifetime)
    if life is Lifetime.SESSION:
        rule.session = session
    elif not isinstance(life, Lifetime):
        rule.expires_at = now + life


def rule_for(
    item: Pending,
    request: DecisionRequest,
    session: str,
    now: float,
    real_address: Callable[[str], str | None] = lambda _address: None,
) -> Rule:
    """The lasting rule a decision on ``item`` means (a file item's: snitch/core/fileask.py)."""
    if item.kind == PendingKind.FILE:
        rule = file_rule(item, request)
        set_lifetime(rule, request.lifetime, session, now)
        return rule
    name = item.names[0] if item.names else ""
    rule = Rule(action=request.action, source="prompt", note=request.note)
    target = request.target
    if not name and target in (Target.HOST, Target.DOMAIN):
        target = Target.IP
    address = item.dst
    synthetic = item.synthetic or is_synthetic_address(item.dst)
    if target in (Target.IP, Target.CIDR) and synthetic:
        real = real_address(item.dst)
        if real is not None and not is_synthetic_address(real):
            address = real
        elif name:
            target = Target.HOST
        else:
            why = synthetic_target(address)
            raise DecideError(409, f"no lasting rule for this item: {why}")
    if target is Target.HOST:
        rule.host = name
    elif target is Target.DOMAIN:
        rule.host = parent_pattern(name)
    elif target is Target.IP:
        rule.cidr = f"{address}/32"
    else:
        rule.cidr = network_of(address, request.cidr_prefix)
    if request.port == "this" and item.proto in ("tcp", "udp"):
        rule.port_lo = rule.port_hi = item.dport
    network = item.kind in (PendingKind.FLOW, PendingKind.REQUEST)
    rule.proto = Proto(item.proto) if network else Proto.DNS
    if item.kind == PendingKind.REQUEST:  # this method under the URL's folder
        try:
            rule.path_prefix = normalize_path_prefix(request_folder(url_path(item.url)))
            rule.method = normalize_methods(item.method)
        except ValueError as e:
            raise DecideError(409, f"no lasting rule for this request: {e}") from None
    set_lifetime(rule, request.lifetime, session, now)
    return rule
