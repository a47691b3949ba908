"""The lsrules, opensnitch, cilium and k8s exports validate against JSON schemas written
from each format's documentation (tests/export/schemas/)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from snitch.core.model import Action, Proto, Rule
from snitch.review.export import ExportOptions, export

from .samples import sample_resolutions, sample_rules

SCHEMAS = Path(__file__).parent / "schemas"


@functools.cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def check(name: str, doc: Any) -> None:
    errors = sorted(validator(name).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


RULE_SETS = {
    "sample": (sample_rules(), sample_resolutions()),
    "empty": ([], {}),
    "allow-any": ([Rule(Action.ALLOW)], {}),
    "deny-only": ([Rule(Action.DENY, cidr="192.0.2.0/24", port_lo=22, port_hi=22)], {}),
    "range": (
        [Rule(Action.ALLOW, host="x.test", port_lo=1000, port_hi=2000, proto=Proto.UDP)],
        {"x.test": ["192.0.2.5"]},
    ),
}
OPTIONS = [
    ExportOptions(),
    ExportOptions(
        name="ci-run",
        resolvers=["10.96.0.10"],
        namespace="builds",
        labels={"app.kubernetes.io/name": "runner"},
    ),  # fmt: skip
]


@pytest.mark.parametrize("case", sorted(RULE_SETS))
@pytest.mark.parametrize("opts", OPTIONS, ids=["default", "custom"])
def test_lsrules_validates(case: str, opts: ExportOptions) -> None:
    rules, seen = RULE_SETS[case]
    check("lsrules.schema.json", json.loads(export(rules, seen, "lsrules", opts).text))


@pytest.mark.parametrize("case", sorted(RULE_SETS))
def test_opensnitch_files_validate(case: str) -> None:
    rules, seen = RULE_SETS[case]
    result = export(rules, seen, "opensnitch")
    docs = json.loads(result.text)
    assert len(docs) == len(result.files)
    for fname, text in result.files.items():
        doc = json.loads(text)
        assert fname == f"{doc['name']}.json"
        check("opensnitch-rule.schema.json", doc)
    for doc in docs:
        check("opensnitch-rule.schema.json", doc)


@pytest.mark.parametrize("case", sorted(RULE_SETS))
@pytest.mark.parametrize("opts", OPTIONS, ids=["default", "custom"])
def test_cilium_validates(case: str, opts: ExportOptions) -> None:
    rules, seen = RULE_SETS[case]
    doc = yaml.safe_load(export(rules, seen, "cilium", opts).text)
    check("cilium-network-policy.schema.json", doc)


@pytest.mark.parametrize("case", sorted(RULE_SETS))
@pytest.mark.parametrize("opts", OPTIONS, ids=["default", "custom"])
def test_k8s_validates(case: str, opts: ExportOptions) -> None:
    rules, seen = RULE_SETS[case]
    doc = yaml.safe_load(export(rules, seen, "k8s", opts).text)
    check("k8s-network-policy.schema.json", doc)


def test_schemas_reject_wrong_documents() -> None:
    """The schemas are not vacuous: typical mistakes fail."""
    bad_ls = {"name": "x", "rules": [{"action": "allow", "remote-hosts": "a.test"}]}
    assert list(validator("lsrules.schema.json").iter_errors(bad_ls))  # no process
    both = {"action": "allow", "process": "any", "remote": "any", "remote-hosts": "a"}
    assert list(validator("lsrules.schema.json").iter_errors({"name": "x", "rules": [both]}))
    os_doc = json.loads(export(sample_rules(), {}, "opensnitch").text)[0]
    os_doc["operator"]["type"] = "list"
    os_doc["operator"]["list"] = []
    assert list(validator("opensnitch-rule.schema.json").iter_errors(os_doc))
    cil = yaml.safe_load(export(sample_rules(), sample_resolutions(), "cilium").text)
    cil["spec"]["egress"][1]["toCIDRSet"] = [{"cidr": "192.0.2.0/24"}]  # beside toFQDNs
    mixed = [e for e in cil["spec"]["egress"] if "toFQDNs" in e]
    mixed[0]["toEndpoints"] = [{}]
    assert list(validator("cilium-network-policy.schema.json").iter_errors(cil))
    k8s = yaml.safe_load(export(sample_rules(), sample_resolutions(), "k8s").text)
    k8s["spec"]["egress"][0]["ports"][0]["protocol"] = "ICMP"
    assert list(validator("k8s-network-policy.schema.json").iter_errors(k8s))
