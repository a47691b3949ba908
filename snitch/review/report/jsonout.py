"""The run report as JSON, in the shape of ``report.schema.json`` (shipped beside this
module; docs/reports.md describes every field)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from snitch.review.report.model import (
    REPORT_VERSION,
    SCHEMA_ID,
    Endpoint,
    FileAccess,
    Report,
    SessionInfo,
    iso_time,
)

SCHEMA_FILE = "report.schema.json"


def schema() -> dict[str, Any]:
    """The JSON schema of the report, as shipped in the package."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _when(t: float | None) -> str | None:
    return None if t is None else iso_time(t)


def session_dict(s: SessionInfo) -> dict[str, Any]:
    return {
        "id": s.id,
        "command": list(s.command),
        "image": s.image,
        "mode": s.mode,
        "start": _when(s.start),
        "end": _when(s.end),
        "exit": s.exit,
        "error": s.error,
    }


def endpoint_dict(e: Endpoint) -> dict[str, Any]:
    return {
        "name": e.key.name,
        "port": e.key.port,
        "proto": e.key.proto,
        "addresses": list(e.addresses),
        "verdict": e.verdict,
        "rule": e.rule,
        "reason": e.reason,
        "origin": e.origin,
        "process": {
            "exe": e.process.exe,
            "pid": e.process.pid,
            "cmdline": e.process.cmdline,
            "parents": list(e.process.parents),
        },
        "connections": e.connections,
        "requests": e.requests,
        "bytes_out": e.bytes_out,
        "bytes_in": e.bytes_in,
        "first": iso_time(e.first),
        "last": iso_time(e.last),
        "new": e.new,
    }


def file_dict(f: FileAccess) -> dict[str, Any]:
    return {
        "path": f.path,
        "access": f.access,
        "verdict": f.verdict,
        "rule": f.rule,
        "opens": f.opens,
        "bytes_read": f.bytes_read,
        "bytes_written": f.bytes_written,
        "processes": list(f.processes),
        "first": iso_time(f.first),
        "last": iso_time(f.last),
    }


def report_dict(r: Report) -> dict[str, Any]:
    return {
        "$schema": SCHEMA_ID,
        "version": REPORT_VERSION,
        "session": session_dict(r.session),
        "summary": {
            "endpoints": len(r.endpoints),
            "denied": len(r.denied),
            "files": len(r.files),
            "files_denied": sum(f.verdict == "deny" for f in r.files),
            "new": len(r.new),
            "bytes_out": sum(e.bytes_out for e in r.endpoints),
            "bytes_in": sum(e.bytes_in for e in r.endpoints),
            "log_dropped": r.log_dropped,
        },
        "endpoints": [endpoint_dict(e) for e in r.endpoints],
        "denied": [endpoint_dict(e) for e in r.denied],
        "files": [file_dict(f) for f in r.files],
        "baseline": None if r.baseline is None else {
            "source": r.baseline,
            "new": [{"name": k.name, "port": k.port, "proto": k.proto} for k in r.new],
        },
    }  # fmt: skip


def render_json(r: Report) -> str:
    return json.dumps(report_dict(r), indent=2) + "\n"
