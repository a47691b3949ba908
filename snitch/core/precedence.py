"""Rule precedence: the key that ranks matching rules, and how to say why one beat another.

Among the rules that match a query the one with the largest key decides (docs/rules.md)::

    (priority, destination kind, destination detail, -port range width,
     specific proto, path prefix (or file glob) length, method, program, deny)
"""

from __future__ import annotations

import ipaddress

from snitch.core.grammar import IPNetwork, normalize_name
from snitch.core.model import Action, Proto, Rule
from snitch.core.pathgrammar import glob_literal_length

DEST_ANY, DEST_WILDCARD, DEST_HOST, DEST_CIDR = 0, 1, 2, 3
DEST_KIND_NAMES = {0: "any destination", 1: "wildcard domain", 2: "exact host", 3: "address/CIDR"}


def precedence_key(rule: Rule, net: IPNetwork | None = None) -> tuple[int, ...]:
    """The rule's precedence key; among matching rules the largest one decides."""
    if rule.cidr is not None:
        if net is None:
            net = ipaddress.ip_network(rule.cidr, strict=False)
        dest, detail = DEST_CIDR, net.prefixlen
    elif rule.host is not None:
        h = normalize_name(rule.host)
        wild = h.startswith("*.")
        dest, detail = (DEST_WILDCARD, h.count(".")) if wild else (DEST_HOST, 0)
    else:
        dest, detail = DEST_ANY, 0
    width = rule.port_hi - rule.port_lo + 1 if rule.port_lo else 65536
    path = glob_literal_length(rule.file) if rule.file else len(rule.path_prefix or "")
    return (rule.priority, dest, detail, -width, int(rule.proto is not Proto.ANY), path,
            int(rule.method is not None), int(rule.exe is not None),
            int(rule.action is Action.DENY))  # fmt: skip


def win_reason(label: str, a: tuple[int, ...], b: tuple[int, ...] | None) -> str:
    """Why the rule ranked ``a`` (named ``label``) beats the one ranked ``b``."""
    if b is None:
        return f"{label} is the only matching rule"
    reasons = [
        f"a higher priority ({a[0]} > {b[0]})",
        f"a more specific destination ({DEST_KIND_NAMES[a[1]]} beats {DEST_KIND_NAMES[b[1]]})",
        f"a longer {'prefix' if a[1] == DEST_CIDR else 'domain suffix'} ({a[2]} > {b[2]})",
        "a narrower port range",
        "a specific protocol (beats any)",
        "a longer path prefix (or a more specific file glob)",
        "a method list (beats any method)",
        "a program (beats any program)",
        "deny (deny beats allow at equal specificity)",
    ]
    for i, text in enumerate(reasons):
        if a[i] != b[i]:
            return f"{label} wins: {text}"
    return f"{label} wins a full tie by being the earlier rule"
