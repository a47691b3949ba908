"""File rules decide opens of shared files, not connections: every exporter leaves them
out and says so (a comment line where the format has comments, else its warnings)."""

from __future__ import annotations

import pytest

from snitch.core.model import Action, Proto, Rule
from snitch.review.export import FORMATS, ExportOptions, export

NOW = 1_700_000_000.0
GLOB = "~/.aws/secret-marker-*"
SAID = "1 file rules left out (they decide opens of shared files, not connections)"
# The formats whose text has no comment syntax: the warning goes to the result only
# (lsrules carries it in its description string, which counts as saying it).
NO_COMMENTS = frozenset({"opensnitch"})


def rules() -> list[Rule]:
    return [
        Rule(Action.ALLOW, host="api.example.test", port_lo=443, port_hi=443,
             proto=Proto.TCP, id=1),
        Rule(Action.DENY, proto=Proto.FILE, file=GLOB, access="read", exe="/usr/bin/*", id=2),
        Rule(Action.ALLOW, proto=Proto.FILE, file="**", enabled=False, id=3),
    ]  # fmt: skip


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_exporter_leaves_file_rules_out_and_says_so(fmt: str) -> None:
    opts = ExportOptions(now=NOW)
    result = export(rules(), {"api.example.test": ["198.51.100.7"]}, fmt, opts)
    text = result.text + "".join(result.files.values())
    assert GLOB not in text and "secret-marker" not in text
    assert "/usr/bin/" not in text
    assert SAID in result.warnings
    if fmt not in NO_COMMENTS:
        assert SAID in text
    # the network rule still goes out: the file rule took nothing with it
    with_file = export(rules(), {"api.example.test": ["198.51.100.7"]}, fmt, opts)
    without = export(rules()[:1], {"api.example.test": ["198.51.100.7"]}, fmt, opts)
    strip = [w for w in with_file.warnings if w != SAID]
    assert strip == without.warnings
