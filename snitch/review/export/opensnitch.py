"""OpenSnitch rules: one JSON file per rule, as opensnitchd keeps them in its rules dir.

OpenSnitch applies a deny rule as soon as it matches and an allow rule with
``precedence`` as soon as it matches, checking rules in the alphabetical order of their
names. The files are named ``NNN-coderun-...`` in coderun's precedence order and every
rule has ``precedence: true``, so the first match decides, as in coderun.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import time
from typing import Any

from snitch.core.model import Proto, Rule
from snitch.review.export.common import ExportOptions, ExportResult, Resolutions, prepare


def _op(operand: str, data: str, typ: str = "simple") -> dict[str, Any]:
    return {"type": typ, "operand": operand, "sensitive": False, "data": data, "list": []}


def _blocks(lo: int, hi: int) -> list[tuple[int, int, int]]:
    """[lo, hi] (lo >= 1) as (start, count, step) blocks that one regex part each can match."""
    out = []
    while lo <= hi:
        k = 0
        while lo % 10 ** (k + 1) == 0 and lo + 10 ** (k + 1) - 1 <= hi:
            k += 1
        step = 10**k
        n = 1
        while (lo // step) % 10 + n <= 9 and lo + (n + 1) * step - 1 <= hi:
            n += 1
        out.append((lo, n, step))
        lo += n * step
    return out


def port_regex(lo: int, hi: int) -> str:
    """A regular expression matching exactly the decimal numbers lo..hi (1 <= lo <= hi)."""
    if lo == hi:
        return f"^{lo}$"
    parts = []
    for start, n, step in _blocks(lo, hi):
        head = start // (step * 10)
        d1 = (start // step) % 10
        digits = f"{d1}" if n == 1 else f"[{d1}-{d1 + n - 1}]"
        k = len(str(step)) - 1
        parts.append(f"{head or ''}{digits}" + (f"[0-9]{{{k}}}" if k else ""))
    return "^(" + "|".join(parts) + ")$"


def _conditions(rule: Rule) -> list[dict[str, Any]]:
    ops = []
    if rule.cidr is not None:
        net = ipaddress.ip_network(rule.cidr, strict=False)
        if net.prefixlen == net.max_prefixlen:
            ops.append(_op("dest.ip", str(net.network_address)))
        else:
            ops.append(_op("dest.network", str(net), "network"))
    elif rule.host is not None and rule.host.startswith("*."):
        ops.append(_op("dest.host", f"^.+\\.{re.escape(rule.host[2:])}$", "regexp"))
    elif rule.host is not None:
        ops.append(_op("dest.host", rule.host))
    if rule.port_lo:
        if rule.port_lo == rule.port_hi:
            ops.append(_op("dest.port", str(rule.port_lo)))
        else:
            ops.append(_op("dest.port", port_regex(rule.port_lo, rule.port_hi), "regexp"))
    if rule.proto in (Proto.TCP, Proto.UDP, Proto.ICMP):
        ops.append(_op("protocol", f"^{rule.proto}6?$", "regexp"))
    elif rule.port_lo:
        ops.append(_op("protocol", "^(tcp|udp)6?$", "regexp"))
    return ops


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]


def osrule(rule: Rule, index: int, now: float) -> dict[str, Any]:
    ops = _conditions(rule)
    if not ops:
        operator = _op("true", "")
    elif len(ops) == 1:
        operator = ops[0]
    else:
        data = json.dumps([{k: v for k, v in o.items() if k != "list"} for o in ops])
        operator = {"type": "list", "operand": "list", "sensitive": False, "data": data}
        operator["list"] = ops
    created = dt.datetime.fromtimestamp(rule.created or now, tz=dt.UTC).isoformat()
    updated = dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat()
    return {
        "created": created,
        "updated": updated,
        "name": f"{index:03d}-coderun-{_slug(rule.describe())}",
        "description": f"coderun: {rule.describe()}" + (f" ({rule.note})" if rule.note else ""),
        "enabled": True,
        "precedence": True,
        "nolog": False,
        "action": str(rule.action),
        "duration": "always",
        "operator": operator,
    }


def export_opensnitch(
    rules: list[Rule], resolutions: Resolutions, opts: ExportOptions
) -> ExportResult:
    del resolutions  # OpenSnitch matches names itself
    now = opts.now or time.time()
    prep = prepare(rules, now)
    warnings = list(prep.warnings)
    docs: list[dict[str, Any]] = []
    for rule in prep.rules:
        if rule.proto is Proto.DNS:
            warnings.append(f"{rule.describe()}: OpenSnitch has no lookup rules; left out")
            continue
        docs.append(osrule(rule, len(docs), now))
    files = {f"{d['name']}.json": json.dumps(d, indent=2) + "\n" for d in docs}
    return ExportResult(text=json.dumps(docs, indent=2) + "\n", files=files, warnings=warnings)
