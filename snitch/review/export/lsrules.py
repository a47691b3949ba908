"""Little Snitch ``.lsrules``: a rule group (JSON) with one rule per coderun rule.

Exact hosts become ``remote-hosts``, ``*.domain`` becomes ``remote-domains`` (which in
Little Snitch also covers the domain itself), addresses and networks ``remote-addresses``,
and a rule without destination ``remote: any``. Every rule is for ``process: any``.
"""

from __future__ import annotations

import json
from typing import Any

from snitch.core.grammar import format_port
from snitch.core.model import Action, Proto, Rule
from snitch.review.export.common import ExportOptions, ExportResult, Resolutions, header, prepare


def lsrule(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action": str(rule.action),
        "process": "any",
        "direction": "outgoing",
    }
    if rule.cidr is not None:
        out["remote-addresses"] = rule.cidr
    elif rule.host is not None and rule.host.startswith("*."):
        out["remote-domains"] = [rule.host[2:]]
    elif rule.host is not None:
        out["remote-hosts"] = [rule.host]
    else:
        out["remote"] = "any"
    if rule.port_lo:
        out["ports"] = format_port(rule.port_lo, rule.port_hi)
    if rule.proto in (Proto.TCP, Proto.UDP, Proto.ICMP):
        out["protocol"] = str(rule.proto)
    if rule.priority > 0:
        out["priority"] = "high"
    note = f"coderun: {rule.describe()}" + (f" ({rule.note})" if rule.note else "")
    out["notes"] = note
    return out


def export_lsrules(
    rules: list[Rule], resolutions: Resolutions, opts: ExportOptions
) -> ExportResult:
    del resolutions  # Little Snitch matches names itself
    prep = prepare(rules, opts.now)
    warnings = list(prep.warnings)
    out = []
    for rule in prep.rules:
        if rule.proto is Proto.DNS:
            warnings.append(f"{rule.describe()}: Little Snitch has no lookup rules; left out")
            continue
        if rule.host is not None and rule.host.startswith("*.") and rule.action is Action.ALLOW:
            warnings.append(f"{rule.describe()}: remote-domains also allows {rule.host[2:]} itself")
        out.append(lsrule(rule))
    description = " ".join(header("lsrules", opts, len(out), addresses=False))
    if warnings:
        description += " Warnings: " + "; ".join(warnings)
    doc = {"name": opts.name, "description": description, "rules": out}
    return ExportResult(text=json.dumps(doc, indent=2) + "\n", warnings=warnings)
