"""Reading session records and logs from the data dir."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from snitch.flowlog import read_log
from snitch.model import EntryKind, LogEntry


def list_sessions(root: Path) -> list[dict[str, Any]]:
    """Every session record, oldest first, with verdict counts from its log."""
    records = []
    for folder in root.iterdir() if root.exists() else []:
        try:
            rec = json.loads((folder / "session.json").read_text())
        except (OSError, ValueError):
            continue
        counts = {"allow": 0, "deny": 0, "ask": 0}
        for entry in read_log(folder / "flows.jsonl"):
            if entry.kind in (EntryKind.FLOW, EntryKind.DNS) and entry.verdict in counts:
                counts[entry.verdict] += 1
        rec["counts"] = counts
        records.append(rec)
    return sorted(records, key=lambda r: r.get("start") or 0)


def find_session(root: Path, session: str | None) -> Path | None:
    """The folder of a session id (or unique prefix); the latest session for None."""
    if session is None:
        recs = list_sessions(root)
        return root / recs[-1]["id"] if recs else None
    matches = [p for p in root.iterdir() if p.name.startswith(session)] if root.exists() else []
    return matches[0] if len(matches) == 1 else None


def format_entry(e: LogEntry) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(e.time))
    name = ",".join(e.names)
    if e.kind is EntryKind.FLOW:
        where = f"{e.dst}:{e.dport}" if e.proto != "icmp" else e.dst
        what = f"{e.proto:4} {where:21} {name}"
    elif e.kind is EntryKind.DNS:
        what = f"dns  {e.qname} {e.qtype} -> {' '.join(e.answers) or '-'}"
    elif e.kind is EntryKind.HTTP:
        what = f"http {e.method} {e.url} {e.status} out={e.bytes_out} in={e.bytes_in}"
    else:
        return f"{stamp} ---- {e.message}"
    rule = f"  [{e.rule}]" if e.rule else (f"  ({e.reason})" if e.reason else "")
    return f"{stamp} {e.verdict:6} {what}{rule}"
