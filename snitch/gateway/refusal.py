"""The in-band answer to a refused HTTP request, for the program (often an agent) that
made it: ``403``, an ``X-Coderun-Denied`` header naming the rule (or ``no rule
matched``) and a short JSON or text body that also says how to ask for it.

The request's host, path and method are sandbox text: every string that goes into the
header is printable ASCII, with anything else escaped (``\\x1b``, ``\\u202e``), never a
CR or LF, and capped in length; the body is JSON (escaped by the encoder) or one line
per field of the same neutralised text. No I/O here: mitm.py sends what this builds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from snitch.core.grammar import format_port, format_target, normalize_host
from snitch.core.model import Rule
from snitch.core.pathgrammar import request_folder

DENIED_HEADER = "X-Coderun-Denied"
NO_RULE = "no rule matched"
STATUS = 403
MAX_TEXT = 200  # characters of one neutralised field (a header line stays short)


def ascii_safe(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` as printable ASCII: controls, non-ASCII and backslashes escaped
    (``\\x0d``, ``\\u202e``, ``\\\\``); cut to ``limit`` characters with ``...``."""
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    shown = "".join(out)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def rule_words(rule: Rule) -> str:
    """A rule as the header names it: ``deny api.example.test:80/v1/ [POST]``."""
    target = format_target(rule.host, rule.cidr)
    if rule.port_lo:
        target += f":{format_port(rule.port_lo, rule.port_hi)}"
    target += rule.path_prefix or ""
    return f"{rule.action} {target}" + (f" [{rule.method}]" if rule.method else "")


def refused_by(rule: Rule | None, rule_id: int | None) -> str:
    """Why, in words: ``rule 12: deny api.example.test/v1/ [POST]`` or ``no rule matched``."""
    if rule is None:
        return NO_RULE if rule_id is None else f"rule {rule_id}"
    return f"rule {rule_id}: {rule_words(rule)}"


def host_named(host: str, rule: Rule | None, rule_id: int | None) -> str:
    """Why a request whose Host a deny rule names is refused, as logged (the peeker,
    which reads it in passing, and mitmproxy, which answers it, say the same)."""
    return ascii_safe(f"Host {host} named by {refused_by(rule, rule_id)}")


def unparsed_host(host: str, rule: Rule | None, rule_id: int | None) -> str:
    """Why bytes that are no request line this gateway reads were refused by their Host
    (a lenient server could read them as a request)."""
    return f"{host_named(host, rule, rule_id)} (in a request this gateway does not parse)"


def head_unread(size: int, packets: int | None = None) -> str:
    """Why a request head still without its SNI or Host at the reading limit was refused."""
    sent = f"{packets} packets ({size} bytes)" if packets is not None else f"{size} bytes"
    return f"request head not complete after {sent}: its name unread"


def how_to_allow(
    host: str, address: str, port: int, method: str, path: str, priority: int | None = None
) -> str:
    """The command that would allow this request: its host (the address when the host
    is not a plain name), port, method and the folder of its path; ``priority`` above
    the refusing rule's (None: no rule refused it)."""
    try:
        target = normalize_host(host) if host else address
    except ValueError:
        target = address
    if target.startswith("*") or not target:
        target = address
    words = ["coderun rules add allow", target]
    if port:
        words.append(f"--port {port}")
    words += [f"--method {method.upper()}", f"--path {request_folder(path)}"]
    if priority is not None:
        words.append(f"--priority {priority + 1}")
    return " ".join(words)


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a refused request is answered with; ``reason`` goes to the log line."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    reason: str


def wants_json(accept: str) -> bool:
    """Whether an ``Accept`` header asks for JSON (``application/json``, ``*/*+json``)."""
    return any(
        part.split(";", 1)[0].strip().lower().endswith(("/json", "+json"))
        for part in accept.split(",")
    )


def build_refusal(why: str, hint: str, method: str, url: str, accept: str = "") -> Refusal:
    """The 403 for a request refused because of ``why`` (``refused_by``'s words);
    ``hint`` is ``how_to_allow``'s command. The header carries both:
    ``X-Coderun-Denied: rule 12: deny api.example.test/v1/ [POST]; ask: coderun ...``."""
    reason = ascii_safe(why)
    ask = ascii_safe(hint, 2 * MAX_TEXT)
    fields = {
        "error": "blocked by coderun",
        "denied": reason,
        "method": ascii_safe(method, 16),
        "url": ascii_safe(url, 2 * MAX_TEXT),
        "ask": ask,
    }
    if wants_json(accept):
        body = (json.dumps(fields) + "\n").encode("ascii")
        kind = "application/json"
    else:
        lines = [f"blocked by coderun: {reason}", f"request: {fields['method']} {fields['url']}",
                 f"to allow it: {ask}"]  # fmt: skip
        body = ("\n".join(lines) + "\n").encode("ascii")
        kind = "text/plain; charset=us-ascii"
    headers = ((DENIED_HEADER, f"{reason}; ask: {ask}"), ("Content-Type", kind),
               ("Cache-Control", "no-store"))  # fmt: skip
    return Refusal(STATUS, headers, body, reason)
