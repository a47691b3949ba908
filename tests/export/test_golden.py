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

from snitch.core.model import Rule
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


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_no_rules_give_the_reviewed_empty_document(fmt: str) -> None:
    got = render(export([], {}, fmt, ExportOptions(now=NOW)))
    path = GOLDEN / f"{fmt}-empty.txt"
    if os.environ.get("CODERUN_UPDATE_GOLDEN") == "1":
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")
