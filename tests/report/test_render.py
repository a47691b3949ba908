"""The three renderers: JSON valid against the shipped schema, SARIF against the official
SARIF 2.1.0 schema (vendored here), Markdown inert whatever the sandbox named."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from snitch.review.report import ReportFormat, format_for, render
from snitch.review.report.baseline import Baseline, mark_new
from snitch.review.report.build import build_report, session_info
from snitch.review.report.jsonout import schema
from snitch.review.report.markdown import MAX_ROWS, code
from snitch.review.report.model import EndpointKey, Report

from .samples import sample_entries, sample_record

SARIF_SCHEMA = Path(__file__).with_name("sarif-schema-2.1.0.json")


def report(baseline: bool = False) -> Report:
    r = build_report(sample_entries(), session_info(sample_record(), "s1"))
    if baseline:
        mark_new(r, Baseline("base.json", frozenset({EndpointKey("api.example.test", 443, "tcp")})))
    return r


def errors(validator: Any, doc: Any) -> list[str]:
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]


@functools.cache
def report_validator() -> jsonschema.Draft202012Validator:
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(
        s, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@functools.cache
def sarif_validator() -> jsonschema.Draft4Validator:
    s = json.loads(SARIF_SCHEMA.read_text())
    jsonschema.Draft4Validator.check_schema(s)
    return jsonschema.Draft4Validator(s, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("baseline", [False, True])
def test_json_validates_against_the_shipped_schema(baseline: bool) -> None:
    doc = json.loads(render(report(baseline), ReportFormat.JSON))
    assert errors(report_validator(), doc) == []
    assert doc["summary"]["endpoints"] == len(doc["endpoints"])
    assert (doc["baseline"] is None) is not baseline


def test_the_schema_refuses_a_wrong_report() -> None:
    doc = json.loads(render(report(), ReportFormat.JSON))
    doc["endpoints"][0]["port"] = "443"
    del doc["denied"]
    assert len(errors(report_validator(), doc)) == 2


def test_json_of_an_empty_report_validates() -> None:
    r = build_report([], session_info(None, "s9"))
    assert errors(report_validator(), json.loads(render(r, ReportFormat.JSON))) == []


def test_json_has_no_control_characters() -> None:
    text = render(report(), ReportFormat.JSON)
    values = json.loads(text)

    def strings(x: Any) -> list[str]:
        if isinstance(x, str):
            return [x]
        if isinstance(x, dict):
            return [s for k, v in x.items() for s in (k, *strings(v))]
        if isinstance(x, list):
            return [s for v in x for s in strings(v)]
        return []

    assert all(s.isprintable() for s in strings(values))


@pytest.mark.parametrize("baseline", [False, True])
def test_sarif_validates_against_sarif_2_1_0(baseline: bool) -> None:
    doc = json.loads(render(report(baseline), ReportFormat.SARIF))
    assert errors(sarif_validator(), doc) == []
    run = doc["runs"][0]
    rules = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    for result in run["results"]:
        assert rules[result["ruleIndex"]] == result["ruleId"]


def test_sarif_results_are_the_denied_and_with_a_baseline_the_new() -> None:
    plain = json.loads(render(report(), ReportFormat.SARIF))["runs"][0]["results"]
    assert {r["level"] for r in plain} == {"error"}
    assert {r["ruleId"] for r in plain} >= {"no-rule", "deny evil.example.test/any"}
    assert len(plain) == len(report().denied) + 1  # and the denied file open
    (secret,) = [r for r in plain if r["ruleId"] == "deny-file ~/.ssh/*"]
    where = secret["locations"][0]["logicalLocations"][0]["name"]
    assert where == "/home/coderun/.ssh/id_rsa"
    based = json.loads(render(report(True), ReportFormat.SARIF))["runs"][0]["results"]
    warnings = [r for r in based if r["level"] == "warning"]
    names = {r["locations"][0]["logicalLocations"][0]["name"] for r in warnings}
    assert "192.0.2.9:123/udp" in names and "api.example.test:443/tcp" not in names


def test_the_sarif_schema_refuses_a_wrong_document() -> None:
    doc = json.loads(render(report(), ReportFormat.SARIF))
    doc["runs"][0]["results"][0]["level"] = "fatal"
    assert errors(sarif_validator(), doc)


def test_markdown_tables_keep_their_columns_whatever_the_names() -> None:
    md = render(report(True), ReportFormat.MARKDOWN)
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    header = rows[0].count(" | ")
    for line in rows:
        if line.startswith("| path"):
            break
        unescaped = re.sub(r"\\\|", "", line)
        assert unescaped.count("|") == header + 2, line


def test_markdown_is_inert() -> None:
    md = render(report(), ReportFormat.MARKDOWN)
    assert all(ch.isprintable() or ch == "\n" for ch in md)
    assert "\u202e" not in md
    for line in md.splitlines():
        # every hostile piece sits in a code span: outside them no tag, link or image
        outside = re.sub(r"(`+)(?:(?!\1).)*?\1", "", line)
        assert "<" not in outside and "](" not in outside, line
    assert "(xn--" in md and "[IDN]" in md  # the look-alike name shows its other form


@pytest.mark.parametrize("value", ["a`b", "``", "`x", "x|y", " a ", "<b>", "a\\x1bb"])
def test_code_spans_hold_their_value(value: str) -> None:
    span = code(value)
    fence = re.match(r"`+", span)
    assert fence is not None
    inner = span[len(fence.group()) : -len(fence.group())]
    assert fence.group() not in inner
    assert inner.strip(" ").replace("\\|", "|") == value.strip(" ") or value == " a "


def test_markdown_caps_a_table() -> None:
    from snitch.core.logentry import EntryKind, LogEntry

    entries = [LogEntry(EntryKind.FLOW, "s", 1.0 + i, "tcp", "10.0.0.2", 1000 + i,
                        f"192.0.2.{i % 250}", 1 + i, verdict="deny")
               for i in range(MAX_ROWS + 5)]  # fmt: skip
    md = render(build_report(entries, session_info(None, "s")), ReportFormat.MARKDOWN)
    assert "and 5 more rows" in md


@pytest.mark.parametrize(("name", "fmt", "want"), [
    ("r.json", None, ReportFormat.JSON), ("r.md", None, ReportFormat.MARKDOWN),
    ("r.SARIF", None, ReportFormat.SARIF), ("r.txt", "json", ReportFormat.JSON),
])  # fmt: skip
def test_format_from_the_suffix(name: str, fmt: str | None, want: ReportFormat) -> None:
    assert format_for(Path(name), fmt) is want


def test_an_unknown_suffix_needs_a_format() -> None:
    with pytest.raises(ValueError, match="--report-format"):
        format_for(Path("r.txt"), None)


def test_the_asking_process_is_in_every_format() -> None:
    r = report()
    md = render(r, ReportFormat.MARKDOWN)
    assert "`/usr/bin/ssh ← /bin/sh`" in md
    doc = json.loads(render(r, ReportFormat.JSON))
    (ssh,) = [e for e in doc["denied"] if e["port"] == 22]
    assert ssh["process"] == {"exe": "/usr/bin/ssh", "pid": 31, "cmdline": "ssh -p 22 x",
                              "parents": ["/bin/sh"]}  # fmt: skip
    sarif = json.loads(render(r, ReportFormat.SARIF))["runs"][0]["results"]
    assert any("process /usr/bin/ssh" in x["message"]["text"] for x in sarif)


def test_sarif_results_placed_at_a_repository_file() -> None:
    doc = json.loads(render(report(), ReportFormat.SARIF, ".github/coderun policy.toml"))
    assert errors(sarif_validator(), doc) == []
    for result in doc["runs"][0]["results"]:
        place = result["locations"][0]["physicalLocation"]
        assert place["artifactLocation"]["uri"] == ".github/coderun%20policy.toml"
        assert place["region"]["startLine"] == 1
    plain = json.loads(render(report(), ReportFormat.SARIF))["runs"][0]["results"]
    assert not any("physicalLocation" in r["locations"][0] for r in plain)
