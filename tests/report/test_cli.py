"""``coderun report``, ``coderun baseline`` and ``coderun run``'s report options, on a
data dir made by hand (the e2e tests run them on real sessions)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sandbox.cli import main
from sandbox.cli.run import run_defaults
from sandbox.cli.run_outputs import RunOutputs
from snitch.review.report import ReportFormat
from snitch.review.report.baseline import NEW_ENDPOINT_STATUS
from snitch.review.report.jsonout import schema

from .samples import T0, sample_entries


def write_session(home: Path, sid: str, entries: list, end: float | None = T0 + 20,  # type: ignore[type-arg]
                  state: str = "") -> Path:  # fmt: skip
    folder = home / "sessions" / sid
    folder.mkdir(parents=True)
    rec = {"id": sid, "command": ["sh", "build.sh"], "image": "bash", "mode": "enforce",
           "start": T0, "end": end, "exit": 0}  # fmt: skip
    (folder / "session.json").write_text(json.dumps(rec))
    (folder / "flows.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in entries))
    if state:
        (folder / "gateway.json").write_text(json.dumps({"state": state}))
    return folder


@pytest.fixture()
def home(home: Path) -> Path:
    write_session(home, "aaaa1111", sample_entries())
    write_session(home, "bbbb2222", sample_entries()[:3])
    write_session(home, "cccc3333", [], end=None, state="ready")
    return home


def cli(*args: str, status: int = 0) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == status, result.output
    return result.stdout


def test_report_json_to_stdout_and_file(home: Path, tmp_path: Path) -> None:
    import jsonschema

    doc = json.loads(cli("report", "aaaa", "--format", "json"))
    jsonschema.validate(doc, schema())
    assert doc["session"]["id"] == "aaaa1111"
    out = tmp_path / "r.sarif"
    cli("report", "aaaa1111", "-o", str(out))
    assert json.loads(out.read_text())["version"] == "2.1.0"
    assert cli("report", "aaaa1111").startswith("## coderun report")  # markdown by default
    sarif = json.loads(cli("report", "aaaa1111", "--format", "sarif", "--sarif-location", "p.toml"))
    place = sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert place["artifactLocation"]["uri"] == "p.toml"


def test_report_refuses_a_running_or_unknown_session(home: Path) -> None:
    assert "still running" in CliRunner().invoke(main, ["report", "cccc3333"]).output
    cli("report", "cccc3333", status=1)
    cli("report", "nope", status=1)
    cli("report", "aaaa1111", "-o", "r.txt", status=2)


def test_baseline_save_and_diff(home: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    cli("baseline", "save", "bbbb2222", str(base))
    saved = json.loads(base.read_text())
    assert {"name": "api.example.test", "port": 443, "proto": "tcp"} in saved["endpoints"]
    text = cli("baseline", "diff", str(base), "aaaa1111")
    assert "+ 203.0.113.5:22/tcp" in text.splitlines()
    assert not [line for line in text.splitlines() if line.startswith("-")]
    cli("baseline", "diff", str(base), "aaaa1111", "--fail-on-new", status=NEW_ENDPOINT_STATUS)
    cli("baseline", "diff", "aaaa1111", str(base), "--fail-on-new")  # only gone: fine
    doc = json.loads(cli("baseline", "diff", "aaaa1111", str(base), "--json"))
    assert doc["new"] == [] and doc["gone"]
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    cli("baseline", "diff", str(bad), "aaaa1111", status=2)


def test_report_marks_what_a_baseline_lacks(home: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    cli("baseline", "save", "bbbb2222", str(base))
    doc = json.loads(cli("report", "aaaa1111", "--format", "json", "--baseline", str(base)))
    assert {"name": "203.0.113.5", "port": 22, "proto": "tcp"} in doc["baseline"]["new"]


def options(**kw: object) -> dict[str, object]:
    return {"report": None, "report_format": None, "baseline": None, "fail_on_new": False, **kw}


def test_run_options_are_checked_before_the_run(tmp_path: Path) -> None:
    with pytest.raises(click.UsageError, match="needs --baseline"):
        RunOutputs.take(options(fail_on_new=True))
    with pytest.raises(click.UsageError, match="needs --report"):
        RunOutputs.take(options(report_format="json"))
    with pytest.raises(click.BadParameter, match="report format"):
        RunOutputs.take(options(report=tmp_path / "r.txt"))
    with pytest.raises(click.BadParameter, match="no folder"):
        RunOutputs.take(options(report=tmp_path / "none" / "r.md"))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(click.BadParameter, match="not a coderun baseline"):
        RunOutputs.take(options(baseline=bad))
    opts = options(report=tmp_path / "r.txt", report_format="sarif", other=1)
    taken = RunOutputs.take(opts)
    assert taken.fmt is ReportFormat.SARIF and opts == {"other": 1}  # the rest is the run's


def test_run_defaults_leave_the_report_options_out() -> None:
    assert not {"report", "report_format", "baseline", "fail_on_new"} & set(run_defaults())


class _Ended:
    def __init__(self, folder: Path) -> None:
        self.dir = folder


def test_after_the_run_the_report_and_the_exit_status(home: Path, tmp_path: Path) -> None:
    folder = home / "sessions" / "aaaa1111"
    base = tmp_path / "base.json"
    cli("baseline", "save", "aaaa1111", str(base))
    out = tmp_path / "r.json"
    same = RunOutputs.take(options(report=out, baseline=base, fail_on_new=True))
    assert same.after([_Ended(folder)], 7) == 7  # type: ignore[list-item]
    assert json.loads(out.read_text())["baseline"]["new"] == []
    base.write_text(json.dumps({"coderun_baseline": 1, "endpoints": [
        {"name": "api.example.test", "port": 443, "proto": "tcp"}]}))  # fmt: skip
    strict = RunOutputs.take(options(report=out, baseline=base, fail_on_new=True))
    assert strict.after([_Ended(folder)], 0) == NEW_ENDPOINT_STATUS  # type: ignore[list-item]
    lenient = RunOutputs.take(options(baseline=base))
    assert lenient.after([_Ended(folder)], 0) == 0  # type: ignore[list-item]
    assert strict.after([], 125) == 125  # the session never started: its own status
