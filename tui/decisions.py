"""Deciding pending items: quick keys, the decision dialog, batches, and the dry run that
shows a lasting decision's rule before it is stored. Mixed into :class:`tui.app.DashboardApp`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import App
from textual.worker import Worker

from snitch.core.grammar import Lifetime, parent_pattern
from snitch.core.model import DecisionRequest, Target
from snitch.core.safetext import is_plain_name, safe
from tui.client import CONFLICT, ApiError
from tui.format import host_name, lasting_rule_text, pattern_matches
from tui.screens.confirm import ConfirmDialog
from tui.screens.decide import BatchDialog, DecisionDialog
from tui.sessions import LINK_ERRORS, SessionLink
from tui.widgets.pending import PendingView
from tui.widgets.pendingrow import describe


class DecidingApp(App[None]):
    """The app's half that sends decisions (its views and links are made by the subclass)."""

    links: list[SessionLink]
    pending_view: PendingView
    clock: Callable[[], float]
    _jobs: list[Worker[Any]]

    def _update_status(self) -> None:
        raise NotImplementedError

    def _reload_rules(self, index: int) -> None:
        raise NotImplementedError

    def _flush_events(self) -> None:
        raise NotImplementedError

    def _track(self, worker: Worker[Any]) -> None:
        self._jobs = [w for w in self._jobs if not w.is_finished]
        self._jobs.append(worker)

    async def _refresh(self, link: SessionLink) -> None:
        try:
            items = await link.client.pending()
        except LINK_ERRORS:
            return  # the event worker notices and reconnects
        self._flush_events()  # events gathered so far are older than this answer
        self.pending_view.replace(link.index, link.name, items)
        self._update_status()

    # -- decisions --------------------------------------------------------------------------
    def on_pending_view_quick(self, message: PendingView.Quick) -> None:
        row = self.pending_view.rows.get(message.key)
        if row is None:
            return  # decided or expired since the key: nothing else is decided instead
        item = row.item
        request = DecisionRequest(message.action, pending_id=item.id)
        if host_name(item) is None:
            request.target = Target.IP
        if message.always and item.synthetic and request.target is Target.IP:
            self.notify("This address was made up by coderun: no rule can name it.",
                        title="Not decided", severity="warning", markup=False)  # fmt: skip
            return
        if message.always:
            request.lifetime = Lifetime.ALWAYS
            request.port = "any" if item.kind == "dns" else "this"
        self.decide([(row.link, [row.key])], request, describe(row))

    def on_pending_view_open(self, message: PendingView.Open) -> None:
        row = self.pending_view.rows.get(message.key)
        if row is None:
            return

        def done(request: DecisionRequest | None) -> None:
            if request is not None:
                self.decide([(row.link, [row.key])], request, describe(row))

        self.push_screen(DecisionDialog(row, self.clock), done)

    def on_pending_view_batch(self, message: PendingView.Batch) -> None:
        rows = self.pending_view.rows
        if not rows:
            self.notify("Nothing is waiting for a decision.")
            return
        row = rows.get(message.key) if message.key else None
        name = host_name(row.item) if row else None
        prefill = ""
        if name and is_plain_name(name):  # an odd name is no pattern to offer
            prefill = parent_pattern(name)
        elif row and is_plain_name(row.item.label):
            prefill = row.item.label

        def matcher(pattern: str) -> list[str]:
            return [r.item.label for r in rows.values() if pattern_matches(pattern, r.item)]

        def done(request: DecisionRequest | None) -> None:
            if request is None:
                return
            hits = [r for r in rows.values() if pattern_matches(request.pattern, r.item)]
            if not hits:
                self.notify(safe(f"no pending item matches {request.pattern}"),
                            severity="warning", markup=False)  # fmt: skip
                return
            targets = [
                (link, [r.key for r in hits if r.link == link])
                for link in sorted({r.link for r in hits})
            ]
            subject = Text(f"{len(hits)} pending items matching {safe(request.pattern)}")
            self.decide(targets, request, subject)

        self.push_screen(BatchDialog(prefill, matcher), done)

    def decide(
        self, targets: list[tuple[int, list[str]]], request: DecisionRequest, subject: Text
    ) -> None:
        """Decide items (per link, their row keys). A lasting decision is first shown as
        the rule the gateway will store (a dry run) and sent only when confirmed."""
        if not targets:
            return
        if request.lifetime == Lifetime.ONCE:
            for link, keys in targets:
                self.send_decision(link, request, keys)
            return
        job = self._confirm_lasting(targets, request, subject)
        self._track(self.run_worker(job, group="decide"))

    async def _confirm_lasting(
        self, targets: list[tuple[int, list[str]]], request: DecisionRequest, subject: Text
    ) -> None:
        link = self.links[targets[0][0]]
        try:
            preview = await link.client.decide(dataclasses.replace(request, dry_run=True))
        except (ApiError, OSError) as exc:
            await self._not_decided(link, exc)
            return
        question = lasting_rule_text(preview.rule, subject, self.clock())

        def confirmed(yes: bool | None) -> None:
            if yes:
                for index, keys in targets:
                    self.send_decision(index, request, keys)

        self.push_screen(ConfirmDialog(question, title="Store a rule", enter=False), confirmed)

    def send_decision(self, link_index: int, request: DecisionRequest, keys: list[str]) -> None:
        """Send a decision; rows show it as on its way until the ``decided`` event."""
        self.pending_view.set_busy(keys, f"{request.action}…")
        link = self.links[link_index]
        self._track(self.run_worker(self._decide(link, request, keys), group="decide"))

    async def _decide(self, link: SessionLink, request: DecisionRequest, keys: list[str]) -> None:
        try:
            result = await link.client.decide(request)
        except (ApiError, OSError) as exc:
            self.pending_view.set_busy(keys, "")
            await self._not_decided(link, exc)
            return
        if result.rule is not None:  # a lasting rule was made: show it
            self._reload_rules(link.index)

    async def _not_decided(self, link: SessionLink, exc: ApiError | OSError) -> None:
        if isinstance(exc, ApiError) and exc.status == CONFLICT:  # decided elsewhere, expired
            await self._refresh(link)
            return
        message = exc.message if isinstance(exc, ApiError) else str(exc)
        self.notify(safe(f"{link.short}: {message}"), title="Not decided", severity="error",
                    markup=False)  # fmt: skip
