"""The shared data model: the packet path's shortcut builds the same log lines."""

from __future__ import annotations

import json

import pytest

from snitch.core.logentry import EntryKind, LogEntry, flow_log_dict
from snitch.gateway.flowlog import _ENCODE


@pytest.mark.parametrize(
    ("sport", "dport", "names", "rule_id", "rule", "reason", "session"),
    [
        (40000, 443, ("api.example.test",), 3, "allow api.example.test:443/tcp", "", "s1"),
        (0, 0, (), None, "", "no rule matched", ""),  # ICMP type 0 / a fragment: ports 0
        (5, 53, ("a.example.test", "b.example.test"), -1, "", "audit (enforce would deny)", "s"),
    ],
)
def test_flow_log_dict_is_the_log_entry_dict(
    sport: int, dport: int, names: tuple[str, ...], rule_id: int | None, rule: str,
    reason: str, session: str,
) -> None:  # fmt: skip
    fast = flow_log_dict(session, "tcp", "10.0.0.2", sport, "192.0.2.7", dport, names, "allow",
                         rule_id, rule, reason)  # fmt: skip
    entry = LogEntry(EntryKind.FLOW, session=session, time=fast["time"], proto="tcp",
                     src="10.0.0.2", sport=sport, dst="192.0.2.7", dport=dport,
                     names=list(names), verdict="allow", rule_id=rule_id, rule=rule,
                     reason=reason)  # fmt: skip
    assert fast == entry.to_dict()
    assert list(fast) == list(entry.to_dict())  # same key order: the same JSON line
    assert LogEntry.from_dict(json.loads(_ENCODE(fast))) == entry


def test_log_lines_encode_like_json_dumps() -> None:
    for payload in ({"a": 1, "b": 'x\u00e9\n"', "c": [1.5, None, True]}, {}, {"n": ["a"]}):
        assert _ENCODE(payload) == json.dumps(payload, separators=(",", ":"))
