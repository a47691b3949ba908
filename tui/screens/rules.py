"""Dialogs of the rules view: confirm a delete, edit a rule, explain a host:port."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static
from textual.worker import Worker

from snitch.core.explain import NO_MATCH, Explanation
from snitch.core.filepaths import shown_path
from snitch.core.grammar import (
    Lifetime,
    format_port,
    lifetime_value,
    parse_endpoint,
    parse_lifetime,
    parse_port,
    parse_target,
)
from snitch.core.model import Action, Proto, Rule
from snitch.core.pathgrammar import normalize_methods, normalize_path_prefix
from snitch.core.policy import FILE_ACCESS, check_rule
from snitch.core.safetext import safe
from tui.client import ApiError
from tui.format import PROTOS
from tui.screens.decide import field_row
from tui.widgets.choice import ChoiceSet

Explain = Callable[[str, int, str], Awaitable[dict[str, Any]]]


class RuleForm(ModalScreen[Rule | None]):
    """A new rule (``rule`` None) or an edited copy; ``session`` is what "session" binds to."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="rule-form.save"),
        Binding("escape", "dismiss(None)", "Cancel", id="rule-form.cancel"),
    ]

    def __init__(self, rule: Rule | None, session: str, clock: Callable[[], float]) -> None:
        super().__init__()
        self.rule = rule
        self.session = session
        self.clock = clock
        self.life0 = lifetime_value(rule, clock()) if rule else Lifetime.ALWAYS

    def compose(self) -> ComposeResult:
        r = self.rule or Rule(Action.ALLOW)
        # an odd name or glob shows escaped (and won't save as it was)
        target = safe(r.file or "") if r.proto is Proto.FILE else safe(r.host or r.cidr or "")
        port = format_port(r.port_lo, r.port_hi)
        title = f"Edit rule {r.id}" if self.rule else "New rule"
        with Vertical(id="rule-form", classes="dialog") as box:
            box.border_title = title
            yield field_row(
                "Action",
                ChoiceSet(
                    [("allow", "allow"), ("deny", "deny")],
                    selected=str(r.action),
                    horizontal=True,
                    id="action",
                ),
            )
            hint = "name, *.domain, IP or CIDR; empty: any; proto file: a glob, ~/.aws/*"
            yield field_row("Target", Input(target, placeholder=hint, compact=True, id="target"))
            yield field_row(
                "Port", Input(port, placeholder="443, 8000-8100, any", compact=True, id="port")
            )
            yield field_row(
                "Path",
                Input(safe(r.path_prefix or ""), placeholder="HTTP requests: /v1/ or /v1/*",
                      compact=True, id="path"),
            )  # fmt: skip
            yield field_row(
                "Methods",
                Input(r.method or "", placeholder="HTTP requests: GET or GET,HEAD; empty: any",
                      compact=True, id="method"),
            )  # fmt: skip
            yield field_row(
                "Proto",
                ChoiceSet(
                    [(p, p) for p in PROTOS], selected=str(r.proto), horizontal=True, id="proto"
                ),
            )
            access = [("any", "read or write"), *((a, a) for a in FILE_ACCESS)]
            yield field_row(
                "Access",
                ChoiceSet(access, selected=r.access or "any", horizontal=True, id="access"),
            )
            yield field_row(
                "Lifetime",
                Input(
                    self.life0,
                    placeholder="always, session, 30s, 5m, 1h",
                    compact=True,
                    id="lifetime",
                ),  # fmt: skip
            )
            yield field_row("Note", Input(safe(r.note), compact=True, id="note"))
            yield Static("", id="form-error")
            with Horizontal(classes="buttons"):
                yield Button(Text("Save [^s]"), variant="primary", id="save", compact=True)
                yield Button(Text("Cancel [esc]"), id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#action", ChoiceSet).focus()

    def _inputs(self) -> list[Input]:
        return list(self.query(Input))

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_save()

    def action_save(self) -> None:
        try:
            rule = self.build()
        except ValueError as exc:
            self.query_one("#form-error", Static).update(Text(str(exc), style="bold red"))
            return
        self.dismiss(rule)

    def build(self) -> Rule:
        """The rule the form describes; ValueError with a message for a bad field."""
        values = {i.id: i.value for i in self._inputs()}
        target, port, life, note = (values[n] for n in ("target", "port", "lifetime", "note"))
        path, methods = values["path"], values["method"]
        path_prefix = normalize_path_prefix(path.strip()) if path.strip() else None
        method = normalize_methods(methods) if methods.strip() else None
        proto = Proto(self.query_one("#proto", ChoiceSet).value)
        access = self.query_one("#access", ChoiceSet).value
        where: dict[str, Any] = {"host": None, "cidr": None, "file": None, "access": None}
        if proto is Proto.FILE:  # the target is a path glob; a file has no port
            if port.strip() not in ("", "any"):
                raise ValueError("a file rule has no port (its target is a path glob)")
            if path_prefix is not None or method is not None:
                raise ValueError("a file rule has no URL path or method")
            where.update(file=target.strip(), access=None if access == "any" else access)
            lo = hi = 0
        else:
            if access != "any":
                raise ValueError("read/write access is for file rules (proto file)")
            where["host"], where["cidr"] = parse_target(target.strip() or "any")  # empty: any
            lo, hi = parse_port(port)
        if lo and proto in (Proto.DNS, Proto.ICMP):
            raise ValueError(f"a port makes no sense with {proto}")
        base = self.rule or Rule(Action.ALLOW, source="dashboard")
        fields: dict[str, Any] = {}
        life = life.strip().lower() or Lifetime.ALWAYS
        if life != self.life0 or self.rule is None:
            lasting = parse_lifetime(life)
            if lasting is Lifetime.ONCE:
                raise ValueError("a once rule is made by deciding a pending item")
            fields = {"once_key": None, "session": None, "expires_at": None}
            if lasting is Lifetime.SESSION:
                fields["session"] = self.session
            elif not isinstance(lasting, Lifetime):
                fields["expires_at"] = self.clock() + lasting
        if proto is not Proto.FILE and base.proto is Proto.FILE:
            fields["exe"] = None  # a file rule's program does not carry over to a connection
        rule = dataclasses.replace(
            base,
            action=Action(self.query_one("#action", ChoiceSet).value),
            port_lo=lo,
            port_hi=hi,
            proto=proto,
            path_prefix=path_prefix,
            method=method,
            note=note.strip(),
            **where,
            **fields,
        )
        check_rule(rule)
        return rule


def explained_path(text: str) -> str:
    """A path typed into the explain dialog as file rules see it (``~/...`` under home)."""
    path = os.path.expanduser(text.strip())
    if not path.startswith("/"):
        raise ValueError("a file to explain is a path starting with / or ~")
    return shown_path(path, os.path.expanduser("~"))


def render_explanation(explanation: Explanation) -> Group:
    """The deciding rule first (starred), then every other rule that matched (the object
    ``coderun rules explain`` prints)."""
    decision = explanation.decision
    lines: list[Text] = []
    if decision:
        style = "bold green" if decision.action is Action.ALLOW else "bold red"
        lines.append(Text.assemble((str(decision.action), style), " — ", safe(decision.reason)))
    else:
        lines.append(Text(NO_MATCH, style="bold yellow"))
    if explanation.reason:
        lines.append(Text(f"why: {safe(explanation.reason)}", style="italic"))
    if explanation.matches:
        lines.append(Text("matching rules, best first:", style="bold"))
    for i, match in enumerate(explanation.matches):
        rid = "-" if match.rule.id is None else str(match.rule.id)
        mark = ("★ ", "bold yellow") if i == 0 else ("  ", "")
        lines.append(
            Text.assemble(
                mark,
                (f"{rid:>4}  ", "bold"),
                f"{safe(match.rule.describe())}  ",
                (safe(match.why), "dim"),
            )  # fmt: skip
        )
    return Group(*lines)


class ExplainDialog(ModalScreen[None]):
    """Which rule decides a host:port, and every other rule that matched."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close", id="explain.close")]

    def __init__(self, explain: Explain, initial: str = "", proto: str = "tcp") -> None:
        super().__init__()
        self.explain = explain
        self.initial = initial
        self.proto = proto if proto in PROTOS else "tcp"
        self._job: Worker[None] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="explain", classes="dialog") as box:
            box.border_title = "Explain: which rule decides a connection or a file's open"
            hint = "api.example.test:443; proto file: a path, ~/.aws/credentials"
            yield field_row(
                "Host:port", Input(self.initial, placeholder=hint, compact=True, id="host")
            )
            protos = [(p, p) for p in PROTOS]
            yield field_row(
                "Proto", ChoiceSet(protos, selected=self.proto, horizontal=True, id="proto")
            )
            with VerticalScroll(id="explain-result"):
                yield Static("enter: explain · esc: close", id="explain-text", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#host", Input).focus()
        if self.initial:
            self._job = self.run_explain()

    @on(Input.Submitted, "#host")
    def _submitted(self) -> None:
        self._job = self.run_explain()

    @on(ChoiceSet.Changed, "#proto")
    def _proto(self) -> None:
        if self.query_one("#host", Input).value.strip():
            self._job = self.run_explain()

    @work(exclusive=True, group="explain")
    async def run_explain(self) -> None:
        out = self.query_one("#explain-text", Static)
        out.remove_class("hint")
        proto = self.query_one("#proto", ChoiceSet).value
        text = self.query_one("#host", Input).value
        try:
            if proto == Proto.FILE:  # read access: what an open of an existing file asks
                host, port = explained_path(text), 0
            else:
                host, port = parse_endpoint(text)
            result = await self.explain(host, port, proto)
        except ValueError as exc:
            out.update(Text(str(exc), style="red"))
            return
        except (ApiError, OSError) as exc:
            out.update(Text(safe(f"the gateway did not answer: {exc}"), style="red"))
            return
        try:
            explanation = Explanation.from_dict(result)
        except (KeyError, TypeError, ValueError) as exc:
            out.update(Text(safe(f"the gateway's answer makes no sense: {exc!r}"), style="red"))
            return
        out.update(render_explanation(explanation))
