"""Every export format, byte for byte, for the sample rules (tests/export/samples.py).

The schema tests check that a document is valid; these check that it says exactly what
it said when it was last reviewed: a changed address, port, comment, order or warning
fails here. After a deliberate change, regenerate and review the diff:

    CODERUN_UPDATE_GOLDEN=1 python -m pytest -q tests/export/test_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from snitch.core.model import Action, Proto, Rule
from snitch.review.export import FORMATS, ExportOptions, ExportResult, export
from tests.export.samples import sample_resolutions, sample_rules

GOLDEN = Path(__file__).parent / "golden"
NOW = 1_700_000_000.0

CASES = {
    "default": ExportOptions(now=NOW),
    "custom": ExportOptions(
        name="ci-run",
        source="session s1",
        resolvers=["192.0.2.53", "2001:db8::53"],
        labels={"app": "coderun", "team": "infra"},
        namespace="ci",
        now=NOW,
    ),
}


def rules() -> list[Rule]:
    out = sample_rules()
    for i, rule in enumerate(out):
        rule.created = NOW - 3600 * i  # the OpenSnitch files carry it
    return out


def render(result: ExportResult) -> str:
    out = [result.text]
    for name in sorted(result.files):
        out += [f"==> file {name}", result.files[name]]
    out += ["==> warnings", *result.warnings, ""]
    return "\n".join(out)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_export_matches_the_reviewed_output(fmt: str, case: str) -> None:
    got = render(export(rules(), sample_resolutions(), fmt, CASES[case]))
    path = GOLDEN / f"{fmt}-{case}.txt"
    if os.environ.get("CODERUN_UPDATE_GOLDEN") == "1":
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")


def edge_rules() -> list[Rule]:
    """What the sample leaves out: hints at their threshold, a deny by many addresses of
    both families, one address for two names, a label too long for a comment, a rule by
    name and address, rules expiring around the export's time."""
    a, d = Action.ALLOW, Action.DENY
    tcp = {"proto": Proto.TCP, "port_lo": 443, "port_hi": 443}
    return [
        Rule(d, host="many.test", id=1, created=NOW),
        Rule(a, host="four.test", id=2, created=NOW, **tcp),  # type: ignore[arg-type]
        Rule(a, host="three.test", id=3, created=NOW, **tcp),  # type: ignore[arg-type]
        Rule(a, host="a.shared.test", id=4, created=NOW, **tcp),  # type: ignore[arg-type]
        Rule(a, host="b.shared.test", id=5, created=NOW, **tcp),  # type: ignore[arg-type]
        Rule(a, host="*.long.test", id=6, created=NOW, port_lo=8000, port_hi=8100),
        Rule(a, host="both.test", cidr="192.0.2.77", id=7, created=NOW, **tcp),  # type: ignore[arg-type]
        Rule(a, cidr="192.0.2.88", expires_at=NOW + 10, id=8, created=NOW),
        Rule(a, cidr="192.0.2.89", expires_at=NOW - 10, id=9, created=NOW),
        Rule(a, host="ping.test", proto=Proto.ICMP, id=10, created=NOW),
        Rule(d, cidr="2001:db8:dead::/48", proto=Proto.UDP, port_lo=1, port_hi=1024, id=11,
             created=NOW),
        Rule(a, cidr="2001:db8::9", id=12, created=NOW, **tcp),  # type: ignore[arg-type]
        Rule(a, host="sixteen.test", proto=Proto.TCP, port_lo=7000, port_hi=7015, id=13,
             created=NOW),  # as wide as harden-runner lists port by port
        Rule(a, host="seventeen.test", proto=Proto.TCP, port_lo=7000, port_hi=7016, id=14,
             created=NOW),
        Rule(a, host="udp.test", proto=Proto.UDP, port_lo=5353, port_hi=5353, id=15, created=NOW),
        Rule(a, host="noted.test", priority=1, note="ci cache", id=16, created=NOW, **tcp),  # type: ignore[arg-type]
        Rule(a, cidr="192.0.2.63", proto=Proto.TCP, id=17, created=NOW),  # every tcp port
    ]  # fmt: skip


def edge_resolutions() -> dict[str, list[str]]:
    long = {f"{'x' * 40}{i}.long.test": ["198.51.100.50"] for i in range(8)}
    return {
        "many.test": [f"203.0.113.{i}" for i in range(1, 6)]
        + [f"2001:db8::{i}" for i in range(1, 5)],
        "four.test": [f"192.0.2.{i}" for i in range(10, 14)],
        "three.test": [f"192.0.2.{i}" for i in range(20, 23)],
        "a.shared.test": ["192.0.2.30"],
        "b.shared.test": ["192.0.2.30"],
        "ping.test": ["192.0.2.40", "2001:db8::40"],
        "sixteen.test": ["192.0.2.60"],
        "seventeen.test": ["192.0.2.61"],
        "udp.test": ["192.0.2.62"],
        "noted.test": ["192.0.2.64"],
        **long,
    }


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_the_edge_rules_give_the_reviewed_output(fmt: str) -> None:
    opts = ExportOptions(resolvers=["192.0.2.53"], now=NOW)
    got = render(export(edge_rules(), edge_resolutions(), fmt, opts))
    path = GOLDEN / f"{fmt}-edges.txt"
    if os.environ.get("CODERUN_UPDATE_GOLDEN") == "1":
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_no_rules_give_the_reviewed_empty_document(fmt: str) -> None:
    got = render(export([], {}, fmt, ExportOptions(now=NOW)))
    path = GOLDEN / f"{fmt}-empty.txt"
    if os.environ.get("CODERUN_UPDATE_GOLDEN") == "1":
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")
