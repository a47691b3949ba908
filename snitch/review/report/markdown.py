"""The run report as GitHub-flavoured Markdown (for ``$GITHUB_STEP_SUMMARY``).

Every value the sandbox controls (names, addresses, rules' text, paths, command lines)
is already in its safe form (no control, bidi or invisible character) and is written
here as a code span: inside one no Markdown or HTML acts (no link, image, emphasis,
tag, autolink), its fence is longer than any run of backticks in the value, and a ``|``
is written ``\\|`` so it cannot end a table cell. Host names also show a look-alike
(IDN) name's other form, marked (``safetext.safe_name``).
"""

from __future__ import annotations

import re

from snitch.core.safetext import safe, safe_name
from snitch.review.report.model import Endpoint, FileAccess, Report, iso_time

MAX_ROWS = 200  # per table: a step summary is capped (1 MiB); the JSON report has every row
_TICKS = re.compile("`+")


def _inert(value: str) -> str:
    """Safe text stays as it is (a backslash is not doubled again); anything a reader's
    terminal or browser would act on that is still raw is escaped."""
    return "\\".join(safe(part) for part in value.split("\\"))


def shown_name(name: str) -> str:
    """A host name (already safe) with a look-alike's other form and mark."""
    return name if "\\" in name else safe_name(name)


def code(value: str, cell: bool = True) -> str:
    """``value`` (already safe: one line) as an inert code span (for a table ``cell``:
    its pipes escaped)."""
    if not value:
        return ""
    text = _inert(value)
    if cell:
        text = text.replace("|", "\\|")
    longest = max((len(m) for m in _TICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _process(e: Endpoint) -> str:
    if not e.process.exe:
        return ""
    chain = " ← ".join([e.process.exe, *e.process.parents])
    return code(chain)


def _endpoint_row(e: Endpoint) -> str:
    cells = [
        code(shown_name(e.key.name)),
        str(e.key.port) if e.key.proto not in ("icmp",) else "",
        e.key.proto,
        code(", ".join(e.addresses)),
        e.verdict + (" **new**" if e.new else ""),
        code(e.rule) or "*no rule*",
        _process(e),
        str(e.connections),
        f"{e.bytes_out} / {e.bytes_in}",
        iso_time(e.first),
        iso_time(e.last),
    ]
    return "| " + " | ".join(cells) + " |"


ENDPOINT_HEADER = (
    "| name | port | proto | addresses | verdict | rule | process | conns | bytes out / in "
    "| first | last |\n|---|--:|---|---|---|---|---|--:|--:|---|---|"
)


def _file_row(f: FileAccess) -> str:
    cells = [code(f.path), f.access, f.verdict, code(f.rule) or "*no rule*", str(f.opens),
             str(f.bytes_read), str(f.bytes_written),
             code("; ".join(f.processes)), iso_time(f.first), iso_time(f.last)]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


FILE_HEADER = (
    "| path | access | verdict | rule | opens | bytes read | bytes written | processes | first "
    "| last |\n|---|---|---|---|--:|--:|--:|---|---|---|"
)


def _table(header: str, rows: list[str]) -> list[str]:
    out = [header, *rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        out.append(f"\n*… and {len(rows) - MAX_ROWS} more rows (the JSON report has them all)*")
    return out


def render_markdown(r: Report) -> str:
    s = r.session
    exit_text = "running" if s.end is None else ("-" if s.exit is None else str(s.exit))
    lines = [
        f"## coderun report: session {code(s.id, cell=False)}",
        "",
        f"- command: {code(' '.join(s.command), cell=False)}",
        f"- image: {code(s.image, False)} · mode: {code(s.mode, False)} · exit: {exit_text}",
        f"- endpoints contacted: **{len(r.endpoints)}** · denied attempts: **{len(r.denied)}**"
        f" · files: **{len(r.files)}** ({sum(f.verdict == 'deny' for f in r.files)} denied)",
    ]
    if s.error:
        lines.append(f"- error: {code(s.error, cell=False)}")
    if r.log_dropped:
        lines.append(f"- ⚠ the log dropped {r.log_dropped} lines: this report may miss some")
    if r.baseline is not None:
        news = ", ".join(code(str(k), False) for k in r.new[:MAX_ROWS]) or "none"
        base = code(r.baseline, False)
        lines.append(f"- baseline {base}: **{len(r.new)}** new endpoints: {news}")
    lines += ["", "### Endpoints contacted", ""]
    lines += _table(ENDPOINT_HEADER, [_endpoint_row(e) for e in r.endpoints]) if r.endpoints \
        else ["*none*"]  # fmt: skip
    lines += ["", "### Denied attempts", ""]
    lines += _table(ENDPOINT_HEADER, [_endpoint_row(e) for e in r.denied]) if r.denied \
        else ["*none*"]  # fmt: skip
    if r.files:
        lines += ["", "### Files", ""]
        lines += _table(FILE_HEADER, [_file_row(f) for f in r.files])
    return "\n".join(lines) + "\n"
