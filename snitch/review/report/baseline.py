"""Baselines: the endpoints a run is known to contact, saved from a session and compared
with later runs (``coderun baseline save | diff``, ``coderun run --baseline FILE
--fail-on-new``).

A baseline file is JSON: ``{"coderun_baseline": 1, "source": ..., "created": ...,
"endpoints": [{"name": ..., "port": ..., "proto": ...}, ...]}``; it holds every endpoint
the run *tried*, allowed or refused (docs/reports.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from snitch.review.report.model import EndpointKey, Report, iso_time

BASELINE_VERSION: Final = 1
NEW_ENDPOINT_STATUS: Final = 3
"""``coderun run --baseline FILE --fail-on-new`` exits with this when the run contacted an
endpoint that is not in FILE (and ``baseline diff --fail-on-new`` when B has one A lacks)."""

PROTOS: Final = ("tcp", "udp", "icmp", "dns")


class BaselineError(ValueError):
    """A baseline file that cannot be read; ``str()`` says which and why."""


@dataclass(frozen=True, slots=True)
class Baseline:
    source: str  # the file or session it came from
    endpoints: frozenset[EndpointKey]


def from_report(report: Report, source: str) -> Baseline:
    return Baseline(source, frozenset(report.endpoint_keys()))


def baseline_dict(b: Baseline) -> dict[str, Any]:
    return {
        "coderun_baseline": BASELINE_VERSION,
        "source": b.source,
        "created": iso_time(time.time()),
        "endpoints": [{"name": k.name, "port": k.port, "proto": k.proto}
                      for k in sorted(b.endpoints)],
    }  # fmt: skip


def dump_baseline(b: Baseline) -> str:
    return json.dumps(baseline_dict(b), indent=2) + "\n"


def _key(item: object, where: str) -> EndpointKey:
    if not isinstance(item, dict):
        raise BaselineError(f"{where}: an endpoint is an object with name, port and proto")
    name, port, proto = item.get("name"), item.get("port"), item.get("proto")
    if not isinstance(name, str) or not name:
        raise BaselineError(f"{where}: name must be a non-empty string")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise BaselineError(f"{where}: port must be an integer 0..65535")
    if proto not in PROTOS:
        raise BaselineError(f"{where}: proto must be one of {', '.join(PROTOS)}")
    return EndpointKey(name, port, str(proto))


def parse_baseline(text: str, source: str) -> Baseline:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BaselineError(f"{source}: not JSON ({exc})") from None
    if not isinstance(data, dict) or "coderun_baseline" not in data:
        raise BaselineError(f"{source}: not a coderun baseline (no coderun_baseline key)")
    if data["coderun_baseline"] != BASELINE_VERSION:
        raise BaselineError(f"{source}: baseline version {data['coderun_baseline']!r} is not "
                            f"{BASELINE_VERSION} (made by another coderun?)")  # fmt: skip
    items = data.get("endpoints")
    if not isinstance(items, list):
        raise BaselineError(f"{source}: endpoints must be a list")
    keys = frozenset(_key(item, f"{source}: endpoint {i + 1}") for i, item in enumerate(items))
    return Baseline(source, keys)


def load_baseline(path: Path) -> Baseline:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc}") from None
    return parse_baseline(text, str(path))


@dataclass(frozen=True, slots=True)
class BaselineDiff:
    new: list[EndpointKey]  # in B, not in A
    gone: list[EndpointKey]  # in A, not in B


def diff(a: Baseline, b: Baseline) -> BaselineDiff:
    return BaselineDiff(sorted(b.endpoints - a.endpoints), sorted(a.endpoints - b.endpoints))


def mark_new(report: Report, baseline: Baseline) -> list[EndpointKey]:
    """Mark the report's endpoints that are not in ``baseline``; returns them, sorted."""
    for e in (*report.endpoints, *report.denied):
        e.new = e.key not in baseline.endpoints
    report.baseline = baseline.source
    report.new = sorted(report.endpoint_keys() - baseline.endpoints)
    return report.new
