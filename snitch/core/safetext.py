"""Text the sandbox controls, made safe to show a person.

Every name the sandbox looks up, every header and URL it sends and every byte it prints
is hostile: it may carry terminal escape sequences (a new window title, a cleared
screen, an OSC 52 clipboard write), bidi overrides that reorder what is read, zero-width
characters that hide a difference, or look-alike letters. Everything that reaches a
terminal, a markup renderer or a prompt goes through one of these functions first.

- ``safe(s)``: one line; every control (C0, C1, DEL), bidi, zero-width and other
  invisible format character, and every line break, is shown as a visible escape
  (``\\x1b``, ``\\u202e``); a backslash itself is shown as ``\\\\`` so an escape can't be
  faked.
- ``safe_block(s)``: the same, but newlines and tabs stay (a pane of program output).
- ``safe_name(name)``: a host name: ``safe`` plus, for a name that is not plain ASCII
  (or holds ``xn--`` labels), its other form beside it and a visible mark, so
  ``pаypal.example.test`` (a Cyrillic ``а``) never reads as the ASCII name.
- ``elide_name(name, width)``: a long name cut in the middle, never at its end: the
  registrable domain (the last labels) always stays visible.

JSON and CSV outputs do not use these: they stay exact (their encoders keep them
valid); only human-readable text is escaped.
"""

from __future__ import annotations

import unicodedata

IDN_MARK = "[IDN]"  # shown after a name that is not plain ASCII
ELLIPSIS = "…"

# Invisible or reordering characters that are not in category Cc but must never be
# shown raw: bidi embeddings/overrides/isolates and marks, zero-width characters,
# word joiner, BOM, line/paragraph separators, interlinear annotations, soft hyphen.
_ALWAYS_ESCAPED = frozenset(
    "\u00ad\u061c\u115f\u1160\u17b4\u17b5\u180e"
    "\u200b\u200c\u200d\u200e\u200f"
    "\u2028\u2029\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064"
    "\u2066\u2067\u2068\u2069\u206a\u206b\u206c\u206d\u206e\u206f"
    "\u3164\ufeff\uffa0\ufff9\ufffa\ufffb"
)
# Zs: every space but the ASCII one (a no-break or wide space hides a difference too).
_ESCAPE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _needs_escape(ch: str) -> bool:
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return True
    if code < 0x7F:
        return False
    return ch in _ALWAYS_ESCAPED or unicodedata.category(ch) in _ESCAPE_CATEGORIES


def safe(text: object, keep: str = "") -> str:
    """``text`` as one inert line: controls and invisible characters escaped visibly.

    ``keep``: characters left as they are (``safe_block`` keeps ``\\n`` and ``\\t``).
    """
    s = text if isinstance(text, str) else str(text)
    if s.isascii() and s.isprintable() and "\\" not in s:
        return s  # the common case, at C speed
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch in keep:
            out.append(ch)
        elif _needs_escape(ch):
            out.append(_escape_char(ch))
        else:
            out.append(ch)
    return "".join(out)


def safe_block(text: str) -> str:
    """Several lines of untrusted output: newlines and tabs stay, everything else that
    a terminal would act on is shown escaped (``\\r`` too: it would overwrite a line)."""
    return safe(text, keep="\n\t")


def _to_ascii(name: str) -> str | None:
    labels = []
    for label in name.split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append("xn--" + label.encode("punycode").decode("ascii"))
        except UnicodeError:
            return None
    return ".".join(labels)


def _to_unicode(name: str) -> str | None:
    labels = []
    for label in name.split("."):
        if label.lower().startswith("xn--"):
            try:
                labels.append(label[4:].encode("ascii").decode("punycode"))
            except UnicodeError:
                return None
        else:
            labels.append(label)
    return ".".join(labels)


def is_plain_name(name: str) -> bool:
    """ASCII letters, digits, ``-``, ``_``, ``.`` and ``*`` only, no ``xn--`` label."""
    return (
        name.isascii()
        and all(ch.isalnum() or ch in "-_.*" for ch in name)
        and "xn--" not in name.lower()
    )


def safe_name(name: object) -> str:
    """A host name for a person: escaped, and an internationalised name marked with its
    other form beside it (``pé.test (xn--p-9fa.test) [IDN]``)."""
    s = name if isinstance(name, str) else str(name)
    if is_plain_name(s):
        return s
    shown = safe(s)
    if not s.isascii():
        other = _to_ascii(s)
    elif "xn--" in s.lower():
        other = _to_unicode(s)
    else:
        return shown  # ASCII with odd characters: escaped, nothing to pair it with
    if other is None or other == s:
        return f"{shown} {IDN_MARK}"
    return f"{shown} ({safe(other)}) {IDN_MARK}"


def elide_name(name: str, width: int) -> str:
    """``name`` (already made safe) in at most ``width`` characters, cut in the middle:
    the end of a name (its registrable domain, the part that says whose it is) is never
    cut; what is left of the width goes to its start."""
    if len(name) <= width:
        return name
    if width <= 1:
        return ELLIPSIS[:width]
    labels = name.split(".")
    tail = ".".join(labels[-2:]) if len(labels) >= 2 else name
    if len(tail) + 1 >= width:
        return ELLIPSIS + tail[-(width - 1) :]
    head = width - len(tail) - 1
    return name[:head] + ELLIPSIS + tail


class TerminalFilter:
    """The sandbox's output for a terminal it was given (``coderun run -t``), as a stream.

    An interactive program needs the terminal's control sequences (cursor moves, colours,
    line editing): those pass. What reaches *beyond* the program's screen is dropped:
    string sequences (OSC: window title, clipboard writes (OSC 52), hyperlinks, colour
    palette; DCS: tmux passthrough to the outer terminal, terminal settings; SOS, PM,
    APC), whole or split across chunks. An unterminated one ends after ``limit`` bytes
    (dropped), so holding one open cannot swallow the rest of the output.
    """

    _STRING_STARTS = frozenset(b"]PX^_")  # ESC ] OSC, P DCS, X SOS, ^ PM, _ APC

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._state = 0  # 0 text, 1 after ESC, 2 inside a string, 3 ESC inside a string
        self._osc = False  # an OSC also ends at BEL; the others only at ESC \
        self._dropped = 0  # bytes of the current string sequence

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            if self._state == 0:
                if byte == 0x1B:
                    self._state = 1
                else:
                    out.append(byte)
            elif self._state == 1:
                if byte in self._STRING_STARTS:
                    self._state, self._dropped, self._osc = 2, 0, byte == 0x5D
                elif byte == 0x1B:
                    out.append(0x1B)  # the first ESC alone; the second starts anew
                else:
                    out += bytes((0x1B, byte))
                    self._state = 0
            else:
                self._dropped += 1
                ended = (self._osc and byte == 0x07) or (self._state == 3 and byte == 0x5C)
                if ended or self._dropped >= self.limit:
                    self._state = 0
                else:
                    self._state = 3 if byte == 0x1B else 2
        return bytes(out)
