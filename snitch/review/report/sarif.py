"""The run report as SARIF 2.1.0 (for code-scanning tools).

One run; its results are the endpoints a reader should look at:

- every **denied** attempt: level ``error``, ruleId the coderun rule that refused it (its
  description, e.g. ``deny evil.example.test/any``) or ``no-rule`` (enforce mode refused
  what no rule allowed);
- with a baseline, every **new** endpoint that was let through: level ``warning``, ruleId
  the rule that allowed it or ``no-rule``;
- every **denied file open** of a ``--share``: level ``error``, ruleId the file rule or
  ``no-rule``, located at the path.

An endpoint is a logical location (``name:port/proto``, kind ``resource``) and its
partial fingerprint, so a code-scanning service tracks the same endpoint across runs.
GitHub's code scanning shows only results placed in a file of the repository: with
``artifact`` (``coderun report --sarif-location FILE``, e.g. the policy file) every
result is also placed at that file's first line.
Texts are the report's safe forms.
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any, Final
from urllib.parse import quote

from snitch.review.report.model import NO_RULE, Endpoint, FileAccess, Report, iso_time

SARIF_VERSION: Final = "2.1.0"
SARIF_SCHEMA: Final = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
FINGERPRINT: Final = "coderunEndpoint/v1"
FILE_FINGERPRINT: Final = "coderunFile/v1"


def _version() -> str:
    try:
        return importlib.metadata.version("coderun")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _rule_text(rule_id: str) -> str:
    if rule_id == NO_RULE:
        return "No rule matched: enforce mode refuses what no rule allows."
    return f"coderun rule: {rule_id}"


def _message(e: Endpoint, denied: bool, baseline: str | None) -> str:
    what = "DNS lookup of" if e.key.proto == "dns" else f"{e.key.proto} connection to"
    head = (f"Denied: {what} {e.key}" if denied
            else f"New endpoint (not in baseline {baseline}): {what} {e.key}")  # fmt: skip
    parts = [head, f"{e.connections} time(s)"]
    if e.addresses:
        parts.append(f"address {', '.join(e.addresses)}")
    parts.append(f"rule {e.rule}" if e.rule else "no rule matched")
    if e.process.exe:
        parts.append(f"process {e.process.exe}")
    return "; ".join(parts) + "."


def _location(name: str, artifact: str | None) -> list[dict[str, Any]]:
    """The endpoint (or file) as a logical location; with ``artifact`` (a file of the
    repository, e.g. the policy file) also a physical one, which code scanning needs."""
    where: dict[str, Any] = {"logicalLocations": [{"name": name, "kind": "resource"}]}
    if artifact:
        where["physicalLocation"] = {
            "artifactLocation": {"uri": quote(artifact.lstrip("/"))},
            "region": {"startLine": 1},
        }
    return [where]


def _result(e: Endpoint, index: int, denied: bool, baseline: str | None,
            artifact: str | None) -> dict[str, Any]:  # fmt: skip
    return {
        "ruleId": e.rule_id,
        "ruleIndex": index,
        "kind": "fail",
        "level": "error" if denied else "warning",
        "message": {"text": _message(e, denied, baseline)},
        "locations": _location(str(e.key), artifact),
        "partialFingerprints": {FINGERPRINT: str(e.key)},
        "properties": {
            "verdict": e.verdict,
            "new": e.new,
            "addresses": list(e.addresses),
            "exe": e.process.exe,
            "connections": e.connections,
            "firstSeen": iso_time(e.first),
            "lastSeen": iso_time(e.last),
        },
    }


def _file_result(f: FileAccess, index: int, artifact: str | None) -> dict[str, Any]:
    text = f"Denied: {f.access} of {f.path}; {f.opens} time(s); " + (
        f"rule {f.rule}." if f.rule else "no rule matched."
    )
    return {
        "ruleId": f.rule_id,
        "ruleIndex": index,
        "kind": "fail",
        "level": "error",
        "message": {"text": text},
        "locations": _location(f.path, artifact),
        "partialFingerprints": {FILE_FINGERPRINT: f"{f.access}:{f.path}"},
        "properties": {"access": f.access, "processes": list(f.processes),
                       "firstSeen": iso_time(f.first), "lastSeen": iso_time(f.last)},
    }  # fmt: skip


def sarif_dict(r: Report, artifact: str | None = None) -> dict[str, Any]:
    """The SARIF log; ``artifact``: the repository file every result is placed at."""
    flagged = [(e, True) for e in r.denied] + [(e, False) for e in r.endpoints if e.new]
    files = [f for f in r.files if f.verdict == "deny"]
    rule_ids: list[str] = []
    for rid in [e.rule_id for e, _ in flagged] + [f.rule_id for f in files]:
        if rid not in rule_ids:
            rule_ids.append(rid)
    rules = [
        {"id": rid, "shortDescription": {"text": _rule_text(rid)},
         "defaultConfiguration": {"level": "error"}}
        for rid in rule_ids
    ]  # fmt: skip
    results = [_result(e, rule_ids.index(e.rule_id), denied, r.baseline, artifact)
               for e, denied in flagged]  # fmt: skip
    results += [_file_result(f, rule_ids.index(f.rule_id), artifact) for f in files]
    s = r.session
    invocation: dict[str, Any] = {
        "executionSuccessful": s.error is None,
        "commandLine": " ".join(s.command),
    }
    if s.exit is not None:
        invocation["exitCode"] = s.exit
    if s.start is not None:
        invocation["startTimeUtc"] = iso_time(s.start)
    if s.end is not None:
        invocation["endTimeUtc"] = iso_time(s.end)
    if s.error is not None:
        invocation["toolExecutionNotifications"] = [{"message": {"text": s.error}}]
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {"name": "coderun", "version": _version(), "rules": rules}},
            "automationDetails": {"id": f"coderun/{s.id}"},
            "invocations": [invocation],
            "results": results,
        }],
    }  # fmt: skip


def render_sarif(r: Report, artifact: str | None = None) -> str:
    return json.dumps(sarif_dict(r, artifact), indent=2) + "\n"
