"""Issue 17: run reports and baselines on real sessions.

Three runs of one probe against the demo internet, in enforce mode with a policy:
the first writes a JSON report (valid against the shipped schema) and becomes the
baseline; the second does the same and, with ``--baseline --fail-on-new``, exits with
the command's status and writes Markdown; the third also tries a name the baseline has
never seen and exits 3, its SARIF (valid against SARIF 2.1.0) naming the new endpoints.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import docker
import jsonschema

from snitch.review.report.baseline import NEW_ENDPOINT_STATUS
from snitch.review.report.jsonout import schema
from tests.e2e.conftest import Result, coderun_cmd, leftovers

PROBE = Path(__file__).with_name("probe.py")
SARIF_SCHEMA = Path(__file__).resolve().parents[1] / "report" / "sarif-schema-2.1.0.json"
POLICY = """
[[rule]]
action = "allow"
host = "api.example.test"

# With an exe rule in force every new flow waits (up to 200 ms) for its process before
# its verdict, so even the probe's short flow is attributed on a loaded machine (without
# one, attribution is best effort: docs/log.md). This one decides nothing here.
[[rule]]
action = "allow"
host = "never.example.test"
exe = "/usr/bin/true"
"""


def probe(run_coderun: Callable[..., Result], tmp_path: Path, *args: str,
          steps: tuple[str, ...] = ("http:http://api.example.test/hello",)) -> Result:  # fmt: skip
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    return run_coderun("--mode", "enforce", "--policy", str(policy),
                       "-v", f"{PROBE}:/probe.py:ro", *args,
                       "--", "python3", "/probe.py", *steps)  # fmt: skip


def coderun(*args: str, status: int = 0) -> str:
    proc = subprocess.run(coderun_cmd(*args), capture_output=True, text=True, timeout=60)
    assert proc.returncode == status, proc.stderr
    return proc.stdout


def endpoints(doc: dict[str, object], key: str) -> set[str]:
    rows = doc[key]
    assert isinstance(rows, list)
    return {f"{e['name']}:{e['port']}/{e['proto']}" for e in rows}


def test_reports_in_three_formats_and_a_baseline_that_fails_on_new(
    run_coderun: Callable[..., Result], tmp_path: Path, client: docker.DockerClient
) -> None:
    # 1. JSON, valid against the schema shipped in the package; it becomes the baseline.
    first = probe(run_coderun, tmp_path, "--report", str(tmp_path / "first.json"))
    assert first.status == 0, first.stderr
    doc = json.loads((tmp_path / "first.json").read_text())
    jsonschema.Draft202012Validator(schema()).validate(doc)
    assert {"api.example.test:80/tcp", "api.example.test:53/dns"} <= endpoints(doc, "endpoints")
    (api,) = [e for e in doc["endpoints"] if e["name"] == "api.example.test" and e["port"] == 80]
    assert api["verdict"] == "allow" and api["rule"] == "allow api.example.test/any"
    assert api["bytes_in"] > 0 and api["requests"] >= 1  # the HTTP request's bytes
    # the program that made the flow (process attribution, as the log has it)
    assert api["process"]["exe"].startswith("/usr/bin/python3"), api["process"]
    assert "/probe.py" in api["process"]["cmdline"]
    assert doc["session"]["exit"] == 0 and doc["session"]["mode"] == "enforce"
    base = tmp_path / "base.json"
    coderun("baseline", "save", doc["session"]["id"], str(base))
    saved = json.loads(base.read_text())["endpoints"]
    assert {"name": "api.example.test", "port": 80, "proto": "tcp"} in saved

    # 2. The same run: nothing new, the command's status; Markdown.
    second = probe(run_coderun, tmp_path, "--baseline", str(base), "--fail-on-new",
                   "--report", str(tmp_path / "second.md"))  # fmt: skip
    assert second.status == 0, second.stderr
    md = (tmp_path / "second.md").read_text()
    assert md.startswith("## coderun report") and "### Endpoints contacted" in md
    assert "| `api.example.test` | 80 | tcp |" in md and "new endpoints: none" in md
    assert "| `/usr/bin/python3" in md  # the process column

    # 3. A name the baseline lacks (refused, too: enforce mode): exit 3; SARIF.
    third = probe(
        run_coderun,
        tmp_path,
        "--baseline",
        str(base),
        "--fail-on-new",
        "--report",
        str(tmp_path / "third.sarif"),
        steps=("http:http://api.example.test/hello", "connect:evil.example.test:80"),
    )
    assert third.status == NEW_ENDPOINT_STATUS, third.stderr
    assert "new endpoint (not in the baseline): evil.example.test:53/dns" in third.stderr
    sarif = json.loads((tmp_path / "third.sarif").read_text())
    jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text())).validate(sarif)
    results = sarif["runs"][0]["results"]
    located = {r["locations"][0]["logicalLocations"][0]["name"]: r for r in results}
    assert located["evil.example.test:53/dns"]["ruleId"] == "no-rule"
    assert located["evil.example.test:53/dns"]["level"] == "error"
    assert "api.example.test:80/tcp" not in located

    # The same session's report afterwards, and the two runs compared.
    later = json.loads(coderun("report", "--format", "json", "--baseline", str(base)))
    assert {"name": "evil.example.test", "port": 53, "proto": "dns"} in later["baseline"]["new"]
    diff = coderun("baseline", "diff", str(base), later["session"]["id"])
    assert "+ evil.example.test:53/dns" in diff.splitlines()
    assert not leftovers(client)
