"""The control API's answers as typed objects: ``SessionInfo`` (``GET /v1/info`` and the
first ``session`` event) and ``DecideResult`` (``POST /v1/decide``). The gateway builds
them, the client returns them, and the dashboard and the line prompt read their fields;
``to_dict`` is the JSON on the wire (docs/api.md), ``from_dict`` reads it back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from snitch.core.model import PromptCounts, Rule


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a session's gateway says about itself."""

    session: str
    mode: str = ""
    command: tuple[str, ...] = ()
    image: str = ""
    started: float = 0.0
    gateway_ip: str = ""
    ask_timeout: float | None = None  # ask mode only
    ask_default: str | None = None  # ask mode only
    prompts: PromptCounts | None = None  # ask mode only
    log_dropped: int = 0
    labels: tuple[str, ...] = ()  # "KEY=VALUE": the session's labels (a decision service's fleet)

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "mode": self.mode,
            "command": list(self.command),
            "image": self.image,
            "started": self.started,
            "gateway_ip": self.gateway_ip,
            "ask_timeout": self.ask_timeout,
            "ask_default": self.ask_default,
            "prompts": self.prompts.to_dict() if self.prompts is not None else None,
            "log_dropped": self.log_dropped,
            "labels": list(self.labels),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionInfo:
        prompts = d.get("prompts")
        timeout = d.get("ask_timeout")
        default = d.get("ask_default")
        return cls(
            session=str(d.get("session", "")),
            mode=str(d.get("mode") or ""),
            command=tuple(str(c) for c in d.get("command") or ()),
            image=str(d.get("image") or ""),
            started=float(d.get("started") or 0.0),
            gateway_ip=str(d.get("gateway_ip") or ""),
            ask_timeout=float(timeout) if timeout is not None else None,
            ask_default=str(default) if default is not None else None,
            prompts=PromptCounts.from_dict(prompts) if isinstance(prompts, dict) else None,
            log_dropped=int(d.get("log_dropped") or 0),
            labels=tuple(str(label) for label in d.get("labels") or ()),
        )


@dataclass(frozen=True, slots=True)
class DecideResult:
    """The pending ids a decision decided (or, in a dry run, would decide) and the lasting
    rule it stored (or would store); ``rule`` is None for a decision "once"."""

    decided: tuple[str, ...]
    rule: Rule | None = None
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "decided": list(self.decided),
            "rule": self.rule.to_dict() if self.rule is not None else None,
        }
        if self.dry_run:
            d["dry_run"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecideResult:
        rule = d.get("rule")
        return cls(
            tuple(str(i) for i in d.get("decided") or ()),
            Rule.from_dict(rule) if rule else None,
            bool(d.get("dry_run", False)),
        )
