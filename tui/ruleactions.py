"""The rules tab's actions: explain, new, edit, enable/disable and delete, each sent to
the gateway of the rule's session. Mixed into :class:`tui.app.DashboardApp`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rich.text import Text

from snitch.core.grammar import format_endpoint
from snitch.core.model import Rule
from snitch.core.safetext import safe
from tui.client import ApiError
from tui.decisions import DecidingApp
from tui.screens.confirm import ConfirmDialog
from tui.screens.rules import ExplainDialog, RuleForm
from tui.sessions import LinkState, SessionLink
from tui.widgets.rules import RulesView


class RuleActions(DecidingApp):
    """The app's part that changes rules (its views and links are made by the subclass)."""

    rules_view: RulesView

    def _rules_link(self, index: int | None = None) -> SessionLink | None:
        if index is not None:
            return self.links[index]
        live = [link for link in self.links if link.state is LinkState.LIVE]
        candidates = live or self.links
        return candidates[0] if candidates else None

    def on_rules_view_act(self, message: RulesView.Act) -> None:
        row = self.rules_view.get(message.key)
        link = self._rules_link(row.link if row else None)
        if link is None:
            self.notify("no session to ask", severity="warning")
            return
        client = link.client
        if message.what == "explain":
            initial = ""
            if row and row.rule.host and not row.rule.host.startswith("*"):
                initial = format_endpoint(safe(row.rule.host), row.rule.port_lo)
            elif row and row.rule.file and not any(c in row.rule.file for c in "*?["):
                initial = safe(row.rule.file)  # a glob without wildcards is one path
            proto = str(row.rule.proto) if row else "tcp"
            self.push_screen(ExplainDialog(client.explain, initial, proto))
        elif message.what == "new":
            self.push_screen(RuleForm(None, link.name, self.clock), self._saver(link, None))
        elif row is None or row.rule.id is None:
            return
        elif message.what == "toggle":
            rid, enabled = row.rule.id, not row.rule.enabled
            self._rule_call(link, lambda: client.set_rule_enabled(rid, enabled))
        elif message.what == "edit":
            form = RuleForm(row.rule, link.name, self.clock)
            self.push_screen(form, self._saver(link, row.rule))
        elif message.what == "delete":
            rid = row.rule.id

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self._rule_call(link, lambda: client.remove_rule(rid))

            question = Text(f"Delete rule {rid}: {safe(row.rule.describe())}?")
            self.push_screen(ConfirmDialog(question), confirmed)

    def _saver(self, link: SessionLink, old: Rule | None) -> Callable[[Rule | None], None]:
        def save(rule: Rule | None) -> None:
            if rule is not None:
                client = link.client
                call = client.update_rule if old is not None else client.add_rule
                self._rule_call(link, lambda: call(rule))

        return save

    def _rule_call(self, link: SessionLink, call: Callable[[], Awaitable[object]]) -> None:
        self._track(self.run_worker(self._change_rules(link, call), group="rules"))

    async def _change_rules(self, link: SessionLink, call: Callable[[], Awaitable[object]]) -> None:
        """Make a rule change, then show the session's rules as they now are."""
        try:
            await call()
            self.rules_view.set_rules(link.index, await link.client.rules())
        except (ApiError, OSError) as exc:
            self.notify(safe(f"{link.short}: {exc}"), title="Rules", severity="error", markup=False)
