"""Baseline files: saved, read back, refused when malformed, compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snitch.review.report.baseline import (
    Baseline,
    BaselineError,
    diff,
    dump_baseline,
    from_report,
    load_baseline,
    mark_new,
    parse_baseline,
)
from snitch.review.report.build import build_report, session_info
from snitch.review.report.model import EndpointKey

from .samples import sample_entries, sample_record

A = EndpointKey("api.example.test", 443, "tcp")
B = EndpointKey("b.example.test", 53, "dns")
C = EndpointKey("192.0.2.9", 123, "udp")


def test_a_saved_baseline_reads_back(tmp_path: Path) -> None:
    report = build_report(sample_entries(), session_info(sample_record(), "s1"))
    saved = from_report(report, "session s1")
    path = tmp_path / "base.json"
    path.write_text(dump_baseline(saved))
    loaded = load_baseline(path)
    assert loaded.endpoints == saved.endpoints == frozenset(report.endpoint_keys())
    assert loaded.source == str(path)
    doc = json.loads(path.read_text())
    assert doc["coderun_baseline"] == 1 and doc["source"] == "session s1"
    assert doc["endpoints"] == sorted(doc["endpoints"], key=lambda d: (d["name"], d["port"]))


@pytest.mark.parametrize(("text", "says"), [
    ("{", "not JSON"),
    ("[]", "not a coderun baseline"),
    ('{"coderun_baseline": 9, "endpoints": []}', "version 9"),
    ('{"coderun_baseline": 1, "endpoints": {}}', "endpoints must be a list"),
    ('{"coderun_baseline": 1, "endpoints": [1]}', "endpoint 1: an endpoint is an object"),
    ('{"coderun_baseline": 1, "endpoints": [{"name": "", "port": 1, "proto": "tcp"}]}', "name"),
    ('{"coderun_baseline": 1, "endpoints": [{"name": "a", "port": 70000, "proto": "tcp"}]}',
     "port"),
    ('{"coderun_baseline": 1, "endpoints": [{"name": "a", "port": true, "proto": "tcp"}]}',
     "port"),
    ('{"coderun_baseline": 1, "endpoints": [{"name": "a", "port": 1, "proto": "sctp"}]}',
     "proto"),
])  # fmt: skip
def test_a_malformed_baseline_is_refused_with_its_reason(text: str, says: str) -> None:
    with pytest.raises(BaselineError, match=says) as info:
        parse_baseline(text, "base.json")
    assert str(info.value).startswith("base.json")


def test_a_missing_file_is_a_baseline_error(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="cannot read"):
        load_baseline(tmp_path / "none.json")


def test_diff_says_what_is_new_and_what_is_gone() -> None:
    d = diff(Baseline("a", frozenset({A, B})), Baseline("b", frozenset({A, C})))
    assert (d.new, d.gone) == ([C], [B])


def test_mark_new_flags_the_endpoints_not_in_the_baseline() -> None:
    report = build_report(sample_entries(), session_info(sample_record(), "s1"))
    new = mark_new(report, Baseline("base.json", frozenset({A})))
    assert A not in new and C in new and new == sorted(new)
    assert report.baseline == "base.json"
    assert [e.new for e in report.endpoints if e.key == A] == [False]
    assert all(e.new for e in report.denied)  # refused attempts count as new too
    assert mark_new(report, from_report(report, "x")) == []
