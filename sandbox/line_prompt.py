"""``--prompt line``: ask about held connections on the terminal, one at a time.

The sandbox shares this terminal, and it knows what a question looks like and when one
is due. So:

- its output is shown inert (``safe_block``: it cannot move the cursor, rewrite a line
  or set a title), and *held back* while a question is open: nothing it prints can
  overwrite or follow the question; it is shown after the answer (beyond ``HOLD_CHARS``
  the command waits for the answer: nothing is lost);
- the question is ours: every untrusted part escaped, on a terminal tagged in reverse
  video (which the sandbox, its escapes neutralised, cannot produce); a name the sandbox
  only claimed (an unchecked SNI) is shown as the address it is, "claims NAME
  (unverified)"; a synthetic address is never offered as a rule target;
- an answer only counts for the question on screen: lines typed before it was shown (or
  within ``SETTLE_SECONDS`` of it) are ignored, and the answer is confirmed with the
  name ("allowed once: api.example.test 443/tcp");
- "always" (``A``/``D``) shows the rule it would store and needs its target typed (the
  name, or the address), so a stray key never makes a lasting rule;
- an item decided elsewhere (the dashboard, the API, its deadline) while asked is
  withdrawn, and never asked again;
- stdin is read by a daemon thread that polls with ``select``: when the run ends the
  prompt returns at once, whatever the person is (not) typing.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import sys
import threading
import time
from typing import Any

from sandbox import paths
from sandbox.port_prompt import ask_port, new_ports
from sandbox.prompt_text import (
    answer_hint,
    answers,
    asker_text,
    lasting_target,
    options_text,
    question_text,
    rule_preview,
    same_target,
    where,
)
from sandbox.session import Session
from sandbox.stdin_lines import Line, StdinLines, flush_typeahead, stdin_fd
from sandbox.textout import rule_text, show_name, write_trusted
from snitch.core.grammar import Lifetime, Topic
from snitch.core.model import Action, DecisionRequest, Pending, Target
from snitch.core.safetext import safe, safe_block
from snitch.review.client import ApiError, GatewayClient

SETTLE_SECONDS = 0.25  # an answer this soon after its question was typed before it
HOLD_CHARS = 4 * 1024 * 1024  # output held while asking; beyond it the command waits
TAG_ON, TAG_OFF = "\x1b[7m", "\x1b[0m"  # reverse video around "coderun" (a terminal only)
TAG = "coderun"


class LinePrompt:
    """A front (sandbox/runner.py) that asks on this terminal's stdin/stdout."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self._cv = threading.Condition()
        self._asking = False
        self._held: list[tuple[str, str]] = []
        self._held_chars = 0
        self._line_open = False  # the last thing shown did not end its line
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")("replace")
                          for s in ("stdout", "stderr")}  # fmt: skip
        self._waiting: dict[str, Pending] = {}
        self._ports: list[dict[str, Any]] = []  # new listening ports to ask about
        self._ports_seen: set[str] = set()
        self._gone: set[str] = set()
        self._current: str | None = None
        self._current_pid = 0  # the process of the item being asked, once known
        self._open_question = ""  # the last question shown (again after a late line)
        self._withdrawn: asyncio.Future[str] | None = None
        self._arrived: asyncio.Event | None = None
        self._lines: asyncio.Queue[Line] | None = None
        self._stop_input = threading.Event()
        self._echo = sys.stdin is not None and sys.stdin.isatty()
        self._tag = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    # -- the command's output (called from the pump thread) ----------------------------------
    def output(self, stream: str, data: bytes) -> None:
        text = safe_block(self._decoders[stream].decode(data))
        self._show_output(stream, text)

    def _show_output(self, stream: str, text: str, wait: bool = True) -> None:
        if not text:
            return
        with self._cv:
            while wait and self._asking and self._held_chars >= HOLD_CHARS:
                if self.done.is_set():
                    break
                self._cv.wait(0.5)
            if self._asking:
                self._held.append((stream, text))
                self._held_chars += len(text)
            else:
                self._write(stream, text)

    def _write(self, stream: str, text: str) -> None:
        target = sys.stdout if stream == "stdout" else sys.stderr
        target.write(text)
        target.flush()
        self._line_open = not text.endswith("\n")

    def finished(self, status: int, error: str | None) -> None:
        for stream, decoder in self._decoders.items():  # a cut-off last character
            self._show_output(stream, safe_block(decoder.decode(b"", final=True)), wait=False)
        self.done.set()

    # -- our own lines ------------------------------------------------------------------------
    def _say(self, text: str, *, question: bool = False) -> None:
        """A line of ours (already escaped); a question stays open for the answer."""
        with self._cv:
            if self._line_open:
                sys.stdout.write("\n")
            if self._tag:
                write_trusted(TAG_ON)
                sys.stdout.write(TAG)
                write_trusted(TAG_OFF)
                sys.stdout.write(" ")
            else:
                sys.stdout.write(f"{TAG}: ")
            sys.stdout.write(text if question else text + "\n")
            sys.stdout.flush()
            self._line_open = question
            if question:
                self._open_question = text

    def _say_again(self, text: str) -> None:
        """A line of ours while a question is open: the question is shown again under it
        (the answer is typed after it)."""
        with self._cv:
            question = self._open_question if self._asking and self._line_open else ""
        self._say(text)
        if question:
            self._say(question, question=True)

    def _hold(self) -> None:
        with self._cv:
            self._asking = True

    def _release(self) -> None:
        with self._cv:
            self._asking = False
            held, self._held, self._held_chars = self._held, [], 0
            for stream, text in held:
                self._write(stream, text)
            self._cv.notify_all()

    # -- the loop -----------------------------------------------------------------------------
    def run(self, session: Session) -> None:
        asyncio.run(self._main(session))

    async def _main(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        self._lines = asyncio.Queue()
        self._arrived = asyncio.Event()
        lines = self._lines

        def post(line: Line) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
                loop.call_soon_threadsafe(lines.put_nowait, line)

        fd = stdin_fd()
        reader = StdinLines(fd, post, self._stop_input) if fd is not None else None
        if reader is None:
            lines.put_nowait(None)
        else:
            reader.start()
        client = GatewayClient(session.api_socket, paths.api_token(), session.id)
        tasks = [asyncio.create_task(self._listen(client)),
                 asyncio.create_task(self._ask_loop(client))]  # fmt: skip
        try:
            while not self.done.is_set():
                await asyncio.sleep(0.1)
        finally:
            self._stop_input.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ApiError, OSError):
                    await task
            self._release()

    async def _listen(self, client: GatewayClient) -> None:
        try:
            async for event in client.events():
                if event.topic == Topic.PENDING:
                    item = Pending.from_dict(event.data)
                    current = item.id == self._current and item.id not in self._gone
                    if current and item.pid and not self._current_pid:
                        self._current_pid = item.pid  # asked before its process was known
                        self._say_again(f"(asked by {asker_text(item)})")
                    if item.id not in self._gone and item.id != self._current:
                        self._waiting[item.id] = item  # an update keeps its place
                        assert self._arrived is not None
                        self._arrived.set()
                elif event.topic in (Topic.DECIDED, Topic.EXPIRED):
                    self._item_gone(event.topic, event.data)
                elif event.topic == "ports":
                    self._ports_changed(event.data)
        except (ApiError, OSError, ValueError) as exc:
            self._say(f"lost the gateway's event stream ({safe(exc)}); held connections "
                      "wait for their deadline")  # fmt: skip

    def _item_gone(self, topic: str, data: dict[str, Any]) -> None:
        item_id = str(data.get("id", ""))
        self._gone.add(item_id)
        self._waiting.pop(item_id, None)
        if item_id == self._current and self._withdrawn and not self._withdrawn.done():
            action, by = safe(data.get("action", "")), safe(data.get("by", ""))
            how = (
                f"expired ({action} by default)" if topic == Topic.EXPIRED else f"{action} by {by}"
            )
            self._withdrawn.set_result(how)

    def _ports_changed(self, state: dict[str, Any]) -> None:
        """New TCP ports are asked about (forward?), once each (sandbox/port_prompt.py)."""
        for port in new_ports(state, self._ports_seen):
            self._ports.append(port)
            assert self._arrived is not None
            self._arrived.set()

    async def _ask_loop(self, client: GatewayClient) -> None:
        assert self._arrived is not None
        while True:
            while not self._waiting and not self._ports:
                self._arrived.clear()
                await self._arrived.wait()
            if self._ports:
                if not await ask_port(self, client, self._ports.pop(0)):
                    return
                continue
            item_id, item = next(iter(self._waiting.items()))
            del self._waiting[item_id]
            if item_id in self._gone:
                continue
            if not await self._ask(client, item):
                return  # no more input

    async def _ask(self, client: GatewayClient, item: Pending) -> bool:
        """Ask about ``item`` until it is answered or withdrawn; False at end of input."""
        self._current = item.id
        self._current_pid = item.pid
        self._withdrawn = asyncio.get_running_loop().create_future()
        self._hold()
        try:
            while True:
                self._say(question_text(item) + options_text(item), question=True)
                line = await self._answer()
                if line is None or isinstance(line, _Withdrawn):
                    return self._unanswered(item, line)
                answer = answers(item).get(line.strip())
                if answer is None:
                    self._say(answer_hint(item))
                    continue
                action, lifetime = answer
                if lifetime == Lifetime.ALWAYS:
                    confirmed = await self._confirm_lasting(item, action)
                    if confirmed is None or isinstance(confirmed, _Withdrawn):
                        return self._unanswered(item, confirmed)
                    if not confirmed:
                        continue
                await self._decide(client, item, action, lifetime)
                return True
        except asyncio.CancelledError:
            if self.done.is_set():
                self._say(f"the run ended: question about {where(item)} withdrawn")
            raise
        finally:
            self._current = None
            self._release()

    def _unanswered(self, item: Pending, why: _Withdrawn | None) -> bool:
        if why is None:
            self._say("no more input: held connections wait for their deadline "
                      "(or `coderun dashboard`)")  # fmt: skip
            return False
        self._say(f"question withdrawn: {where(item)} was decided elsewhere: {why}")
        return True

    async def _confirm_lasting(self, item: Pending, action: Action) -> bool | _Withdrawn | None:
        """The second step of "always": True to store, False to ask again; why it was
        withdrawn, or None at the end of input, otherwise."""
        target = lasting_target(item)
        if target is None:
            self._say("a lasting rule cannot be made for an address coderun made up; "
                      "answer a or d")  # fmt: skip
            return False
        self._say(f"this stores a lasting rule: {rule_preview(item, action)} (always).")
        self._say(f"type {safe(target)} to store it (anything else cancels): ",
                  question=True)  # fmt: skip
        line = await self._answer()
        if line is None or isinstance(line, _Withdrawn):
            return line
        if same_target(line, target):
            return True
        self._say(f"not stored: that is not {show_name(target)}")
        return False

    async def _answer(self) -> str | _Withdrawn | None:
        """The next line typed after the question was shown, why the question was
        withdrawn, or None at the end of input."""
        assert self._lines is not None and self._withdrawn is not None
        flush_typeahead()
        shown = time.monotonic()
        while True:
            get = asyncio.ensure_future(self._lines.get())
            either: set[asyncio.Future[Any]] = {get, self._withdrawn}
            done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if self._withdrawn in done:
                get.cancel()
                self._current = None
                return _Withdrawn(self._withdrawn.result())
            line = get.result()
            if line is None:
                return None
            if self._echo:
                self._line_open = False  # the terminal echoed the person's Enter
            read_at, text = line
            if read_at >= shown + SETTLE_SECONDS:
                return text
            if read_at >= shown:
                self._say("(an answer typed as the question appeared is ignored: "
                          "read it and answer again) ", question=True)  # fmt: skip

    async def _decide(self, client: GatewayClient, item: Pending, action: Action,
                      lifetime: str) -> None:  # fmt: skip
        request = DecisionRequest(action, pending_id=item.id, target=Target.HOST,
                                  lifetime=lifetime)  # fmt: skip
        self._gone.add(item.id)  # answered: a late update of it is never asked again
        try:
            result = await client.decide(request)
        except ApiError as exc:
            if exc.status == 409:
                self._say(f"already decided elsewhere: {where(item)}")
            else:
                self._say(f"the decision on {where(item)} failed: {safe(exc)}")
            return
        verb = "allowed" if action is Action.ALLOW else "denied"
        stored = result.rule
        if lifetime == Lifetime.ONCE or stored is None:
            self._say(f"{verb} once: {where(item)}")
        elif lifetime == Lifetime.SESSION:
            self._say(f"{verb} for this session: {where(item)} (rule {safe(stored.id)}: "
                      f"{rule_text(stored)})")  # fmt: skip
        else:
            self._say(f"{verb} always: {where(item)} (stored rule {safe(stored.id)}: "
                      f"{rule_text(stored)})")  # fmt: skip


class _Withdrawn(str):
    """Why the question on screen was withdrawn (decided elsewhere, expired)."""
